"""The serving TLS context, rebuilt when the certificate or key file changes on disk.

gunicorn asks for an SSLContext per accepted connection (its `ssl_context` hook); by default it
re-reads the files every time. This keeps one context and re-reads only when a file's inode, mtime or
size changed, so a rotated certificate (cert-manager, a Secret volume, `hotupgrade-webhook certs`) is
served on the next connection without a restart. A half-written pair (cert and key not matching yet)
keeps the previous context until the pair loads.

It also bounds every blocking socket operation: gunicorn's gthread worker reads the handshake and the
headers with no timeout at all, so a client that stalls mid-handshake or mid-headers would hold one
of the few worker threads forever (a handful of them would take the webhook down).
"""

import logging
import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from webhook import logs

FilesKey = tuple[tuple[int, int, int], tuple[int, int, int]]


def _key(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class _BoundedSSLSocket(ssl.SSLSocket):
    """An SSLSocket whose "blocking" mode means "blocking with a timeout"."""

    io_timeout: float = 10.0

    def setblocking(self, flag: bool) -> None:
        # gthread flips connections between non-blocking (poller) and blocking (request handling).
        if flag:
            self.settimeout(self.io_timeout)
        else:
            super().setblocking(False)


class BoundedContext(ssl.SSLContext):
    """A server context whose sockets never block longer than `io_timeout`, handshake included."""

    io_timeout: float = 10.0

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock.settimeout(self.io_timeout)  # the SSLSocket inherits it: bounds the handshake too
        return super().wrap_socket(sock, *args, **kwargs)


def server_context(cert: Path, key: Path, *, io_timeout: float = 10.0) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the given PEM files, with socket operations bounded by `io_timeout`."""
    context = BoundedContext(ssl.PROTOCOL_TLS_SERVER)
    context.io_timeout = io_timeout
    context.sslsocket_class = type("BoundedSSLSocket", (_BoundedSSLSocket,), {"io_timeout": io_timeout})
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context


class ReloadingContext:
    """Hands out the SSLContext for the current cert/key files."""

    def __init__(self, cert: Path, key: Path, *, io_timeout: float = 10.0) -> None:
        self.cert = cert
        self.key = key
        self.io_timeout = io_timeout
        self._lock = threading.Lock()
        self._files_key: FilesKey = (_key(cert), _key(key))
        self._context = server_context(
            cert, key, io_timeout=io_timeout
        )  # unreadable files at startup are fatal: raise

    def context(self) -> ssl.SSLContext:
        try:
            files_key = (_key(self.cert), _key(self.key))
        except OSError:
            return self._context  # mid-rotation (a file briefly missing): serve the previous pair
        if files_key == self._files_key:
            return self._context
        with self._lock:
            if files_key != self._files_key:
                try:
                    self._context = server_context(self.cert, self.key, io_timeout=self.io_timeout)
                except (OSError, ssl.SSLError) as exc:
                    logs.event(
                        "tls-reload-failed", level=logging.WARNING, cert=str(self.cert), error=str(exc)
                    )
                    return self._context
                self._files_key = files_key
                logs.event("tls-reloaded", cert=str(self.cert))
        return self._context
