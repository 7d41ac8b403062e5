"""Vendor stream URLs and password masking (lens/capture/sources/urls.py): exact strings."""

from __future__ import annotations

from typing import Any

import pytest

from lens.capture.sources import SourceError
from lens.capture.sources.urls import build_rtsp_url, mask_url, password_from_env, rtsp_url
from lens.config.models import RtspSource

SPECIAL = "p@ss:w/rd"
SPECIAL_ENCODED = "p%40ss%3Aw%2Frd"


def rtsp(**fields: Any) -> RtspSource:
    return RtspSource.model_validate({"type": "rtsp", **fields})


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        (
            {"vendor": "intelbras", "host": "192.168.1.10", "user": "admin"},
            "rtsp://admin:secret@192.168.1.10:554/cam/realmonitor?channel=1&subtype=0",
        ),
        (
            {"vendor": "intelbras", "host": "cam.local", "port": 8554, "channel": 3, "stream": "sub",
             "user": "admin"},
            "rtsp://admin:secret@cam.local:8554/cam/realmonitor?channel=3&subtype=1",
        ),
        (
            {"vendor": "hikvision", "host": "10.0.0.7", "user": "admin"},
            "rtsp://admin:secret@10.0.0.7:554/Streaming/Channels/101",
        ),
        (
            {"vendor": "hikvision", "host": "10.0.0.7", "channel": 2, "stream": "sub", "user": "admin"},
            "rtsp://admin:secret@10.0.0.7:554/Streaming/Channels/202",
        ),
        (
            {"vendor": "hikvision", "host": "10.0.0.7", "channel": 12, "user": "admin"},
            "rtsp://admin:secret@10.0.0.7:554/Streaming/Channels/1201",
        ),
        (
            {"vendor": "generic", "host": "10.0.0.8", "port": 7447, "path": "live/main", "user": "view"},
            "rtsp://view:secret@10.0.0.8:7447/live/main",
        ),
        (
            {"vendor": "generic", "host": "10.0.0.8", "path": "/live/main?token=1", "user": "view"},
            "rtsp://view:secret@10.0.0.8:554/live/main?token=1",
        ),
        (
            {"vendor": "generic", "host": "fe80::1", "path": "s0", "user": "view"},
            "rtsp://view:secret@[fe80::1]:554/s0",
        ),
    ],
)  # fmt: skip
def test_vendor_urls(fields: dict[str, Any], url: str) -> None:
    assert build_rtsp_url(rtsp(**fields), "secret") == url
    assert mask_url(url) == url.replace(":secret@", ":***@")


def test_no_credentials_and_user_only() -> None:
    src = rtsp(vendor="hikvision", host="cam.local")
    assert build_rtsp_url(src, None) == "rtsp://cam.local:554/Streaming/Channels/101"
    src = rtsp(vendor="intelbras", host="cam.local", user="viewer")
    assert build_rtsp_url(src, None) == "rtsp://viewer@cam.local:554/cam/realmonitor?channel=1&subtype=0"


def test_user_and_password_are_percent_encoded_and_masked() -> None:
    src = rtsp(vendor="intelbras", host="10.1.1.2", user="op@site", password_env="CAM_PW")
    url = rtsp_url(src, {"CAM_PW": SPECIAL})
    assert url == f"rtsp://op%40site:{SPECIAL_ENCODED}@10.1.1.2:554/cam/realmonitor?channel=1&subtype=0"
    assert mask_url(url) == "rtsp://op%40site:***@10.1.1.2:554/cam/realmonitor?channel=1&subtype=0"


def test_given_url_is_kept_or_gets_the_password() -> None:
    assert build_rtsp_url(rtsp(url="rtsp://10.0.0.5/live"), None) == "rtsp://10.0.0.5/live"
    src = rtsp(url="rtsp://10.0.0.5:554/live?x=1", user="admin", password_env="CAM_PW")
    assert rtsp_url(src, {"CAM_PW": SPECIAL}) == f"rtsp://admin:{SPECIAL_ENCODED}@10.0.0.5:554/live?x=1"
    src = rtsp(url="rtsp://op%40site:old@10.0.0.5/live", password_env="CAM_PW")
    assert rtsp_url(src, {"CAM_PW": "new"}) == "rtsp://op%40site:new@10.0.0.5/live"


def test_missing_password_variable_is_a_source_error_naming_it() -> None:
    src = rtsp(vendor="hikvision", host="10.0.0.7", user="admin", password_env="CAM7_PASSWORD")
    message = r"^rtsp source: environment variable CAM7_PASSWORD \(password_env\) is not set$"
    with pytest.raises(SourceError, match=message):
        rtsp_url(src, {})
    with pytest.raises(SourceError, match=message):
        password_from_env("CAM7_PASSWORD", {"OTHER": "x"})
    assert password_from_env("CAM7_PASSWORD", {"CAM7_PASSWORD": ""}) == ""  # set but empty is a value


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("rtsp://10.0.0.5:554/live", "rtsp://10.0.0.5:554/live"),  # a port is not a password
        ("rtsp://admin@10.0.0.5/live", "rtsp://admin@10.0.0.5/live"),
        ("http://u:pw@cam/mjpg/video.mjpg", "http://u:***@cam/mjpg/video.mjpg"),
        ("rtsps://u:@cam/x", "rtsps://u:***@cam/x"),
        # hand-written, not encoded: the whole password is masked, '@' and '/' included
        (f"rtsp://admin:{SPECIAL}@10.0.0.5/live", "rtsp://admin:***@10.0.0.5/live"),
        (
            "cam0: rtsp://a:one@h1/x failed; trying http://b:two@h2:8080/y.mjpg",
            "cam0: rtsp://a:***@h1/x failed; trying http://b:***@h2:8080/y.mjpg",
        ),
        ("{'url': 'rtsp://a:s3cret@h/x'}", "{'url': 'rtsp://a:***@h/x'}"),
        ("no url here: a:b@c", "no url here: a:b@c"),
    ],
)
def test_mask_url(text: str, masked: str) -> None:
    assert mask_url(text) == masked
    assert mask_url(masked) == masked
