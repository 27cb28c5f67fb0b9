"""The web side, on uWSGI: /enqueue/NAME sends a task, /done/NAME says whether the worker ran it."""
import os

from flask import Flask

import tasks

app = Flask(__name__)


@app.get("/")
def index():
    return "Hello from the Celery example\n"


@app.post("/enqueue/<name>")
def enqueue(name):
    tasks.write.delay(name)
    return "queued\n", 202


@app.get("/done/<name>")
def done(name):
    if (tasks.DONE / os.path.basename(name)).exists():
        return "done\n"
    return "not yet\n", 404
