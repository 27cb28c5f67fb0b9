"""The worker (CC_WORKER_COMMAND): takes the queued jobs, one at a time, and marks them done.
Woken by NOTIFY, and looks every few seconds anyway; when the database goes away it says so
and connects again."""

import time

import psycopg

from db import connect

TAKE_ONE = """
UPDATE jobs SET status = 'done', done_at = now()
WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING name
"""


def work(conn):
    conn.execute("LISTEN jobs")
    print("worker: waiting for jobs", flush=True)
    while True:
        while (row := conn.execute(TAKE_ONE).fetchone()) is not None:
            print(f"worker: done {row[0]}", flush=True)
        for _ in conn.notifies(timeout=5.0, stop_after=1):
            pass


while True:
    try:
        with connect(autocommit=True) as conn:
            work(conn)
    except psycopg.OperationalError as error:
        print(f"worker: the database does not answer ({error}); again in 1 s", flush=True)
        time.sleep(1)
