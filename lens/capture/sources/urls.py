"""Camera stream URLs: built per vendor convention, with the password taken from the environment,
and masked (`***`) wherever a URL is shown (logs, events, `describe()`, error messages).

    intelbras  rtsp://user:pass@host:port/cam/realmonitor?channel=N&subtype=0|1   (main 0, sub 1)
    hikvision  rtsp://user:pass@host:port/Streaming/Channels/N01|N02             (main 01, sub 02)
    generic    rtsp://user:pass@host:port/<path>

User and password are percent-encoded, so any character may be used (`p@ss:w/rd` -> `p%40ss%3Aw%2Frd`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from lens.capture.sources.base import SourceError
from lens.config.models import RtspSource

MASK = "***"
# scheme://user:password@ : the password runs to the last '@' of the URL (up to a space or quote), so a
# hand-written URL with an unencoded '@' or '/' in its password is masked whole. Over-masking (an '@'
# later in the path) is harmless; a leak is not.
_USERINFO = re.compile(r"""(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s"'<>]*):(?P<password>[^\s"'<>]*)@""")


def mask_url(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***` (user, host and path kept)."""
    return _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)


def password_from_env(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The password held by environment variable `name`; a SourceError naming it if it is not set."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value is None:
        raise SourceError(f"rtsp source: environment variable {name} (password_env) is not set")
    return value


def _userinfo(user: str | None, password: str | None) -> str:
    if user is None and password is None:
        return ""
    encoded = quote(user or "", safe="")
    if password is not None:
        encoded += ":" + quote(password, safe="")
    return encoded + "@"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6 literal


def vendor_path(vendor: str, channel: int, stream: str, path: str | None = None) -> str:
    """Path and query of a vendor's stream URL (after host:port)."""
    if vendor == "intelbras":
        return f"/cam/realmonitor?channel={channel}&subtype={0 if stream == 'main' else 1}"
    if vendor == "hikvision":
        return f"/Streaming/Channels/{channel}{'01' if stream == 'main' else '02'}"
    if vendor == "generic":
        return "/" + (path or "").lstrip("/")
    raise ValueError(f"unknown vendor {vendor!r}")


def build_rtsp_url(src: RtspSource, password: str | None) -> str:
    """The URL of an rtsp source with `password` filled in (None: no password in the URL).

    With `url`, the URL is used as given; `user` and/or a password replace its credentials.
    With `vendor`, the URL is built from host, port, channel, stream (and path for generic).
    """
    if src.url is not None:
        if src.user is None and password is None:
            return src.url
        parts = urlsplit(src.url)
        user = src.user
        if user is None and parts.username is not None:
            user = unquote(parts.username)
        hostport = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=_userinfo(user, password) + hostport))
    assert src.vendor is not None and src.host is not None, "validated by RtspSource"
    path = vendor_path(src.vendor, src.channel, src.stream, src.path)
    return f"rtsp://{_userinfo(src.user, password)}{_host(src.host)}:{src.port}{path}"


def rtsp_url(src: RtspSource, environ: Mapping[str, str] | None = None) -> str:
    """The URL to open, with the password read from `password_env` (SourceError if it is not set)."""
    password = password_from_env(src.password_env, environ) if src.password_env else None
    return build_rtsp_url(src, password)
