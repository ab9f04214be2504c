"""The committed generated code is exactly what ``hack/generate-proto.sh`` makes from the .proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "operator" / "switchboard"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    subprocess.run(
        ["bash", str(REPO / "hack" / "generate-proto.sh"), str(out)],
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out / "switchboard"


@pytest.mark.parametrize(
    "file_name",
    [
        f"{api}/v1/{api}_pb2{suffix}"
        for api in ("plugin", "router")
        for suffix in (".py", ".pyi", "_grpc.py", "_grpc.pyi")
    ],
)
def test_generated_code_matches_the_proto(regenerated: Path, file_name: str) -> None:
    fresh = (regenerated / file_name).read_bytes()
    assert fresh == (GENERATED / file_name).read_bytes(), (
        f"{file_name} is stale: run hack/generate-proto.sh and commit the result"
    )


def test_generated_code_imports_as_a_package_module() -> None:
    from switchboard.plugin.v1 import plugin_pb2, plugin_pb2_grpc

    assert plugin_pb2.DESCRIPTOR.package == "switchboard.plugin.v1"
    assert plugin_pb2_grpc.PluginServiceStub.__module__ == "switchboard.plugin.v1.plugin_pb2_grpc"
