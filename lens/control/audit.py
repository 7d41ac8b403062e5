"""The audit log: who opened, closed, lost or was refused the session, and who changed the mode,
the run state or the inspection config — with when, from where, and what. Kept in the control
database (`control.db`, SQLite WAL, beside the webhook spool), so it survives restarts."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("lens.control")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    orchestrator_id TEXT,
    client_ip TEXT,
    session_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
"""


class AuditLog:
    def __init__(self, path: str, machine_id: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.machine_id = machine_id
        self.db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.errors = 0

    def record(
        self,
        action: str,
        orchestrator_id: str | None = None,
        client_ip: str | None = None,
        session_id: str | None = None,
        **detail: Any,
    ) -> None:
        """One entry; a failure to write is logged and counted, never raised into a request."""
        try:
            self.db.execute(
                "INSERT INTO audit (at, action, orchestrator_id, client_ip, session_id, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), action, orchestrator_id, client_ip, session_id, orjson.dumps(detail).decode()),
            )
        except sqlite3.Error as e:
            self.errors += 1
            log.error("audit entry %s not written: %s", action, e)
        log.info("audit: %s by %s from %s %s", action, orchestrator_id or "-", client_ip or "-", detail or "")

    def query(self, since_id: int = 0, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, at, action, orchestrator_id, client_ip, session_id, detail FROM audit WHERE id > ?"
        args: list[Any] = [since_id]
        if action:
            sql += " AND action = ?"
            args.append(action)
        sql += " ORDER BY id LIMIT ?"
        args.append(max(1, min(1000, limit)))
        rows = self.db.execute(sql, args).fetchall()
        return [
            {
                "id": r[0],
                "at": r[1],
                "action": r[2],
                "orchestrator_id": r[3],
                "client_ip": r[4],
                "session_id": r[5],
                "detail": orjson.loads(r[6]),
            }
            for r in rows
        ]

    def close(self) -> None:
        self.db.close()
