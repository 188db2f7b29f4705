#!/usr/bin/env bash
# The project's test command (README; .ci/run calls it): fetches the default model if needed, then
# builds and runs every test in release mode (the engine tests run real forward passes of the
# 30-layer default model; unoptimized Swift would take many minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-system.sh
scripts/setup-model.sh >/dev/null
swift build -c release --build-tests -Xswiftc -enable-testing
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
# The server as a real process: the official openai client, overload, disconnect, port in use, SIGTERM drain.
scripts/e2e/run.sh .build/release/autoglm
# The systemd unit (systemd-analyze), the alert rules (promtool) and the metrics against a real Prometheus
# scraping a running server.
scripts/e2e/deploy.sh .build/release/autoglm
# Hot reload under load: 8 streams for 60 s through 5 SIGHUP reloads (a new model file each) and a broken
# configuration: no failed request, no stream cut, one version's memory after each.
scripts/e2e/reload.sh .build/release/autoglm 60 5
# The OpenAPI contract: schemathesis (PyPI) generates requests for every documented operation of a running
# server and checks every answer (no 5xx, documented status, content type and body).
scripts/e2e/schemathesis.sh .build/release/autoglm 25
