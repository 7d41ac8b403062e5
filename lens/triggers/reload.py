"""Hot reload of the inspection config, the dispatcher's side: versions, persistence across a
dispatcher restart, and the CONFIG message every worker gets before its next job. A mixin of
`Dispatcher`."""

from __future__ import annotations

import logging
from typing import Any

import zmq
from pydantic import ValidationError

from lens.config.load import issues_from
from lens.config.models import InspectionConfig
from lens.engine import msgs
from lens.engine.bus import pack, unpack
from lens.engine.lane import LaneGone, LaneServer
from lens.engine.process import RunContext
from lens.engine.stats import RUN, ToolStats

log = logging.getLogger("lens.dispatcher")


class InspectionReload:
    # state and helpers of the Dispatcher this is mixed into
    ctx: RunContext
    hub: zmq.Socket
    lane: LaneServer
    run_row: Any
    toolstats: ToolStats
    workers: int
    known_workers: set[bytes]
    version: int
    inspection_json: str

    def _publish_event(self, kind: str, fields: dict) -> None: ...

    def _load_inspection(self) -> None:
        """The config in force: the last reloaded one (after a dispatcher restart), else the pipeline's."""
        path = self.ctx.inspection_path
        if path.exists():
            version, text = unpack(path.read_bytes())
            self.version, self.inspection_json = int(version), str(text)
        else:
            self.version = 1
            self.inspection_json = self.ctx.config.inspection.model_dump_json()
        self.run_row[RUN["inspection_version"]] = self.version
        if self.toolstats.snapshot()["version"] != self.version:
            tools = InspectionConfig.model_validate_json(self.inspection_json).tools
            self.toolstats.reset(self.version, [t.name for t in tools])

    def _on_reload(self, ident: bytes, data: bytes, sock: zmq.Socket) -> None:
        """Replace the inspection config: jobs handed out from now on use the new version; every
        worker gets it before its next job (messages to a worker arrive in order)."""
        try:
            cfg = InspectionConfig.model_validate_json(data)
        except ValidationError as e:
            issues = [f"{i.path}: {i.message}" for i in issues_from(e)]
            sock.send_multipart((ident, msgs.NACK, pack({"error": "; ".join(issues), "issues": issues})))
            return
        if cfg.workers != self.workers:  # the number of processes changes only with a restart
            cfg = cfg.model_copy(update={"workers": self.workers})
        self.version += 1
        self.inspection_json = cfg.model_dump_json()
        tmp = self.ctx.inspection_path.with_suffix(".tmp")
        tmp.write_bytes(pack([self.version, self.inspection_json]))
        tmp.replace(self.ctx.inspection_path)
        self.toolstats.reset(self.version, [t.name for t in cfg.tools])
        self.run_row[RUN["inspection_version"]] = self.version
        for worker in self.known_workers:
            try:
                self.lane.send(worker, (msgs.CONFIG, pack([self.version, self.inspection_json])))
            except LaneGone:  # gone: it gets the config with its READY when it is back
                log.info("worker %s not connected; gets version %d with its READY", worker, self.version)
        log.info("inspection config replaced: version %d (%d tools)", self.version, len(cfg.tools))
        self._publish_event("inspection", {"version": self.version, "tools": [t.name for t in cfg.tools]})
        sock.send_multipart((ident, msgs.ACK, pack({"version": self.version})))
