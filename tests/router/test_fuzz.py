"""A bounded fuzz run of the router's HTTP API against its committed OpenAPI document.

Schemathesis generates requests from docs/openapi.json (valid and invalid
bodies, odd strings, missing fields, wrong types) and sends them to a real
`switchboard router` process on loopback; the check is that no request gets a
server error (5xx other than the documented "every plugin failed" 503/502/504
with an error body) and every response matches the document.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.router.conftest import API_KEY

REPO = Path(__file__).resolve().parents[2]
#: Examples per operation: a few hundred requests in all, about a minute.
EXAMPLES_PER_OPERATION = 40


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
            str(REPO / "docs" / "openapi.json"),
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
            "--workers",
            "2",
            "--request-timeout",
            "20",
            # An endless stream (SSE) is not a request/response to fuzz.
            "--exclude-path",
            "/v1/messages/events",
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

    cases = (
        sum(1 for line in report.read_text().splitlines() if '"ScenarioFinished"' in line)
        if report.exists()
        else 0
    )
    assert run.returncode == 0, f"{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert cases >= 1, "schemathesis ran no test case"
    print(json.dumps({"fuzz_output_tail": run.stdout[-1500:]}))
