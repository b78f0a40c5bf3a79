"""A loopback HTTP server for `bench fetch` tests: serves in-memory files by name on 127.0.0.1,
with Range requests, and per-file faults: a corrupted copy, a response cut at half (once or
always), HTTP 404 / 500, a slow or stalled answer. Every request is logged."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Loopback:
    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)  # name -> corrupt | cut | cut-once | 404 | 500 | stall | slow | slower
    log: list[tuple[str, str | None]] = field(default_factory=list)  # (name, Range header)
    url: str = ""

    def add(self, name: str, data: bytes, fault: str | None = None) -> None:
        self.files[name] = data
        if fault:
            self.faults[name] = fault

    def requests_for(self, name: str) -> list[str | None]:
        return [rng for n, rng in self.log if n == name]


def make_handler(state: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/").split("?")[0]
            rng = self.headers.get("Range")
            state.log.append((name, rng))
            fault = state.faults.get(name)
            if fault == "404" or name not in state.files:
                return self._status(404, "Not Found")
            if fault == "500":
                return self._status(500, "Internal Server Error")
            if fault == "stall":
                time.sleep(3)
                return self._status(500, "Too Late")
            data = state.files[name]
            if fault == "corrupt":
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = 0
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(data):
                    return self._status(416, "Range Not Satisfiable")
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            cut = fault == "cut" or (fault == "cut-once" and len(state.requests_for(name)) == 1)
            if cut:
                self.wfile.write(body[: len(data) // 2 - start])
                self.wfile.flush()
                self.close_connection = True
                return
            if fault in ("slow", "slower"):  # about 1 s / 4 s per file
                step = max(1, len(body) // 20)
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    time.sleep(0.05 if fault == "slow" else 0.2)
                return
            self.wfile.write(body)

        def _status(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code, text)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class Server:
    """Context manager: a threaded server on 127.0.0.1 (random port) for a :class:`Loopback`."""

    def __init__(self, state: Loopback) -> None:
        self.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *args: None  # a client that gave up (timeout test) is not news
        state.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self.state

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
