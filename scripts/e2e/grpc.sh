#!/usr/bin/env bash
# Runs scripts/e2e/grpc_e2e.py against the release binary with the published gRPC clients (pinned, installed from
# PyPI into venv-grpc/, which git ignores): smg-grpc-proto (SGLang's scheduler protocol), tritonclient[grpc]
# (KServe/Triton), grpcio-health-checking and grpcio-reflection.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x venv-grpc/bin/python ] || ! venv-grpc/bin/python -c "import smg_grpc_proto, tritonclient.grpc, grpc_health, grpc_reflection" 2>/dev/null; then
    python3 -m venv venv-grpc
    # grpcio-health-checking and -reflection 1.81 are the last on protobuf 6, which tritonclient needs.
    venv-grpc/bin/pip install --quiet --disable-pip-version-check smg-grpc-proto==0.4.28 'tritonclient[grpc]==2.73.0' \
        grpcio-health-checking==1.81.1 grpcio-reflection==1.81.1
fi
exec venv-grpc/bin/python scripts/e2e/grpc_e2e.py "${1:-.build/release/autoglm}"
