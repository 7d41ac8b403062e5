"""Inspection worker: takes a job, reads the frame in place from the ring, runs the tool chain,
and sends the result envelope back to the dispatcher, with the frame's JPEG when it is wanted:
the dispatcher asked for it (TEST mode, periodic samples), or the image policy of the control
log or of the image log keeps this outcome (`all`, or `failed`: fail and error results).

The frame is used only while its slot's sequence number is unchanged; if it changed (the frame was
overwritten), the result is discarded and an error result (LENS_OVERRUN) is sent instead.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from lens.config.models import InspectionConfig, PipelineConfig
from lens.engine import msgs
from lens.engine.bus import pack, unpack
from lens.engine.envelope import (
    IMAGE_ALL,
    IMAGE_FAILED,
    IMAGE_POLICIES,
    LENS_INSPECTION_ERROR,
    LENS_OVERRUN,
    Job,
    error_envelope,
    image_envelope,
)
from lens.engine.lane import LaneClient
from lens.engine.process import LensProcess, RunContext
from lens.engine.ring import Ring
from lens.inspect.runner import ToolChain, inspect_frame

log = logging.getLogger("lens.worker")


def image_policy(config: PipelineConfig) -> str:
    """The widest of the control log's and the image log's image policies (all > failed > none)."""
    policies = [config.control.log.images if config.control.enabled else "none"]
    if config.outputs.image_log is not None:
        policies.append(config.outputs.image_log.keep)
    return max(policies, key=IMAGE_POLICIES.index)


class Inspector:
    """The worker's job logic, independent of sockets (also used by tests).

    Holds the tool chain of each recent inspection config version: a job is inspected with the
    chain of the version it was dispatched under, so no frame mixes versions across a hot reload."""

    KEEP_VERSIONS = 3

    def __init__(
        self,
        machine_id: str,
        chain: ToolChain,
        policy: str = "none",
        jpeg_quality: dict[str, int] | None = None,
    ) -> None:
        self.machine_id = machine_id
        self.policy = policy
        self.level = IMAGE_POLICIES.index(policy)
        self.jpeg_quality = jpeg_quality or {}
        self.last_image: bytes | None = None  # msgpack image envelope of the last job, if one was made
        self.chains: dict[int, ToolChain] = {chain.version: chain}
        self.rings: dict[str, Ring] = {}
        self.last_timings: list[float] = []

    @property
    def chain(self) -> ToolChain:
        return self.chains[max(self.chains)]

    def load(self, version: int, inspection_json: str) -> None:
        """Build the chain of a new config version (templates read, callables imported: once)."""
        config = InspectionConfig.model_validate_json(inspection_json)
        self.chains[version] = ToolChain(config, version)
        for old in sorted(self.chains)[: -self.KEEP_VERSIONS]:
            del self.chains[old]

    def ring(self, name: str) -> Ring:
        ring = self.rings.get(name)
        if ring is None:
            ring = self.rings[name] = Ring.attach(name)  # attach once; ~10-25 us per attach
        return ring

    def inspect(self, job: Job) -> tuple[int, bytes]:
        """Run one job; returns (outcome, msgpack envelope). `last_image` is then its JPEG's
        envelope (msgpack) when one is wanted, else None."""
        self.last_image = None
        ring = self.ring(job.ring)
        if not ring.valid(job.slot, job.seq):
            return self._overrun(job, "before")
        chain = self.chains.get(job.inspection_version)
        if chain is None:
            msg = f"inspection config version {job.inspection_version} is not loaded in this worker"
            return msgs.ERROR, pack(error_envelope(self.machine_id, job, LENS_INSPECTION_ERROR, msg))
        frame = ring.view(job.slot)
        outcome, env = inspect_frame(chain, self.machine_id, job, frame)
        self.last_timings = [t["elapsed_us"] for t in env["tools"].values()]
        level = max(job.image, self.level)  # the pipeline's policy, or what the dispatcher asks now
        if level == IMAGE_ALL or (level == IMAGE_FAILED and outcome != msgs.PASSED):
            self.last_image = self._jpeg(job, frame)
        if not ring.valid(job.slot, job.seq):  # whatever the tools said, the pixels were not one frame
            self.last_image = None
            return self._overrun(job, "while")
        return outcome, pack(env)

    def _jpeg(self, job: Job, frame: np.ndarray) -> bytes | None:
        quality = self.jpeg_quality.get(job.camera, 80)
        ok, buf = cv2.imencode(".jpg", frame, (cv2.IMWRITE_JPEG_QUALITY, quality))
        if not ok:
            log.error("JPEG encoding failed for result %d (%s)", job.result_id, job.camera)
            return None
        h, w = frame.shape[:2]
        return pack(image_envelope(self.machine_id, job, buf.tobytes(), w, h))

    def _overrun(self, job: Job, when: str) -> tuple[int, bytes]:
        msg = f"frame {job.frame_id} of {job.camera} was overwritten {when} it was inspected"
        return msgs.OVERRUN, pack(error_envelope(self.machine_id, job, LENS_OVERRUN, msg))

    def close(self) -> None:
        for ring in self.rings.values():
            ring.close()
        self.rings.clear()


class WorkerProcess(LensProcess):
    role = "worker"

    def __init__(self, ctx: RunContext, index: int) -> None:
        super().__init__(ctx, f"worker-{index}")
        self.index = index

    def setup(self) -> None:
        from native_tools import warmup

        # parallelism comes from worker processes (one per core); OpenCV's own thread pool in every
        # worker would only oversubscribe the cores
        cv2.setNumThreads(1)
        t0 = time.perf_counter()
        warmup()  # from the on-disk cache: ~1 s; cold: compiles once for every process after
        log.debug("kernels ready in %.2f s", time.perf_counter() - t0)
        cfg = self.ctx.config
        quality = {c.id: c.capture.jpeg_quality for c in cfg.cameras}
        chain = ToolChain(cfg.inspection, version=1)
        self.inspector = Inspector(cfg.machine.id, chain, image_policy(cfg), quality)
        # READY on every connect: a restarted dispatcher learns of this worker (and it holds no job)
        ident = msgs.worker_identity(self.index)
        self.lane = LaneClient(self.ctx.lane_path, ident, self.stop_event, self._ready)
        self.lane.connect()

    def _ready(self) -> None:
        self.lane.send((msgs.READY,))

    def loop(self) -> None:
        lane = self.lane
        while not self.stopping:
            if not lane.poll(100):
                continue
            for frames in lane.messages():
                self._handle(frames)

    def _handle(self, frames: list[bytes]) -> None:
        if frames[0] == msgs.CONFIG:
            version, text = unpack(frames[1])
            try:
                self.inspector.load(version, text)
                log.info("inspection config version %d loaded", version)
            except Exception:  # validated by the sender: a failure here is logged, jobs say why
                log.exception("inspection config version %d could not be built", version)
            return
        if frames[0] != msgs.JOB:
            log.error("unexpected message %r", frames[0])
            return
        job = Job.from_wire(unpack(frames[1]))
        outcome, payload = self.inspector.inspect(job)
        timings = self.inspector.last_timings if outcome in (msgs.PASSED, msgs.FAILED) else []
        meta = pack([job.result_id, job.camera_index, outcome, job.inspection_version, timings])
        image = self.inspector.last_image
        self.lane.send((msgs.RESULT, meta, payload) if image is None else (msgs.RESULT, meta, payload, image))

    def teardown(self) -> None:
        if hasattr(self, "inspector"):
            self.inspector.close()
        if hasattr(self, "lane"):
            self.lane.close()
