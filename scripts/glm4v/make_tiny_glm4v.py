"""Tiny random-weight GLM-4.1V (transformers Glm4vForConditionalGeneration), test images, and reference outputs.

Writes, under Tests/Fixtures/glm4v-tiny/ (or --out):
  config.json, model.safetensors,      the Hugging Face model directory (float32 weights, transformers 5 layout:
  preprocessor_config.json,            rope settings in text_config.rope_parameters), with the tiny GLM-4
  tokenizer.json, tokenizer_config.json, generation_config.json   tokenizer plus the image tokens
  config-v4.json                       the same config in the layout the published checkpoints use
                                       (transformers 4.5x: rope_scaling.mrope_section, rope_theta and
                                       partial_rotary_factor at the top of text_config)
  glm4v-tiny-f32.gguf                  the text model as llama.cpp's converter writes it (arch glm4,
                                       rope.dimension_sections, rotary rows of q/k permuted to NeoX order)
  mmproj-glm4v-tiny-f32.gguf           the vision tower as llama.cpp's mmproj (clip.projector_type glm4v)
  images/*.png, images/*.jpg           small test images of odd sizes (RGB, RGBA, grey, palette; JPEG)
  pixels-NAME.f32                      transformers' pixel_values for each image (PIL backend), row-major
  vision-NAME.f32                      the vision tower's output (image tokens x text width) for each image
  reference.json                       grids, token counts, 3D position ids, rope delta, logits at every
                                       position and the greedy continuation of fixed multimodal prompts

Needs torch, torchvision, transformers, safetensors, numpy, pillow, gguf (a throw-away venv; never in CI):
  python -m venv /tmp/glm-venv && /tmp/glm-venv/bin/pip install torch torchvision transformers safetensors numpy pillow gguf==0.19.0
  /tmp/glm-venv/bin/python scripts/glm4v/make_tiny_glm4v.py
Deterministic: fixed seeds; images are drawn from a seeded generator.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
from importlib import metadata as im

import numpy as np
import torch
from PIL import Image

import gguf
from gguf import GGUFWriter, GGMLQuantizationType, LlamaFileType
from transformers import Glm4vConfig, Glm4vForConditionalGeneration
from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

SEED = 20261206
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(ROOT, "Tests", "Fixtures", "glm4v-tiny")
GLM4_TINY = os.path.join(ROOT, "Tests", "Fixtures", "glm4-tiny")

VOCAB = 320
IMAGE_START, IMAGE_END, IMAGE, VIDEO_START, VIDEO_END, VIDEO = 300, 301, 302, 303, 304, 305
EXTRA_SPECIALS = {IMAGE_START: "<|begin_of_image|>", IMAGE_END: "<|end_of_image|>", IMAGE: "<|image|>",
                  VIDEO_START: "<|begin_of_video|>", VIDEO_END: "<|end_of_video|>", VIDEO: "<|video|>"}
GMASK, SOP, SYSTEM, USER, ASSISTANT, EOT = 292, 294, 296, 297, 298, 290

# A long context, so that the phone agent's real request (a long system prompt, max_tokens 3000) fits.
TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=8192, rms_norm_eps=1e-5, attention_bias=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                             "mrope_section": [2, 1, 1]})
VISION = dict(depth=2, hidden_size=48, num_heads=4, out_hidden_size=64, intermediate_size=96, image_size=112,
              patch_size=14, spatial_merge_size=2, temporal_patch_size=2, rms_norm_eps=1e-5, hidden_act="silu",
              attention_bias=False)
# Pixel budget (both temporal copies counted, as smart_resize does): 1 to 16 merged image tokens.
PREPROCESSOR = {"size": {"shortest_edge": 2 * 28 * 28, "longest_edge": 2 * 28 * 28 * 16}, "patch_size": 14,
                "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711], "do_resize": True, "do_rescale": True,
                "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True, "resample": 3,
                "image_processor_type": "Glm4vImageProcessor", "processor_class": "Glm4vProcessor"}


# GLM-4.1V's chat template, in the shape of the published one (zai-org/GLM-4.1V-9B-Thinking): images and videos as
# content items of user turns, each written as begin / placeholder / end tokens that the processor expands.
CHAT_TEMPLATE = """[gMASK]<sop>
{%- for msg in messages %}
    {%- if msg.role == 'system' %}
<|system|>
{{ msg.content }}
    {%- elif msg.role == 'user' %}
<|user|>{{ '\\n' }}
        {%- if msg.content is string %}
{{ msg.content }}
        {%- else %}
            {%- for item in msg.content %}
                {%- if item.type == 'video' or 'video' in item %}
<|begin_of_video|><|video|><|end_of_video|>
                {%- elif item.type == 'image' or 'image' in item %}
<|begin_of_image|><|image|><|end_of_image|>
                {%- elif item.type == 'text' %}
{{ item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
    {%- elif msg.role == 'assistant' %}
<|assistant|>
{{ msg.content }}
    {%- endif %}
{%- endfor %}
{% if add_generation_prompt %}<|assistant|>
{% endif %}"""


def make_screenshot(path: str) -> None:
    """A 1080x2400 phone screenshot's shape (what the phone agent sends): a status bar, cards and buttons."""
    img = Image.new("RGB", (1080, 2400), (245, 245, 245))
    px = np.array(img)
    px[0:80] = (30, 30, 30)
    for i, y in enumerate(range(200, 2200, 300)):
        px[y:y + 220, 60:1020] = (255, 255, 255)
        px[y + 40:y + 180, 100:240] = ((37 * i) % 256, 120, 200)
    px[2250:2400] = (20, 20, 20)
    Image.fromarray(px).save(path, optimize=True)


def make_images(out: str) -> dict[str, str]:
    """Odd sizes and every colour type the server meets: RGB, RGBA, grey, palette PNGs and a JPEG."""
    g = np.random.default_rng(SEED)
    d = os.path.join(out, "images")
    os.makedirs(d, exist_ok=True)

    def picture(w: int, h: int) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / (w + h)], axis=-1)
        return np.clip(base + g.normal(0, 30, base.shape), 0, 255).astype(np.uint8)

    files = {
        "rgb61x45.png": Image.fromarray(picture(61, 45), "RGB"),
        "rgba37x53.png": Image.fromarray(np.dstack([picture(37, 53), g.integers(0, 256, (53, 37), dtype=np.uint8)]), "RGBA"),
        "grey200x150.png": Image.fromarray(picture(200, 150)[:, :, 0], "L"),
        "palette20x30.png": Image.fromarray(picture(20, 30), "RGB").convert("P", palette=Image.ADAPTIVE, colors=16),
        "photo83x59.jpg": Image.fromarray(picture(83, 59), "RGB"),
    }
    paths = {}
    for name, img in files.items():
        path = os.path.join(d, name)
        if name.endswith(".jpg"):
            img.save(path, quality=90)
        else:
            img.save(path, optimize=False)
        paths[name] = path
    return paths


def randomize(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn_like(p))
            elif "position_embedding" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    return model


def write_tokenizer(out: str, config: Glm4vConfig) -> None:
    tok = json.load(open(os.path.join(GLM4_TINY, "tokenizer.json")))
    for i, content in EXTRA_SPECIALS.items():
        tok["added_tokens"].append({"id": i, "content": content, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": True})
    json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False, indent=1)
    tc = json.load(open(os.path.join(GLM4_TINY, "tokenizer_config.json")))
    for i, content in EXTRA_SPECIALS.items():
        tc.setdefault("added_tokens_decoder", {})[str(i)] = {"content": content, "special": True}
    tc["chat_template"] = CHAT_TEMPLATE
    json.dump(tc, open(os.path.join(out, "tokenizer_config.json"), "w"), indent=1)
    json.dump({"eos_token_id": [EOT, USER, 299], "pad_token_id": EOT, "do_sample": False},
              open(os.path.join(out, "generation_config.json"), "w"), indent=1)


def v4_config(c: dict) -> dict:
    """The published checkpoints' layout (transformers 4.5x)."""
    c = json.loads(json.dumps(c))
    t = c["text_config"]
    rp = t.pop("rope_parameters")
    t["rope_theta"] = rp["rope_theta"]
    t["partial_rotary_factor"] = rp["partial_rotary_factor"]
    t["rope_scaling"] = {"type": "default", "rope_type": "default", "mrope_section": rp["mrope_section"]}
    c["vision_config"].pop("rope_parameters", None)
    return c


def neox_rotary_rows(w: np.ndarray, heads: int, head_dim: int, rot: int) -> np.ndarray:
    """llama.cpp's Glm4Model with M-RoPE: per head, the even rotary rows first, then the odd ones."""
    shape = w.shape
    r = w.reshape(heads, head_dim, -1)
    rot_part = r[:, :rot]
    out = np.concatenate([rot_part[:, 0::2], rot_part[:, 1::2], r[:, rot:]], axis=1)
    return out.reshape(shape)


def write_text_gguf(model, path: str) -> None:
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    t = TEXT
    hd, rot = t["head_dim"], int(t["head_dim"] * t["rope_parameters"]["partial_rotary_factor"])
    tokens = json.load(open(os.path.join(GLM4_TINY, "tokenizer.json")))
    vocab = [None] * VOCAB
    for s, i in tokens["model"]["vocab"].items():
        vocab[i] = s
    for a in tokens["added_tokens"]:
        vocab[a["id"]] = a["content"]
    for i, s in EXTRA_SPECIALS.items():
        vocab[i] = s
    types = [1 if i < 290 else 3 for i in range(VOCAB)]
    for i in range(VOCAB):
        if vocab[i] is None:
            vocab[i] = f"[PAD{i}]"
            types[i] = 5
    w = GGUFWriter(path, "glm4")
    w.add_name("glm4v-tiny")
    w.add_context_length(t["max_position_embeddings"])
    w.add_embedding_length(t["hidden_size"])
    w.add_block_count(t["num_hidden_layers"])
    w.add_feed_forward_length(t["intermediate_size"])
    w.add_head_count(t["num_attention_heads"])
    w.add_head_count_kv(t["num_key_value_heads"])
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_freq_base(t["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(t["rms_norm_eps"])
    w.add_rope_dimension_count(rot)
    w.add_rope_dimension_sections(t["rope_parameters"]["mrope_section"] + [0])
    w.add_file_type(int(LlamaFileType.ALL_F32))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("glm4")
    w.add_token_list(vocab)
    w.add_token_types(types)
    w.add_token_merges(tokens["model"]["merges"] if isinstance(tokens["model"]["merges"][0], str)
                       else [" ".join(m) for m in tokens["model"]["merges"]])
    w.add_eos_token_id(EOT)
    w.add_bos_token_id(EOT)
    w.add_eot_token_id(USER)
    w.add_pad_token_id(EOT)
    w.add_add_bos_token(False)
    p = "model.language_model."

    def put(name: str, arr: np.ndarray) -> None:
        w.add_tensor(name, np.ascontiguousarray(arr.astype(np.float32)), raw_dtype=GGMLQuantizationType.F32)

    put("token_embd.weight", sd[p + "embed_tokens.weight"])
    for i in range(t["num_hidden_layers"]):
        q, b = f"{p}layers.{i}.", f"blk.{i}."
        put(b + "attn_norm.weight", sd[q + "input_layernorm.weight"])
        for proj, name, heads in (("q", "attn_q", t["num_attention_heads"]), ("k", "attn_k", t["num_key_value_heads"]),
                                  ("v", "attn_v", None)):
            for kind in ("weight", "bias"):
                arr = sd[f"{q}self_attn.{proj}_proj.{kind}"]
                put(f"{b}{name}.{kind}", neox_rotary_rows(arr, heads, hd, rot) if heads else arr)
        put(b + "attn_output.weight", sd[q + "self_attn.o_proj.weight"])
        put(b + "post_attention_norm.weight", sd[q + "post_self_attn_layernorm.weight"])
        put(b + "ffn_norm.weight", sd[q + "post_attention_layernorm.weight"])
        put(b + "ffn_up.weight", sd[q + "mlp.gate_up_proj.weight"])
        put(b + "ffn_down.weight", sd[q + "mlp.down_proj.weight"])
        put(b + "post_ffw_norm.weight", sd[q + "post_mlp_layernorm.weight"])
    put("output_norm.weight", sd[p + "norm.weight"])
    put("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_mmproj(model, path: str) -> None:
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    v = VISION
    w = GGUFWriter(path, "clip")
    w.add_string("general.name", "glm4v-tiny-mmproj")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "glm4v")
    w.add_uint32("clip.vision.projection_dim", TEXT["hidden_size"])
    w.add_uint32("clip.vision.image_size", v["image_size"])
    w.add_uint32("clip.vision.patch_size", v["patch_size"])
    w.add_uint32("clip.vision.embedding_length", v["hidden_size"])
    w.add_uint32("clip.vision.feed_forward_length", v["intermediate_size"])
    w.add_uint32("clip.vision.block_count", v["depth"])
    w.add_uint32("clip.vision.attention.head_count", v["num_heads"])
    w.add_float32("clip.vision.attention.layer_norm_epsilon", v["rms_norm_eps"])
    w.add_array("clip.vision.image_mean", PREPROCESSOR["image_mean"])
    w.add_array("clip.vision.image_std", PREPROCESSOR["image_std"])
    w.add_bool("clip.use_silu", True)
    p = "model.visual."

    def put(name: str, arr: np.ndarray) -> None:
        w.add_tensor(name, np.ascontiguousarray(arr.astype(np.float32)), raw_dtype=GGMLQuantizationType.F32)

    conv = sd[p + "patch_embed.proj.weight"]  # [out, C, T=2, 14, 14]
    put("v.patch_embd.weight", conv[:, :, 0])
    put("v.patch_embd.weight.1", conv[:, :, 1])
    put("v.patch_embd.bias", sd[p + "patch_embed.proj.bias"])
    put("v.norm_embd.weight", sd[p + "post_conv_layernorm.weight"])
    put("v.position_embd.weight", sd[p + "embeddings.position_embedding.weight"])
    for i in range(v["depth"]):
        q, b = f"{p}blocks.{i}.", f"v.blk.{i}."
        put(b + "attn_qkv.weight", sd[q + "attn.qkv.weight"])
        put(b + "attn_out.weight", sd[q + "attn.proj.weight"])
        put(b + "ln1.weight", sd[q + "norm1.weight"])
        put(b + "ln2.weight", sd[q + "norm2.weight"])
        put(b + "ffn_gate.weight", sd[q + "mlp.gate_proj.weight"])
        put(b + "ffn_up.weight", sd[q + "mlp.up_proj.weight"])
        put(b + "ffn_down.weight", sd[q + "mlp.down_proj.weight"])
    put("v.post_ln.weight", sd[p + "post_layernorm.weight"])
    put("mm.patch_merger.weight", sd[p + "downsample.weight"])
    put("mm.patch_merger.bias", sd[p + "downsample.bias"])
    put("mm.model.fc.weight", sd[p + "merger.proj.weight"])
    put("mm.post_norm.weight", sd[p + "merger.post_projection_norm.weight"])
    put("mm.post_norm.bias", sd[p + "merger.post_projection_norm.bias"])
    put("mm.gate.weight", sd[p + "merger.gate_proj.weight"])
    put("mm.up.weight", sd[p + "merger.up_proj.weight"])
    put("mm.down.weight", sd[p + "merger.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def prompt(grids: list[list[int]], texts: list[list[int]]) -> list[int]:
    """[gMASK]<sop><|user|>\\n text0 <image> text1 <image> ... <|assistant|>\\n: each image expanded."""
    ids = [GMASK, SOP, USER, 10]
    for i, text in enumerate(texts):
        ids += text
        if i < len(grids):
            t, h, w = grids[i]
            ids += [IMAGE_START] + [IMAGE] * (t * h * w // 4) + [IMAGE_END]
    return ids + [ASSISTANT, 10]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    out = ap.parse_args().out
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    torch.manual_seed(SEED)
    config = Glm4vConfig(text_config=TEXT, vision_config=VISION, image_token_id=IMAGE, image_start_token_id=IMAGE_START,
                         image_end_token_id=IMAGE_END, video_token_id=VIDEO, video_start_token_id=VIDEO_START,
                         video_end_token_id=VIDEO_END, tie_word_embeddings=False)
    model = randomize(Glm4vForConditionalGeneration(config).float().eval())
    model.save_pretrained(out, safe_serialization=True)
    cfg = json.load(open(os.path.join(out, "config.json")))
    json.dump(v4_config(cfg), open(os.path.join(out, "config-v4.json"), "w"), indent=1)
    json.dump(PREPROCESSOR, open(os.path.join(out, "preprocessor_config.json"), "w"), indent=1)
    write_tokenizer(out, config)
    write_text_gguf(model, os.path.join(out, "glm4v-tiny-f32.gguf"))
    write_mmproj(model, os.path.join(out, "mmproj-glm4v-tiny-f32.gguf"))

    proc = Glm4vImageProcessorPil(**{k: v for k, v in PREPROCESSOR.items() if k not in ("image_processor_type", "processor_class")})
    try:
        from transformers.models.glm4v.image_processing_glm4v import Glm4vImageProcessor
        torchvision_proc = Glm4vImageProcessor(**{k: v for k, v in PREPROCESSOR.items() if k not in ("image_processor_type", "processor_class")})
    except Exception:  # noqa: BLE001
        torchvision_proc = None
    reference: dict = {
        "generator": "scripts/glm4v/make_tiny_glm4v.py",
        "versions": {k: im.version(k) for k in ("torch", "torchvision", "transformers", "gguf", "numpy", "pillow")},
        "images": {}, "prompts": {},
    }
    grids = {}
    pixels = {}
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    make_screenshot(os.path.join(out, "images", "screen1080x2400.png"))
    with torch.no_grad():
        for name, path in make_images(out).items():
            img = Image.open(path)
            rgb = img.convert("RGB")
            feat = proc(images=[rgb], return_tensors="pt")
            pv, grid = feat["pixel_values"].float(), feat["image_grid_thw"][0].tolist()
            stem = os.path.splitext(name)[0]
            pv.numpy().astype("<f4").tofile(os.path.join(out, f"pixels-{stem}.f32"))
            emb = model.model.get_image_features(pv, torch.tensor([grid]))
            emb = emb.pooler_output if hasattr(emb, "pooler_output") else emb
            emb = torch.cat(list(emb), 0) if isinstance(emb, (list, tuple)) else emb
            emb.float().numpy().astype("<f4").tofile(os.path.join(out, f"vision-{stem}.f32"))
            entry = {"file": f"images/{name}", "size": [img.width, img.height], "mode": img.mode, "grid_thw": grid,
                     "patches": int(pv.shape[0]), "image_tokens": grid[0] * grid[1] * grid[2] // 4,
                     "pixel_sum": float(pv.double().sum())}
            if torchvision_proc is not None:
                tv = torchvision_proc(images=[rgb], return_tensors="pt")["pixel_values"].float()
                entry["torchvision_max_abs_diff"] = float((tv - pv).abs().max()) if tv.shape == pv.shape else None
            reference["images"][name] = entry
            grids[name], pixels[name] = grid, pv

        prompts = {
            "one_image": (["rgb61x45.png"], [list(b"Look: "), list(b" what?")]),
            "two_images": (["grey200x150.png", "photo83x59.jpg"], [list(b"A"), list(b"B"), list(b"which?")]),
            "text_only": ([], [list(b"Hello, GLM!")]),
        }
        for pname, (imgs, texts) in prompts.items():
            ids = prompt([grids[n] for n in imgs], texts)
            kwargs = {}
            if imgs:
                kwargs["pixel_values"] = torch.cat([pixels[n] for n in imgs], 0)
                kwargs["image_grid_thw"] = torch.tensor([grids[n] for n in imgs])
            input_ids = torch.tensor([ids])
            mm = torch.tensor([[1 if t == IMAGE else 0 for t in ids]])
            pos, delta = model.model.get_rope_index(input_ids, mm, kwargs.get("image_grid_thw"), None)
            logits = model(input_ids=input_ids, mm_token_type_ids=mm, **kwargs).logits[0].float().numpy()
            gen = model.generate(input_ids=input_ids, mm_token_type_ids=mm, max_new_tokens=8, min_new_tokens=8,
                                 do_sample=False, eos_token_id=None, pad_token_id=EOT,
                                 return_dict_in_generate=True, output_scores=True, **kwargs)
            cont = gen.sequences[0, len(ids):].tolist()
            steps = [logits[p] for p in range(len(ids))] + [s[0].float().numpy() for s in gen.scores]
            margin = min(float(np.diff(np.sort(r)[-2:])[0]) for r in steps)
            assert margin > 1e-3, f"{pname}: argmax margin {margin} too small"
            logits.astype("<f4").tofile(os.path.join(out, f"logits-{pname}.f32"))
            reference["prompts"][pname] = {"images": imgs, "input_ids": ids, "position_ids": pos[:, 0].tolist(),
                                           "rope_delta": int(delta[0, 0]), "greedy": cont, "margin": margin}
    json.dump(reference, open(os.path.join(out, "reference.json"), "w"), indent=1)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk not in ("pixel_sum",)} for k, v in reference["images"].items()}, indent=1))
    print({k: (len(v["input_ids"]), v["rope_delta"], v["greedy"]) for k, v in reference["prompts"].items()})


if __name__ == "__main__":
    main()
