"""A Celery app (CC_PYTHON_CELERY_MODULE=tasks) with a broker made of files, so that the
example needs no Redis: the web app drops a message in broker/, the worker takes it and
writes done/NAME."""
import os
from pathlib import Path

from celery import Celery

HERE = Path(__file__).resolve().parent
BROKER = HERE / "broker"
DONE = HERE / "done"
for folder in (BROKER, DONE):
    folder.mkdir(exist_ok=True)

app = Celery("tasks", broker="filesystem://")
app.conf.broker_transport_options = {
    "data_folder_in": str(BROKER),
    "data_folder_out": str(BROKER),
}
app.conf.broker_connection_retry_on_startup = True


@app.task
def write(name):
    (DONE / os.path.basename(name)).write_text("done by the celery worker\n")
