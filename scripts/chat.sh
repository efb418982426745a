#!/usr/bin/env bash
# Sets up, builds (release) and starts tfusion-chat; extra arguments go to tfusion-chat (e.g. -m MODEL.gguf).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset cpu-release >/dev/null
cmake --build --preset cpu-release --target tfusion-chat >/dev/null
exec ./build/cpu-release/samples/chat/tfusion-chat "$@"
