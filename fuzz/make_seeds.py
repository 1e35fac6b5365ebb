#!/usr/bin/env python3
"""Writes the generated seed inputs of the fuzz harnesses (scripts/fuzz.sh runs it).

  make_seeds.py OUT_DIR [ASSETS_DIR]

OUT_DIR/tokenizer_json_fuzz: a tiny byte-level BPE written here (ids 0..255 are the bytes, a few
merges and added tokens), and when the test assets exist (scripts/fetch_test_assets.sh) the real
Qwen3 / Llama 3 tokenizer.json files cut down to their first 400 ids and the merges among them,
keeping their normalizer, Split regexes, post-processor and a few added tokens, each followed by
its tokenizer_config.json (marker line "#tokenizer_config.json", as the harness reads them).
OUT_DIR/chat_template_fuzz: the real chat templates of those tokenizer configs.
OUT_DIR/safetensors_header_fuzz: small safetensors files laid out as Hugging Face writes them
(header padded to 8 bytes with spaces, tensors by descending element size), one with shards'
__metadata__, one with an empty tensor and a scalar.
The real files are far larger than a fuzzer's inputs should be; the cut keeps their structure.
"""
import json
import os
import struct
import sys

CONFIG_MARKER = "\n#tokenizer_config.json\n"


def byte_char(b):
    """GPT-2's byte -> printable character map."""
    n = 0
    for x in range(256):
        keep = 33 <= x <= 126 or 161 <= x <= 172 or 174 <= x <= 255
        cp = x if keep else 256 + n
        if not keep:
            n += 1
        if x == b:
            return chr(cp)
    raise ValueError(b)


def tiny_tokenizer():
    vocab = {byte_char(b): b for b in range(256)}
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (byte_char(32), "w")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = [
        {"id": 300, "content": "<|end|>", "special": True, "lstrip": False, "rstrip": False,
         "single_word": False, "normalized": False},
        {"id": 301, "content": "<m>", "special": False, "lstrip": True, "rstrip": True,
         "single_word": False, "normalized": False},
        {"id": 302, "content": "cat", "special": False, "lstrip": False, "rstrip": False,
         "single_word": True, "normalized": False},
    ]
    return {
        "version": "1.0", "added_tokens": added, "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }


def cut_tokenizer(tok, keep_ids=400, keep_added=8):
    model = tok["model"]
    vocab = {t: i for t, i in model["vocab"].items() if i < keep_ids}
    merges = []
    for m in model["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    out = dict(tok)
    out["model"] = dict(model, vocab=vocab, merges=merges)
    out["added_tokens"] = tok["added_tokens"][:keep_added]
    return out


def cut_config(cfg):
    cfg = {k: v for k, v in cfg.items() if k not in ("added_tokens_decoder", "chat_template")}
    return cfg


def safetensors(tensors, metadata=None):
    """A safetensors image of `tensors`: (name, dtype, shape, element size) in layout order."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, elem in tensors:
        n = elem
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(range(256)) * (offset // 256) + bytes(
        range(offset % 256))


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    out = sys.argv[1]
    assets = sys.argv[2] if len(sys.argv) > 2 else os.path.expanduser("~/.cache/chainrl/assets")
    tok_dir = os.path.join(out, "tokenizer_json_fuzz")
    tmpl_dir = os.path.join(out, "chat_template_fuzz")
    os.makedirs(tok_dir, exist_ok=True)
    os.makedirs(tmpl_dir, exist_ok=True)
    st_dir = os.path.join(out, "safetensors_header_fuzz")
    os.makedirs(st_dir, exist_ok=True)
    with open(os.path.join(st_dir, "model.safetensors"), "wb") as f:
        f.write(safetensors([("lm_head.weight", "F32", [4, 8], 4),
                             ("model.embed_tokens.weight", "BF16", [4, 8], 2),
                             ("model.norm.weight", "F16", [8], 2), ("step", "I64", [], 8),
                             ("mask", "BOOL", [3], 1)], {"format": "pt"}))
    with open(os.path.join(st_dir, "shard.safetensors"), "wb") as f:
        f.write(safetensors([("a", "F64", [2, 0, 3], 8), ("b", "U8", [5], 1),
                             ("c", "F8_E4M3", [1, 1, 2], 1)],
                            {"format": "pt", "total_size": "7"}))
    tiny = json.dumps(tiny_tokenizer(), ensure_ascii=False)
    write(os.path.join(tok_dir, "tiny"), tiny)
    write(os.path.join(tok_dir, "tiny-config"),
          tiny + CONFIG_MARKER + json.dumps({"bos_token": "<|end|>", "eos_token": "<|end|>"}))
    found = 0
    for model in ("qwen3", "llama3", "llama3_1"):
        d = os.path.join(assets, model)
        try:
            with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
                tok = json.load(f)
            with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
        except OSError:
            continue
        found += 1
        cut = json.dumps(cut_tokenizer(tok), ensure_ascii=False)
        write(os.path.join(tok_dir, model), cut + CONFIG_MARKER + json.dumps(cut_config(cfg)))
        if isinstance(cfg.get("chat_template"), str):
            write(os.path.join(tmpl_dir, model + ".jinja"), cfg["chat_template"])
    print(f"fuzz seeds: {found} real tokenizers from {assets}"
          + ("" if found else " (none: run scripts/fetch_test_assets.sh for more seeds)"))


if __name__ == "__main__":
    main()
