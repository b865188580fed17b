"""Demo app for the e2e suite: HTTP 200 on every GET (PORT, default 8080), TCP echo on ECHO_PORT (9000).

Exits at once on SIGTERM. The sidecar's HTTP listener forwards to PORT, its tcp_proxy listener to ECHO_PORT.
"""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"ok {socket.gethostname()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the load test sends thousands of requests."""


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


# socketserver listens with a backlog of 5. A new Envoy opens its upstream connections in a burst when it
# takes over; SYNs past a full backlog are dropped and retried after 1 s, which an xDS cluster's 1 s
# connect_timeout turns into a 503. Real servers listen with SOMAXCONN (Go, nginx 511, Node 511).
class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = socket.SOMAXCONN


def main() -> None:
    http = HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
    echo = EchoServer(("0.0.0.0", int(os.environ.get("ECHO_PORT", "9000"))), Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"event=listening http={http.server_address[1]} echo={echo.server_address[1]}", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    main()
