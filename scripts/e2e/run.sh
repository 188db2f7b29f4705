#!/usr/bin/env bash
# Runs scripts/e2e/serve_e2e.py against the release binary with the official openai client
# (pinned, installed from PyPI into venv-e2e/, which git ignores).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x venv-e2e/bin/python ]; then
    python3 -m venv venv-e2e
    venv-e2e/bin/pip install --quiet --disable-pip-version-check openai==3.54.0
fi
exec venv-e2e/bin/python scripts/e2e/serve_e2e.py "${1:-.build/release/autoglm}"
