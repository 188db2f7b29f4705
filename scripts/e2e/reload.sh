#!/usr/bin/env bash
# Hot reload under load, as a user would run it: `autoglm serve --config` (the default model, loopback),
# `autoglm bench` at 8 concurrent streams for DURATION seconds, and meanwhile RELOADS reloads by SIGHUP,
# each pointing the model at a new file (a fresh hard link, else a copy, of the default model). One SIGHUP in
# between carries a broken configuration. It checks:
#   - the bench saw 0 failed requests (a stream cut before `data: [DONE]` counts as failed);
#   - each reload took effect (a new version serves) and the old version left: one version is loaded after each, one
#     model file is mapped (the old file's weights are gone), and resident memory does not grow by a version per
#     reload (each stays within 128 MiB of the larger of before the first reload and after it; a version of this model
#     with its KV cache is about 270 MiB, and a single version's heap under this load moves by about 100 MiB);
#   - the broken configuration was refused with its key and line in the log, and the server kept serving;
#   - `autoglm rollout status` shows the events.
# Bounded waits only; the server is stopped on exit.
#   scripts/e2e/reload.sh .build/release/autoglm [DURATION=60] [RELOADS=5]
set -euo pipefail
cd "$(dirname "$0")/../.."
autoglm=$(realpath "${1:-.build/release/autoglm}")
duration="${2:-60}"
reloads="${3:-5}"
. scripts/e2e/lib.sh

newfile() {  # a new path for the same weights: a hard link where the file system allows it
    ln "$model" "$work/model-$1.gguf" 2>/dev/null || cp "$model" "$work/model-$1.gguf"
}
write_config() {  # $1: the model file; $2: extra lines (a broken key)
    cat > "$work/autoglm.yaml" <<EOF
server:
  port: $port
  admin_api_keys: [e2e-admin]
models:
  - name: smol
    path: $1
    context_length: 1024
    max_sequences: 8
    self_test:
      - prompt: "The capital of France is"
        max_tokens: 4
        expect_regex: "Paris"
rollout:
  state_file: $work/rollout.json
$2
EOF
}
rss() { awk '/^VmRSS/ {print int($2/1024)}' "/proc/$server/status"; }
status() { "$autoglm" rollout status --url "http://127.0.0.1:$port" --admin-key e2e-admin --json; }

newfile 0
write_config "$work/model-0.gguf" ""
"$autoglm" serve --config "$work/autoglm.yaml" > "$work/serve.log" 2>&1 &
server=$!
wait_ready

"$autoglm" bench --base-url "http://127.0.0.1:$port" --endpoint completions --concurrency 8 --max-duration "$duration" \
    --num-prompts 1000000 --input-len 32 --output-len 32 --request-timeout 120 --output "$work/bench.json" > "$work/bench.txt" 2>&1 &
bench=$!
interval=$(( duration / (reloads + 1) ))
sleep "$interval"
before=$(rss)
echo "resident memory before the first reload: ${before} MiB (under load)"
fail=0
for i in $(seq 1 "$reloads"); do
    if [ "$i" -eq 2 ]; then
        # A broken configuration: refused, still serving the previous one.
        write_config "$work/model-$((i - 1)).gguf" "  rollback_windw: 60s"
        kill -HUP "$server"
        for _ in $(seq 1 20); do grep -q "reload refused" "$work/serve.log" && break; sleep 0.5; done
        if grep -q "rollout.rollback_windw" "$work/serve.log" && grep -q "autoglm.yaml:1[0-9]:" "$work/serve.log"; then
            echo "broken configuration refused with its key and line"
        else
            echo "FAIL: the broken configuration was not reported with its key and line" >&2; fail=1
        fi
    fi
    newfile "$i"
    write_config "$work/model-$i.gguf" ""
    old=$(status | python3 -c 'import json,sys; print(json.load(sys.stdin)["models"][0]["stable"])')
    kill -HUP "$server"
    settled=""
    for _ in $(seq 1 120); do
        now=$(status | python3 -c 'import json,sys; m=json.load(sys.stdin)["models"][0]; print(m["stable"], len(m["versions"]))')
        if [ "${now% *}" != "$old" ] && [ "${now#* }" = 1 ] && grep -q "version=$old .*rollout: retired" "$work/serve.log"; then settled=1; break; fi
        sleep 0.5
    done
    # The retired engine returns its memory when its thread stops and the last request on it has let go: at once
    # on an idle machine, later on a busy one. Wait for it (bounded), so that only memory that never comes back fails.
    after=$(rss)
    for _ in $(seq 1 60); do
        [ "$i" -gt 1 ] && [ "$after" -le $(( before + 128 )) ] && break
        [ "$i" -eq 1 ] && { sleep 1; after=$(rss); break; }
        sleep 0.5
        after=$(rss)
    done
    mapped=$(awk '$6 ~ /\.gguf$/ {print $6}' "/proc/$server/maps" | sort -u | wc -l)
    [ "$i" -eq 1 ] && [ "$after" -gt "$before" ] && before=$after
    if [ -z "$settled" ]; then echo "FAIL: reload $i did not move the traffic off $old" >&2; fail=1; fi
    echo "reload $i: ${old} -> ${now% *}, versions loaded: ${now#* }, model files mapped: $mapped, resident memory ${after} MiB"
    if [ "$mapped" -ne 1 ]; then echo "FAIL: $mapped model files are mapped after the reload" >&2; fail=1; fi
    if [ "$after" -gt $(( before + 128 )) ]; then echo "FAIL: memory grew by a version (${after} > ${before} + 128 MiB)" >&2; fail=1; fi
    sleep "$interval"
done
wait "$bench"
python3 - "$work/bench.json" <<'EOF' || fail=1
import json, sys
levels = json.load(open(sys.argv[1]))
levels = levels.get("levels", levels) if isinstance(levels, dict) else levels
r = levels[0]
print(f"bench: {r['completed']} completed, {r['failed']} failed in {r.get('duration_s', 0):.0f} s at 8 concurrent streams")
if r["failed"] != 0 or r["completed"] == 0:
    print("FAIL: requests failed during the reloads:", r.get("errors"), file=sys.stderr)
    sys.exit(1)
EOF
events=$(status | python3 -c 'import json,sys; e=json.load(sys.stdin)["events"]; print(" ".join(x["kind"] for x in e))')
for kind in loaded switched retired reload_failed; do
    case " $events " in *" $kind "*) ;; *) echo "FAIL: no '$kind' event in the rollout status" >&2; fail=1 ;; esac
done
[ "$fail" -eq 0 ] || { tail -30 "$work/serve.log" >&2; exit 1; }
echo "hot reload under load: OK"
