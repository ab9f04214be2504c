#!/usr/bin/env bash
# Regenerate the Python code of our .proto files: the plugin protocol and the router API.
#
#   hack/generate-proto.sh            # writes next to the .proto (commit the result)
#   hack/generate-proto.sh OUT_DIR    # writes under OUT_DIR/switchboard/{plugin,router}/v1/
#                                     # (tests/sdk/test_protocol_drift.py compares the two)
#
# `-I operator` makes the generated imports package-qualified
# (`from switchboard.plugin.v1 import plugin_pb2`), so the code works as
# `switchboard.plugin.v1.plugin_pb2` without sys.path tricks.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="${1:-${repo_root}/operator}"
python="${PYTHON:-${repo_root}/.venv/bin/python}"
bin_dir="$(dirname "${python}")"

mkdir -p "${out_dir}"
cd "${repo_root}"
"${python}" -m grpc_tools.protoc \
  -I operator \
  --plugin=protoc-gen-mypy="${bin_dir}/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="${bin_dir}/protoc-gen-mypy_grpc" \
  --python_out="${out_dir}" \
  --grpc_python_out="${out_dir}" \
  --mypy_out="${out_dir}" \
  --mypy_grpc_out="${out_dir}" \
  operator/switchboard/plugin/v1/plugin.proto \
  operator/switchboard/router/v1/router.proto
