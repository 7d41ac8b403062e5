"""`lens subscribe [ENDPOINT]`: print results and events from a results bus as they arrive."""

from __future__ import annotations

import base64
import signal
import sys
from typing import Any, TextIO

import orjson
import zmq

from lens.engine.bus import Subscriber


def describe(topic: str, env: dict[str, Any]) -> str:
    if topic.startswith("result."):
        head = f"{topic} #{env.get('result_id')} frame {env.get('frame_id')}"
        if "error" in env:
            return f"{head} ERROR {env['error']['code']}: {env['error']['message']}"
        tools = "  ".join(
            f"{n}={t['value']:.4g}" if isinstance(t.get("value"), float) else f"{n}={t.get('value')}"
            for n, t in env.get("tools", {}).items()
        )
        latency = (env.get("finished_at", 0) - env.get("captured_at", 0)) * 1000
        return f"{head} {'PASS' if env.get('pass') else 'FAIL'} ({latency:.1f} ms)  {tools}"
    if topic.startswith("image."):
        jpeg = env.get("jpeg") or b""
        size = f"{env.get('width')}x{env.get('height')}"
        return f"{topic} #{env.get('result_id')} {size} JPEG {len(jpeg)} bytes"
    fields = {k: v for k, v in env.items() if k not in ("type", "machine_id", "at")}
    return f"{topic} {orjson.dumps(fields).decode()}"


def _json_safe(env: dict[str, Any]) -> dict[str, Any]:
    """Bytes (an image's JPEG) as base64 text, so every line is JSON."""
    return {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in env.items()}


def subscribe(
    endpoint: str,
    topics: list[str] | None = None,
    count: int = 0,
    raw: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ctx = zmq.Context()
    sub = Subscriber(ctx, endpoint, topics or ["result.", "event."])  # images only when asked: --topic image.
    seen = 0
    try:
        while not stop and (count == 0 or seen < count):
            msg = sub.recv(timeout_ms=200)
            if msg is None:
                continue
            topic, env = msg
            seen += 1
            if raw:
                out.write(orjson.dumps({"topic": topic, **_json_safe(env)}).decode() + "\n")
            else:
                out.write(describe(topic, env) + "\n")
            out.flush()
    finally:
        sub.close()
        ctx.term()
    return 0
