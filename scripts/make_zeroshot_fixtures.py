"""Writes the zero-shot fixtures of clip-core's tests (clip-core/tests/fixtures/zeroshot/).

For each tiny random-weight checkpoint of the model fixtures (tiny-rn.pt, tiny-vit.pt, OpenAI's
TorchScript format; see make_model_fixtures.py), the reference (openai-clip 1.0.1,
`clip.load(path, device="cpu", jit=False)`) computes:

- the class weights of the vendored lists (clip-core/assets/zeroshot/: OpenAI's 1 000 ImageNet
  class names and 80 templates) exactly as OpenAI's notebook "Prompt Engineering for ImageNet"
  does (`zeroshot_classifier`: per class, `encode_text(clip.tokenize([template.format(c) for
  template in templates]))`, rows normalised, mean, normalised) -> class_weights.safetensors, one
  [1000, embed_dim] fp32 tensor per model;
- for a few images, the logits as `CLIP.forward` makes them (`logit_scale.exp()` times the
  normalised image features times the class weights), their softmax and its top 5 -> reference.json
  (`top5` indices and probabilities; `margin`: the smallest gap between consecutive logits among
  the top 6, so a reader can see how far the top-5 order is from a tie).

The images: a 224x224 and two resized PNGs of the preprocessing fixtures, and the model fixtures'
image at each tiny model's own resolution (no resampling, as a 224x224 image is for a 224 model).

Run: scripts/setup.sh --reference && ~/.cache/clip-rs/torch-2.11.0/bin/python scripts/make_zeroshot_fixtures.py
Re-running writes the same files (the CPU kernels are deterministic for a given torch and machine).
"""

import json
import os

import torch
from PIL import Image
from safetensors.torch import save_file

import clip

ROOT = os.path.join(os.path.dirname(__file__), "..")
FIXTURES = os.path.join(ROOT, "clip-core", "tests", "fixtures")
ASSETS = os.path.join(ROOT, "clip-core", "assets", "zeroshot")
OUT = os.path.join(FIXTURES, "zeroshot")
# Relative to clip-core/tests/fixtures/.
IMAGES = ["preprocess/rgb_224x224.png", "preprocess/rgb_300x200.png", "preprocess/rgb_640x480.png"]
OWN_RESOLUTION = {"tiny-rn": "models/images/square64.png", "tiny-vit": "models/images/square32.png"}


def read_list(name):
    with open(os.path.join(ASSETS, name), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def zeroshot_classifier(model, classnames, templates):
    """OpenAI's notebook, as published ([embed_dim, classes] there; returned [classes, embed_dim])."""
    with torch.no_grad():
        zeroshot_weights = []
        for classname in classnames:
            texts = [template.format(classname) for template in templates]
            texts = clip.tokenize(texts)
            class_embeddings = model.encode_text(texts)
            class_embeddings /= class_embeddings.norm(dim=-1, keepdim=True)
            class_embedding = class_embeddings.mean(dim=0)
            class_embedding /= class_embedding.norm()
            zeroshot_weights.append(class_embedding)
        zeroshot_weights = torch.stack(zeroshot_weights, dim=1)
    return zeroshot_weights.t().contiguous()


def main():
    torch.set_num_threads(2)
    classnames = read_list("imagenet_classes.txt")
    templates = read_list("openai_templates.txt")
    assert len(classnames) == 1000 and len(templates) == 80
    os.makedirs(OUT, exist_ok=True)
    weights = {}
    reference = {"labels": "imagenet", "templates": "openai", "models": {}}
    for name in ("tiny-rn", "tiny-vit"):
        path = os.path.join(FIXTURES, "models", f"{name}.pt")
        model, preprocess = clip.load(path, device="cpu", jit=False)
        w = zeroshot_classifier(model, classnames, templates)
        weights[name] = w
        entry = {
            "file": f"models/{name}.pt",
            "logit_scale": model.logit_scale.item(),
            "scale": model.logit_scale.exp().item(),
            "images": [],
        }
        for image in IMAGES + [OWN_RESOLUTION[name]]:
            with torch.no_grad():
                features = model.encode_image(preprocess(Image.open(os.path.join(FIXTURES, image))).unsqueeze(0))
                features = features / features.norm(dim=-1, keepdim=True)
                logits = model.logit_scale.exp() * features @ w.t()
                probs = logits.softmax(dim=-1)
            values, indices = probs[0].topk(5)
            top6 = logits[0].topk(6).values
            entry["images"].append({
                "image": image,
                "top5": indices.tolist(),
                "probabilities": values.tolist(),
                "margin": (top6[:-1] - top6[1:]).min().item(),
            })
            print(name, image, indices.tolist(), [round(v, 5) for v in values.tolist()],
                  "margin", entry["images"][-1]["margin"])
        reference["models"][name] = entry
    save_file(weights, os.path.join(OUT, "class_weights.safetensors"),
              metadata={"what": "zeroshot_classifier(model, imagenet classes, openai templates), [classes, embed_dim]"})
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
