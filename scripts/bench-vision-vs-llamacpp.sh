#!/usr/bin/env bash
# One image request, side by side: `autoglm serve` and llama.cpp's `llama-server --mmproj` (from
# ../shared/tools/llamacpp-anchor) on the same pair of files, alternating ROUNDS times, each server alone on the
# machine. Measures the time of a chat request with one PNG and max_tokens 1 (the image decoded, resized, encoded by
# the vision tower and prefilled, one token generated: the time to the first token), and prints the medians and
# their ratio.
#   scripts/bench-vision-vs-llamacpp.sh TEXT.gguf MMPROJ.gguf IMAGE.png [ROUNDS]
# For random weights at GLM-4.1V's size: scripts/glm4v/make_random_mmproj.py MMPROJ --text-stub TEXT (a one-layer
# language model, so that the vision tower is the measurement). Pick an image both processors keep as it is (sides
# multiples of 28 within both pixel budgets, e.g. 644x1484 = 1219 image tokens) so that both encode the same patches.
set -euo pipefail
cd "$(dirname "$0")/.."
text="$1"; mmproj="$2"; image="$3"; rounds="${4:-3}"
anchor="${LLAMACPP_ANCHOR:-../shared/tools/llamacpp-anchor}"
"$anchor" build >/dev/null
swift build -c release -Xswiftc -enable-testing --product autoglm >/dev/null
server="$("$anchor" bin llama-server)"
port=8094
wait_ready() { for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return; sleep 1; done; echo "server did not start" >&2; exit 1; }
ttft() {  # prints the seconds one image request takes with max_tokens 1: decode, resize, encode, prefill, one token
    python3 - "$port" "$image" <<'PY'
import base64, json, sys, time, urllib.request
port, image = sys.argv[1], sys.argv[2]
uri = "data:image/png;base64," + base64.b64encode(open(image, "rb").read()).decode()
body = {"model": "m", "stream": False, "max_tokens": 1, "temperature": 0,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                  {"type": "text", "text": "Describe the screen."}]}]}
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
start = time.time()
with urllib.request.urlopen(req, timeout=7200) as r:
    usage = json.loads(r.read()).get("usage", {})
print(f"{time.time() - start:.2f}")
print(f"prompt_tokens {usage.get('prompt_tokens')}", file=sys.stderr)
PY
}
declare -a ours theirs
for r in $(seq 1 "$rounds"); do
    .build/release/autoglm serve --model "$text" --mmproj "$mmproj" --served-model-name m --port "$port" --threads "$(nproc)" \
        --max-sequences 1 --context 8192 --no-prefix-caching >/dev/null 2>&1 &
    pid=$!; wait_ready; t=$(ttft); ours+=("$t"); echo "round $r: autoglm serve      time to first token $t s"; kill "$pid"; wait "$pid" || true
    "$server" -m "$text" --mmproj "$mmproj" --port "$port" -t "$(nproc)" -c 8192 --parallel 1 --no-cache-prompt \
        >/dev/null 2>&1 &
    pid=$!; wait_ready; t=$(ttft); theirs+=("$t"); echo "round $r: llama-server       time to first token $t s"; kill "$pid"; wait "$pid" || true
done
python3 - "${ours[*]}" "${theirs[*]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]; b = [float(x) for x in sys.argv[2].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"median time to first token: autoglm {ma:.2f} s, llama-server {mb:.2f} s; ratio {ma / mb:.2f}x (lower is faster)")
PY
