"""Property-based fuzzing of the control API from its own OpenAPI document (schemathesis), against a
real `lens run`: no operation ever answers 5xx, and every answer is documented (status, content type,
error body schema). Bounded: a fixed number of derandomized examples per operation and mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.control.harness import API_KEY, Lens, camera, running

EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ORCH = "orch-fuzz"
SMALL = {"type": "synthetic", "width": 160, "height": 120, "fps": 20}
SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a found case is reported as it is
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


class Fuzzer:
    """Sends generated cases with the session token; keeps that session held whatever the cases do."""

    def __init__(self, lens: Lens) -> None:
        self.lens = lens
        self.http = requests.Session()
        self.token = lens.open_session(ORCH)
        self.failures: list[str] = []
        self.calls = 0

    def call(self, case: Any) -> None:
        name = case.operation.definition.raw.get("operationId", "")
        if name == "logs_stream":  # follow=true streams until the client leaves: never ask for it
            case.query = {**(case.query or {}), "follow": False}
        if name == "session_open" and isinstance(case.body, dict):
            url = case.body.get("callback_url")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                case.body["callback_url"] = "http://127.0.0.1:9/hook"  # webhooks never leave loopback
        key = API_KEY if name == "session_open" else self.token
        response = case.call(
            base_url=self.lens.url, session=self.http, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        self.calls += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as e:
            body = repr(case.body)[:300] if case.body is not None else ""
            self.failures.append(
                f"{case.method} {case.formatted_path} query={case.query} body={body} -> "
                f"{response.status_code} {response.text[:300]}: {str(e).strip()[:500]}"
            )
        if name in ("session_open", "session_close"):
            self.restore(response)

    def restore(self, response: requests.Response) -> None:
        """After a case that opened or released a session: hold ours again."""
        if response.status_code == 201:  # a case opened one (only possible as ours): let it go
            token = response.json()["session_token"]
            self.lens.request("DELETE", "/api/v1/session", token)
        held = self.lens.ok("GET", "/api/v1/heartbeat")["orchestrator_id"]
        if held != ORCH or self.lens.get("/api/v1/status", self.token).status_code != 200:
            self.token = self.lens.open_session(ORCH)

    def fuzz(self, operation: Any, mode: GenerationMode) -> None:
        @settings(SETTINGS, max_examples=EXAMPLES[mode])
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            self.call(case)

        run()


def test_no_operation_answers_a_server_error(tmp_path: Path) -> None:
    cams = [camera("cam0", SMALL), camera("cam1", SMALL, trigger={"type": "manual"})]
    with running(tmp_path, cams, control={"lease_s": 600}) as lens:
        fuzzer = Fuzzer(lens)
        lens.wait_inspecting(fuzzer.token)
        doc = lens.ok("GET", "/api/v1/openapi.json")
        schema = schemathesis.openapi.from_dict(doc)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == len({(m, p) for m, p in ((o.method, o.path) for o in operations)}) == 21
        try:
            for operation in operations:
                fuzzer.fuzz(operation, GenerationMode.POSITIVE)
                if any(True for _ in operation.iter_parameters()) or len(operation.body):
                    fuzzer.fuzz(operation, GenerationMode.NEGATIVE)  # nothing to make invalid otherwise
        finally:
            fuzzer.http.close()
        assert fuzzer.calls >= 21 * 5
        assert not fuzzer.failures, "\n".join(fuzzer.failures)
        # the machine still works after all of it
        st = lens.status(fuzzer.token)
        assert st["protocol_version"] == "2.1.0" and st["control"]["audit_errors"] == 0
