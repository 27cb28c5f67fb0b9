#!/bin/bash -l
# Cron runs this with its bare environment: `bash -l` reads the app's variables (the add-on's
# POSTGRESQL_ADDON_URI among them), as on the platform. The venv is the one the build made.
set -e
cd "$APP_HOME"
exec .venv/bin/python cron_tick.py
