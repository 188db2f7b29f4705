"""A GLM-4.1V vision tower (llama.cpp's mmproj GGUF, clip.projector_type glm4v) with random weights at the real
dimensions, for speed measurements: 24 blocks of 1536 wide, 12 heads, a 24x24 position table, a 4096-wide merger
(13696 intermediate). Matrices in F16 (llama.cpp's default for mmproj) or F32 / Q8_0; norms, biases, positions F32.

  python -m venv /tmp/ggvenv && /tmp/ggvenv/bin/pip install numpy gguf==0.19.0
  /tmp/ggvenv/bin/python scripts/glm4v/make_random_mmproj.py /tmp/big/mmproj-glm4v-f16.gguf [--type f16|f32|q8_0]
      [--text-stub /tmp/big/glm4v-stub.gguf]
About 1.8 GB in F16; keep it out of the repo.

--text-from GLM4.gguf --text-out OUT.gguf copies a random GLM-4-9B file of ../shared/tools/make-random-gguf (tensors
as they are, Q4_K_M or another type) into a GLM-4.1V language model: rope.dimension_sections [8, 12, 12, 0] and the
tiny fixture's tokenizer and chat template in a 151552-entry vocabulary, so that a whole image request can be timed
at 9B (weights random, so the Q/K row order does not matter).

--text-stub also writes a one-layer language model of GLM-4.1V's width (4096, M-RoPE sections [8, 12, 12]) with
the tiny fixture's tokenizer and chat template (Tests/Fixtures/glm4v-tiny), so that a server (autoglm, or
llama-server --mmproj) can take an image request on the pair and the vision tower's time dominates.
"""
import argparse
import json
import os

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType
from gguf.quants import quantize

D, HEADS, DEPTH, PATCH, IMAGE, OUT, MERGER, FF = 1536, 12, 24, 14, 336, 4096, 13696, 4096


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--type", default="f16", choices=["f16", "f32", "q8_0"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--text-stub", help="also write a one-layer 4096-wide GLM-4.1V language model here")
    ap.add_argument("--text-from", help="a random GLM-4-9B GGUF to copy into a GLM-4.1V language model (--text-out)")
    ap.add_argument("--text-out")
    a = ap.parse_args()
    if a.text_from:
        text_from(a.text_from, a.text_out)
        return
    if a.text_stub:
        text_stub(a.text_stub, np.random.default_rng(a.seed + 1))
    g = np.random.default_rng(a.seed)
    w = GGUFWriter(a.out, "clip")
    w.add_string("general.name", "glm4v-random-mmproj")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "glm4v")
    for k, v in [("projection_dim", OUT), ("image_size", IMAGE), ("patch_size", PATCH), ("embedding_length", D),
                 ("feed_forward_length", MERGER), ("block_count", DEPTH), ("attention.head_count", HEADS)]:
        w.add_uint32(f"clip.vision.{k}", v)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
    w.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])
    w.add_bool("clip.use_silu", True)
    qtype = {"f16": GGMLQuantizationType.F16, "f32": GGMLQuantizationType.F32, "q8_0": GGMLQuantizationType.Q8_0}[a.type]

    def matrix(name, rows, cols, scale=0.02, conv=None):
        arr = (g.standard_normal((rows, cols), dtype=np.float32) * scale)
        if conv:  # a convolution kernel keeps its 4D shape, as llama.cpp's converter writes it
            arr = arr.reshape(conv)
        if conv or qtype == GGMLQuantizationType.F16:
            # Convolutions stay F16 even in a Q8_0 file (their rows are not whole blocks), as llama.cpp does.
            w.add_tensor(name, arr.astype(np.float16), raw_dtype=GGMLQuantizationType.F16)
        elif qtype == GGMLQuantizationType.F32:
            w.add_tensor(name, arr, raw_dtype=GGMLQuantizationType.F32)
        else:
            w.add_tensor(name, quantize(arr, qtype), raw_dtype=qtype)

    def vector(name, n, base=0.0, scale=0.1):
        w.add_tensor(name, (base + g.standard_normal(n, dtype=np.float32) * scale).astype(np.float32), raw_dtype=GGMLQuantizationType.F32)

    matrix("v.patch_embd.weight", D, 3 * PATCH * PATCH, conv=(D, 3, PATCH, PATCH))
    matrix("v.patch_embd.weight.1", D, 3 * PATCH * PATCH, conv=(D, 3, PATCH, PATCH))
    vector("v.patch_embd.bias", D)
    vector("v.norm_embd.weight", D, 1.0)
    w.add_tensor("v.position_embd.weight", (g.standard_normal(((IMAGE // PATCH) ** 2, D), dtype=np.float32) * 0.1), raw_dtype=GGMLQuantizationType.F32)
    for i in range(DEPTH):
        b = f"v.blk.{i}."
        vector(b + "ln1.weight", D, 1.0)
        vector(b + "ln2.weight", D, 1.0)
        matrix(b + "attn_qkv.weight", 3 * D, D)
        matrix(b + "attn_out.weight", D, D)
        matrix(b + "ffn_gate.weight", FF, D)
        matrix(b + "ffn_up.weight", FF, D)
        matrix(b + "ffn_down.weight", D, FF)
    vector("v.post_ln.weight", D, 1.0)
    matrix("mm.patch_merger.weight", OUT, D * 4, conv=(OUT, D, 2, 2))
    vector("mm.patch_merger.bias", OUT)
    matrix("mm.model.fc.weight", OUT, OUT)
    vector("mm.post_norm.weight", OUT, 1.0)
    vector("mm.post_norm.bias", OUT)
    matrix("mm.gate.weight", MERGER, OUT)
    matrix("mm.up.weight", MERGER, OUT)
    matrix("mm.down.weight", OUT, MERGER)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def fixture_vocabulary(size: int):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fixture = os.path.join(root, "Tests", "Fixtures", "glm4v-tiny")
    tok = json.load(open(os.path.join(fixture, "tokenizer.json")))
    template = json.load(open(os.path.join(fixture, "tokenizer_config.json")))["chat_template"]
    vocab = [None] * size
    for t, i in tok["model"]["vocab"].items():
        vocab[i] = t
    types = [1] * size
    for added in tok["added_tokens"]:
        vocab[added["id"]] = added["content"]
        types[added["id"]] = 3
    for i in range(size):
        if vocab[i] is None:
            vocab[i], types[i] = f"[PAD{i}]", 5
    merges = tok["model"]["merges"]
    merges = merges if isinstance(merges[0], str) else [" ".join(m) for m in merges]
    return vocab, types, merges, template


def add_tokenizer(w, size: int) -> None:
    """The tiny fixture's tokenizer (byte-level BPE with GLM's special and image tokens) in `size` entries, its
    chat template, and GLM's end/turn ids."""
    vocab, types, merges, template = fixture_vocabulary(size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("glm4")
    w.add_token_list(vocab)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(290)
    w.add_bos_token_id(290)
    w.add_eot_token_id(297)
    w.add_pad_token_id(290)
    w.add_add_bos_token(False)
    w.add_chat_template(template)


def text_from(source: str, out: str) -> None:
    from gguf import GGUFReader
    r = GGUFReader(source)
    arch = "glm4"
    def scalar(key):
        f = r.fields[key]
        return f.parts[f.data[0]][0]
    size = len(r.fields["tokenizer.ggml.tokens"].data)
    w = GGUFWriter(out, arch)
    w.add_name("glm4v-9b-random")
    for key, add in [("context_length", w.add_context_length), ("embedding_length", w.add_embedding_length),
                     ("block_count", w.add_block_count), ("feed_forward_length", w.add_feed_forward_length),
                     ("attention.head_count", w.add_head_count), ("attention.head_count_kv", w.add_head_count_kv),
                     ("rope.dimension_count", w.add_rope_dimension_count)]:
        add(int(scalar(f"{arch}.{key}")))
    w.add_rope_freq_base(float(scalar(f"{arch}.rope.freq_base")))
    w.add_layer_norm_rms_eps(float(scalar(f"{arch}.attention.layer_norm_rms_epsilon")))
    w.add_rope_dimension_sections([8, 12, 12, 0])
    w.add_file_type(int(scalar("general.file_type")))
    add_tokenizer(w, size)
    for t in r.tensors:
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def text_stub(path: str, g) -> None:
    vocab_size, hidden, heads, kv, hd, ff = 320, OUT, 32, 2, 128, 13696
    size = vocab_size
    w = GGUFWriter(path, "glm4")
    w.add_name("glm4v-stub")
    w.add_context_length(32768)
    w.add_embedding_length(hidden)
    w.add_block_count(1)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hd // 2)
    w.add_rope_dimension_sections([8, 12, 12, 0])
    w.add_file_type(1)
    add_tokenizer(w, size)

    def m(name, rows, cols):
        w.add_tensor(name, (g.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16), raw_dtype=GGMLQuantizationType.F16)

    def v(name, n, base=1.0):
        w.add_tensor(name, (base + g.standard_normal(n, dtype=np.float32) * 0.1).astype(np.float32), raw_dtype=GGMLQuantizationType.F32)

    m("token_embd.weight", vocab_size, hidden)
    b = "blk.0."
    v(b + "attn_norm.weight", hidden)
    m(b + "attn_q.weight", heads * hd, hidden)
    v(b + "attn_q.bias", heads * hd, 0.0)
    m(b + "attn_k.weight", kv * hd, hidden)
    v(b + "attn_k.bias", kv * hd, 0.0)
    m(b + "attn_v.weight", kv * hd, hidden)
    v(b + "attn_v.bias", kv * hd, 0.0)
    m(b + "attn_output.weight", hidden, heads * hd)
    v(b + "post_attention_norm.weight", hidden)
    v(b + "ffn_norm.weight", hidden)
    m(b + "ffn_up.weight", 2 * ff, hidden)
    m(b + "ffn_down.weight", hidden, ff)
    v(b + "post_ffw_norm.weight", hidden)
    v("output_norm.weight", hidden)
    m("output.weight", vocab_size, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
