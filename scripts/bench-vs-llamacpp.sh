#!/usr/bin/env bash
# Side-by-side engine speed against llama.cpp (the anchor) on the same GGUF and thread counts:
# pp512 (prompt processing) and tg128 (decode), alternating the two programs run by run and taking
# the median of each, because the machine is shared and noisy.
#
#   scripts/bench-vs-llamacpp.sh [ROUNDS] [THREADS...]     # default: 5 rounds, threads 1 and 2
#   MODEL=file.gguf TESTS="pp128 pp512 tg32" scripts/bench-vs-llamacpp.sh 3 2   # another file, other tests
# (9B-class files with random weights: ../shared/tools/make-random-gguf.)
# Needs ../shared/tools/llamacpp-anchor (or LLAMACPP_ANCHOR=path) to set up llama.cpp.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-5}"; shift || true
threads=("${@:-1 2}"); [ $# -gt 0 ] || threads=(1 2)
anchor="${LLAMACPP_ANCHOR:-$root/../shared/tools/llamacpp-anchor}"
model="${MODEL:-$("$root/scripts/setup-model.sh")}"
read -r -a tests <<< "${TESTS:-pp512 tg128}"
"$anchor" build >/dev/null
bench="$("$anchor" bin llama-bench)"
export LD_LIBRARY_PATH="$(dirname "$bench")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The same flags as scripts/test.sh, so that the two share one build.
swift build -c release -Xswiftc -enable-testing --package-path "$root" --product autoglm >/dev/null
ours="$root/.build/release/autoglm"

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
llama() { # test threads -> tok/s
  local p=0 n=0; case "$1" in pp*) p=${1#pp};; tg*) n=${1#tg};; esac
  "$bench" -m "$model" -t "$2" -p "$p" -n "$n" -r 1 -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])'
}
autoglm() {
  local p=0 n=0; case "$1" in pp*) p=${1#pp};; tg*) n=${1#tg};; esac
  "$ours" bench-engine -m "$model" -t "$2" -p "$p" -n "$n" -r 1 --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["tokens_per_second"])'
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u +%Y-%m-%d)"
echo "model: $(basename "$model"); $rounds alternating rounds per cell; medians in tok/s"
echo
echo "| test | threads | llama.cpp | autoglm | ratio |"
echo "| --- | ---: | ---: | ---: | ---: |"
for t in "${threads[@]}"; do
  for test in "${tests[@]}"; do
    a=(); b=()
    for ((r = 0; r < rounds; r++)); do
      a+=("$(llama "$test" "$t")")
      b+=("$(autoglm "$test" "$t")")
    done
    ma=$(printf '%s\n' "${a[@]}" | median); mb=$(printf '%s\n' "${b[@]}" | median)
    printf '| %s | %s | %.1f | %.1f | %.2fx |\n' "$test" "$t" "$ma" "$mb" "$(awk -v a="$ma" -v b="$mb" "BEGIN {print b / a}")"
  done
done
