"""Build every image of this checkout without Docker: ``make images``.

Builds, with podman, from the committed Dockerfiles:

* the Switchboard image (``Dockerfile``): ``ghcr.io/switchboard-dev/switchboard:VERSION``;
* the plugin base image (``plugin-images/base/Dockerfile``), tagged both
  ``ghcr.io/switchboard-dev/plugin-base:VERSION`` and ``switchboard/plugin-base:VERSION``
  (the plugin Dockerfiles' default ``BASE_IMAGE``);
* every plugin image (``plugin-images/NAME/Dockerfile``):
  ``ghcr.io/switchboard-dev/plugin-NAME:VERSION``.

These are the names ``hack/kind-up.sh``, the chart and ``examples/`` use.

No registry is needed. The Python base image is made from Debian's packages
by mmdebstrap and passed through the Dockerfiles' ``PYTHON_IMAGE`` argument
(their default stays the public ``python:*-slim`` image for Docker users).
The locked wheels are downloaded once on the host into a wheelhouse, checked
against the lock's hashes, and each build installs from it with
``--no-index --find-links`` through a pip configuration mounted for the build
only: builds run with ``--network=none`` and nothing of the host stays in an
image.

Every image is labelled with a hash of what it is built from (Dockerfile,
build arguments, the files its ``COPY`` lines name, the image it starts
from); an image whose label matches is not built again, so a second run with
nothing changed builds nothing. The images are then saved into one archive
for the real-node tests (``containerd`` imports it), and their sizes printed.

Cache (``$SWITCHBOARD_CACHE``, default ``~/.cache/switchboard``): ``images/``
holds the Debian root filesystem, the wheelhouse and the archive.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
REGISTRY = "ghcr.io/switchboard-dev"
SWITCHBOARD_IMAGE = f"{REGISTRY}/switchboard:{VERSION}"
PLUGIN_BASE_IMAGE = f"{REGISTRY}/plugin-base:{VERSION}"
#: What the plugin Dockerfiles build FROM by default.
PLUGIN_BASE_ALIAS = f"switchboard/plugin-base:{VERSION}"
INPUTS_LABEL = "dev.switchboard.build-inputs"

#: The Debian release and packages of the local Python base: the same Python
#: minor version and C library as the public python:3.11-slim-bookworm.
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
#: Documentation, manual pages and translations are left out of the base.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
PYTHON_BASE_REPOSITORY = "localhost/switchboard-python"

#: podman here cannot raise its own rlimits, and builds need no network.
PODMAN_BUILD_FLAGS = (
    "--pull=never",
    "--network=none",
    "--ulimit=nofile=1024:1024",
    "--ulimit=nproc=1024:1024",
)
#: Never part of an image's inputs: bytecode and build leftovers.
IGNORED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
IGNORED_SUFFIXES = (".pyc", ".egg-info")
#: Where a build sees the wheelhouse and its pip configuration. Both exist in
#: the Debian base (an empty /mnt, an empty /etc/pip.conf), so mounting over
#: them leaves no mount point behind in an image.
WHEELS_MOUNT = "/mnt"
PIP_CONF = f"[global]\nno-index = true\nfind-links = {WHEELS_MOUNT}\n"


def cache_root() -> Path:
    base = os.environ.get("SWITCHBOARD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "switchboard"
    )
    return Path(base) / "images"


def log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def run(*command: str, capture: bool = False) -> str:
    stdout = subprocess.PIPE if capture else None
    result = subprocess.run(command, check=True, text=True, stdout=stdout)
    return result.stdout if capture else ""


def digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


# --- What an image is built from -------------------------------------------------


def logical_lines(dockerfile: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    lines: list[str] = []
    current = ""
    for raw in dockerfile.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def copy_sources(dockerfile: str) -> list[str]:
    """The context paths (possibly globs) that the Dockerfile's ``COPY``/``ADD`` lines read."""
    sources: list[str] = []
    for line in logical_lines(dockerfile):
        words = shlex.split(line)
        if words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += args[:-1]
    return sources


def _ignored(path: Path) -> bool:
    return any(p in IGNORED_PARTS or p.endswith(IGNORED_SUFFIXES) for p in path.parts)


def context_files(context: Path, patterns: Sequence[str]) -> list[Path]:
    """Every file the patterns name under `context`, sorted, without bytecode."""
    found: set[Path] = set()
    for pattern in patterns:
        for match in glob.glob(str(context / pattern)):
            path = Path(match)
            candidates = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            found.update(p for p in candidates if not _ignored(p.relative_to(context)))
    return sorted(found)


def build_inputs(
    dockerfile: Path, context: Path, build_args: dict[str, str], parents: Sequence[str]
) -> str:
    """A hash of everything the build reads: same hash, same image."""
    text = dockerfile.read_text()
    parts = [text.encode(), json.dumps(build_args, sort_keys=True).encode()]
    parts += [parent.encode() for parent in parents]
    for path in context_files(context, copy_sources(text)):
        parts += [str(path.relative_to(context)).encode(), path.read_bytes()]
    return digest(parts)


# --- podman -----------------------------------------------------------------------


def image_id(ref: str) -> str | None:
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def image_label(ref: str, label: str) -> str | None:
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', ref],
        capture_output=True,
        text=True,
        check=False,
    )
    value = result.stdout.strip()
    return value if result.returncode == 0 and value not in ("", "<no value>") else None


def image_size(ref: str) -> int:
    return int(run("podman", "image", "inspect", "--format", "{{.Size}}", ref, capture=True))


@dataclass
class Image:
    """One image to build: its Dockerfile, context, tags and build arguments."""

    name: str
    dockerfile: Path
    context: Path
    tags: list[str]
    build_args: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return self.tags[0]


def python_base(cache: Path) -> str:
    """The Debian Python base image, made by mmdebstrap once per package list."""
    key = digest(
        [DEBIAN_SUITE.encode(), b"empty /etc/pip.conf", *(p.encode() for p in DEBIAN_PACKAGES)]
        + [e.encode() for e in DPKG_EXCLUDES]
    )[:12]
    ref = f"{PYTHON_BASE_REPOSITORY}:{DEBIAN_SUITE}-{key}"
    if image_id(ref):
        return ref
    rootfs = cache / f"debian-python-{DEBIAN_SUITE}-{key}.tar"
    if not rootfs.exists():
        log(f"Making the Python base from Debian {DEBIAN_SUITE} packages (mmdebstrap)")
        partial = rootfs.with_suffix(".partial.tar")
        run(
            "mmdebstrap", "--quiet", "--variant=minbase",
            f"--include={','.join(DEBIAN_PACKAGES)}",
            *(f"--dpkgopt=path-exclude={e}" for e in DPKG_EXCLUDES),
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--aptopt=APT::Install-Recommends false",
            '--customize-hook=touch "$1/etc/pip.conf"',
            DEBIAN_SUITE, str(partial),
        )  # fmt: skip
        partial.rename(rootfs)
    log(f"Importing {ref}")
    run(
        "podman", "import", "--quiet",
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", "ENV LANG=C.UTF-8",
        "--change", 'CMD ["python3"]',
        str(rootfs), ref,
    )  # fmt: skip
    return ref


def lock_files() -> list[Path]:
    return sorted(
        [
            ROOT / "requirements" / "switchboard.txt",
            ROOT / "requirements" / "plugin-base.txt",
            ROOT / "requirements" / "build.txt",
            *ROOT.glob("plugin-images/*/requirements.txt"),
        ]
    )


def wheelhouse(cache: Path) -> Path:
    """Every locked wheel the images install, downloaded on the host and hash-checked."""
    house = cache / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    stamp = house / ".locks"
    key = digest(p.read_bytes() for p in lock_files())
    if stamp.exists() and stamp.read_text() == key:
        return house
    log("Downloading the locked wheels into the wheelhouse")
    for lock in lock_files():
        run(
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--require-hashes", "--only-binary=:all:",
            "--dest", str(house), "-r", str(lock),
        )  # fmt: skip
    stamp.write_text(key)
    return house


def build(image: Image, parents: Sequence[str], house: Path, pip_conf: Path) -> bool:
    """Build `image` unless one with the same inputs exists; True if it was built."""
    inputs = build_inputs(image.dockerfile, image.context, image.build_args, parents)
    if all(image_label(tag, INPUTS_LABEL) == inputs for tag in image.tags):
        return False
    log(f"Building {image.ref}")
    started = time.monotonic()
    run(
        "podman", "build", "--quiet", *PODMAN_BUILD_FLAGS,
        f"--volume={house}:{WHEELS_MOUNT}:ro",
        f"--volume={pip_conf}:/etc/pip.conf:ro",
        f"--label={INPUTS_LABEL}={inputs}",
        *(f"--build-arg={k}={v}" for k, v in image.build_args.items()),
        *(f"--tag={tag}" for tag in image.tags),
        "--file", str(image.dockerfile), str(image.context),
    )  # fmt: skip
    log(f"Built {image.ref} in {time.monotonic() - started:.0f} s")
    return True


def plugin_names() -> list[str]:
    return sorted(
        p.parent.name for p in ROOT.glob("plugin-images/*/Dockerfile") if p.parent.name != "base"
    )


def images(python_image: str) -> list[Image]:
    plugins = [
        Image(
            name=f"plugin-{name}",
            dockerfile=ROOT / "plugin-images" / name / "Dockerfile",
            context=ROOT / "plugin-images" / name,
            tags=[f"{REGISTRY}/plugin-{name}:{VERSION}"],
            build_args={"BASE_IMAGE": PLUGIN_BASE_IMAGE},
        )
        for name in plugin_names()
    ]
    return [
        Image(
            name="switchboard",
            dockerfile=ROOT / "Dockerfile",
            context=ROOT,
            tags=[SWITCHBOARD_IMAGE],
            build_args={"PYTHON_IMAGE": python_image},
        ),
        Image(
            name="plugin-base",
            dockerfile=ROOT / "plugin-images" / "base" / "Dockerfile",
            context=ROOT,
            tags=[PLUGIN_BASE_IMAGE, PLUGIN_BASE_ALIAS],
            build_args={"PYTHON_IMAGE": python_image},
        ),
        *plugins,
    ]


def selected(every: list[Image], names: Sequence[str]) -> list[Image]:
    """The images named (all when none is), with the plugin base when a plugin needs it."""
    if not names:
        return every
    wanted = set(names)
    if any(name.startswith("plugin-") for name in wanted):
        wanted.add("plugin-base")
    return [image for image in every if image.name in wanted]


def save_archive(cache: Path, refs: Sequence[str]) -> Path:
    """One docker-archive holding every image (shared layers once), cached by image IDs."""
    key = digest(f"{ref}={image_id(ref)}".encode() for ref in refs)[:16]
    archive = cache / f"images-{key}.tar"
    if not archive.exists():
        for old in cache.glob("images-*.tar"):
            old.unlink()
        log(f"Saving {len(refs)} images into {archive.name}")
        partial = archive.with_suffix(".partial")
        run(
            "podman", "save", "--quiet", "--multi-image-archive", "--format", "docker-archive",
            "--output", str(partial), *refs,
        )  # fmt: skip
        partial.rename(archive)
    (cache / "images.json").write_text(
        json.dumps({"archive": str(archive), "images": list(refs)}, indent=2) + "\n"
    )
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-archive", action="store_true", help="skip saving the archive")
    parser.add_argument(
        "names",
        nargs="*",
        help="build only these (switchboard, plugin-base, plugin-NAME); default: every image",
    )
    args = parser.parse_args()
    known = [image.name for image in images("")]
    if unknown := set(args.names) - set(known):
        sys.exit(f"images: no image named {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    for tool in ("podman", "mmdebstrap"):
        if not shutil.which(tool):
            sys.exit(f"images: {tool} is not on PATH (make system-deps installs it)")
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    python_image = python_base(cache)
    house = wheelhouse(cache)
    built = []
    with tempfile.TemporaryDirectory() as scratch:
        pip_conf = Path(scratch) / "pip.conf"
        pip_conf.write_text(PIP_CONF)
        os.chmod(pip_conf, 0o644)
        parent_ids = {python_image: image_id(python_image) or ""}
        for image in selected(images(python_image), args.names):
            parent = image.build_args.get("PYTHON_IMAGE") or image.build_args["BASE_IMAGE"]
            parent_id = parent_ids.get(parent) or image_id(parent)
            if build(image, [f"{parent}@{parent_id}"], house, pip_conf):
                built.append(image.name)
            for tag in image.tags:
                parent_ids[tag] = image_id(tag) or ""
    if built:
        # Replaced images and build stages would pile up build after build.
        run("podman", "image", "prune", "--force", capture=True)
    all_images = selected(images(python_image), args.names)
    refs = [image.ref for image in all_images]
    if not args.no_archive:
        save_archive(cache, refs)
    print(f"{'image':<58} {'size':>8}")
    for image in all_images:
        print(f"{image.ref:<58} {image_size(image.ref) / 1e6:>6.0f} MB")
    took = time.monotonic() - started
    print(f"{len(built)} built ({', '.join(built) or 'none'}) in {took:.0f} s")


if __name__ == "__main__":
    main()
