"""Webhook delivery to real HTTP receivers on 127.0.0.1: order, signatures and stable delivery ids
through outages, 5xx, restarts and a SIGKILLed process; the circuit breaker; poison and invalid
callbacks; timeouts and Retry-After."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import multiprocessing
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import pytest

from lens.config.control import WebhookConfig
from lens.control.spool import Spool
from lens.control.webhooks import WebhookSender, retry_after_s, retry_delay, sign
from tests.lensrun import free_port

SECRET = b"s3cret-for-tests"
FAST = WebhookConfig(timeout_s=5, retry_min_s=0.01, retry_max_s=0.05, breaker_failures=1000, breaker_open_s=1)


@dataclass
class Receipt:
    """One request as the receiver saw it, and what it answered."""

    target: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0

    @property
    def envelope(self) -> dict[str, Any]:
        return orjson.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["x-lens-delivery"]


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0


class Receiver:
    """A small HTTP/1.1 server (keep-alive) on 127.0.0.1 recording every request. `down()` closes its
    port and every open connection; `up()` listens again on the same port. `answer` decides each reply."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/lens"
        self.receipts: list[Receipt] = []
        self.answer: Callable[[Receipt], Answer] = lambda r: Answer()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def acked(self) -> list[Receipt]:
        return [r for r in self.receipts if 200 <= r.status < 300]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {}
                for line in filter(None, head[1:]):
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                receipt = Receipt(head[0], headers, body, time.time())
                answer = self.answer(receipt)
                if answer.delay_s:
                    await asyncio.sleep(answer.delay_s)
                receipt.status = answer.status
                self.receipts.append(receipt)
                extra = "".join(f"{k}: {v}\r\n" for k, v in answer.headers.items())
                writer.write(
                    f"HTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}\r\n"
                    f"Content-Length: {len(answer.body)}\r\n{extra}\r\n".encode()
                    + answer.body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # a cancelled handler ends normally: Python 3.11's stream callback chokes on a cancelled one
        finally:
            self._connections.discard(task)
            writer.close()


def fail_first(n: int, status: int = 500) -> Callable[[Receipt], Answer]:
    """Answer `status` to the first `n` requests, then 200."""
    seen = [0]

    def answer(_: Receipt) -> Answer:
        seen[0] += 1
        return Answer(status if seen[0] <= n else 200)

    return answer


async def until(cond: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def sending(
    spool: Spool, cfg: WebhookConfig = FAST, secret: bytes | None = SECRET
) -> AsyncIterator[WebhookSender]:
    sender = WebhookSender(spool, secret, cfg)
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        await sender.aclose()
        await task


def run(test: Callable[..., Awaitable[None]], *receivers: Receiver) -> None:
    """Run an async test body; every receiver is taken down at the end, whatever happens."""

    async def main() -> None:
        try:
            await test(*receivers)
        finally:
            for r in receivers:
                await r.down()

    asyncio.run(main())


def open_spool(tmp_path: Path, max_messages: int = 10_000) -> Spool:
    return Spool(tmp_path / "var" / "control.sqlite", "vm_001", max_messages, 64)


def put_results(
    spool: Spool, sender: WebhookSender | None, url: str, ids: range, session: str = "s1"
) -> list[str]:
    out = []
    for i in ids:
        out.append(spool.put(url, session, "inspection.result", {"result_id": i}))
        if sender is not None:
            sender.wake()
    return out


def check_signed(receipt: Receipt) -> None:
    expected = "sha256=" + hmac.new(SECRET, receipt.body, hashlib.sha256).hexdigest()
    assert receipt.headers["x-lens-signature"] == expected
    assert receipt.headers["content-type"] == "application/json"
    assert receipt.headers["x-lens-event"] == receipt.envelope["type"]
    assert receipt.target == "POST /hooks/lens HTTP/1.1"


def test_outage_then_recovery_delivers_everything_in_order(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)

    async def body(rx: Receiver) -> None:
        async with sending(spool) as sender:
            ids = put_results(spool, sender, rx.url, range(40))
            await until(lambda: spool.stats()["failed_attempts"] >= 3, "attempts against the closed port")
            assert spool.depth() == 40 and rx.receipts == []
            cb = sender.stats()["callbacks"][rx.url]
            assert cb["last_error"].startswith("ConnectError") and cb["last_status"] is None
            await rx.up()
            await until(lambda: spool.depth() == 0, "every message delivered")
            stats = sender.stats()
        assert [r.status for r in rx.receipts] == [200] * 40
        assert [r.envelope["seq"] for r in rx.receipts] == list(range(1, 41))
        assert [r.envelope["payload"]["result_id"] for r in rx.receipts] == list(range(40))
        assert [r.delivery for r in rx.receipts] == ids
        for r in rx.receipts:
            check_signed(r)
            assert r.envelope["machine_id"] == "vm_001" and r.envelope["session_id"] == "s1"
        assert (stats["depth"], stats["delivered"], stats["dead"], stats["signed"]) == (0, 40, 0, True)
        cb = stats["callbacks"][rx.url]
        assert (cb["breaker"], cb["consecutive_failures"], cb["last_status"]) == ("closed", 0, 200)

    run(body, Receiver())
    spool.close()


def test_retries_keep_the_delivery_id_and_the_exact_body(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)

    async def body(rx: Receiver) -> None:
        rx.answer = fail_first(4)
        await rx.up()
        async with sending(spool) as sender:
            ids = put_results(spool, sender, rx.url, range(6))
            await until(lambda: spool.depth() == 0, "every message delivered")
            stats = sender.stats()
        assert [r.status for r in rx.receipts] == [500] * 4 + [200] * 6
        assert [r.delivery for r in rx.receipts] == [ids[0]] * 5 + ids[1:]
        assert len({r.body for r in rx.receipts[:5]}) == 1  # byte-identical on every attempt
        assert len({r.headers["x-lens-signature"] for r in rx.receipts[:5]}) == 1
        for r in rx.receipts:
            check_signed(r)
        acked = [r.delivery for r in rx.acked()]
        assert sorted(acked) == sorted(set(acked)) == sorted(ids)
        assert (stats["failed_attempts"], stats["delivered"], stats["attempts"]) == (4, 6, 10)
        assert stats["callbacks"][rx.url]["last_error"] == "HTTP 500 Internal Server Error"

    run(body, Receiver())
    spool.close()


def test_callbacks_are_independent(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)

    async def body(a: Receiver, b: Receiver) -> None:
        await b.up()
        async with sending(spool) as sender:
            for i in range(10):
                put_results(spool, sender, a.url, range(i, i + 1), session="sa")
                put_results(spool, sender, b.url, range(100 + i, 101 + i), session="sb")
            # The receiver records a 200 before the sender marks the row done: wait for the spool.
            await until(lambda: spool.callbacks() == [a.url], "B's messages while A is down")
            assert len(b.acked()) == 10 and spool.depth() == 10
            await a.up()
            await until(lambda: spool.depth() == 0, "A's messages once it is up")
        assert [(r.envelope["seq"], r.envelope["payload"]["result_id"]) for r in a.receipts] == [
            (i + 1, i) for i in range(10)
        ]
        assert [(r.envelope["seq"], r.envelope["payload"]["result_id"]) for r in b.receipts] == [
            (i + 1, 100 + i) for i in range(10)
        ]

    run(body, Receiver(), Receiver())
    spool.close()


def test_a_restart_keeps_undelivered_messages(tmp_path: Path) -> None:
    async def body(rx: Receiver) -> None:
        spool = open_spool(tmp_path)
        async with sending(spool) as sender:
            ids = put_results(spool, sender, rx.url, range(25))
            await until(lambda: spool.stats()["failed_attempts"] >= 2, "attempts against the closed port")
        failed = spool.stats()["failed_attempts"]
        spool.close()

        spool = open_spool(tmp_path)  # the process restarted
        assert (spool.depth(), spool.stats()["failed_attempts"]) == (25, failed)
        async with sending(spool) as sender:
            ids += put_results(spool, sender, rx.url, range(25, 30))
            await rx.up()
            await until(lambda: spool.depth() == 0, "every message delivered after the restart")
        assert [r.envelope["seq"] for r in rx.receipts] == list(range(1, 31))
        assert [r.envelope["payload"]["result_id"] for r in rx.receipts] == list(range(30))
        assert [r.delivery for r in rx.receipts] == ids
        for r in rx.receipts:
            check_signed(r)
        assert spool.stats()["delivered"] == 30
        spool.close()

    run(body, Receiver())


def _producer(path: str, url: str, report: Connection) -> None:
    """Child process: put a result every 2 ms, report each id once put, and deliver, until killed."""
    cfg = WebhookConfig(timeout_s=5, retry_min_s=0.01, retry_max_s=0.05)

    async def main() -> None:
        spool = Spool(path, "vm_001", 100_000, 64)
        sender = WebhookSender(spool, SECRET, cfg)
        task = asyncio.create_task(sender.run())
        i = 0
        while True:
            spool.put(url, "s1", "inspection.result", {"result_id": i})
            sender.wake()
            report.send(i)
            i += 1
            await asyncio.sleep(0.002)
        await task

    asyncio.run(main())


def test_a_sigkilled_process_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "var" / "control.sqlite"
    ctx = multiprocessing.get_context("spawn")

    async def body(rx: Receiver) -> None:
        rx.answer = lambda r: Answer(delay_s=0.005)
        await rx.up()
        reader, writer = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_producer, args=(str(path), rx.url, writer), daemon=True)
        child.start()
        writer.close()
        reported: list[int] = []
        try:
            while len(rx.acked()) < 30 or len(reported) < 80:
                while reader.poll():
                    reported.append(reader.recv())
                assert child.is_alive(), f"the producer died with exit code {child.exitcode}"
                await asyncio.sleep(0.01)
        finally:
            child.kill()  # SIGKILL
            child.join(10)
            with pytest.raises(EOFError):
                while True:
                    reported.append(reader.recv())
            reader.close()
        assert child.exitcode == -signal.SIGKILL
        assert reported == list(range(len(reported)))

        acked_before = len(rx.acked())
        spool = Spool(path, "vm_001", 100_000, 64)
        assert spool.depth() > 0  # killed with messages still waiting
        async with sending(spool):
            await until(lambda: spool.depth() == 0, "every message delivered after the kill")
        spool.close()
        first: dict[str, Receipt] = {}
        for r in rx.acked():
            first.setdefault(r.delivery, r)
            check_signed(r)
        put = len(first)  # the put interrupted by the kill either committed whole or not at all
        assert 30 <= acked_before < put
        assert put in (len(reported), len(reported) + 1)
        assert [r.envelope["seq"] for r in first.values()] == list(range(1, put + 1))
        assert [r.envelope["payload"]["result_id"] for r in first.values()] == list(range(put))
        # at least once: only a message in flight at the kill may come twice, right after itself
        deliveries = [r.delivery for r in rx.acked()]
        assert len(deliveries) - put <= 1
        assert [d for i, d in enumerate(deliveries) if i == 0 or d != deliveries[i - 1]] == list(first)

    run(body, Receiver())


def test_the_breaker_opens_and_recovers(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    cfg = FAST.model_copy(update={"breaker_failures": 3, "breaker_open_s": 1.0})

    async def body(rx: Receiver) -> None:
        rx.answer = fail_first(4, 503)  # 3 failures open it; the first probe fails and reopens it
        await rx.up()
        async with sending(spool, cfg) as sender:
            ids = put_results(spool, sender, rx.url, range(2))
            await until(
                lambda: sender.stats()["callbacks"].get(rx.url, {}).get("breaker") == "open",
                "an open circuit",
            )
            cb = sender.stats()["callbacks"][rx.url]
            assert (len(rx.receipts), cb["consecutive_failures"], cb["breaker_opened"]) == (3, 3, 1)
            assert 0 < cb["next_attempt_in_s"] <= 1.0
            await until(lambda: spool.depth() == 0, "delivery after the circuit closed")
            cb = sender.stats()["callbacks"][rx.url]
        assert [r.status for r in rx.receipts] == [503] * 4 + [200] * 2
        assert [r.delivery for r in rx.receipts] == [ids[0]] * 5 + [ids[1]]
        assert (cb["breaker"], cb["breaker_opened"], cb["consecutive_failures"]) == ("closed", 2, 0)
        assert cb["next_attempt_in_s"] is None

    run(body, Receiver())
    spool.close()


def test_a_poison_message_goes_dead_and_the_queue_flows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = open_spool(tmp_path)

    def answer(r: Receipt) -> Answer:
        poison = r.envelope["payload"]["result_id"] == 2
        return Answer(400, body=b"unknown tool 'x'") if poison else Answer()

    async def body(rx: Receiver) -> None:
        rx.answer = answer
        await rx.up()
        async with sending(spool) as sender:
            ids = put_results(spool, sender, rx.url, range(5))
            await until(lambda: spool.depth() == 0, "every message delivered or dead")
            stats = sender.stats()
        assert [r.envelope["payload"]["result_id"] for r in rx.receipts] == [0, 1, 2, 2, 2, 3, 4]
        assert [r.status for r in rx.receipts] == [200, 200, 400, 400, 400, 200, 200]
        assert (stats["delivered"], stats["dead"], stats["failed_attempts"]) == (4, 1, 3)
        cb = stats["callbacks"][rx.url]
        assert (cb["breaker"], cb["consecutive_failures"], cb["last_status"]) == ("closed", 0, 200)
        [dead] = spool.dead_letters()
        assert (dead.delivery_id, dead.attempts, dead.last_error) == (
            ids[2],
            3,
            "HTTP 400 Bad Request: unknown tool 'x'",
        )

    with caplog.at_level(logging.ERROR, "lens.webhooks"):
        run(body, Receiver())
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "(seq 3)" in record.getMessage() and "dead after 3 attempt(s), status 400" in record.getMessage()
    spool.close()


def test_invalid_callback_urls_go_dead_at_once(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    bad = [
        "not a url",
        "ftp://orchestrator/hook",
        "http:///hook",
        "http://[::1/hook",
        "http://10.0.0.1:99999/",
    ]

    async def body(rx: Receiver) -> None:
        await rx.up()
        async with sending(spool) as sender:
            for url in bad:
                spool.put(url, "s1", "heartbeat", {})
            put_results(spool, sender, rx.url, range(3))
            await until(lambda: spool.depth() == 0, "every message delivered or dead")
            stats = sender.stats()
        assert [r.envelope["payload"]["result_id"] for r in rx.receipts] == [0, 1, 2]
        assert (stats["dead"], stats["delivered"], stats["attempts"]) == (5, 3, 3)
        errors = {m.callback_url: m.last_error for m in spool.dead_letters()}
        assert errors == {
            "not a url": "invalid callback URL 'not a url': no http:// or https://",
            "ftp://orchestrator/hook": "invalid callback URL 'ftp://orchestrator/hook': "
            "scheme 'ftp' is not http or https",
            "http:///hook": "invalid callback URL 'http:///hook': no host",
            "http://[::1/hook": "invalid callback URL 'http://[::1/hook': Invalid port: ':1'",
            "http://10.0.0.1:99999/": "invalid callback URL 'http://10.0.0.1:99999/': "
            "port 99999 is out of range (1-65535)",
        }
        for url in bad:
            assert stats["callbacks"][url]["last_error"] == errors[url]

    run(body, Receiver())
    spool.close()


def test_without_a_secret_webhooks_are_unsigned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = open_spool(tmp_path)

    async def body(rx: Receiver) -> None:
        await rx.up()
        async with sending(spool, secret=None) as sender:
            put_results(spool, sender, rx.url, range(2))
            await until(lambda: spool.depth() == 0, "every message delivered")
            assert sender.stats()["signed"] is False
        assert [("x-lens-signature" in r.headers, r.headers["x-lens-event"]) for r in rx.receipts] == [
            (False, "inspection.result")
        ] * 2

    with caplog.at_level(logging.WARNING, "lens.webhooks"):
        run(body, Receiver())
    assert [r.getMessage() for r in caplog.records] == [
        "webhook secret not set: webhooks are sent without X-Lens-Signature"
    ]
    spool.close()


def test_a_slow_receiver_times_out_and_is_retried(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    cfg = FAST.model_copy(update={"timeout_s": 0.2})

    async def body(rx: Receiver) -> None:
        slow = [True]

        def answer(_: Receipt) -> Answer:
            delay, slow[0] = (10.0 if slow[0] else 0.0), False
            return Answer(delay_s=delay)

        rx.answer = answer
        await rx.up()
        async with sending(spool, cfg) as sender:
            [delivery] = put_results(spool, sender, rx.url, range(1))
            await until(lambda: spool.depth() == 0, "delivery after the timeout")
            stats = sender.stats()
        assert (stats["failed_attempts"], stats["delivered"], stats["attempts"]) == (1, 1, 2)
        assert stats["callbacks"][rx.url]["last_error"] == "timed out after 0.2 s"
        assert [r.delivery for r in rx.receipts] == [delivery]  # the first request is still being answered

    run(body, Receiver())
    spool.close()


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    cfg = FAST.model_copy(update={"retry_max_s": 10})

    async def body(rx: Receiver) -> None:
        first = [True]

        def answer(_: Receipt) -> Answer:
            if first[0]:
                first[0] = False
                return Answer(429, headers={"Retry-After": "1"})
            return Answer()

        rx.answer = answer
        await rx.up()
        async with sending(spool, cfg) as sender:
            put_results(spool, sender, rx.url, range(1))
            await until(lambda: spool.stats()["failed_attempts"] == 1, "the 429")
            waiting = spool.peek(rx.url)
            assert waiting is not None and waiting.last_error == "HTTP 429 Too Many Requests"
            assert rx.receipts[0].at <= waiting.next_at - 1.0 <= time.time()
            assert 0 < sender.stats()["callbacks"][rx.url]["next_attempt_in_s"] <= 1.0
            await until(lambda: spool.depth() == 0, "delivery after Retry-After")
        assert [r.status for r in rx.receipts] == [429, 200]
        assert rx.receipts[1].at >= waiting.next_at

    run(body, Receiver())
    spool.close()


def test_retry_after_and_backoff_values() -> None:
    assert retry_after_s(None, 0) is None
    assert retry_after_s("", 0) is None
    assert retry_after_s("soon", 0) is None
    assert retry_after_s(" 3 ", 0) == 3.0
    assert retry_after_s("-1", 0) == 0.0
    at = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", at - 5) == 5.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", at + 5) == 0.0

    cfg = WebhookConfig(retry_min_s=0.5, retry_max_s=30)
    for failures, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (10_000, 30.0)]:
        assert retry_delay(failures, cfg, None, random.Random(failures)) == random.Random(failures).uniform(
            0, cap
        )
    assert retry_delay(1, cfg, 7.0, random.Random(1)) == 7.0
    assert retry_delay(1, cfg, 600.0, random.Random(1)) == 30.0
    assert sign(b"k", b"{}") == "sha256=" + hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()
