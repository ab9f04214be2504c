"""The log lines of Switchboard's own processes: the plugins' format, fields kept.

JSON lines for machines, a plain line with the same fields for a person at a
terminal, and every log call of the code base an event: a constant message,
its facts as `extra` fields.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import TracerProvider

from switchboard.cli import main
from switchboard.local.supervisor import render_record
from switchboard.local.up import _Events
from switchboard.logs import configure_logging, extra_fields, log_level, render_fields

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "switchboard"


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
            "Ejected an endpoint", extra={"plugin": "shop/sms", "seconds": 2.5}
        )

    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["msg"] == "Ejected an endpoint"
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


def _record(message: str = "Started a plugin", **fields: Any) -> logging.LogRecord:
    return logging.getLogger("switchboard.local").makeRecord(
        "switchboard.local", logging.INFO, __file__, 1, message, (), None, extra=fields
    )


def test_the_extra_fields_of_a_record_are_what_the_call_passed() -> None:
    record = _record(plugin="default/sms", pid=4242)
    logging.Formatter("%(asctime)s %(message)s").format(record)  # sets `message`, `asctime`

    assert extra_fields(record) == {"plugin": "default/sms", "pid": 4242}
    assert extra_fields(_record()) == {}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("default/sms", "default/sms"),
        ("127.0.0.1:4242", "127.0.0.1:4242"),
        ("killed by SIGKILL", '"killed by SIGKILL"'),
        ("", '""'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("line one\nline two", '"line one\\nline two"'),  # still one line
        (2.5, "2.5"),
        (-9, "-9"),
        (None, "null"),
        (True, "true"),
        ({"serving": 2, "failed": 1}, '{"serving":2,"failed":1}'),
        (["API_TOKEN", "SID"], '["API_TOKEN","SID"]'),
        ({"Deployment"}, "\"{'Deployment'}\""),  # not JSON: its text, as the JSON lines write it
    ],
)
def test_a_field_is_shown_bare_or_quoted_so_each_key_value_pair_stays_one_word(
    value: Any, shown: str
) -> None:
    assert render_fields({"field": value}) == f" field={shown}"


def test_the_plain_format_puts_the_fields_after_the_message(
    root_handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_lines=False)
    log = logging.getLogger("switchboard.local")

    log.warning(
        "A plugin exited",
        extra={"plugin": "default/sms", "exit_code": -9, "error": "killed by SIGKILL"},
    )
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("Delivery round failed", extra={"message_id": "m-1"})

    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING A plugin exited "
        r'plugin=default/sms exit_code=-9 error="killed by SIGKILL"',
        lines[0],
    ), lines[0]
    assert lines[1].endswith(" ERROR Delivery round failed message_id=m-1")
    assert lines[2] == "Traceback (most recent call last):"  # the traceback follows the line
    assert lines[-1] == "ValueError: boom"


def test_the_live_view_shows_the_first_line_of_the_message_and_the_fields() -> None:
    events = _Events(keep=2)

    events.handle(_record("Kept the running plugins; the YAML has errors", error="a.yaml: bad"))
    events.handle(_record("First line\nsecond line", plugin="default/sms", pid=4242))
    events.handle(_record("Plugins settled", states={"serving": 1}))

    assert [line.split(" ", 1)[1] for line in events.recent] == [
        "First line plugin=default/sms pid=4242",
        'Plugins settled states={"serving":1}',
    ]


def test_a_plugins_line_is_shown_with_its_fields_as_local_modes_own_lines_are() -> None:
    line = json.dumps(
        {
            "ts": "2025-01-01T00:00:00.000+00:00",
            "level": "warning",
            "msg": "Failed a call",
            "plugin": "acme-sms",
            "logger": "switchboard.sdk",
            "rpc": "Send",
            "error_class": "RETRYABLE",
            "error": "Traceback (most recent call last):\nValueError: provider is overloaded",
        }
    )

    assert render_record(line) == (
        'warning Failed a call rpc=Send error_class=RETRYABLE error="ValueError: provider '
        'is overloaded"'
    )
    assert render_record("not JSON") == "not JSON"


_LEVELS = frozenset({"debug", "info", "warning", "error", "exception", "critical"})
REPO = PACKAGE.parents[1]
#: Where Switchboard's own log calls are: the operator package and the plugins.
LOGGING_CODE = (PACKAGE, REPO / "plugin-images")


def _python_files() -> Iterator[Path]:
    for root in LOGGING_CODE:
        yield from sorted(path for path in root.rglob("*.py") if "__pycache__" not in path.parts)


def _log_calls(tree: ast.AST) -> Iterator[ast.Call]:
    """Calls like ``log.info(...)``, ``logger.warning(...)``, ``self._logger.error(...)``."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = node.func.value
        name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
        if node.func.attr in _LEVELS and re.fullmatch(r"_?(log|logger|audit)", name):
            yield node


def _formats_its_message(call: ast.Call) -> bool:
    """Whether a log call builds its message from values: ``%s`` arguments, an
    f-string, ``"...".format(...)``, ``"..." % value``, or a message that is itself a
    value (a variable, a call) rather than written out at the call."""
    if len(call.args) > 1:
        return True
    message = call.args[0] if call.args else None
    if isinstance(message, ast.Constant):
        return isinstance(message.value, str) and (
            re.search(r"%(\([^)]*\))?[-#0 +.\d]*[sdifrx]", message.value) is not None
        )
    if isinstance(message, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in message.values)
    return message is not None


def _offenders(source: str, check: Callable[[ast.Call], bool], where: str = "x.py") -> list[str]:
    return [
        f"{where}:{call.lineno}" for call in _log_calls(ast.parse(source, where)) if check(call)
    ]


def test_every_log_call_is_an_event_with_its_facts_as_fields() -> None:
    """No value is formatted into a message (`%s`, an f-string, `.format`): it goes into
    `extra`, where a log pipeline filters on it and the plain format still shows it."""
    offenders, seen = [], 0
    for path in _python_files():
        source = path.read_text()
        seen += len(list(_log_calls(ast.parse(source, str(path)))))
        offenders += _offenders(source, _formats_its_message, str(path.relative_to(REPO)))
    assert offenders == []
    assert seen > 50  # the calls were found (the code logs through `log`, `logger`, `audit`)


@pytest.mark.parametrize(
    "call",
    [
        'log.info("Sent %s", message_id)',
        'logger.warning("Sent %s" % message_id)',
        'self._logger.info(f"Handled {rpc} call")',
        'self.logger.error("Failed {} call".format(rpc))',
        'audit.info("Granted %(role)s")',
        "log.error(reason)",
        "log.warning(str(error))",
    ],
)
def test_the_log_call_check_catches_every_way_of_formatting_a_message(call: str) -> None:
    assert _offenders(call, _formats_its_message) == ["x.py:1"]


def test_the_log_call_check_passes_a_constant_message_with_fields() -> None:
    source = 'self._logger.info("Handled a call", extra={"rpc": rpc})\nlog.info(f"plain")'
    assert _offenders(source, _formats_its_message) == []


#: The attributes every LogRecord has: logging refuses an `extra` key among them
#: (KeyError at the call, so the event is lost exactly when it happens).
RESERVED_RECORD_KEYS = frozenset(
    logging.LogRecord("name", logging.INFO, "path.py", 1, "msg", (), None).__dict__
) | {"message", "asctime"}


def _extra_keys(call: ast.Call) -> list[str]:
    """The keys a log call's ``extra={...}`` or ``extra=dict(...)`` spells out."""
    for keyword in call.keywords:
        if keyword.arg != "extra":
            continue
        value = keyword.value
        if isinstance(value, ast.Dict):
            return [
                key.value
                for key in value.keys
                if isinstance(key, ast.Constant) and isinstance(key.value, str)
            ]
        if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "dict":
            return [item.arg for item in value.keywords if item.arg is not None]
    return []


def _uses_a_reserved_key(call: ast.Call) -> bool:
    return not RESERVED_RECORD_KEYS.isdisjoint(_extra_keys(call))


def test_no_log_call_passes_a_field_a_log_record_already_has() -> None:
    offenders = []
    for path in _python_files():
        offenders += _offenders(path.read_text(), _uses_a_reserved_key, str(path.relative_to(REPO)))
    assert offenders == []


@pytest.mark.parametrize(
    "call",
    [
        'log.info("Sent a message", extra={"name": plugin})',
        'self.logger.warning("Gave up", extra=dict(message=text))',
        'logger.error("Exited", extra={"code": 1, "process": pid})',
    ],
)
def test_the_reserved_key_check_catches_a_record_attribute_in_extra(call: str) -> None:
    assert _offenders(call, _uses_a_reserved_key) == ["x.py:1"]
    with pytest.raises(KeyError):
        logging.getLogger("switchboard.test").makeRecord(
            "switchboard.test", logging.INFO, __file__, 1, "x", (), None, extra=_literal_extra(call)
        )


def _literal_extra(call: str) -> dict[str, Any]:
    keys = _extra_keys(next(_log_calls(ast.parse(call))))
    return dict.fromkeys(keys, "x")


def test_the_log_level_comes_from_switchboard_log_level() -> None:
    assert log_level({}) == logging.INFO
    assert log_level({"SWITCHBOARD_LOG_LEVEL": " debug "}) == logging.DEBUG
    assert log_level({"SWITCHBOARD_LOG_LEVEL": "WARNING"}) == logging.WARNING
    with pytest.raises(ValueError, match=r"'loud' is not a log level: use one of DEBUG, INFO"):
        log_level({"SWITCHBOARD_LOG_LEVEL": "loud"})


def test_a_log_level_that_is_none_stops_the_router_before_it_serves() -> None:
    result = CliRunner().invoke(main, ["router"], env={"SWITCHBOARD_LOG_LEVEL": "loud"})
    assert result.exit_code == 2
    assert "SWITCHBOARD_LOG_LEVEL='loud' is not a log level" in result.output
