"""Every command block of docs/ runs as written, or says why it cannot (issue 19, deliverable 5).

docs/*.md and docs/plugins/*.md: each document runs in a copy of this
checkout (the virtualenv linked, not rebuilt) and a loopback-only network
namespace; README.md runs in a fresh clone, in tests/docs/test_new_user.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.runner import blocks, loopback_namespace, run_document

REPO = Path(__file__).resolve().parents[2]
#: Documents owned elsewhere: generated from the CRDs.
NOT_HERE = {"crd-reference.md"}
#: docs/*.md and each plugin's page, docs/plugins/*.md.
DOCUMENTS = sorted(
    p
    for p in [*(REPO / "docs").glob("*.md"), *(REPO / "docs" / "plugins").glob("*.md")]
    if p.name not in NOT_HERE
)


def copy_of_checkout(target: Path) -> Path:
    """The files git tracks, as they are now, with the virtualenv linked in."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    (target / ".venv").symlink_to(REPO / ".venv")
    return target


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO / "docs")))
def test_every_command_block_runs_as_written(document: Path, tmp_path: Path) -> None:
    if not any(b.language in ("console", "python") for b in blocks(document.read_text())):
        return  # nothing to run in this one
    checkout = copy_of_checkout(tmp_path / "switchboard")
    environment = {
        "LANG": "C.UTF-8",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "TMPDIR": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
        **{k: v for k, v in os.environ.items() if k in ("SWITCHBOARD_CACHE", "GOPATH")},
    }
    with loopback_namespace() as prefix:
        problems = run_document(document, checkout, environment, prefix)
    assert problems == []
