"""Reference outputs for clip-core/tests/augment.rs and clip-core/tests/optimize.rs.

Writes clip-core/tests/fixtures/augment/:
- image.bin: a 1x3x40x48 float32 test image (little-endian, C order) with distinct values per pixel
  and an asymmetric pattern, so rotation sign, translation direction, scale centre and flip all show;
- affine.json (the cases) and affine.bin (their outputs, float32 [cases, 1, 3, H, W]): for several
  fixed (angle, translate, scale, flip) cases, torchvision's
  F.affine(img, angle, [tx, ty], scale, [0.0, 0.0], interpolation=NEAREST, fill=[0.0]*3)
  (what RandomAffine.forward calls with get_params' draw) followed by F.hflip when flipped
  (RandomHorizontalFlip);
- adam.json: torch.optim.Adam([x], lr=0.05) (default betas and eps, as the seed) on a small
  non-quadratic problem for 5 steps with clamp_(0, 1) after each, the parameter after every step.

Run with the reference environment: $PY scripts/make_augment_fixtures.py
"""
import json
import os

import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

OUT = os.path.join(os.path.dirname(__file__), "..", "clip-core", "tests", "fixtures", "augment")
os.makedirs(OUT, exist_ok=True)

H, W = 40, 48
g = torch.Generator().manual_seed(7)
image = torch.rand(1, 3, H, W, generator=g)
# An asymmetric bright block in the top-left quadrant: any wrong sign or direction moves it.
image[:, :, 4:12, 6:16] = 1.0
image = image.contiguous()
image.numpy().astype("<f4").tofile(os.path.join(OUT, "image.bin"))

CASES = [
    # angle (degrees), (tx, ty) whole pixels, scale, flip
    (0.0, (0, 0), 1.0, False),
    (0.0, (0, 0), 1.0, True),
    (10.0, (0, 0), 1.0, False),
    (-10.0, (0, 0), 1.0, False),
    (0.0, (5, 0), 1.0, False),
    (0.0, (0, -4), 1.0, False),
    (0.0, (0, 0), 0.9, False),
    (0.0, (0, 0), 1.1, False),
    (7.3, (-3, 2), 1.07, True),
    (-4.1, (4, -5), 0.93, False),
    (9.99, (-5, -4), 0.9, True),
    (-2.5, (1, 3), 1.1, False),
]

cases, outputs = [], []
for angle, (tx, ty), scale, flip in CASES:
    out = F.affine(image, angle, [tx, ty], scale, [0.0, 0.0], interpolation=InterpolationMode.NEAREST,
                   fill=[0.0] * 3)
    if flip:
        out = F.hflip(out)
    cases.append(dict(angle=angle, translate=[tx, ty], scale=scale, flip=flip))
    outputs.append(out)
json.dump(dict(shape=[1, 3, H, W], cases=cases), open(os.path.join(OUT, "affine.json"), "w"), indent=1)
torch.stack(outputs).numpy().astype("<f4").tofile(os.path.join(OUT, "affine.bin"))

# Adam, as the seed uses it: torch.optim.Adam([image], lr=0.05); loss.backward(); opt.step(); clamp_(0, 1).
x = torch.tensor([[0.5, 0.2, 0.9], [0.1, 0.7, 0.35]], requires_grad=True)
target = torch.tensor([[0.3, 0.8, 0.1], [0.6, 0.0, 0.9]])
opt = torch.optim.Adam([x], lr=0.05)
steps = []
for _ in range(5):
    opt.zero_grad()
    loss = ((x - target) ** 2 * torch.arange(1.0, 7.0).view(2, 3)).sum() + torch.sin(3 * x).sum()
    loss.backward()
    opt.step()
    with torch.no_grad():
        x.clamp_(0, 1)
    steps.append(x.detach().flatten().tolist())
json.dump(dict(initial=[[0.5, 0.2, 0.9], [0.1, 0.7, 0.35]], target=target.tolist(), lr=0.05, steps=steps),
          open(os.path.join(OUT, "adam.json"), "w"), indent=1)
print("wrote", os.path.abspath(OUT))
