#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, from the Swift toolchain) of the parsers that read untrusted bytes:
# the GGUF reader, the safetensors header, request JSON decoding, the chat-template parser and renderer, the
# tokenizer, the PNG/JPEG decoders, and the gRPC API's request reading (KServe's tensors, SGLang's parameters). Everything is built with AddressSanitizer (Swift and the C kernels) in
# its own build directory (.build-fuzz), from seeds made here (no fixture files).
#   scripts/fuzz.sh [RUNS_PER_TARGET=20000] [TARGETS="gguf safetensors json template tokenizer image grpc"]
# Each target runs RUNS inputs (-runs), at most 60 s each in CI's short run; an input that takes over 10 s is a
# hang (-timeout=10), any crash or sanitizer report fails the script. The documented long run:
#   scripts/fuzz.sh 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20000}"
targets="${2:-gguf safetensors json template tokenizer image grpc}"
model="${AUTOGLM_MODEL_PATH:-$HOME/.cache/autoglm/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
maxtime="${AUTOGLM_FUZZ_MAX_TIME:-0}"
# libFuzzer's random seed: 0 draws one (exploring); the test command fixes it so that a run repeats.
seed="${AUTOGLM_FUZZ_SEED:-0}"

AUTOGLM_FUZZ=1 swift build -c release --build-path .build-fuzz --product autoglm-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing -Xswiftc -use-ld=lld \
    -Xcc -fsanitize=fuzzer-no-link,address
fuzzer=.build-fuzz/release/autoglm-fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/fuzz-seeds.py "$work/seeds" "$model"

for t in $targets; do
    mkdir -p "$work/corpus-$t"
    echo "== $t: $runs runs"
    args=(-runs="$runs" -seed="$seed" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1)
    [ "$maxtime" != 0 ] && args+=(-max_total_time="$maxtime")
    if ! AUTOGLM_FUZZ_TARGET="$t" AUTOGLM_FUZZ_MODEL="$model" ASAN_OPTIONS=detect_leaks=0 \
        "$fuzzer" "${args[@]}" -artifact_prefix="$work/$t-" "$work/corpus-$t" "$work/seeds/$t" > "$work/$t.log" 2>&1; then
        tail -n 60 "$work/$t.log"
        for a in "$work/$t-"*; do [ -f "$a" ] && { echo "reproducer: $a"; base64 -w0 "$a" | head -c 2000; echo; }; done
        echo "error: the $t fuzzer found a crash, a hang or a sanitizer report (above)" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$work/$t.log" | tail -n 3
done
echo "fuzz: OK"
