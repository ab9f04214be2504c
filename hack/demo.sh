#!/usr/bin/env bash
# The local demo: the sink (the demo's outside world) in the background and
# `switchboard up examples/local` in front. Ctrl-C stops both. A second
# `make demo` while one runs stops at once and says why, leaving nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python examples/local/sink.py &
sink=$!
trap 'kill "$sink" 2>/dev/null; wait "$sink" 2>/dev/null || true' EXIT
# Until the sink listens; if it ended (its ports are taken), with its exit code.
for _ in $(seq 1 200); do
  kill -0 "$sink" 2>/dev/null || { wait "$sink" && exit 1 || exit $?; }
  (exec 3<>/dev/tcp/127.0.0.1/8025) 2>/dev/null && break
  sleep 0.1
done
.venv/bin/switchboard up examples/local "$@"
