"""Writes the model fixtures of clip-core's tests (clip-core/tests/fixtures/models/).

- tiny-rn.pt, tiny-vit.pt: random-weight CLIP checkpoints in OpenAI's TorchScript fp16 format
  (see clip_fixtures.py), seeds 1 and 2.
- images/*.png: test images at each tiny model's resolution (no resampling) and of other sizes.
- reference.json: for each fixture, `clip.load(path, device="cpu", jit=False)` of the reference and
  its `encode_image(preprocess(Image.open(png)))` / `encode_text(clip.tokenize(texts))`, raw.
- reference_fp16.json: the same images and texts through the reference in its fp16 form on the CPU:
  `clip.model.build_model(state_dict)` of the checkpoint (its `convert_weights` leaves conv, linear and
  attention weights and the projections in fp16; LayerNorm computes in fp32), `.eval()`, without the
  `.float()` that `clip.load` applies on the CPU; `encode_image` (which casts the preprocessed batch to
  fp16) and `encode_text`, fp16 outputs written as exact floats. `vs_fp32` holds their max abs
  difference and min cosine against reference.json's values.
- configs.json: for the nine released configurations, the reference's parameter and buffer counts
  and every state-dict key's shape.

Run: scripts/setup.sh --reference && ~/.cache/clip-rs/torch-2.11.0/bin/python scripts/make_model_fixtures.py
Re-running writes the same reference.json, configs.json and images byte for byte; the .pt files hold the
same tensors but not the same bytes (`torch.jit.save` writes a random serialization id and debug records),
so to leave the committed checkpoints alone, `--fp16-only` writes reference_fp16.json alone, from them.
"""

import argparse
import json
import os

import numpy as np
import torch
from PIL import Image

import clip
from clip_fixtures import CONFIGS, TINY, random_clip, save_openai_format, state_dict_shapes

OUT = os.path.join(os.path.dirname(__file__), "..", "clip-core", "tests", "fixtures", "models")
TEXTS = [
    "A cute golden retriever",
    "A snow-covered mountain peak",
    "A bright red tomato",
    "",
    "a photo of a cat, 3 dogs & 12 birds!",
]


def make_image(width, height, seed):
    """Smooth gradients, noise and a sharp edge, so resampling differences show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin((x + y) / 7.0)], axis=-1)
    base[: height // 3, : width // 2] = [0.9, 0.1, 0.2]
    noisy = base + rng.normal(0.0, 0.08, base.shape)
    return Image.fromarray((np.clip(noisy, 0, 1) * 255).round().astype(np.uint8), "RGB")


IMAGES = {
    "square64.png": (64, 64, 10),
    "square32.png": (32, 32, 11),
    "wide300x200.png": (300, 200, 12),
    "tall90x160.png": (90, 160, 13),
}


def fp16_reference(path, images, reference):
    """The reference's fp16 model on the CPU (build_model without `.float()`) on `images` and TEXTS."""
    _, preprocess = clip.load(path, device="cpu", jit=False)
    state_dict = torch.jit.load(path, map_location="cpu").eval().state_dict()  # as clip.load reads it
    model = clip.model.build_model(state_dict).to("cpu").eval()
    assert model.dtype == torch.float16
    with torch.no_grad():
        batch = torch.stack([preprocess(Image.open(p)) for p in images.values()])
        image_features = model.encode_image(batch)
        text_features = model.encode_text(clip.tokenize(TEXTS))
    assert image_features.dtype == text_features.dtype == torch.float16
    stats = {}
    for kind, fp16 in (("image_features", image_features), ("text_features", text_features)):
        fp32 = torch.tensor(reference[kind])
        stats[kind] = {
            "max_abs_diff": (fp16.float() - fp32).abs().max().item(),
            "min_cosine": torch.nn.functional.cosine_similarity(fp16.float(), fp32, dim=-1).min().item(),
        }
    return {
        "file": os.path.basename(path),
        "images": list(images),
        "image_features": image_features.float().tolist(),
        "text_features": text_features.float().tolist(),
        "vs_fp32": stats,
    }


def write_fp16(images, reference):
    fp16 = {
        "texts": TEXTS,
        "what": "clip.model.build_model(state_dict) (fp16 weights, fp32 LayerNorm), eval, CPU, no .float()",
        "models": {
            name: fp16_reference(os.path.join(OUT, entry["file"]), images, entry)
            for name, entry in reference["models"].items()
        },
    }
    with open(os.path.join(OUT, "reference_fp16.json"), "w") as f:
        json.dump(fp16, f)
    for name, entry in fp16["models"].items():
        print(name, json.dumps(entry["vs_fp32"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp16-only", action="store_true",
                        help="write reference_fp16.json alone, from the committed checkpoints and reference.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    images = {name: os.path.join(OUT, "images", name) for name in IMAGES}
    if args.fp16_only:
        with open(os.path.join(OUT, "reference.json")) as f:
            write_fp16(images, json.load(f))
        return

    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    for name, (w, h, seed) in IMAGES.items():
        make_image(w, h, seed).save(images[name])

    reference = {"texts": TEXTS, "tokens": clip.tokenize(TEXTS).tolist(), "models": {}}
    for seed, (name, config) in enumerate(TINY.items(), start=1):
        path = os.path.join(OUT, f"{name}.pt")
        save_openai_format(random_clip(config, seed), path)
        model, preprocess = clip.load(path, device="cpu", jit=False)
        with torch.no_grad():
            batch = torch.stack([preprocess(Image.open(p)) for p in images.values()])
            image_features = model.encode_image(batch)
            text_features = model.encode_text(clip.tokenize(TEXTS))
        reference["models"][name] = {
            "file": f"{name}.pt",
            "seed": seed,
            "config": [list(c) if isinstance(c, tuple) else c for c in config],
            "images": list(images),
            "image_features": image_features.tolist(),
            "text_features": text_features.tolist(),
        }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f)
    write_fp16(images, reference)

    configs = {}
    for name, config in CONFIGS.items():
        params, buffers, shapes = state_dict_shapes(config)
        configs[name] = {"parameters": params, "buffers": buffers, "shapes": shapes}
    with open(os.path.join(OUT, "configs.json"), "w") as f:
        json.dump(configs, f, indent=0)


if __name__ == "__main__":
    main()
