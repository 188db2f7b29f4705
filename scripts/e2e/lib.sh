# Sourced by the end-to-end scripts that start their own `autoglm serve`: the default model's path, a scratch
# directory `$work` removed on exit (with `$server`, when set, stopped first), a free loopback `$port`, and a
# bounded wait for the server's readiness.
model="${AUTOGLM_MODEL_PATH:-$HOME/.cache/autoglm/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$model" ] || { echo "error: the default model is missing at $model (scripts/setup-model.sh)" >&2; exit 1; }

work=$(mktemp -d)
server=""
e2e_cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap e2e_cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# Waits up to 60 s for GET /ready; stops the script with the server's log if it exits or never gets ready.
wait_ready() {
    for _ in $(seq 1 120); do
        curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && return 0
        kill -0 "$server" 2>/dev/null || { tail -n 30 "$work/serve.log" >&2; echo "error: serve exited" >&2; exit 1; }
        sleep 0.5
    done
    tail -n 30 "$work/serve.log" >&2
    echo "error: the server did not become ready" >&2
    exit 1
}
