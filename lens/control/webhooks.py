"""Signed webhook delivery: the spool's messages POSTed to their callbacks, in order, at least once.

One delivery in flight per callback, callbacks independent of each other. A 2xx answer deletes the
message. A transport error, a timeout, 5xx, 408 or 429 is transient: the message is retried after
an exponential backoff with full jitter (or the answer's `Retry-After`), and `breaker_failures`
such failures in a row open the callback's circuit for `breaker_open_s`, after which one probe
(half-open) closes it again or reopens it. Any other answer (400, 401, 403, 404, 410, a redirect)
is permanent: after 3 attempts the message is set aside as dead, so one poison message cannot block
its queue. A callback URL that is not an http(s) URL kills its messages at once.

Headers: `Content-Type: application/json`, `X-Lens-Delivery` (the message's delivery id, the same on
every attempt), `X-Lens-Event` (its type) and, when a secret is set, `X-Lens-Signature:
sha256=<hex HMAC-SHA256 of the exact body>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import hmac
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal, NamedTuple

import httpx

from lens.config.control import WebhookConfig
from lens.control.spool import Message, Spool

log = logging.getLogger("lens.webhooks")

POLL_S = 0.5  # new messages put without wake() and due retries are seen at least this often
PERMANENT_ATTEMPTS = 3  # a message refused with a permanent status this many times is dead
_TRANSIENT_STATUS = frozenset({408, 429})
_CALLBACKS_KEPT = 16  # idle, healthy callbacks kept in stats()

BreakerState = Literal["closed", "open", "half_open"]


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Lens-Signature` value of `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def retry_delay(failures: int, cfg: WebhookConfig, retry_after: float | None, rng: random.Random) -> float:
    """Delay before the next attempt after `failures` failures in a row: `Retry-After` if given, else
    full jitter over retry_min_s * 2**(failures - 1); never above retry_max_s."""
    if retry_after is not None:
        return min(retry_after, cfg.retry_max_s)
    cap = min(cfg.retry_max_s, cfg.retry_min_s * 2.0 ** min(max(failures - 1, 0), 60))
    return rng.uniform(0.0, cap)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a callback, or None if it can."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as e:
        return str(e)
    if parsed.scheme not in ("http", "https"):
        return f"scheme {parsed.scheme!r} is not http or https" if parsed.scheme else "no http:// or https://"
    if not parsed.host:
        return "no host"
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return f"port {parsed.port} is out of range (1-65535)"
    return None


class _Outcome(NamedTuple):
    status: int | None
    error: str | None  # None: delivered
    retry_after: float | None = None
    permanent: bool = False
    fatal: bool = False  # the URL itself is unusable: no retry


@dataclass
class _Callback:
    url: str
    breaker: BreakerState = "closed"
    failures: int = 0  # transient failures in a row
    opened: int = 0  # times the circuit opened
    open_until: float = 0.0  # monotonic
    due: float | None = None  # monotonic time of the next attempt while waiting for it
    last_error: str | None = None
    last_status: int | None = None
    task: asyncio.Task[None] | None = None

    def stats(self, now: float) -> dict[str, Any]:
        return {
            "breaker": self.breaker,
            "breaker_opened": self.opened,
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
            "last_status": self.last_status,
            "next_attempt_in_s": None if self.due is None else round(max(0.0, self.due - now), 3),
        }


class WebhookSender:
    """Delivers the spool's messages until `stop()`; `wake()` after each `put()` sends it at once.

    `secret` None (or empty) sends unsigned webhooks (`signed: false` in stats, one warning). The
    spool is the caller's to close; an httpx client passed in is the caller's to close too.
    """

    def __init__(
        self,
        spool: Spool,
        secret: bytes | None,
        cfg: WebhookConfig,
        client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spool = spool
        self.cfg = cfg
        self._secret = secret or None
        if self._secret is None:
            log.warning("webhook secret not set: webhooks are sent without X-Lens-Signature")
        self._own_client = client is None
        # the attempt's deadline is asyncio's (timeout_s for the whole exchange); httpx's is a backstop
        self._client = client or httpx.AsyncClient(timeout=2 * cfg.timeout_s, follow_redirects=False)
        self._rng = rng or random.Random()
        self._callbacks: dict[str, _Callback] = {}
        self._wakeup = asyncio.Event()
        self._finished = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._stopping = False
        self._running = False
        self.attempts = 0
        self.errors = 0  # internal errors (spool writes), logged with their traceback

    @property
    def signed(self) -> bool:
        return self._secret is not None

    def wake(self) -> None:
        """Look for new messages now (callable from any thread)."""
        if self._loop is None or self._thread == threading.get_ident():
            self._wakeup.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                self._loop.call_soon_threadsafe(self._wakeup.set)

    def stop(self) -> None:
        """Make `run()` return (messages in flight stay in the spool and are sent again later)."""
        self._stopping = True
        self.wake()

    async def run(self) -> None:
        """Deliver until `stop()` or cancellation; never raises for a delivery problem."""
        if self._running:
            raise RuntimeError("WebhookSender.run() is already running")
        self._running = True
        self._finished.clear()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        try:
            while not self._stopping:
                self._spawn()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await self._wakeup.wait()
                self._wakeup.clear()
        finally:
            tasks = [cb.task for cb in self._callbacks.values() if cb.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for cb in self._callbacks.values():
                cb.task, cb.due = None, None
            self._running = False
            self._finished.set()

    async def aclose(self) -> None:
        """Stop `run()`, wait for it to return, and close the httpx client this sender created."""
        self.stop()
        if self._running:
            await self._finished.wait()
        if self._own_client:
            await self._client.aclose()

    def stats(self) -> dict[str, Any]:
        """The spool's stats, `signed`, this process's `attempts` and `errors`, and per callback URL its
        breaker, consecutive_failures, last_error, last_status and next_attempt_in_s."""
        now = time.monotonic()
        return {
            **self.spool.stats(),
            "signed": self.signed,
            "attempts": self.attempts,
            "errors": self.errors,
            "callbacks": {url: cb.stats(now) for url, cb in self._callbacks.items()},
        }

    def _spawn(self) -> None:
        """One worker per callback with waiting messages."""
        for url in self.spool.callbacks():
            cb = self._callbacks.get(url)
            if cb is None:
                cb = self._callbacks[url] = _Callback(url)
            if cb.task is None or cb.task.done():
                cb.task = asyncio.create_task(self._worker(cb), name=f"webhooks {url}")
        if len(self._callbacks) > _CALLBACKS_KEPT:
            idle = [
                url
                for url, cb in self._callbacks.items()
                if (cb.task is None or cb.task.done()) and cb.breaker == "closed" and not cb.failures
            ]
            for url in idle[: len(self._callbacks) - _CALLBACKS_KEPT]:
                del self._callbacks[url]

    async def _worker(self, cb: _Callback) -> None:
        try:
            await self._drain(cb)
        except Exception:
            self.errors += 1
            log.exception("webhook delivery to %s failed unexpectedly; retrying", cb.url)
            # a spool that cannot be written may resend its head each round: pause long before the
            # main loop starts a new worker
            await asyncio.sleep(self.cfg.retry_max_s)
        finally:
            cb.due = None

    async def _drain(self, cb: _Callback) -> None:
        """Send `cb`'s messages oldest first until none waits."""
        problem = url_problem(cb.url)
        while not self._stopping:
            message = self.spool.peek(cb.url)
            if message is None:
                return
            if problem is not None:
                self._bury(cb, message, None, f"invalid callback URL {cb.url!r}: {problem}")
                continue
            wait = self._wait_s(cb, message)
            if wait > 0:
                cb.due = time.monotonic() + wait
                await asyncio.sleep(wait)
                cb.due = None
                continue
            if cb.breaker == "open":
                cb.breaker = "half_open"
            self._settle(cb, message, await self._post(cb.url, message))

    def _wait_s(self, cb: _Callback, message: Message) -> float:
        retry = min(message.next_at - time.time(), self.cfg.retry_max_s)
        breaker = cb.open_until - time.monotonic() if cb.breaker == "open" else 0.0
        return max(retry, breaker, 0.0)

    async def _post(self, url: str, message: Message) -> _Outcome:
        headers = {
            "Content-Type": "application/json",
            "X-Lens-Delivery": message.delivery_id,
            "X-Lens-Event": message.type,
        }
        if self._secret is not None:
            headers["X-Lens-Signature"] = sign(self._secret, message.body)
        self.attempts += 1
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                response = await self._client.post(url, content=message.body, headers=headers)
        except TimeoutError:
            return _Outcome(None, f"timed out after {self.cfg.timeout_s:g} s")
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            return _Outcome(None, f"invalid callback URL {url!r}: {e}", fatal=True)
        except httpx.HTTPError as e:
            return _Outcome(None, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        except Exception as e:  # an error httpx does not wrap: still a failed attempt, retried
            log.exception("webhook POST to %s failed unexpectedly", url)
            return _Outcome(None, f"{type(e).__name__}: {e}")
        status = response.status_code
        if 200 <= status < 300:
            return _Outcome(status, None)
        error = f"HTTP {status} {response.reason_phrase}".rstrip()
        text = response.text.strip()
        if text:
            error += f": {text[:200]}"
        if status >= 500 or status in _TRANSIENT_STATUS:
            return _Outcome(status, error, retry_after_s(response.headers.get("Retry-After"), time.time()))
        return _Outcome(status, error, permanent=True)

    def _settle(self, cb: _Callback, message: Message, outcome: _Outcome) -> None:
        """Record one attempt's outcome in the spool and the callback's breaker."""
        cb.last_status = outcome.status
        if outcome.error is None:
            self.spool.done(message.delivery_id)
            self._close_breaker(cb)
            return
        cb.last_error = outcome.error
        if outcome.fatal or (outcome.permanent and message.attempts + 1 >= PERMANENT_ATTEMPTS):
            self._bury(cb, message, outcome.status, outcome.error)
            if outcome.permanent:
                self._close_breaker(cb)  # the receiver answered: it is up
            return
        if outcome.permanent:
            self._close_breaker(cb)
            delay = retry_delay(message.attempts + 1, self.cfg, None, self._rng)
            log.warning(
                "webhook %s %s to %s refused (attempt %d of %d): %s",
                message.type,
                message.delivery_id,
                cb.url,
                message.attempts + 1,
                PERMANENT_ATTEMPTS,
                outcome.error,
            )
        else:
            cb.failures += 1
            delay = retry_delay(cb.failures, self.cfg, outcome.retry_after, self._rng)
            if cb.failures == 1:
                log.warning("webhook delivery to %s failing: %s (retrying)", cb.url, outcome.error)
            if cb.breaker == "half_open" or cb.failures >= self.cfg.breaker_failures:
                self._open_breaker(cb)
        self.spool.failed(message.delivery_id, outcome.error, time.time() + delay)

    def _bury(self, cb: _Callback, message: Message, status: int | None, error: str) -> None:
        cb.last_error = error
        self.spool.bury(message.delivery_id, error)
        log.error(
            "webhook %s %s (seq %d) to %s is dead after %d attempt(s), status %s: %s",
            message.type,
            message.delivery_id,
            message.seq,
            cb.url,
            message.attempts + 1,
            status,
            error,
        )

    def _open_breaker(self, cb: _Callback) -> None:
        if cb.breaker != "open":
            cb.opened += 1
            log.warning(
                "webhook circuit to %s open for %g s after %d failure(s) in a row",
                cb.url,
                self.cfg.breaker_open_s,
                cb.failures,
            )
        cb.breaker = "open"
        cb.open_until = time.monotonic() + self.cfg.breaker_open_s

    def _close_breaker(self, cb: _Callback) -> None:
        if cb.breaker != "closed" or cb.failures:
            log.info("webhook delivery to %s recovered after %d failure(s)", cb.url, cb.failures)
        cb.breaker = "closed"
        cb.failures = 0
