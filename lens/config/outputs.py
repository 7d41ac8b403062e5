"""Output sections (SPEC §5): result store, image log, MQTT sink, result actions.

Every output is off unless its section is present (`null` = off); `outputs.zmq` is always on.
Relative paths are relative to the pipeline file's folder, like every other path.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal

from pydantic import Field, Tag, field_validator

from lens.config.base import Section, http_url, tagged_by
from lens.config.paths import resolve_path

ImagePolicy = Literal["all", "failed", "none"]

# Placeholders a line, topic or payload template may use (str.format syntax: "REJECT;{result_id}").
TEMPLATE_FIELDS = ("result_id", "camera", "machine_id", "frame_id", "pass", "outcome", "finished_at")


def check_template(v: str) -> str:
    """A template may only name TEMPLATE_FIELDS (`{result_id}`); `{{` and `}}` are literal braces."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(v) if name is not None]
    except ValueError as e:
        raise ValueError(f"{v!r} is not a valid template: {e}") from None
    for name in names:
        if name not in TEMPLATE_FIELDS:
            raise ValueError(
                f"{v!r}: unknown placeholder {{{name}}}; use one of {', '.join(TEMPLATE_FIELDS)}"
            )
    return v


class StoreOutput(Section):
    path: Annotated[str, Field(min_length=1, description="SQLite file of results (WAL mode)")] = (
        "var/results.sqlite"
    )
    retention_days: Annotated[
        float, Field(ge=0, le=36500, description="Results older than this are deleted; 0 = kept")
    ] = 7
    max_rows: Annotated[
        int, Field(ge=0, description="At most this many results, oldest deleted; 0 = no cap")
    ] = 1_000_000
    batch_rows: Annotated[
        int, Field(ge=1, le=100_000, description="Results written per transaction at most")
    ] = 500
    batch_ms: Annotated[
        float, Field(ge=1, le=60_000, description="A batch is written at least this often")
    ] = 200

    _path = field_validator("path")(resolve_path)


class ImageLogOutput(Section):
    dir: Annotated[str, Field(min_length=1, description="Folder of the logged JPEGs")] = "var/images"
    keep: Annotated[ImagePolicy, Field(description="Which inspections' images are written")] = "failed"
    max_mb: Annotated[
        float, Field(gt=0, le=10_000_000, description="Size cap; oldest images removed first")
    ] = 512
    max_age_days: Annotated[
        float, Field(ge=0, le=36500, description="Older images are removed; 0 = no limit")
    ] = 7
    disk_guard_pct: Annotated[
        float, Field(gt=0, le=100, description="Writing stops while the disk is fuller than this (%)")
    ] = 95

    _dir = field_validator("dir")(resolve_path)


class MqttOutput(Section):
    host: Annotated[str, Field(min_length=1, description="Broker host")] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535, description="Broker port")] = 1883
    qos: Annotated[Literal[0, 1, 2], Field(description="QoS of results, events and status")] = 1
    topic_prefix: Annotated[str, Field(min_length=1, max_length=200, description="First topic level")] = (
        "lens"
    )
    username_env: Annotated[str | None, Field(description="Environment variable holding the user name")] = (
        None
    )
    password_env: Annotated[str | None, Field(description="Environment variable holding the password")] = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600, description="MQTT keepalive")] = 30
    buffer: Annotated[
        int,
        Field(
            ge=1,
            le=1_000_000,
            description="Messages held while the broker is away; beyond, dropped and counted",
        ),
    ] = 10000
    results: Annotated[bool, Field(description="Publish every result (false: events and status only)")] = True

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        if re.search(r"[#+\x00]", v) or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"{v!r} is not a topic prefix (no #, + or NUL; no leading or trailing /)")
        return v


ActionWhen = Literal["fail", "pass", "error"]


class ActionBase(Section):
    when: Annotated[
        list[ActionWhen], Field(min_length=1, description="Outcomes that fire it: fail, pass, error")
    ]
    camera: Annotated[str | None, Field(description="Only results of this camera; null = every camera")] = (
        None
    )


class SerialAction(ActionBase):
    type: Literal["serial"]
    port: Annotated[
        str, Field(min_length=1, description="Serial device of the reject gate, e.g. /dev/ttyUSB1")
    ]
    baud: Annotated[int, Field(ge=50, le=4_000_000, description="Baud rate")] = 9600
    line: Annotated[str, Field(min_length=1, description="Line written (a newline is added)")] = (
        "REJECT;{result_id}"
    )

    _line = field_validator("line")(check_template)


class MqttAction(ActionBase):
    type: Literal["mqtt"]
    topic: Annotated[str, Field(min_length=1, description="Topic (template)")]
    payload: Annotated[str, Field(description="Payload (template)")] = "{outcome};{result_id}"
    qos: Annotated[Literal[0, 1, 2], Field(description="QoS")] = 1

    _tpl = field_validator("topic", "payload")(check_template)


class UrlAction(ActionBase):
    type: Literal["url"]
    url: Annotated[str, Field(min_length=1, description="URL called with the result envelope as JSON")]
    method: Annotated[Literal["POST", "PUT", "GET"], Field(description="HTTP method")] = "POST"
    timeout_s: Annotated[float, Field(gt=0, le=60, description="Request timeout")] = 2

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(check_template(v))


ActionConfig = Annotated[
    Annotated[SerialAction, Tag("serial")]
    | Annotated[MqttAction, Tag("mqtt")]
    | Annotated[UrlAction, Tag("url")],
    tagged_by("type", None),
]
