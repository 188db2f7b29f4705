#!/usr/bin/env bash
# The deployment and monitoring files against the real tools:
#   0. the Kubernetes manifests (deploy/kubernetes) validate with `kubernetes-validate --strict` (PyPI, in a venv under
#      .build) against Kubernetes 1.31, all of deploy/ is `yamllint --strict` clean, the autoglm configurations in the
#      ConfigMaps pass `autoglm config check`; `systemd-analyze verify` passes the systemd unit
#      (deploy/systemd/autoglm.service) without a message;
#   1. promtool (Debian's `prometheus` package, installed here when missing) checks and unit-tests the alert rules
#      (deploy/prometheus/autoglm-alerts.yml and its .test.yml);
#   2. an `autoglm serve` (the default model, loopback) and a gateway in front of it (`serve --upstream`) answer a
#      few requests; `promtool check metrics` finds no problem in either /metrics, and every autoglm_ series that the
#      alert rules and the Grafana dashboard (deploy/grafana/autoglm-dashboard.json) query is there;
#   3. a Prometheus started here scrapes it, loads the rules, answers a PromQL query for the request counter that
#      moved, and evaluates every query of the dashboard.
# Bounded waits only; everything it starts is stopped on exit.
#   scripts/e2e/deploy.sh .build/release/autoglm
set -euo pipefail
cd "$(dirname "$0")/../.."
autoglm="${1:-.build/release/autoglm}"
rules=deploy/prometheus/autoglm-alerts.yml

autoglm=$(realpath "$autoglm")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
missing=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (for this check)" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

echo "== Kubernetes manifests: kubernetes-validate --strict (1.31), yamllint, autoglm config check"
venv=.build/deploy-venv
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/yamllint" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kubernetes-validate==1.31.0 yamllint==1.38.0
fi
"$venv/bin/yamllint" --strict -c .yamllint.yaml deploy
# The CRD-based ones (ServiceMonitor, ScaledObject) are not in Kubernetes' schemas; kustomization files are not
# resources.
manifests=$(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml ! -name servicemonitor.yaml ! -name scaledobject.yaml | sort)
"$venv/bin/kubernetes-validate" --strict --quiet -k 1.31.0 $manifests
# Those two against their CRDs' own schemas, when the CRD files are at hand (CI cannot fetch them: see
# scripts/check-crd-manifests.py); AUTOGLM_CRD_FILES: their paths, space-separated.
if [ -n "${AUTOGLM_CRD_FILES:-}" ]; then
    "$venv/bin/python" scripts/check-crd-manifests.py $AUTOGLM_CRD_FILES
fi
for k in deploy/kubernetes/*/kustomization.yaml; do
    "$venv/bin/python" - "$k" <<'PY'
import os, sys, yaml
k = sys.argv[1]
missing = [r for r in yaml.safe_load(open(k))["resources"] if not os.path.exists(os.path.join(os.path.dirname(k), r))]
if missing: sys.exit(f"error: {k} lists files that do not exist: {missing}")
PY
done
for f in $manifests; do
    "$venv/bin/python" - "$f" "$work/config-check.yaml" <<'PY' || exit 1
import sys, yaml
found = [d["data"]["autoglm.yaml"] for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "ConfigMap" and "autoglm.yaml" in d.get("data", {})]
open(sys.argv[2], "w").write(found[0] if found else "")
sys.exit(0)
PY
    if [ -s "$work/config-check.yaml" ]; then "$autoglm" config check "$work/config-check.yaml" >/dev/null || { echo "error: the autoglm configuration in $f" >&2; exit 1; }; fi
done
echo "ok: $(echo $manifests | wc -w) manifest files"

echo "== systemd-analyze verify deploy/systemd/autoglm.service"
unit_dir=$(mktemp -d)
# The unit names the installed binary; verify the built one in its place (verify checks that it exists).
sed "s#/usr/local/bin/autoglm#$autoglm#g" deploy/systemd/autoglm.service >"$unit_dir/autoglm.service"
verify=$(systemd-analyze verify "$unit_dir/autoglm.service" 2>&1) || { echo "$verify" >&2; exit 1; }
rm -rf "$unit_dir"
# It exits 0 on a setting it ignores: any message is a failure.
[ -z "$verify" ] || { echo "error: systemd-analyze verify: $verify" >&2; exit 1; }
echo "ok"

echo "== promtool check rules / test rules"
promtool check rules "$rules"
(cd deploy/prometheus && promtool test rules autoglm-alerts.test.yml)

server_pid=""; gateway_pid=""; prometheus_pid=""
cleanup() {
    [ -n "$prometheus_pid" ] && kill "$prometheus_pid" 2>/dev/null || true
    [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {  # URL SECONDS
    for _ in $(seq 1 "$2"); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 1; done
    echo "error: $1 did not answer within $2 s" >&2; return 1
}

port=$(free_port)
"$autoglm" serve --port "$port" >"$work/serve.log" 2>&1 &
server_pid=$!
wait_for "http://127.0.0.1:$port/ready" 120 || { tail -20 "$work/serve.log" >&2; exit 1; }
request() {
    curl -sf "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
        -d '{"model":"smollm2-135m-instruct","prompt":"Hello","max_tokens":2,"temperature":0}' >/dev/null
}
for _ in 1 2 3; do request; done
# A gateway in front of it, so that the upstream series exist too.
gport=$(free_port)
"$autoglm" serve --port "$gport" --upstream "smollm2-135m-instruct=http://127.0.0.1:$port/v1" >"$work/gateway.log" 2>&1 &
gateway_pid=$!
wait_for "http://127.0.0.1:$gport/ready" 60 || { tail -20 "$work/gateway.log" >&2; exit 1; }
curl -sf "http://127.0.0.1:$gport/v1/completions" -H 'content-type: application/json' \
    -d '{"model":"smollm2-135m-instruct","prompt":"Hello","max_tokens":2,"temperature":0}' >/dev/null

echo "== promtool check metrics on the server's and the gateway's /metrics"
for p in "$port" "$gport"; do
    curl -sf "http://127.0.0.1:$p/metrics" >"$work/metrics-$p.txt"
    if ! promtool check metrics <"$work/metrics-$p.txt" >"$work/lint.txt" 2>&1 || [ -s "$work/lint.txt" ]; then
        echo "error: promtool check metrics found problems on port $p:" >&2; cat "$work/lint.txt" >&2; exit 1
    fi
done
echo "ok"

echo "== every autoglm_ series the alert rules and the dashboard query exists"
python3 - "$rules" deploy/grafana/autoglm-dashboard.json "$work/metrics-$port.txt" "$work/metrics-$gport.txt" <<'PY'
import json, re, sys
rules, dashboard = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
families = set()
for path in sys.argv[3:]:
    families |= set(re.findall(r"^# TYPE (\S+) ", open(path).read(), re.M))
series = set()
for f in families:
    series |= {f, f + "_bucket", f + "_sum", f + "_count"}
def exprs(panels):
    for p in panels:
        yield from (t["expr"] for t in p.get("targets", []))
        yield from exprs(p.get("panels", []))
queries = list(exprs(dashboard["panels"])) + [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
for name, text in (("alert rules", rules), ("dashboard", "\n".join(queries))):
    used = set(re.findall(r"\bautoglm_[a-z0-9_]+", text))
    missing = sorted(used - series)
    if missing:
        sys.exit(f"error: the {name} query series /metrics does not have: {', '.join(missing)}")
    print(f"ok: the {name} query {len(used)} series, all exposed ({len(families)} families)")
PY

echo "== a real Prometheus scrapes it and answers PromQL"
prom_port=$(free_port)
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/$rules
scrape_configs:
  - job_name: autoglm
    static_configs:
      - targets: ["127.0.0.1:$port"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prometheus_pid=$!
wait_for "http://127.0.0.1:$prom_port/-/ready" 60 || { tail -20 "$work/prometheus.log" >&2; exit 1; }
query() {  # PROMQL -> the first sample's value, or nothing
    curl -sf "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
# The counter must move between two scrapes: the requests made so far, then two more.
before=""
for _ in $(seq 1 30); do before=$(query 'sum(autoglm_http_requests_total{route="/v1/completions",status="200"})'); [ -n "$before" ] && break; sleep 1; done
[ -n "$before" ] || { echo "error: Prometheus has no autoglm_http_requests_total after 30 s" >&2; tail -20 "$work/prometheus.log" >&2; exit 1; }
request; request
after="$before"
for _ in $(seq 1 30); do
    after=$(query 'sum(autoglm_http_requests_total{route="/v1/completions",status="200"})')
    python3 -c "import sys; sys.exit(0 if float('${after:-0}') >= float('$before') + 2 else 1)" && break
    sleep 1
done
python3 -c "import sys; sys.exit(0 if float('${after:-0}') >= float('$before') + 2 else 1)" \
    || { echo "error: the request counter did not move in Prometheus ($before -> $after)" >&2; exit 1; }
up=$(query 'up{job="autoglm"}')
[ "$up" = "1" ] || { echo "error: up{job=\"autoglm\"} is '$up'" >&2; exit 1; }
loaded=$(curl -sf "http://127.0.0.1:$prom_port/api/v1/rules" | python3 -c 'import json,sys; print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))')
[ "$loaded" -ge 6 ] || { echo "error: Prometheus loaded $loaded alert rules, expected 6" >&2; exit 1; }
echo "ok: Prometheus scraped autoglm (up 1), the request counter moved $before -> $after, $loaded alert rules loaded"
# Every dashboard query parses and evaluates in this Prometheus (Grafana's variables given plain values).
python3 - deploy/grafana/autoglm-dashboard.json "$prom_port" <<'PY'
import json, sys, urllib.parse, urllib.request
dashboard, port = json.load(open(sys.argv[1])), sys.argv[2]
def exprs(panels):
    for p in panels:
        yield from ((p["title"], t["expr"]) for t in p.get("targets", []))
        yield from exprs(p.get("panels", []))
count = 0
for title, expr in exprs(dashboard["panels"]):
    q = expr.replace("$__rate_interval", "1m").replace("$model", ".*")
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        answer = json.load(urllib.request.urlopen(url, timeout=10))
    except urllib.error.HTTPError as e:
        sys.exit(f"error: the dashboard panel '{title}' has a query Prometheus refuses: {q}: {e.read().decode()[:300]}")
    if answer.get("status") != "success":
        sys.exit(f"error: the dashboard panel '{title}': {answer}")
    count += 1
print(f"ok: all {count} dashboard queries evaluate in Prometheus")
PY
