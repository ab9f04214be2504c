"""hack/images.py rebuilds an image exactly when something it is built from changed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]


def _images() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hack_images", REPO_ROOT / "hack" / "images.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


images = _images()


def test_the_inputs_of_the_plugin_base_are_what_its_copy_lines_read() -> None:
    dockerfile = (REPO_ROOT / "plugin-images" / "base" / "Dockerfile").read_text()
    assert images.copy_sources(dockerfile) == [
        "requirements/plugin-base.txt",
        "requirements/build.txt",
        "pyproject.toml",
        "README.md*",
        "operator",
    ]
    # COPY --from=build copies from a stage, not from the context.
    switchboard = (REPO_ROOT / "Dockerfile").read_text()
    assert "/opt/switchboard" not in images.copy_sources(switchboard)


def test_continuation_lines_and_comments_are_one_instruction(tmp_path: Path) -> None:
    text = "# COPY not-this /x\nCOPY a \\\n     b /dest/\nRUN echo \\\n  done\n"
    assert images.logical_lines(text) == ["COPY a  b /dest/", "RUN echo  done"]
    assert images.copy_sources(text) == ["a", "b"]


def test_an_image_is_rebuilt_when_a_copied_file_changes_and_only_then(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\nCOPY app.py /app/\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / "notes.txt").write_text("not copied\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")

    def inputs(parent: str = "base@sha256:1") -> str:
        return str(images.build_inputs(tmp_path / "Dockerfile", tmp_path, {}, [parent]))

    first = inputs()
    (tmp_path / "notes.txt").write_text("edited, still not copied\n")
    (tmp_path / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\1")
    assert inputs() == first
    (tmp_path / "app.py").write_text("print(2)\n")
    second = inputs()
    assert second != first
    # A new parent image is a new input too.
    assert inputs("base@sha256:2") != second
