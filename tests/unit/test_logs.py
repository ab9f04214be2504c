"""The log lines of Switchboard's own processes: the plugins' format, fields kept."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from switchboard.logs import configure_logging


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


def test_a_router_log_line_keeps_its_fields_and_the_trace_it_belongs_to(
    root_handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging()
    tracer = TracerProvider().get_tracer("test")

    with tracer.start_as_current_span("send") as span:
        logging.getLogger("switchboard.router").warning(
            "Ejected the endpoint of %s", "shop/sms", extra={"plugin": "shop/sms", "seconds": 2.5}
        )

    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "Ejected the endpoint of shop/sms"
    assert (line["level"], line["logger"]) == ("warning", "switchboard.router")
    assert (line["plugin"], line["seconds"]) == ("shop/sms", 2.5)
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


def test_a_field_json_cannot_encode_is_written_as_text(
    root_handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging()

    logging.getLogger("switchboard.operator").info("Applied", extra={"kinds": {"Deployment"}})

    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["kinds"] == "{'Deployment'}"
