"""The single-orchestrator lock (SPEC §4, seed 000): one session at a time, held by a lease.

* `open` with the machine API key: a new session, unless another orchestrator holds a live one
  (`LENS_BUSY`, naming it). The same `orchestrator_id` opening again replaces its own session.
* Every authenticated request renews the lease; a lapsed lease frees the machine and its token is
  then answered `LENS_SESSION_EXPIRED` (so is a token replaced by a re-open).
* Tokens are `secrets.token_urlsafe(32)`; only their SHA-256 is kept, compared in constant time,
  never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from lens.control.errors import ApiError

_RECENT_EXPIRED = 64  # tokens remembered after they lapse, to answer "expired" rather than "unauthorized"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class Session:
    session_id: str
    orchestrator_id: str
    callback_url: str | None
    client_ip: str
    token_digest: bytes
    opened_at: float
    last_seen: float  # monotonic
    lease_s: float
    requests: int = 0
    ended: str = ""  # why it ended: released, expired, replaced
    extra: dict = field(default_factory=dict)

    def expires_in(self, now: float | None = None) -> float:
        return self.lease_s - ((time.monotonic() if now is None else now) - self.last_seen)

    def public(self) -> dict:
        """What status and heartbeat may show: never the token."""
        return {
            "session_id": self.session_id,
            "orchestrator_id": self.orchestrator_id,
            "callback_url": self.callback_url,
            "client_ip": self.client_ip,
            "opened_at": self.opened_at,
            "expires_in_s": round(max(0.0, self.expires_in()), 3),
        }


# on_change(what, session, detail): what is opened | replaced | released | expired | refused
ChangeHook = Callable[[str, Session | None, dict], None]


class SessionManager:
    def __init__(self, api_key: str | None, lease_s: float, on_change: ChangeHook | None = None) -> None:
        self._key_digest = _digest(api_key) if api_key else None
        self.lease_s = lease_s
        self.current: Session | None = None
        self._expired: OrderedDict[bytes, str] = OrderedDict()  # token digest -> why it ended
        self._on_change = on_change or (lambda what, s, d: None)

    @property
    def api_key_set(self) -> bool:
        return self._key_digest is not None

    def check_api_key(self, presented: str | None) -> None:
        if self._key_digest is None:
            raise ApiError(
                "LENS_UNAUTHORIZED",
                "no machine API key is configured (set the environment variable named by "
                "control.api_key_env before `lens run`): sessions cannot be opened",
            )
        if not presented or not hmac.compare_digest(_digest(presented), self._key_digest):
            raise ApiError(
                "LENS_UNAUTHORIZED", "wrong or missing machine API key (Authorization: Bearer <key>)"
            )

    def holder(self) -> Session | None:
        """The live session, after expiring a lapsed one."""
        self.expire()
        return self.current

    def open(
        self, api_key: str | None, orchestrator_id: str, callback_url: str | None, ip: str
    ) -> tuple[Session, str]:
        """A new session and its token; raises LENS_UNAUTHORIZED or LENS_BUSY."""
        self.check_api_key(api_key)
        held = self.holder()
        replaced = None
        if held is not None:
            if held.orchestrator_id != orchestrator_id:
                self._on_change("refused", held, {"orchestrator_id": orchestrator_id, "client_ip": ip})
                raise ApiError(
                    "LENS_BUSY",
                    f"the machine is held by orchestrator {held.orchestrator_id!r} (from {held.client_ip})",
                    holder=held.orchestrator_id,
                    holder_ip=held.client_ip,
                    expires_in_s=round(max(0.0, held.expires_in()), 3),
                )
            replaced = held
            self._end(held, "replaced")
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        self.current = Session(
            session_id=uuid.uuid4().hex,
            orchestrator_id=orchestrator_id,
            callback_url=callback_url,
            client_ip=ip,
            token_digest=_digest(token),
            opened_at=time.time(),
            last_seen=now,
            lease_s=self.lease_s,
        )
        detail = {"replaced_session": replaced.session_id} if replaced else {}
        self._on_change("replaced" if replaced else "opened", self.current, detail)
        return self.current, token

    def authenticate(self, token: str | None) -> Session:
        """The session of `token`, its lease renewed; raises LENS_UNAUTHORIZED or LENS_SESSION_EXPIRED."""
        if not token:
            raise ApiError(
                "LENS_UNAUTHORIZED", "this endpoint needs a session: Authorization: Bearer <session_token>"
            )
        digest = _digest(token)
        held = self.holder()
        if held is not None and hmac.compare_digest(digest, held.token_digest):
            held.last_seen = time.monotonic()
            held.requests += 1
            return held
        why = next((w for d, w in self._expired.items() if hmac.compare_digest(d, digest)), None)
        if why is not None:
            raise ApiError(
                "LENS_SESSION_EXPIRED", f"the session has ended ({why}); open a new one", reason=why
            )
        raise ApiError("LENS_UNAUTHORIZED", "unknown session token")

    def release(self, session: Session) -> None:
        if self.current is session:
            self._end(session, "released")
            self._on_change("released", session, {})

    def expire(self) -> None:
        s = self.current
        if s is not None and s.expires_in() <= 0:
            self._end(s, "expired")
            self._on_change("expired", s, {"idle_s": round(time.monotonic() - s.last_seen, 3)})

    def _end(self, s: Session, why: str) -> None:
        s.ended = why
        self._expired[s.token_digest] = why
        while len(self._expired) > _RECENT_EXPIRED:
            self._expired.popitem(last=False)
        if self.current is s:
            self.current = None
