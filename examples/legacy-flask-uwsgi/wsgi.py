"""A Flask app as the platform's legacy mode serves it: uWSGI on 9000, Nginx in front.

The static files under static/ are Nginx's to serve (STATIC_FILES_PATH, STATIC_URL_PREFIX):
Flask's own static route is off, and /hits says how many requests reached the app.
"""

import time

from flask import Flask, request

app = Flask(__name__, static_folder=None)
hits = {"count": 0}


@app.before_request
def count():
    hits["count"] += 1


@app.get("/")
def index():
    return "Hello from uWSGI behind Nginx!\n" + "padding " * 64 + "\n"


@app.get("/hits")
def seen():
    # This request counts too: the requests before it are count - 1.
    return str(hits["count"] - 1)


@app.get("/slow")
def slow():
    time.sleep(float(request.args.get("seconds", "2")))
    return "slow\n"

