"""Creates the tables (CC_PRE_RUN_HOOK): safe to run at every deployment."""

from db import connect

with connect() as conn:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS jobs (
            id serial PRIMARY KEY,
            name text UNIQUE NOT NULL,
            status text NOT NULL DEFAULT 'queued',
            queued_at timestamptz NOT NULL DEFAULT now(),
            done_at timestamptz
        )
        """
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS ticks (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
    )
print("migrate: tables jobs and ticks are there", flush=True)
