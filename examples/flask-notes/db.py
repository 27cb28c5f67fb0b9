"""The database, as the platform's PostgreSQL add-on gives it: POSTGRESQL_ADDON_URI."""

import os

import psycopg


def connect(**kwargs):
    return psycopg.connect(os.environ["POSTGRESQL_ADDON_URI"], connect_timeout=5, **kwargs)
