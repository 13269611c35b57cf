"""Golden fixtures for clip-app/tests/probes.rs (the robustness probes of `clip compare`).

Writes two small deterministic RGB test images into clip-core/tests/fixtures/probes/ and, for each,
what the reference libraries make of it, as lossless PNGs:

- `<stem>.blur<SIGMA>.png`: torchvision 0.26's `F.gaussian_blur(img, [k, k], [SIGMA, SIGMA])` on
  the PIL image, with k = 2 * ceil(3 * SIGMA) + 1 (`clip compare`'s `blur:SIGMA`);
- `<stem>.down<K>.png`: Pillow's `img.resize((w // K, h // K), BICUBIC).resize((w, h), BICUBIC)`
  (`down:K`);
- `<stem>.rotate<DEG>.png`: torchvision's `F.rotate(img, DEG, BILINEAR, fill=0)` on the PIL image,
  i.e. Pillow's `img.rotate(DEG, BILINEAR, fillcolor=(0, 0, 0))` (`rotate:DEG` averages the scores
  of +DEG and -DEG).

Run from the repository root with the venv of scripts/setup.sh:  $PY scripts/make_probe_fixtures.py
"""

import math
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

OUT = Path(__file__).resolve().parent.parent / "clip-core" / "tests" / "fixtures" / "probes"

SIGMAS = [0.7, 1.0, 1.5]
FACTORS = [2, 3]
ANGLES = [5.0, -5.0, 30.0]


def pattern(w: int, h: int, seed: int) -> np.ndarray:
    """Gradients, a sine pattern, a checker block, a saturated disc and a noisy patch (u8, HxWx3)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack(
        [255 * x / (w - 1), 255 * y / (h - 1), 127.5 + 127.5 * np.sin(x / 3.0) * np.cos(y / 5.0)],
        axis=-1,
    )
    img[4:20, 4:20] = (255 * (((x[:16, :16] // 3) + (y[:16, :16] // 3)) % 2))[..., None]
    disc = (x - 0.7 * w) ** 2 + (y - 0.6 * h) ** 2 < (0.2 * min(w, h)) ** 2
    img[disc] = (255, 0, 32)
    rng = np.random.default_rng(seed)
    img[h - 20 : h - 4, 4:20] = rng.integers(0, 256, size=(16, 16, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def kernel_size(sigma: float) -> int:
    return 2 * math.ceil(3 * sigma) + 1


def main() -> None:
    assert torchvision.__version__.startswith("0.26"), torchvision.__version__
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, (w, h, seed) in {"wide_96x64": (96, 64, 1), "odd_45x67": (45, 67, 2)}.items():
        img = Image.fromarray(pattern(w, h, seed))
        img.save(OUT / f"{stem}.png")
        for sigma in SIGMAS:
            k = kernel_size(sigma)
            out = F.gaussian_blur(img, [k, k], [sigma, sigma])
            assert out.mode == "RGB" and out.size == img.size
            out.save(OUT / f"{stem}.blur{sigma:g}.png")
        for factor in FACTORS:
            small = img.resize((w // factor, h // factor), Image.BICUBIC)
            out = small.resize((w, h), Image.BICUBIC)
            out.save(OUT / f"{stem}.down{factor}.png")
        for angle in ANGLES:
            out = F.rotate(img, angle, InterpolationMode.BILINEAR, fill=0)
            pil = img.rotate(angle, Image.BILINEAR, fillcolor=(0, 0, 0))
            assert np.array_equal(np.asarray(out), np.asarray(pil))
            out.save(OUT / f"{stem}.rotate{angle:g}.png")
    print(f"wrote {len(list(OUT.glob('*.png')))} PNGs to {OUT} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
