#!/usr/bin/env bash
# The local demo: the sink (the demo's outside world) in the background and
# `switchboard up examples/local` in front. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python examples/local/sink.py &
sink=$!
trap 'kill "$sink" 2>/dev/null; wait "$sink" 2>/dev/null || true' EXIT
sleep 1
.venv/bin/switchboard up examples/local "$@"
