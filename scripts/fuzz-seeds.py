#!/usr/bin/env python3
"""Seeds for scripts/fuzz.sh, one directory per target, from the repository's own fixtures and small inputs
made here: fuzz-seeds.py OUT_DIR [DEFAULT_MODEL]."""
import json
import os
import struct
import sys

out = sys.argv[1]
model = sys.argv[2] if len(sys.argv) > 2 else ""
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fixtures = os.path.join(root, "Tests", "Fixtures")


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def copy(target, path, limit=65536):
    with open(path, "rb") as f:
        put(target, os.path.basename(path), f.read(limit))


# GGUF: the tiny fixtures (whole), a small file written here, and the default model's head (its metadata).
for name in ["tiny-llama-q4_0.gguf", "tiny-llama-q8_0.gguf"]:
    copy("gguf", os.path.join(fixtures, name), 1 << 20)
def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b
kv = gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")
kv += gguf_string("llama.context_length") + struct.pack("<I", 4) + struct.pack("<I", 64)
kv += gguf_string("tokenizer.ggml.tokens") + struct.pack("<I", 9) + struct.pack("<IQ", 8, 2) + gguf_string("a") + gguf_string("b")
tensor = gguf_string("w") + struct.pack("<I", 2) + struct.pack("<QQ", 2, 2) + struct.pack("<I", 0) + struct.pack("<Q", 0)
head = b"GGUF" + struct.pack("<IQQ", 3, 1, 3) + kv + tensor
head += b"\0" * ((32 - len(head) % 32) % 32)
put("gguf", "small.gguf", head + struct.pack("<4f", 1, 2, 3, 4))
if model and os.path.exists(model):
    copy("gguf", model, 65536)

# safetensors: the vision fixture's head and a small file.
copy("safetensors", os.path.join(fixtures, "glm4v-tiny", "model.safetensors"), 65536)
header = json.dumps({"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                     "b": {"dtype": "BF16", "shape": [2], "data_offsets": [16, 20]}}).encode()
put("safetensors", "small.safetensors", struct.pack("<Q", len(header)) + header + struct.pack("<4f", 1, 2, 3, 4) + b"\x80\x3f\x00\x40")

# Request bodies.
requests = [
    {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0.7, "top_p": 0.9,
     "stop": ["\n"], "logit_bias": {"5": -100}, "logprobs": True, "top_logprobs": 2, "seed": 1, "n": 2,
     "stream": True, "stream_options": {"include_usage": True}},
    {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}],
     "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}}}],
     "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    {"prompt": ["a", "b"], "max_tokens": 3, "echo": True, "logprobs": 2, "min_p": 0.1, "top_k": 40, "repetition_penalty": 1.1,
     "stop_token_ids": [2], "ignore_eos": False, "min_tokens": 1},
    {"prompt": [[1, 2, 3], [4]], "max_completion_tokens": 2, "frequency_penalty": 0.5, "presence_penalty": -0.5},
]
for i, r in enumerate(requests):
    put("json", "request%d.json" % i, json.dumps(r))
put("json", "deep.json", "[" * 64 + "]" * 64)


# gRPC: protobuf messages written by hand (varints and length-delimited fields), as the clients send them.
def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number, value):
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def raw_bytes(*items):
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def parameter(key, value):  # map<string, InferParameter> entry
    choice = field(1, 1 if value else 0) if isinstance(value, bool) else field(2, value) if isinstance(value, int) else field(3, value)
    return field(1, key) + field(2, choice)


text_input = field(1, "text_input") + field(2, "BYTES") + field(3, 1)
put("grpc", "kserve-raw.pb", field(1, "m") + field(5, text_input) + field(7, raw_bytes(b"The capital of France is"))
    + field(4, parameter("max_tokens", 8)) + field(4, parameter("stream", True)) + field(4, parameter("stop", '["\\n"]')))
sampling = field(1, "sampling_parameters") + field(2, "BYTES") + field(3, 1)
put("grpc", "kserve-contents.pb", field(5, text_input + field(5, field(8, b"hi"))) + field(5, sampling + field(5, field(8, b'{"top_p":0.5}'))))
sampling_params = varint(2 << 3 | 5) + struct.pack("<f", 0.5) + field(3, 40) + field(8, 16) + field(9, "\n") + field(10, 2) + field(17, 2)
put("grpc", "sglang.pb", field(1, "r1") + field(2, field(2, b"".join(varint(t) for t in [1, 2, 3, 40000]))) + field(4, sampling_params)
    + field(5, 1) + field(7, 5) + field(17, 1))
put("json", "escapes.json", '{"prompt":"\\u00e9\\ud83d\\ude42\\n\\t\\"","max_tokens":1e0}')

# Chat templates: every template of the fixtures.
with open(os.path.join(fixtures, "chat-templates", "cases.json")) as f:
    for t in json.load(f)["templates"]:
        put("template", t["name"] + ".jinja", t["template"])
put("template", "features.jinja", "{% set ns = namespace(n=0) %}{% for m in messages if m.role != 'system' %}{% set ns.n = ns.n + 1 %}"
    "{{ loop.index }}:{{ m.content | trim | upper }}{% if not loop.last %}, {% endif %}{% endfor %}{{ ns.n }}"
    "{{ messages | length }}{{ 'x' * 3 }}{{ [1, 2, 3] | join('-') }}{{ {'a': 1} | tojson }}{{ raise_exception('no') if false }}")

# Tokenizer inputs.
for i, text in enumerate(["Hello, world!", "  leading spaces and\ttabs\n\nnewlines", "<|im_start|>user\nhi<|im_end|>",
                          "naïve café 🙂 日本語 عربي", "12345 67890 3.14159", "a" * 300]):
    put("tokenizer", "text%d.txt" % i, text)

# Images: the fixtures.
for name in sorted(os.listdir(os.path.join(fixtures, "glm4v-tiny", "images"))):
    copy("image", os.path.join(fixtures, "glm4v-tiny", "images", name), 65536)
