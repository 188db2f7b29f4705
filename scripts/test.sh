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
# The gRPC API with the published clients (smg-grpc-proto's SGLang stubs, tritonclient, grpcio health and reflection):
# token ids equal to HTTP's, streaming, abort and disconnect, status codes, keys, TLS, draining.
scripts/e2e/grpc.sh .build/release/autoglm
# The systemd unit (systemd-analyze), the alert rules (promtool) and the metrics against a real Prometheus
# scraping a running server.
scripts/e2e/deploy.sh .build/release/autoglm
# Hot reload under load: 8 streams for 60 s through 5 SIGHUP reloads (a new model file each) and a broken
# configuration: no failed request, no stream cut, one version's memory after each.
scripts/e2e/reload.sh .build/release/autoglm 60 5
# The OpenAPI contract: schemathesis (PyPI) generates requests for every documented operation of a running
# server and checks every answer (no 5xx, documented status, content type and body).
scripts/e2e/schemathesis.sh .build/release/autoglm 25
# Per-key budgets through a real server: 4 clients on a key of 120 requests per minute for 60 s get 120 +- 5%,
# every refusal a 429 with Retry-After; the audit log's chain verifies and an edited line is found.
scripts/e2e/ratelimit.sh .build/release/autoglm 120 60
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of the GGUF and safetensors readers, request JSON, chat
# templates, the tokenizer, the image decoders and the gRPC request reading: 20,000 inputs per target (at most 60 s each, libFuzzer's seed fixed).
AUTOGLM_FUZZ_MAX_TIME=60 AUTOGLM_FUZZ_SEED=1 scripts/fuzz.sh 20000
