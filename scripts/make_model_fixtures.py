"""Writes the model fixtures of clip-core's tests (clip-core/tests/fixtures/models/).

- tiny-rn.pt, tiny-vit.pt: random-weight CLIP checkpoints in OpenAI's TorchScript fp16 format
  (see clip_fixtures.py), seeds 1 and 2.
- images/*.png: test images at each tiny model's resolution (no resampling) and of other sizes.
- reference.json: for each fixture, `clip.load(path, device="cpu", jit=False)` of the reference and
  its `encode_image(preprocess(Image.open(png)))` / `encode_text(clip.tokenize(texts))`, raw.
- configs.json: for the nine released configurations, the reference's parameter and buffer counts
  and every state-dict key's shape.

Run: scripts/setup.sh --reference && ~/.cache/clip-rs/torch-2.11.0/bin/python scripts/make_model_fixtures.py
"""

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


def main():
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    torch.set_num_threads(2)
    images = {}
    for name, (w, h, seed) in {
        "square64.png": (64, 64, 10),
        "square32.png": (32, 32, 11),
        "wide300x200.png": (300, 200, 12),
        "tall90x160.png": (90, 160, 13),
    }.items():
        make_image(w, h, seed).save(os.path.join(OUT, "images", name))
        images[name] = os.path.join(OUT, "images", name)

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

    configs = {}
    for name, config in CONFIGS.items():
        params, buffers, shapes = state_dict_shapes(config)
        configs[name] = {"parameters": params, "buffers": buffers, "shapes": shapes}
    with open(os.path.join(OUT, "configs.json"), "w") as f:
        json.dump(configs, f, indent=0)


if __name__ == "__main__":
    main()
