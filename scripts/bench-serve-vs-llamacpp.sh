#!/usr/bin/env bash
# Side by side on the same GGUF: `autoglm bench` against `autoglm serve` and against llama.cpp's
# `llama-server --parallel 8` (from ../shared/tools/llamacpp-anchor), alternating ROUNDS times, each
# server alone on the machine while it is measured. Prints each run's table and the medians.
#   [INPUT_LEN=128] [OUTPUT_LEN=64] [CONCURRENCY=1,8] [DATASET=prompts.jsonl] scripts/bench-serve-vs-llamacpp.sh [ROUNDS] [NUM_PROMPTS]
# DATASET: prompts from a JSONL file instead of synthetic ones (scripts/bench-cached-prompt.jsonl.py
# writes one prompt repeated: TTFT with a fully cached prompt).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"; prompts="${2:-16}"; input="${INPUT_LEN:-128}"; output="${OUTPUT_LEN:-64}"
levels="${CONCURRENCY:-1,8}"; source_args=(--input-len "$input")
if [ -n "${DATASET:-}" ]; then source_args=(--dataset "$DATASET"); fi
anchor="${LLAMACPP_ANCHOR:-../shared/tools/llamacpp-anchor}"
model="$(scripts/setup-model.sh)"
"$anchor" build >/dev/null
# The same flags as scripts/test.sh, so that the two share one build.
swift build -c release -Xswiftc -enable-testing --product autoglm >/dev/null
out=bench-out/in$input-out$output${DATASET:+-$(basename "$DATASET" .jsonl)}; mkdir -p "$out"
port=8093
bench() {  # NAME ROUND
    .build/release/autoglm bench --base-url "http://127.0.0.1:$port" --endpoint completions \
        --concurrency "$levels" "${source_args[@]}" --output-len "$output" --num-prompts "$prompts" --warmup 2 --seed 1 \
        --output "$out/$1-$2.json" 2>/dev/null | tail -4
}
wait_ready() { for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return; sleep 1; done; echo "server did not start" >&2; exit 1; }
for r in $(seq 1 "$rounds"); do
    .build/release/autoglm serve --model "$model" --port "$port" --max-sequences 8 --threads "$(nproc)" >/dev/null 2>&1 &
    pid=$!; wait_ready; echo "== autoglm serve, round $r"; bench autoglm "$r"; kill "$pid"; wait "$pid" || true
    pid=$("$anchor" server "$model" "$port" 8); wait_ready; echo "== llama-server --parallel 8, round $r"; bench llamacpp "$r"; kill "$pid"; sleep 1
done
python3 - "$out" "$rounds" "$levels" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
present = {int(c) for c in sys.argv[3].split(",")}
def level(name, r, c):
    data = json.load(open(f"{out}/{name}-{r}.json"))
    levels = data["levels"] if isinstance(data, dict) and "levels" in data else data
    return next(l for l in levels if l.get("concurrency") == c)
def med(name, c, key):
    return statistics.median(pick(level(name, r, c), key) for r in range(1, rounds + 1))
def pick(l, key):
    v = l
    for part in key.split("."):
        v = v[part]
    return v
print(f"\nmedians over {rounds} alternating rounds")
for c, key, label in [(8, "output_token_throughput", "aggregate output tok/s at 8 streams"), (1, "ttft.p50_ms", "TTFT p50 ms at 1 stream"),
                      (1, "output_token_throughput", "output tok/s at 1 stream"), (8, "tpot.p50_ms", "TPOT p50 ms at 8 streams")]:
    if c not in present: continue
    a, l = med("autoglm", c, key), med("llamacpp", c, key)
    print(f"{label:40s} autoglm {a:9.2f}   llama-server {l:9.2f}   ratio {a / l:5.2f}x")
PY
