"""A real webhook receiver on loopback: records every delivery (headers, raw body), can be down
(port closed) and up again on the same port."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import threading
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def envelope(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.body)
        return data

    def signed_by(self, secret: bytes) -> bool:
        want = "sha256=" + hmac.new(secret, self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-lens-signature", ""), want)


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1:`port` that can go down (port closed) and up again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            assert self.thread is not None
            self.thread.join()
            self.server = self.thread = None


class Receiver(LoopbackServer):
    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.deliveries: list[Delivery] = []  # answered 200
        self.rejected: list[Delivery] = []  # answered 500 (while `failures` > 0)
        self.failures = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                delivery = Delivery({k.lower(): v for k, v in self.headers.items()}, body)
                with receiver.lock:
                    status = 500 if receiver.failures > 0 else 200
                    if status == 500:
                        receiver.failures -= 1
                        receiver.rejected.append(delivery)
                    else:
                        receiver.deliveries.append(delivery)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.serve(Handler)

    def of_type(self, type_: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.envelope["type"] == type_]

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)
