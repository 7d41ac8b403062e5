"""The AnalyticLens inspection log format (SPEC §4b): `.alog` files, their names, the old
machine's `logging_config` and one logged inspection (`LogEntry`). The book that keeps them and
their upload to the orchestrator are in `logbook`.

`.alog` v1 (big-endian): magic `b"ALOG"`, version u32, json_len u64, img_len u64, the UTF-8 JSON
`{id, timestamp, approved, width, height, result}` (non-ASCII kept as is), then the JPEG (may be
empty: img_len 0, width/height 0).
"""

from __future__ import annotations

import json
import struct
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import orjson

ALOG_MAGIC = b"ALOG"
ALOG_VERSION = 1
_HEADER = struct.Struct(">4sIQQ")  # magic, version, json_len, img_len
ALOG_HEADER_SIZE = _HEADER.size  # 24

MODES = ("keep_last", "keep_first")
POLICIES = ("ALL", "APPROVED", "REJECTED")
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class AlogError(ValueError):
    """Bytes that are not a readable `.alog` v1 file."""


def meta_json(meta: dict[str, Any]) -> bytes:
    """The .alog JSON: UTF-8, non-ASCII kept as is, NumPy scalars and arrays as plain values,
    NaN and ±Infinity as null (strict JSON; the old machine wrote `Infinity`)."""
    try:
        return orjson.dumps(meta, option=_JSON_OPTIONS)
    except TypeError as e:
        raise ValueError(f"alog metadata cannot be serialized to JSON: {e}") from None


def pack_alog(meta_json: bytes, jpeg: bytes) -> bytes:
    return _HEADER.pack(ALOG_MAGIC, ALOG_VERSION, len(meta_json), len(jpeg)) + meta_json + jpeg


def encode_alog(meta: dict[str, Any], jpeg: bytes) -> bytes:
    """One `.alog` v1 file: header, `meta` as JSON, `jpeg` (b"" for none). ValueError if `meta`
    is not a dict or cannot be serialized."""
    if not isinstance(meta, dict):
        raise ValueError(f"alog metadata must be a dict, got {type(meta).__name__}")
    return pack_alog(meta_json(meta), bytes(jpeg))


def decode_alog(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(metadata, JPEG bytes) of one `.alog` v1 file; AlogError saying what is wrong otherwise.
    Lenient on JSON like the orchestrator (`NaN`/`Infinity` accepted), strict on the layout
    (trailing bytes are an error)."""
    data = bytes(data)
    if len(data) < ALOG_HEADER_SIZE:
        raise AlogError(f"alog too short: {len(data)} bytes, the header alone is {ALOG_HEADER_SIZE}")
    magic, version, json_len, img_len = _HEADER.unpack_from(data)
    if magic != ALOG_MAGIC:
        raise AlogError(f"not an alog: magic {magic!r}, expected {ALOG_MAGIC!r}")
    if version != ALOG_VERSION:
        raise AlogError(f"alog version {version} is not supported (this reader knows {ALOG_VERSION})")
    end = ALOG_HEADER_SIZE + json_len + img_len
    if end > len(data):
        raise AlogError(
            f"alog lengths run past the data: header {ALOG_HEADER_SIZE} + json {json_len} "
            f"+ image {img_len} bytes > {len(data)} bytes"
        )
    if end < len(data):
        raise AlogError(
            f"alog has {len(data) - end} bytes after the image (json {json_len}, image {img_len})"
        )
    raw = data[ALOG_HEADER_SIZE : ALOG_HEADER_SIZE + json_len]
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise AlogError(f"alog JSON is not UTF-8: {e}") from None
    except ValueError as e:
        raise AlogError(f"alog JSON unreadable: {e}") from None
    if not isinstance(meta, dict):
        raise AlogError(f"alog JSON is a {type(meta).__name__}, expected an object")
    return meta, data[ALOG_HEADER_SIZE + json_len : end]


def alog_name(timestamp: str, log_id: str) -> str:
    """The file name the old machine gave a log: `2025-09-12 18:30:30` + id →
    `2025-09-12 18-30-30_<id>.alog` (':' → '-', 'T' → '_', cut at the first '.')."""
    stamp = timestamp.replace(":", "-").replace("T", "_").split(".", 1)[0]
    return f"{stamp}_{log_id}.alog"


def local_timestamp(epoch: float | None = None) -> str:
    """`epoch` (default now) as the old machine stamped inspections: local time,
    `YYYY-MM-DD HH:MM:SS`."""
    when = datetime.now() if epoch is None else datetime.fromtimestamp(epoch)
    return when.strftime("%Y-%m-%d %H:%M:%S")


# -- configuration ------------------------------------------------------------------------------------


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"logging_config.{name} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"logging_config.{name} must be an integer, got {value!r}") from None
    if not isinstance(value, int):
        raise ValueError(f"logging_config.{name} must be an integer, got {value!r}")
    if value < minimum:
        relation = "> 0" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"logging_config.{name} must be {relation}, got {value}")
    return value


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"logging_config.{name} must be true or false, got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"logging_config.{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class LoggingConfig:
    """The old machine's `logging_config` (`GET|PUT /api/logging_config`, key `logging` of its
    config file), with its defaults and checks: `mode` keep_last|keep_first, `policy`
    ALL|APPROVED|REJECTED, `max_logs` >= 0, `batch_size` > 0, `batch_ms` >= 0.

    Integers are stored as integers (the old machine stored what it was sent, e.g. "20"); integer
    strings and integral floats are accepted and converted, booleans and 2.5 are not. `enabled`
    must be a boolean (or 0/1, "true"/"false"); the old machine stored any value unchecked.
    """

    enabled: bool = False
    mode: str = "keep_last"
    max_logs: int = 1000
    policy: str = "ALL"
    batch_size: int = 20
    batch_ms: int = 500

    def __post_init__(self) -> None:
        for name, value in _normalized(asdict(self)).items():
            object.__setattr__(self, name, value)

    @classmethod
    def merged(cls, current: LoggingConfig, patch: dict[str, Any]) -> LoggingConfig:
        """`current` with the keys of `patch` (a partial PUT body) applied, each validated;
        ValueError naming the field and the value otherwise. Unlike the old machine, which merged
        unknown keys into its config, an unknown key is an error; `buffer_size` (a read-only field
        of the GET answer, so a GET body can be PUT back) is ignored."""
        if not isinstance(patch, dict):
            raise ValueError(f"logging_config must be a JSON object, got {type(patch).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in patch if k not in known and k != "buffer_size")
        if unknown:
            raise ValueError(
                f"unknown logging_config key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        values = asdict(current)
        values.update({k: v for k, v in patch.items() if k in known})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """`{enabled, mode, max_logs, policy, batch_size, batch_ms}` as in the old `/api/status`."""
        return asdict(self)


def _normalized(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "enabled": _bool("enabled", values["enabled"]),
        "mode": _choice("mode", values["mode"], MODES),
        "max_logs": _int("max_logs", values["max_logs"], 0),
        "policy": _choice("policy", values["policy"], POLICIES),
        "batch_size": _int("batch_size", values["batch_size"], 1),
        "batch_ms": _int("batch_ms", values["batch_ms"], 0),
    }


# -- entries ----------------------------------------------------------------------------------------


@dataclass
class LogEntry:
    """One logged inspection. `result` is the legacy inspection result (built by the caller: the
    summary, `aprovados`, `reprovados`, `frame`, `time`, `tools`, `result`); `jpeg` the encoded
    image (b"" for none, then width = height = 0); `timestamp` local `YYYY-MM-DD HH:MM:SS`.
    Once offered to a LogBook the entry (and its result) belongs to the book: do not mutate it."""

    id: str
    timestamp: str
    approved: bool
    width: int
    height: int
    result: dict[str, Any]
    jpeg: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"log entry id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.timestamp, str) or not self.timestamp:
            raise ValueError(f"log entry {self.id}: timestamp must be a non-empty string")
        if not isinstance(self.result, dict):
            raise ValueError(f"log entry {self.id}: result must be a dict, got {type(self.result).__name__}")
        self.approved = bool(self.approved)  # a NumPy bool too
        self.width, self.height = int(self.width), int(self.height)
        if self.width < 0 or self.height < 0:
            raise ValueError(f"log entry {self.id}: size {self.width}x{self.height} is negative")
        self.jpeg = bytes(self.jpeg)

    @classmethod
    def create(
        cls, approved: bool, result: dict[str, Any], jpeg: bytes = b"", width: int = 0, height: int = 0
    ) -> LogEntry:
        """A new entry stamped now, with a fresh uuid4 id."""
        return cls(str(uuid.uuid4()), local_timestamp(), approved, width, height, result, jpeg)

    def meta(self) -> dict[str, Any]:
        """The `.alog` JSON: `{id, timestamp, approved, width, height, result}`."""
        return {
            "id": self.id,
            "timestamp": self.timestamp,
            "approved": self.approved,
            "width": self.width,
            "height": self.height,
            "result": self.result,
        }
