"""Docs that run: every command block of a Markdown file, executed as written.

The conventions (docs/testing.md#docs-that-run):

- A ```` ```console ```` block is run: each `$ ` line (with `\\` continuation
  lines) is a command, in bash, from the document's folder; the lines after a
  command are its expected output, each one found, in order, in what the
  command printed (`...` in a line matches anything). Exported variables
  carry over from one command to the next, as in one terminal.
- `<!-- illustrative: REASON -->` right before a block: not run (REASON is
  required: a cluster, a registry, the whole suite...).
- `<!-- doc-test: background, ready=TEXT -->`: the block's one command keeps
  running for the rest of the document; the next block starts once TEXT
  appeared in its output.
- `<!-- doc-test: exit=N -->`: each command of the block must exit N (an
  error example), instead of 0.
- `<!-- doc-test: file=NAME -->` before a block (Python, YAML...) writes it to
  NAME for later commands; every other Python block must at least compile as
  a script (no top-level `await`).

Each document runs in a network namespace of its own (loopback only), so the
fixed ports the docs name never meet another test's, and in a folder the test
chose (a copy of the repository for docs/, a fresh clone for the README).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*(illustrative|doc-test):\s*(.*?)\s*-->$")
COMMAND_TIMEOUT = 300.0


@dataclass
class Block:
    language: str
    text: str
    line: int
    illustrative: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"line {self.line}"


@dataclass
class Command:
    text: str
    expected: list[str]


def blocks(markdown: str) -> list[Block]:
    """Every fenced block, with the directive on the line before it."""
    found: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match or not match.group(1):
            index += 1
            continue
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        block = Block(match.group(1), "\n".join(body), start + 1)
        before = next((x.strip() for x in reversed(lines[:start]) if x.strip()), "")
        directive = _DIRECTIVE.match(before)
        if directive and directive.group(1) == "illustrative":
            block.illustrative = directive.group(2)
        elif directive:
            for part in directive.group(2).split(","):
                key, _, value = part.strip().partition("=")
                block.options[key] = value
        found.append(block)
        index += 1
    return found


def commands(block: Block) -> list[Command]:
    """The `$ ` commands of a console block with the output shown after each."""
    found: list[Command] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            if found:
                found[-1].expected.append(line)
            index += 1
            continue
        text = line[2:]
        while text.endswith("\\") and index + 1 < len(lines):
            index += 1
            text += "\n" + lines[index]  # the backslash stays: bash continues the line
        found.append(Command(text, []))
        index += 1
    return found


def matches(expected: list[str], output: str) -> str | None:
    """None when every expected line is found in order in `output`; else the first missing."""
    actual = output.splitlines()
    position = 0
    for wanted in expected:
        if not wanted.strip():
            continue
        pattern = re.compile(
            ".*".join(
                re.sub(r"(\\ )+", r"\\s+", re.escape(part.strip())) for part in wanted.split("...")
            ),
            re.DOTALL,
        )
        while position < len(actual) and not pattern.search(actual[position]):
            position += 1
        if position == len(actual):
            return wanted
        position += 1
    return None


@contextlib.contextmanager
def loopback_namespace() -> Iterator[list[str]]:
    """A network namespace with only a loopback interface; yields the exec prefix."""
    name = f"sbdoc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


class Terminal:
    """One bash session's worth of state: folder, exported variables, background jobs."""

    def __init__(self, folder: Path, environment: dict[str, str], prefix: list[str]) -> None:
        self.folder = folder
        self.prefix = prefix
        self.state = folder.parent / f".doc-test-{uuid.uuid4().hex[:8]}.env"
        self.state.write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in environment.items())
        )
        self.background: list[tuple[subprocess.Popen[str], Path]] = []

    def _script(self, command: str) -> str:
        return (
            f"source {shlex.quote(str(self.state))}\n"
            f"cd {shlex.quote(str(self.folder))}\n"
            f"{command}\n"
            "__status=$?\n"
            f"export -p > {shlex.quote(str(self.state))}\n"
            "exit $__status\n"
        )

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, "bash", "-c", self._script(command)],
            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream, in the order a terminal shows it
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def start(self, command: str, ready: str, timeout: float = 600) -> str:
        """Run `command` in the background until the document ends; wait for `ready`."""
        log = self.state.with_suffix(f".{len(self.background)}.log")
        handle = log.open("w")
        process = subprocess.Popen(
            [
                *self.prefix,
                "bash",
                "-c",
                f"source {shlex.quote(str(self.state))}\n"
                f"cd {shlex.quote(str(self.folder))}\n{command}",
            ],
            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")},
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        handle.close()
        self.background.append((process, log))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = log.read_text(errors="replace")
            if ready in output:
                return output
            if process.poll() is not None:
                raise AssertionError(f"{command!r} ended ({process.returncode}):\n{output}")
            time.sleep(0.5)
        raise AssertionError(f"{command!r}: no {ready!r} in {timeout}s:\n{log.read_text()}")

    def close(self) -> list[str]:
        """Stop the background commands (Ctrl-C, as a person would); their output."""
        outputs = []
        for process, log in self.background:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(90)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(30)
            outputs.append(log.read_text(errors="replace"))
        self.state.unlink(missing_ok=True)
        return outputs


def run_document(
    path: Path,
    folder: Path,
    environment: dict[str, str],
    prefix: list[str],
    after: Callable[[Terminal], None] | None = None,
) -> list[str]:
    """Run every block of `path` in `folder`, then `after` in the same terminal while the
    background commands still run; a list of what went wrong (empty: all good)."""
    problems: list[str] = []
    terminal = Terminal(folder, environment, prefix)
    try:
        problems = _run_blocks(path, folder, terminal)
        if not problems and after is not None:
            after(terminal)
    finally:
        terminal.close()
    return problems


def _run_blocks(path: Path, folder: Path, terminal: Terminal) -> list[str]:
    problems: list[str] = []
    for block in blocks(path.read_text()):
        where = f"{path.name} {block.where}"
        if block.illustrative is not None:
            if not block.illustrative.strip():
                problems.append(f"{where}: `illustrative:` needs a reason")
            continue
        if "file" in block.options:
            (folder / block.options["file"]).write_text(block.text + "\n")
            continue
        if block.language == "python":
            try:
                compile(block.text, where, "exec")
            except SyntaxError as error:
                problems.append(f"{where}: the Python block does not compile: {error}")
            continue
        if block.language != "console":
            continue
        for command in commands(block):
            if "background" in block.options:
                terminal.start(command.text, block.options.get("ready", "$"))
                continue
            result = terminal.run(command.text)
            output = result.stdout
            wanted = int(block.options.get("exit", "0"))
            if result.returncode != wanted:
                problems.append(
                    f"{where}: `{command.text}` exited {result.returncode}, not {wanted}:\n"
                    f"{output[-3000:]}"
                )
                return problems  # later commands build on this one
            missing = matches(command.expected, output)
            if missing is not None:
                problems.append(
                    f"{where}: `{command.text}` did not print {missing!r}; it printed:\n"
                    f"{output[-3000:]}"
                )
    return problems
