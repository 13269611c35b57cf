"""Compares `clip embed` (Rust, CPU) with the reference `clip.load(path, device="cpu", jit=False)`.

    python scripts/compare_with_reference.py --weights /tmp/rn50-random.pt \
        --image a.png --image b.jpg --text "a dog" --text "a red tomato" [--clip target/release/clip]

Prints, per image and per text, the cosine similarity of the two embeddings and their maximum
relative difference, then the minimum cosine over images that need no resizing, images that do,
and texts. Exits 1 if a bound of the foundation issue is missed (texts and images at the model's
resolution: cosine >= 0.99999; resized images: >= 0.999).
"""

import argparse
import json
import subprocess
import sys

import torch
from PIL import Image

import clip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--image", action="append", default=[])
    parser.add_argument("--text", action="append", default=[])
    parser.add_argument("--clip", default="target/release/clip", help="the Rust clip binary")
    args = parser.parse_args()

    command = [args.clip, "embed", "--weights", args.weights, "--device", "cpu"]
    command += [a for p in args.image for a in ("--image", p)] + [a for t in args.text for a in ("--text", t)]
    ours = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)

    model, preprocess = clip.load(args.weights, device="cpu", jit=False)
    resolution = model.visual.input_resolution
    worst = {"image (no resize)": 1.0, "image (resized)": 1.0, "text": 1.0}
    with torch.no_grad():
        rows = []
        if args.image:
            ref = model.encode_image(torch.stack([preprocess(Image.open(p)) for p in args.image]))
            for p, r, o in zip(args.image, ref, torch.tensor(ours["image"])):
                kind = "image (no resize)" if Image.open(p).size == (resolution, resolution) else "image (resized)"
                rows.append((kind, p, r, o))
        if args.text:
            ref = model.encode_text(clip.tokenize(args.text))
            rows += [("text", t, r, o) for t, r, o in zip(args.text, ref, torch.tensor(ours["text"]))]
    for kind, what, r, o in rows:
        cos = torch.nn.functional.cosine_similarity(r, o, dim=0).item()
        rel = ((r - o).abs().max() / r.abs().max()).item()
        worst[kind] = min(worst[kind], cos)
        print(f"{kind:18} cos {cos:.8f}  max rel diff {rel:.2e}  {what}")
    bounds = {"image (no resize)": 0.99999, "image (resized)": 0.999, "text": 0.99999}
    ok = all(worst[k] >= bounds[k] for k in worst)
    for k in worst:
        print(f"min cosine, {k:18}: {worst[k]:.8f} (bound {bounds[k]})")
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
