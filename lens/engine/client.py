"""A client of a running engine's hub, for the control service (and tests): hot reload today."""

from __future__ import annotations

from typing import Any

import zmq

from lens.config.load import ConfigError, ConfigIssue, validate_data
from lens.config.models import InspectionConfig
from lens.engine import msgs
from lens.engine.bus import pack, unpack


class EngineTimeout(TimeoutError):
    """The dispatcher did not answer in time."""


class EngineClient:
    """Talks to the dispatcher: at the run's internal hub, or at its command socket
    (`outputs.zmq.command`, default tcp://127.0.0.1:8712)."""

    def __init__(self, hub_endpoint: str, timeout_s: float = 10.0) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(hub_endpoint)
        self.timeout_ms = int(timeout_s * 1000)

    def reload_inspection(
        self, inspection: InspectionConfig | dict[str, Any], base_dir: str | None = None
    ) -> int:
        """Replace the running inspection config; returns its new version. A config that does not
        validate raises ConfigError (paths like `tools[0].params.th_min`) and changes nothing."""
        if not isinstance(inspection, InspectionConfig):
            inspection = validate_data(inspection, InspectionConfig, "inspection", base_dir=base_dir)
        self.sock.send_multipart((msgs.RELOAD, inspection.model_dump_json().encode()))
        if not self.sock.poll(self.timeout_ms):
            raise EngineTimeout(f"no answer from the dispatcher in {self.timeout_ms / 1000:.0f} s")
        kind, body = self.sock.recv_multipart()
        answer = unpack(body)
        if kind == msgs.NACK:
            raise ConfigError([ConfigIssue("", str(i)) for i in answer.get("issues", [answer["error"]])])
        return int(answer["version"])

    def trigger(self, camera: str | int = 0, trigger_id: str = "") -> int:
        """Fire a manual trigger on a camera with an event trigger; returns the result id that will
        carry its result (or its error result) on the bus. RuntimeError if the camera takes none."""
        self.sock.send_multipart(
            (msgs.TRIGGER, pack({"camera": camera, "id": trigger_id, "source": "manual"}))
        )
        answer = self._answer()
        return int(answer["result_id"])

    def _answer(self) -> dict[str, Any]:
        if not self.sock.poll(self.timeout_ms):
            raise EngineTimeout(f"no answer from the dispatcher in {self.timeout_ms / 1000:.0f} s")
        kind, body = self.sock.recv_multipart()
        answer: dict[str, Any] = unpack(body)
        if kind == msgs.NACK:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
