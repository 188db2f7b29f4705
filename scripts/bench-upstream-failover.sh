#!/usr/bin/env bash
# Failover under load: `autoglm bench` (8 streams, DURATION seconds) through an `autoglm serve` gateway
# in front of two upstream `autoglm serve`s; one upstream is killed halfway. Prints the bench summary
# and the gateway's per-endpoint outcomes: only requests already streaming from the killed upstream
# may fail (outcome stream_error); every later request goes to the other one.
#   [DURATION=60] scripts/bench-upstream-failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${DURATION:-60}"
scripts/setup-model.sh >/dev/null
swift build -c release -Xswiftc -enable-testing --product autoglm >/dev/null
u1=8096; u2=8097; gw=8098
wait_ready() { for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$1/ready" >/dev/null 2>&1 && return; sleep 0.5; done; echo "server on $1 did not start" >&2; exit 1; }
.build/release/autoglm serve --model smollm2-135m-instruct --port "$u1" --threads 1 >/dev/null 2>&1 & p1=$!
.build/release/autoglm serve --model smollm2-135m-instruct --port "$u2" --threads 1 >/dev/null 2>&1 & p2=$!
AUTOGLM_UPSTREAM_HEALTH_INTERVAL=1s .build/release/autoglm serve --port "$gw" \
    --upstream "smollm2-135m-instruct=http://127.0.0.1:$u1/v1" --upstream "smollm2-135m-instruct=http://127.0.0.1:$u2/v1" >/dev/null 2>&1 & pg=$!
trap 'kill $p1 $p2 $pg 2>/dev/null || true' EXIT
wait_ready "$u1"; wait_ready "$u2"; wait_ready "$gw"
mkdir -p bench-out
( sleep "$((duration / 2))"; kill -9 "$p1"; echo "killed the upstream on :$u1 at $(date +%T) ($((duration / 2)) s in)" >&2 ) &
.build/release/autoglm bench --base-url "http://127.0.0.1:$gw" --endpoint completions --model smollm2-135m-instruct --concurrency 8 \
    --input-len 128 --output-len 64 --num-prompts 100000 --max-duration "$duration" --seed 1 \
    --output bench-out/failover.json 2>/dev/null | grep -E "Completed|Errors|Output token|Duration" || true
echo "gateway outcomes per endpoint:"
curl -s "http://127.0.0.1:$gw/metrics" | grep '^autoglm_upstream_requests_total' || true
