#!/usr/bin/env bash
# By hand (not in CI: llama.cpp is not part of this project): the official openai client through
# `autoglm serve --upstream` to llama.cpp's llama-server, one-shot and streamed, compared at
# temperature 0 with calling llama-server directly. llama-server comes from the anchor tool.
#   [LLAMACPP_ANCHOR=../shared/tools/llamacpp-anchor] scripts/e2e/through-llama-server.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
anchor="${LLAMACPP_ANCHOR:-../shared/tools/llamacpp-anchor}"
"$anchor" build >/dev/null
model="$(scripts/setup-model.sh)"
swift build -c release -Xswiftc -enable-testing --product autoglm >/dev/null
if [ ! -x venv-e2e/bin/python ]; then
    python3 -m venv venv-e2e
    venv-e2e/bin/pip install --quiet --disable-pip-version-check openai==3.54.0
fi
exec venv-e2e/bin/python scripts/e2e/serve_e2e.py .build/release/autoglm --llama-server "$("$anchor" bin llama-server)" "$model"
