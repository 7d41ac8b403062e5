"""The in-memory log: recent results and events (as received: msgpack) and their JPEGs, bounded by
count and bytes, readable from any id and followable live.

Appending costs a deque append (no decoding): the control service keeps up with the pipeline at
full speed. Lines are decoded and JSON-encoded only for a client that reads them. A follower that
falls so far behind that the entries it still needs were evicted is ended with a last line saying
so: a slow client costs its own stream, never the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from lens.engine.bus import unpack

_LINES_PER_CHUNK = 256


@dataclass(frozen=True)
class Entry:
    id: int  # the log's own sequence (results and events share it), from 1
    kind: str  # "result" | "event"
    topic: str
    raw: bytes  # the msgpack envelope as published

    def record(self, images: OrderedDict[int, Image] | None = None) -> dict[str, Any]:
        data = unpack(self.raw)
        if self.kind == "result" and images is not None:
            data["image"] = data.get("result_id") in images
        return {"id": self.id, "kind": self.kind, "topic": self.topic, "data": data}


@dataclass(frozen=True)
class Image:
    camera: str
    jpeg: bytes
    width: int
    height: int
    at: float


class MemoryLog:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: deque[Entry] = deque()
        self.images: OrderedDict[int, Image] = OrderedDict()  # result_id -> JPEG (this run's ids)
        self.bytes = 0
        self.next_id = 1
        self.evicted = 0
        self.latest: dict[str, bytes] = {}  # camera -> raw envelope of its newest result
        self._changed = asyncio.Event()

    # -- writing --------------------------------------------------------------------------------------

    def append(self, kind: str, topic: str, raw: bytes) -> Entry:
        entry = Entry(self.next_id, kind, topic, raw)
        self.next_id += 1
        self.entries.append(entry)
        self.bytes += len(raw)
        if kind == "result":
            self.latest[topic.partition(".")[2]] = raw
        self._trim()
        self._changed.set()
        self._changed = asyncio.Event()
        return entry

    def add_image(self, result_id: int, image: Image) -> None:
        old = self.images.pop(result_id, None)
        if old is not None:
            self.bytes -= len(old.jpeg)
        self.images[result_id] = image
        self.bytes += len(image.jpeg)
        self._trim()

    def clear(self) -> int:
        n = len(self.entries)
        self.entries.clear()
        self.images.clear()
        self.latest.clear()
        self.bytes = 0
        return n

    def _trim(self) -> None:
        while len(self.entries) > self.max_entries:
            self._pop_entry()
        while self.bytes > self.max_bytes and (self.images or len(self.entries) > 1):
            if self.images:  # the big items go first: more history fits
                _, img = self.images.popitem(last=False)
                self.bytes -= len(img.jpeg)
            else:
                self._pop_entry()

    def _pop_entry(self) -> None:
        e = self.entries.popleft()
        self.bytes -= len(e.raw)
        self.evicted += 1

    # -- reading --------------------------------------------------------------------------------------

    @property
    def oldest_id(self) -> int:
        return self.entries[0].id if self.entries else self.next_id

    def after(self, cursor: int, limit: int) -> list[Entry]:
        """Entries with id > cursor (from the oldest kept if cursor is older), at most `limit`."""
        if not self.entries or cursor >= self.entries[-1].id:
            return []
        start = max(0, cursor + 1 - self.entries[0].id)
        out = []
        for i in range(start, min(len(self.entries), start + limit)):
            out.append(self.entries[i])
        return out

    def find_result(self, result_id: int, within: int = 4096) -> dict[str, Any] | None:
        """The result with this id among the newest `within` entries (decoded), or None."""
        for i, e in enumerate(reversed(self.entries)):
            if i >= within:
                break
            if e.kind == "result":
                env = unpack(e.raw)
                if env.get("result_id") == result_id:
                    return env
        return None

    def image(self, result_id: int) -> Image | None:
        return self.images.get(result_id)

    def latest_result(self, camera: str | None = None) -> dict[str, Any] | None:
        if camera is not None:
            raw = self.latest.get(camera)
            return unpack(raw) if raw is not None else None
        newest = None
        for raw in self.latest.values():
            env = unpack(raw)
            if newest is None or env.get("result_id", 0) > newest.get("result_id", 0):
                newest = env
        return newest

    async def changed(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def stream(self, since: int, follow: bool, limit: int | None = None) -> AsyncIterator[bytes]:
        """NDJSON chunks of the entries after `since`; with `follow`, then new ones as they come.
        Ends with an error line if the reader falls behind the log's eviction."""
        cursor = since
        sent = 0
        while True:
            want = _LINES_PER_CHUNK if limit is None else min(_LINES_PER_CHUNK, limit - sent)
            if want <= 0:
                return
            if cursor >= self.oldest_id - 1 or cursor == since:
                entries = self.after(cursor, want)
            else:  # what this reader needs next was evicted while it was being sent
                yield _line(
                    {
                        "error": {
                            "code": "LENS_SLOW_CLIENT",
                            "message": f"the reader fell behind: entries {cursor + 1}..{self.oldest_id - 1} "
                            "were evicted before they could be sent; reconnect with a later `since`",
                            "details": {"next_id": cursor + 1, "oldest_id": self.oldest_id},
                        }
                    }
                )
                return
            if entries:
                images = self.images
                yield b"".join(_line(e.record(images)) for e in entries)
                cursor = entries[-1].id
                sent += len(entries)
                continue
            if not follow:
                return
            await self.changed(1.0)


def _line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
