"""A TCP proxy on loopback that cuts chosen HTTP requests: the network between acqd and a real server
failing the way a flaky link or a firewall does.

Every request's head is read before it is passed on. While `cut` says so for a request's method and
path, the client's connection is reset (RST, as a middlebox or a dying peer does) instead; every
other request goes to the server with ``Connection: close`` added, so that each request comes on a
connection of its own and is seen here (the header is not among the ones S3 signs).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

HEAD_MAX = 64 << 10


class CuttingProxy:
    """`127.0.0.1:port` in front of `127.0.0.1:upstream`. `cut`: (method, path) -> reset it; None
    passes everything. `cuts` counts the requests reset, by (method, path)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.cut: Callable[[str, str], bool] | None = None
        self.cuts: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="cutting-proxy", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.close()
        self._thread.join(timeout=10)

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), name="cutting-proxy-conn", daemon=True).start()

    def _track(self, s: socket.socket, on: bool) -> None:
        with self._lock:
            (self._open.add if on else self._open.discard)(s)

    def _serve(self, conn: socket.socket) -> None:
        self._track(conn, True)
        up: socket.socket | None = None
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                got = conn.recv(65536)
                if not got or len(head) > HEAD_MAX:
                    return
                head += got
            head, _, rest = head.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, target = lines[0].decode("latin-1").split(" ")[:2]
            path = target.partition("?")[0]
            rule = self.cut
            if rule is not None and rule(method, path):
                with self._lock:
                    self.cuts.append((method, path))
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closed below: with a zero linger, a reset
            kept = [ln for ln in lines[1:] if not ln.lower().startswith(b"connection:")]
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self._track(up, True)
            up.sendall(b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n" + rest)
            back = threading.Thread(target=self._pipe, args=(up, conn), daemon=True)
            back.start()
            self._pipe(conn, up)
            back.join()
        except OSError:
            pass
        finally:
            for s in (conn, up):
                if s is not None:
                    self._track(s, False)
                    with contextlib.suppress(OSError):
                        s.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
