"""What the cron runs every minute (cron/tick.sh): one row in ticks."""

from db import connect

with connect() as conn:
    conn.execute("INSERT INTO ticks DEFAULT VALUES")
    (count,) = conn.execute("SELECT count(*) FROM ticks").fetchone()
print(f"tick: {count} tick(s) so far", flush=True)
