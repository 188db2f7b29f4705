#!/usr/bin/env python3
"""Writes a JSONL bench dataset of one prompt repeated N times (default 40): after the first request,
every prompt is fully in the server's prefix cache, so TTFT measures what a cached prompt costs.
    scripts/bench-cached-prompt.jsonl.py OUT.jsonl [N] [WORDS]"""
import json, sys

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
words = int(sys.argv[3]) if len(sys.argv) > 3 else 120
text = " ".join(["The report describes the river, the town and the people who live along its banks."] * (words // 15 + 1))
text = " ".join(text.split()[:words])
with open(out, "w") as f:
    for _ in range(n):
        f.write(json.dumps({"prompt": text, "max_tokens": 4}) + "\n")
