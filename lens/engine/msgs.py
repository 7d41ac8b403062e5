"""Internal messages between the dispatcher and the other processes of a run.

Captures and workers talk to the dispatcher over its lane (lens.engine.lane: one Unix socket each,
the data plane); clients, the supervisor, the outputs process, the control service and serial
triggers over the hub (its ZeroMQ ROUTER; they are DEALERs). Every message is multipart: a type
frame, then msgpack frames. These never leave the machine; the public contract is the results bus
(lens.engine.bus).

    capture -> lane  HELLO  [camera_index, ring_name, paced]
                     FRAME  [camera_index, slot, seq, frame_id, captured_at]
                     EOS    camera_index                       (a finite source has ended)
                     EVENT  kind, {fields}                      (published as event.<kind>)
    lane -> capture  CREDIT n                                   (paced sources: produce n more)
    worker -> lane   READY                                      (on every connect: idle, no job)
                     RESULT [result_id, camera_index, outcome, version, [tool elapsed_us...]],
                            envelope (msgpack, forwarded as is)
    lane -> worker   JOB    Job.to_wire()
                     CONFIG [version, inspection config as JSON]  (hot reload; before any later JOB)
    client -> hub    RELOAD inspection config as JSON           (validated by the client first)
                     TRIGGER {camera (id or index), id?, at?, source?}  (an event trigger fires)
                     CONTROL {state?: stopped|running|maintenance, mode?: RUN|TEST}  (empty: ask)
    hub -> client    ACK    {version} | {result_id, trigger_id} | {state, mode, rings}  |  NACK {error, code?}
    worker -> lane   RESULT ... may carry a third frame: the result's image envelope (msgpack),
                     published as image.<camera> just before the result
"""

from __future__ import annotations

HELLO = b"H"
FRAME = b"F"
EOS = b"E"
EVENT = b"V"
CREDIT = b"C"
READY = b"R"
RESULT = b"S"
JOB = b"J"
CONFIG = b"G"
RELOAD = b"L"
ACK = b"A"
NACK = b"N"
TRIGGER = b"T"
CONTROL = b"O"

# RESULT outcome
PASSED, FAILED, ERROR, OVERRUN = 0, 1, 2, 3


def capture_identity(index: int) -> bytes:
    return f"cap:{index}".encode()


def worker_identity(index: int) -> bytes:
    return f"wrk:{index}".encode()
