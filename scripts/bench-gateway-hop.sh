#!/usr/bin/env bash
# The cost of the extra hop: `autoglm bench` straight at an `autoglm serve` (the upstream) and through a
# second `autoglm serve --upstream` in front of it, alternating ROUNDS times; prints the medians. The
# upstream runs without prefix caching, so that both paths see the same (repeated) prompts computed in full,
# and on THREADS engine threads (default 1): on a 2-core machine that leaves the gateway and the client a
# core, as a gateway on its own host would have.
#   [INPUT_LEN=128] [OUTPUT_LEN=64] [CONCURRENCY=1,8] scripts/bench-gateway-hop.sh [ROUNDS] [NUM_PROMPTS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"; prompts="${2:-16}"; input="${INPUT_LEN:-128}"; output="${OUTPUT_LEN:-64}"; levels="${CONCURRENCY:-1,8}"
scripts/setup-model.sh >/dev/null
swift build -c release -Xswiftc -enable-testing --product autoglm >/dev/null
out=bench-out/hop-in$input-out$output; mkdir -p "$out"
upstream=8094; gateway=8095
wait_ready() { for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$1/ready" >/dev/null 2>&1 && return; sleep 0.5; done; echo "server on $1 did not start" >&2; exit 1; }
.build/release/autoglm serve --model smollm2-135m-instruct --port "$upstream" --max-sequences 8 --no-prefix-caching --threads "${THREADS:-1}" >/dev/null 2>&1 &
up=$!
.build/release/autoglm serve --port "$gateway" --upstream "smollm2-135m-instruct=http://127.0.0.1:$upstream/v1" >/dev/null 2>&1 &
gw=$!
trap 'kill $up $gw 2>/dev/null || true' EXIT
wait_ready "$upstream"; wait_ready "$gateway"
bench() {  # NAME PORT ROUND
    .build/release/autoglm bench --base-url "http://127.0.0.1:$2" --endpoint completions --model smollm2-135m-instruct \
        --concurrency "$levels" --input-len "$input" --output-len "$output" --num-prompts "$prompts" --warmup 2 --seed "$3" \
        --output "$out/$1-$3.json" 2>/dev/null | tail -4
}
# The hop alone: first streamed byte of a one-token request, 40 in a row, direct and through the
# gateway, alternating 4 times (medians), so that engine work and client load are nearly nil.
python3 - "$upstream" "$gateway" <<'PY'
import json, statistics, sys, time, urllib.request
def first_byte(port):
    body = json.dumps({"model": "smollm2-135m-instruct", "prompt": "Hello", "max_tokens": 1, "temperature": 0, "stream": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body, headers={"content-type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        first = None
        for line in r:
            if first is None and line.startswith(b"data: {"): first = time.perf_counter()
    return (first - start) * 1000
runs = {"direct": [], "gateway": []}
for _ in range(4):
    for name, port in (("direct", sys.argv[1]), ("gateway", sys.argv[2])):
        runs[name].append(statistics.median(first_byte(port) for _ in range(40)))
d, g = statistics.median(runs["direct"]), statistics.median(runs["gateway"])
print(f"first streamed byte, 1-token request: direct {d:.2f} ms, gateway {g:.2f} ms, hop {g - d:+.2f} ms "
      f"(per run: direct {', '.join(f'{x:.2f}' for x in runs['direct'])}; gateway {', '.join(f'{x:.2f}' for x in runs['gateway'])})")
PY
for r in $(seq 1 "$rounds"); do
    echo "== direct, round $r"; bench direct "$upstream" "$r"
    echo "== through the gateway, round $r"; bench gateway "$gateway" "$r"
done
python3 - "$out" "$rounds" "$levels" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
levels = [int(c) for c in sys.argv[3].split(",")]
def level(name, r, c):
    data = json.load(open(f"{out}/{name}-{r}.json"))
    items = data["levels"] if isinstance(data, dict) and "levels" in data else data
    return next(l for l in items if l.get("concurrency") == c)
def pick(l, key):
    for part in key.split("."): l = l[part]
    return l
print(f"\nmedians over {rounds} alternating rounds (same prompts per round)")
for c in levels:
    for key, label in [("ttft.p50_ms", "TTFT p50 ms"), ("output_token_throughput", "output tok/s")]:
        d = statistics.median(pick(level("direct", r, c), key) for r in range(1, rounds + 1))
        g = statistics.median(pick(level("gateway", r, c), key) for r in range(1, rounds + 1))
        print(f"{label:14s} at {c} streams: direct {d:9.2f}   gateway {g:9.2f}   difference {g - d:+8.2f}   ratio {g / d:5.3f}")
PY
