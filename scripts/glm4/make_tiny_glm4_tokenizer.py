"""tokenizer.json and tokenizer_config.json for the tiny GLM-4 fixture (Tests/Fixtures/glm4-tiny/).

The tiny model's vocabulary (256 byte tokens, letter-pair merges, the GLM-4 special tokens) is written into its
GGUFs by make_tiny_glm4.py; this writes the same vocabulary as a Hugging Face fast-tokenizer file, with the
GLM-4 pre-tokenizer (Split on GLM-4's regex, then ByteLevel), so that the safetensors directory is a complete
model directory. Python standard library only (no torch/transformers): run it whenever build_vocab changes.

    python3 scripts/glm4/make_tiny_glm4_tokenizer.py

Merges are written as ["a", "b"] pairs (tokenizers >= 0.20), the newer of the two forms HF files use.
"""
from __future__ import annotations

import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures", "glm4-tiny"))

# Must equal make_tiny_glm4.py (SPECIALS, VOCAB, build_vocab).
SPECIALS = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
            "<|assistant|>", "<|observation|>"]
VOCAB = 300
N_MERGES = VOCAB - 256 - len(SPECIALS)
GLM4_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# autoglm's built-in GLM-4 template (ChatTemplate.glm4): the glm-4-9b-chat loop without the tool block.
CHAT_TEMPLATE = ("[gMASK]<sop>{% for item in messages %}{% if item['content'] %}<|{{ item['role'] }}|>"
                 "{{ item['metadata'] }}\n{{ item['content'] }}{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_vocab() -> tuple[list[str], list[str]]:
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    merges: list[str] = []
    first = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "r e", "a n", "e n", "a t", "o r", "e s"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    candidates = first + [f"Ġ {c}" for c in letters] + [f"{a} {b}" for a in "st" for b in letters]
    seen = set(tokens)
    for m in candidates:
        if len(merges) == N_MERGES:
            break
        a, b = m.split(" ")
        if a in seen and b in seen and a + b not in seen:
            merges.append(m)
            tokens.append(a + b)
            seen.add(a + b)
    assert len(merges) == N_MERGES
    return tokens, merges


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    tokens, merges = build_vocab()
    first_special = len(tokens)
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": first_special + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, s in enumerate(SPECIALS)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": GLM4_REGEX}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": [m.split(" ") for m in merges]},
    }
    config = {
        "added_tokens_decoder": {str(first_special + i): {"content": s, "special": True} for i, s in enumerate(SPECIALS)},
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "model_max_length": 128,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
