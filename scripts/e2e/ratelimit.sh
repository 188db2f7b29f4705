#!/usr/bin/env bash
# Per-key budgets as a client sees them: `autoglm serve` with a key file, a key created by `autoglm keys create
# --requests-per-minute RPM`, then 4 concurrent clients sending one-token completions with that key for
# SECONDS; every request is answered 200 or 429 (with Retry-After), and the 200s in each minute are within 5%
# of RPM. Then the audit log's chain verifies, and an edited line is found.
#   scripts/e2e/ratelimit.sh .build/release/autoglm [RPM=120] [SECONDS=60]
set -euo pipefail
cd "$(dirname "$0")/../.."
autoglm=$(realpath "${1:-.build/release/autoglm}")
rpm="${2:-120}"
seconds="${3:-60}"
. scripts/e2e/lib.sh

cat > "$work/autoglm.yaml" <<EOF
server:
  port: $port
models:
  - name: smol
    path: $model
    context_length: 256
    max_sequences: 4
auth:
  keys_file: $work/keys.json
  audit_log: $work/audit.jsonl
EOF
key=$("$autoglm" keys create --config "$work/autoglm.yaml" --name ratelimit --role user --requests-per-minute "$rpm" 2>/dev/null)
"$autoglm" serve --config "$work/autoglm.yaml" > "$work/serve.log" 2>&1 &
server=$!
wait_ready

python3 - "$port" "$key" "$rpm" "$seconds" <<'PY'
import http.client, json, sys, threading, time
port, key, rpm, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
body = json.dumps({"model": "smol", "prompt": "Hi", "max_tokens": 1})
ok, refused, other, lock = [], [], [], threading.Lock()
start = time.monotonic()
def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() - start < seconds:
        conn.request("POST", "/v1/completions", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        t = time.monotonic() - start
        with lock:
            if r.status == 200: ok.append(t)
            elif r.status == 429 and r.getheader("Retry-After"): refused.append(t)
            else: other.append(r.status)
        if r.status == 429:
            time.sleep(0.05)
threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
minutes = max(1, int(seconds // 60))
print(f"4 clients, {seconds:.0f} s, budget {rpm}/min: {len(ok)} admitted, {len(refused)} refused with Retry-After, {len(other)} other")
bad = other[:5]
for m in range(minutes):
    n = sum(1 for t in ok if m * 60 <= t < (m + 1) * 60)
    print(f"minute {m + 1}: {n} admitted ({100 * (n - rpm) / rpm:+.1f}% of the budget)")
    if abs(n - rpm) > 0.05 * rpm: bad.append(f"minute {m + 1}: {n}")
if bad:
    print("error:", bad, file=sys.stderr)
    sys.exit(1)
PY

# The audit log: one line per request, chained; an edited line is found.
lines=$(wc -l < "$work/audit.jsonl")
"$autoglm" audit verify "$work/audit.jsonl"
sed -i '3s/"status":200/"status":201/; 3s/"status":429/"status":200/' "$work/audit.jsonl"
if "$autoglm" audit verify "$work/audit.jsonl" 2> "$work/verify.err"; then
    echo "error: an edited audit line was not detected" >&2
    exit 1
fi
echo "edited audit log refused: $(cat "$work/verify.err")"
echo "rate limit and audit: OK ($lines audit lines)"
