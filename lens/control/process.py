"""The control service process: the Starlette app served by uvicorn on uvloop, at
`control.host:control.port`. Its socket is bound in setup, so a port in use is a clear start
error (exit 3) rather than a crash loop."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3

import uvicorn
import uvloop

from lens.engine.process import LensProcess, RunContext, SetupError

log = logging.getLogger("lens.control")


class ControlProcess(LensProcess):
    role = "control"

    def __init__(self, ctx: RunContext) -> None:
        super().__init__(ctx, "control")

    def setup(self) -> None:
        ctl = self.ctx.config.control
        family = socket.AF_INET6 if ":" in ctl.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((ctl.host, ctl.port))
        except OSError as e:
            self.sock.close()
            raise SetupError(
                f"cannot listen on {ctl.host}:{ctl.port} (control.host/port): {e.strerror}"
            ) from None
        self.sock.listen(128)
        from lens.control.service import ControlService

        try:
            self.svc = ControlService(self.ctx)
        except (OSError, sqlite3.Error) as e:
            self.sock.close()
            raise SetupError(f"cannot open {self.ctx.config.control.db} (control.db): {e}") from None

    def loop(self) -> None:
        uvloop.run(self._serve())

    async def _serve(self) -> None:
        from lens.control.app import build_app

        app = build_app(self.svc)
        config = uvicorn.Config(
            app,
            loop="none",
            lifespan="on",
            log_level=logging.getLevelName(max(self.ctx.log_level, logging.WARNING)).lower(),
            access_log=False,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # our SIGTERM handler stays
        ctl = self.ctx.config.control
        log.info("control service on http://%s:%d/api/v1", ctl.host, ctl.port)

        async def watch() -> None:
            while not self.stopping:
                await asyncio.sleep(0.1)
            server.should_exit = True

        watcher = asyncio.create_task(watch())
        try:
            await server.serve(sockets=[self.sock])
        finally:
            watcher.cancel()

    def teardown(self) -> None:
        if hasattr(self, "sock"):
            self.sock.close()
