"""A bounded fuzz run of the router's HTTP API against its committed OpenAPI document.

Schemathesis generates requests from docs/openapi.json (valid and invalid
bodies, odd strings, missing fields, wrong types) and sends them to a real
`switchboard router` process on loopback. The check is that the run generated
what it is configured to (every operation fuzzed with its full number of
examples, coverage and stateful phases run), that no request got a server
error (any 5xx), and that every response matches the document.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.router.conftest import API_KEY

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "docs" / "openapi.json"
#: Fuzzing-phase examples per operation that takes input: about a thousand
#: cases with the coverage and stateful phases, under a minute.
EXAMPLES_PER_OPERATION = 40
#: An endless stream (SSE) is not a request/response to fuzz.
EXCLUDED_PATH = "/v1/messages/events"


def _operations() -> dict[str, bool]:
    """Each fuzzed operation's label (``METHOD /path``): whether it takes any input."""
    document = json.loads(OPENAPI.read_text())
    return {
        f"{method.upper()} {path}": bool(spec.get("parameters") or spec.get("requestBody"))
        for path, methods in document["paths"].items()
        if path != EXCLUDED_PATH
        for method, spec in methods.items()
        if method in {"get", "put", "post", "delete", "patch"}
    }


def _read_report(report: Path) -> tuple[Counter[tuple[str, str]], list[str]]:
    """Cases per (phase, operation) and the server errors (``5xx METHOD URL``) of a run."""
    cases: Counter[tuple[str, str]] = Counter()
    server_errors = []
    for line in report.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if scenario is None:
            continue
        recorder = scenario["recorder"]
        label = recorder["label"] if scenario["phase"] != "stateful" else "(links)"
        cases[scenario["phase"], label] += len(recorder.get("cases", {}))
        for interaction in recorder.get("interactions", {}).values():
            status = (interaction.get("response") or {}).get("status_code") or 0
            if status >= 500:
                request = interaction["request"]
                server_errors.append(f"{status} {request['method']} {request['uri']}")
    return cases, server_errors


def test_the_api_gives_no_server_error_under_fuzzing(
    start_provider: Any, router_process: Any, tmp_path: Path
) -> None:
    provider = start_provider("only")
    router = router_process(
        [provider.route(), provider.route(kind="VendorIntegration", route_key="acme")]
    )
    router.start()
    report = tmp_path / "report.json"

    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            str(OPENAPI),
            "--url",
            router.url,
            "--header",
            f"Authorization: Bearer {API_KEY}",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "20261201",
            # One worker: with two, schemathesis 4.32 sometimes runs (and
            # reports) no fuzzing case at all for an operation.
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--exclude-path",
            EXCLUDED_PATH,
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            "--output-sanitize",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert run.returncode == 0, f"{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    cases, server_errors = _read_report(report)
    phases: Counter[str] = Counter()
    for (phase, _), count in cases.items():
        phases[phase] += count
    summary = {"cases": phases.total(), "by_phase": dict(phases), "server_errors": server_errors}
    print(json.dumps({"fuzz": summary, "fuzz_output_tail": run.stdout[-1500:]}))
    # Every operation is fuzzed with all its examples (one, if it takes no input:
    # there is only one request to make), and has coverage cases.
    operations = _operations()
    assert len(operations) == 11
    fuzzed = {label: cases["fuzzing", label] for label in operations}
    wanted = {
        label: EXAMPLES_PER_OPERATION if takes_input else 1
        for label, takes_input in operations.items()
    }
    assert {label: min(fuzzed[label], wanted[label]) for label in operations} == wanted, fuzzed
    assert all(cases["coverage", label] >= 1 for label in operations), cases
    assert phases["stateful"] >= 1, "the stateful phase ran no test case"
    # 8 operations with input x 40 + 3 without x 1 = 323 fuzzing cases at least.
    assert phases["fuzzing"] >= 8 * EXAMPLES_PER_OPERATION + 3
    assert server_errors == []
