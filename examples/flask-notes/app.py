"""The web app: enqueue jobs, say their status, count the cron's ticks, and a health check
that asks the database (the platform's seed page runs SELECT 1 + 1)."""

from flask import Flask, jsonify

from db import connect

app = Flask(__name__)


@app.get("/")
def index():
    return "flask-notes: POST /jobs/NAME, GET /jobs/NAME, GET /ticks, GET /health\n"


@app.get("/health")
def health():
    try:
        with connect() as conn:
            (two,) = conn.execute("SELECT 1 + 1").fetchone()
    except Exception as error:  # the database does not answer
        return jsonify(status="unhealthy", error=type(error).__name__), 500
    return jsonify(status="ok", result=two)


@app.post("/jobs/<name>")
def enqueue(name):
    with connect() as conn:
        conn.execute(
            "INSERT INTO jobs (name) VALUES (%s) "
            "ON CONFLICT (name) DO UPDATE SET status = 'queued', queued_at = now(), done_at = NULL",
            (name,),
        )
        conn.execute("NOTIFY jobs")
    return jsonify(name=name, status="queued"), 202


@app.get("/jobs/<name>")
def status(name):
    with connect() as conn:
        row = conn.execute("SELECT status FROM jobs WHERE name = %s", (name,)).fetchone()
    if row is None:
        return jsonify(name=name, status="unknown"), 404
    return jsonify(name=name, status=row[0])


@app.get("/ticks")
def ticks():
    with connect() as conn:
        (count,) = conn.execute("SELECT count(*) FROM ticks").fetchone()
    return jsonify(ticks=count)
