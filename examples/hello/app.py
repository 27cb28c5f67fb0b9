"""A tiny stdlib HTTP app, as the platform expects one: it listens on 0.0.0.0:$PORT.

Routes: `/` (hello), `/health` (ok), `/cached` (cacheable by Varnish), `/count` (how many
requests reached the app), `/inflight` (how many other requests are being answered now),
`POST /echo` (length and SHA-256 of the body), `/slow` (answers after HELLO_SLOW_SECONDS, or
as soon as `/release` is asked), `/headers` (the request headers as JSON).

Knobs for rehearsing failures: HELLO_FAIL_PATH (that path answers 500), HELLO_BIND (the
address to bind, 0.0.0.0 by default), HELLO_CRASH_PATH (a request to that path makes the app
exit 3), HELLO_CRASH_AFTER (exit 3 after that many seconds).
"""

import hashlib
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8080"))
BIND = os.environ.get("HELLO_BIND", "0.0.0.0")
FAIL_PATH = os.environ.get("HELLO_FAIL_PATH")
SLOW_SECONDS = float(os.environ.get("HELLO_SLOW_SECONDS", "1"))
CRASH_PATH = os.environ.get("HELLO_CRASH_PATH")
requests_seen = 0
in_flight = 0
lock = threading.Lock()
released = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def count(self):
        global requests_seen
        with lock:
            requests_seen += 1
            return requests_seen

    def do_GET(self):
        global in_flight
        with lock:
            in_flight += 1
        try:
            self.get()
        finally:
            with lock:
                in_flight -= 1

    def get(self):
        seen = self.count()
        path = self.path.split("?")[0]
        if path == CRASH_PATH:
            self.log_message('"%s" crashing on purpose', self.requestline)
            os._exit(3)
        if path == FAIL_PATH:
            self.answer(500, "failing on purpose\n")
        elif path == "/":
            self.answer(200, "Hello from uv!\n")
        elif path == "/health":
            self.answer(200, "ok\n")
        elif path == "/cached":
            self.answer(200, f"cached body, request {seen}\n", [("Cache-Control", "public, max-age=60")])
        elif path == "/count":
            self.answer(200, f"{seen}\n", [("Cache-Control", "no-store")])
        elif path == "/headers":
            self.answer(200, json.dumps(dict(self.headers.items())))
        elif path == "/inflight":
            with lock:
                others = in_flight - 1
            self.answer(200, f"{others}\n", [("Cache-Control", "no-store")])
        elif path == "/slow":
            released.wait(SLOW_SECONDS)
            self.answer(200, "slow answer\n")
        elif path == "/release":
            released.set()
            self.answer(200, "released\n")
        else:
            self.answer(404, "not found\n")

    def do_POST(self):
        self.count()
        length = int(self.headers.get("Content-Length", "0"))
        digest, remaining = hashlib.sha256(), length
        while remaining:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
        self.answer(200, f"{length - remaining} {digest.hexdigest()}\n")

    def log_message(self, format, *args):
        sys.stderr.write("hello: " + (format % args) + "\n")


def main():
    server = ThreadingHTTPServer((BIND, PORT), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    crash_after = os.environ.get("HELLO_CRASH_AFTER")
    if crash_after:
        threading.Timer(float(crash_after), lambda: os._exit(3)).start()
    print(f"hello: listening on {BIND}:{PORT}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
