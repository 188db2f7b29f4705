#!/usr/bin/env bash
# The OpenAPI contract against a running server, by schemathesis (PyPI, pinned; installed in a virtual
# environment under .build/): `autoglm serve` on the default model (loopback, an API key, an admin key, a key file),
# then schemathesis generates requests for every operation of GET /openapi.json and checks every answer:
# no 5xx, the status code and content type documented, the body matching its schema.
#   scripts/e2e/schemathesis.sh .build/release/autoglm [MAX_EXAMPLES=25]
# A longer run (the documented 10,000+ cases): scripts/e2e/schemathesis.sh .build/release/autoglm 800
set -euo pipefail
cd "$(dirname "$0")/../.."
autoglm=$(realpath "${1:-.build/release/autoglm}")
examples="${2:-25}"
. scripts/e2e/lib.sh

venv="$PWD/.build/venv-schemathesis"
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q schemathesis==4.32.5
fi

cat > "$work/autoglm.yaml" <<EOF
server:
  port: $port
  api_keys: [st-user]
  admin_api_keys: [st-admin]
models:
  - name: smol
    path: $model
    context_length: 512
    max_sequences: 4
limits:
  max_tokens: 8
  max_body_bytes: 1MiB
auth:
  keys_file: $work/keys.json
  public_metrics: true
EOF
"$autoglm" serve --config "$work/autoglm.yaml" > "$work/serve.log" 2>&1 &
server=$!
wait_ready

# The admin key reaches every operation (the authorization matrix is a Swift test); load, unload, reload and key
# creation are real (an unloaded model loads again on its next request).
status=0
# From the scratch directory: schemathesis keeps a cache in the directory it runs in.
(cd "$work" && "$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer st-admin" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" --seed 1 --request-timeout 60 \
    > "$work/schemathesis.log" 2>&1) || status=$?
if [ "$status" -ne 0 ]; then
    # The failures with their reproductions (curl commands), then the summary.
    sed -n '/FAILURES/,$p' "$work/schemathesis.log" | head -n 400
else
    tail -n 25 "$work/schemathesis.log"
fi
if ! kill -0 "$server" 2>/dev/null; then
    echo "error: the server died under schemathesis" >&2
    tail -n 50 "$work/serve.log" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "error: schemathesis found failures (above)" >&2
    exit 1
fi
echo "schemathesis: OK"
