"""The stop flag of lens processes survives a SIGTERM that lands inside one of its own waits.

`threading.Event.set()` from a signal handler deadlocks when the signal interrupts the main thread
while it holds the event's lock inside `wait()`: a child stopped that way never exits (a CI run saw a
capture process outlive its SIGKILLed supervisor). The harness is a child process that waits in a loop
of short waits, round after round, while this test stops each round with a SIGTERM; with a
`threading.Event` it hangs within a few dozen rounds."""

from __future__ import annotations

import random
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time

from lens.engine.process import StopFlag

HARNESS = textwrap.dedent(
    """
    import signal, sys
    {make}
    flag = None
    signal.signal(signal.SIGTERM, lambda s, f: flag.set())
    for line in sys.stdin:
        flag = make()
        print("ready", flush=True)
        while not flag.is_set():
            flag.wait(0.0001)
        print("stopped", flush=True)
    """
)

STOP_FLAG = "from lens.engine.process import StopFlag as make"
EVENT = "from threading import Event as make"
HANG_S = 10.0  # a round still waiting after this is a deadlock (a round takes about a millisecond)


def stopped_rounds(make: str, rounds: int) -> int:
    """Rounds the harness finished before one deadlocked (== rounds if none did)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HARNESS.format(make=make)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert proc.stdin is not None and proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    rng = random.Random(7)
    done = 0
    try:
        for _ in range(rounds):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            if not sel.select(60) or proc.stdout.readline().strip() != "ready":  # imports, first round
                break
            time.sleep(rng.random() * 0.002)  # land anywhere in the loop of waits
            proc.send_signal(signal.SIGTERM)
            if not sel.select(HANG_S) or proc.stdout.readline().strip() != "stopped":
                break
            done += 1
    finally:
        sel.close()
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    return done


def test_signal_handler_setting_the_flag_never_deadlocks() -> None:
    assert stopped_rounds(STOP_FLAG, 300) == 300


def test_the_harness_catches_the_threading_event_deadlock() -> None:
    """The harness can fail: the same loop with threading.Event hangs (what StopFlag replaces)."""
    assert stopped_rounds(EVENT, 3000) < 3000


def test_wait_returns_at_once_when_set_from_another_thread() -> None:
    flag = StopFlag()
    assert not flag.wait(0.01)
    woke: list[bool] = []
    waiters = [threading.Thread(target=lambda: woke.append(flag.wait(None))) for _ in range(3)]
    for t in waiters:
        t.start()
    flag.set()
    flag.set()  # twice is harmless
    for t in waiters:
        t.join(30)
    assert woke == [True, True, True]
    assert flag.is_set() and flag.wait(0)
