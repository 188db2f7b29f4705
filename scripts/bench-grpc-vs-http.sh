#!/usr/bin/env bash
# Output throughput at CONCURRENCY streams through the gRPC API and through the HTTP API of one `autoglm serve`,
# side by side, with the same client: `autoglm bench` (streamed /v1/completions over HTTP; --grpc: KServe's
# ModelStreamInfer, streamed), the same synthetic prompts and lengths (ignore_eos: every request makes
# OUTPUT_LEN tokens), alternating HTTP and gRPC ROUNDS times; prints each round and the medians. THREADS: engine
# threads (default: all cores, the client then shares them with the engine). No prefix caching: each round's two runs
# send the same prompts, and the second would find them cached.
#   [INPUT_LEN=64] [OUTPUT_LEN=128] [CONCURRENCY=8] [THREADS=N] scripts/bench-grpc-vs-http.sh [ROUNDS] [NUM_PROMPTS]
# scripts/bench-grpc-vs-http.py compares the same with Python's clients (grpcio, tritonclient, urllib), and the
# server's and the client's CPU per token.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"; prompts="${2:-32}"; input="${INPUT_LEN:-64}"; output="${OUTPUT_LEN:-128}"; concurrency="${CONCURRENCY:-8}"
scripts/setup-model.sh >/dev/null
swift build -c release -Xswiftc -enable-testing --product autoglm >/dev/null
out=bench-out/grpc-vs-http; mkdir -p "$out"
http=8096; grpc=8097
.build/release/autoglm serve --port "$http" --grpc-port "$grpc" --max-sequences "$concurrency" --no-prefix-caching --threads "${THREADS:-$(nproc)}" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$http/ready" >/dev/null 2>&1 && break; sleep 0.5; done
bench() {  # NAME ROUND [--grpc ...]
    local name=$1 round=$2; shift 2
    .build/release/autoglm bench --base-url "http://127.0.0.1:$http" --endpoint completions --model smollm2-135m-instruct \
        --concurrency "$concurrency" --input-len "$input" --output-len "$output" --num-prompts "$prompts" --warmup 2 \
        --seed "$round" --output "$out/$name-$round.json" "$@" >/dev/null 2>&1
    python3 -c "import json,sys; l=json.load(open(sys.argv[1]))['levels'][0]; print(f\"round {sys.argv[2]} {sys.argv[3]:5s} {l['output_token_throughput']:8.1f} tok/s  ({l['completed']} completed, {l['failed']} failed)\")" \
        "$out/$name-$round.json" "$round" "$name"
}
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then bench http "$r"; bench grpc "$r" --grpc "127.0.0.1:$grpc"
    else bench grpc "$r" --grpc "127.0.0.1:$grpc"; bench http "$r"; fi
done
python3 - "$out" "$rounds" "$concurrency" <<'PY'
import json, statistics, sys
out, rounds, c = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def rates(name):
    return [json.load(open(f"{out}/{name}-{r}.json"))["levels"][0]["output_token_throughput"] for r in range(1, rounds + 1)]
h, g = statistics.median(rates("http")), statistics.median(rates("grpc"))
ratios = [gr / hr for gr, hr in zip(rates("grpc"), rates("http"))]
print(f"{c} streams, medians of {rounds} alternating rounds: HTTP {h:.1f} tok/s, gRPC (KServe ModelStreamInfer) {g:.1f} tok/s, "
      f"gRPC/HTTP {g / h:.3f} (per round: {', '.join(f'{x:.3f}' for x in ratios)})")
PY
