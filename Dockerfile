# The Switchboard image: one image, two commands.
#
#   switchboard operator   reconciles CommunicationPlugins and VendorIntegrations
#   switchboard router     the HTTP/JSON and gRPC front door
#
# Build from the repository root:
#
#   docker build -t ghcr.io/switchboard-dev/switchboard:0.1.0 .
#
# The Helm chart (helm/switchboard) sets the command of each Deployment. The
# image runs as the non-root uid 65532 with a read-only root filesystem:
# bytecode is compiled at build time and never written at run time, and
# HOME/TMPDIR point at /tmp (the chart mounts an emptyDir there).
#
# Plugins have their own base image: plugin-images/base/Dockerfile.

# Pinned by version, the same as the plugin base image so the two share layers;
# pin the digest too (python:3.11.13-slim-bookworm@sha256:...) in the registry
# you build from.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The locked dependencies first (their layer survives code changes), exactly
# as `make lock` pinned them, hash-checked; the slim base has no compiler, so
# the native ones (grpcio, cryptography, pydantic-core, ...) come as wheels.
COPY requirements/switchboard.txt requirements/build.txt ./requirements/
RUN python -m venv /opt/switchboard \
    && /opt/switchboard/bin/pip install --require-hashes --no-deps --only-binary=:all: \
        -r requirements/switchboard.txt \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.txt
# Then the project, built by the locked setuptools (nothing fetched).
COPY pyproject.toml README.md ./
COPY operator/switchboard ./operator/switchboard
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/switchboard/bin/pip install --no-deps /tmp/wheels/*.whl \
    && /opt/switchboard/bin/python -m compileall -q /opt/switchboard/lib \
    && /opt/switchboard/bin/switchboard --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Switchboard operator and router" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
# The virtualenv only: no sources, no build tools, no pip cache.
COPY --from=build /opt/switchboard /opt/switchboard
ENV PATH=/opt/switchboard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
# A name for uid 65532, as distroless images have: code that asks for the
# user's name (getpass.getuser(), e.g. kopf's peering identity) fails without one.
RUN echo "nonroot:x:65532:65532:nonroot:/tmp:/usr/sbin/nologin" >> /etc/passwd \
    && echo "nonroot:x:65532:" >> /etc/group
# 65532 is the conventional "nonroot" uid/gid (distroless); numeric so that
# runAsNonRoot can be verified by the kubelet without /etc/passwd.
USER 65532:65532
# The router's HTTP/JSON (/healthz, /readyz, /metrics) and gRPC ports.
EXPOSE 8080 9090
ENTRYPOINT ["switchboard"]
CMD ["operator"]
