"""Golden fixtures for clip-core/tests/preprocess.rs.

Writes a few small deterministic test images into clip-core/tests/fixtures/preprocess/ and the
output of OpenAI's reference preprocessing, `clip.clip._transform(n)(Image.open(path))`, for them:

- `reference.safetensors`: for n = 64, the full normalised float32 tensor `[3, 64, 64]` per image
  (key `<stem>.n64`), so the Rust side is checked against torchvision's own ToTensor/Normalize
  arithmetic.
- `<stem>.n224.png`: for n = 224, the 8-bit RGB image just before ToTensor (Resize, CenterCrop,
  convert("RGB")); this script asserts that ToTensor + Normalize of it equals `_transform(224)` exactly,
  so it stands for the float tensor at a quarter of the size.

Run from the repository root with the venv of scripts/setup.sh:  $PY scripts/make_preprocess_fixtures.py
"""

from pathlib import Path

import numpy as np
import torch
from clip.clip import _transform
from PIL import Image
from safetensors.torch import save_file
from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor
from torchvision.transforms import InterpolationMode

OUT = Path(__file__).resolve().parent.parent / "clip-core" / "tests" / "fixtures" / "preprocess"


def pattern(w: int, h: int, seed: int) -> np.ndarray:
    """Smooth gradients, a sine pattern, sharp-edged shapes and a small noisy patch (u8, HxWx3)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 127.5 + 127.5 * np.sin(x / 7.0) * np.cos(y / 11.0)
    img = np.stack([r, g, b], axis=-1)
    # Sharp edges: a black/white checker block and a saturated disc (ringing makes the filter clip).
    img[h // 8 : h // 8 + 32, w // 8 : w // 8 + 32] = (
        255 * (((x[:32, :32] // 4) + (y[:32, :32] // 4)) % 2)
    )[..., None]
    disc = (x - 0.7 * w) ** 2 + (y - 0.6 * h) ** 2 < (0.15 * min(w, h)) ** 2
    img[disc] = (255, 0, 32)
    rng = np.random.default_rng(seed)
    img[h - 40 : h - 8, 8:40] = rng.integers(0, 256, size=(32, 32, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_images() -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    paths = []

    def save(im: Image.Image, name: str, **kw) -> None:
        p = OUT / name
        im.save(p, **kw)
        paths.append(p)

    save(Image.fromarray(pattern(224, 224, 1)), "rgb_224x224.png")  # no resampling at n = 224
    save(Image.fromarray(pattern(300, 200, 2)), "rgb_300x200.png")  # upsampling, horizontal crop
    save(Image.fromarray(pattern(200, 300, 3)), "rgb_200x300.png")  # upsampling, vertical crop
    save(Image.fromarray(pattern(640, 480, 4)), "rgb_640x480.png")  # downsampling (antialiased)
    save(Image.fromarray(pattern(225, 225, 5)), "rgb_225x225.png")  # odd: 225 -> 224
    save(Image.fromarray(pattern(300, 200, 6)).convert("L"), "gray_300x200.png")
    rgba = np.concatenate([pattern(300, 200, 7), np.zeros((200, 300, 1), np.uint8)], axis=-1)
    yy, xx = np.mgrid[0:200, 0:300]
    rgba[..., 3] = np.clip(255 * xx / 299 + 60 * np.sin(yy / 5.0), 0, 255).astype(np.uint8)
    rgba[:, :20, 3] = 0  # fully transparent strip: colours kept, alpha dropped
    save(Image.fromarray(rgba, "RGBA"), "rgba_300x200.png")
    save(Image.fromarray(pattern(300, 200, 8)).quantize(64), "palette_300x200.png")
    # 16-bit grey opens as "I;16"; its convert("RGB") saturates values above 255 instead of scaling.
    grey16 = pattern(300, 200, 10).astype(np.uint16)[..., 0] * 2 + pattern(300, 200, 11)[..., 2] // 2
    save(Image.fromarray(grey16), "gray16_300x200.png")
    save(Image.fromarray(pattern(300, 200, 9)), "photo_300x200.jpg", quality=90)
    return paths


def thin_pattern(w: int, h: int, seed: int) -> np.ndarray:
    """Noise with full black and white (the filter clips) for shapes too thin for `pattern`."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(h, w, 3))
    img[rng.random((h, w)) < 0.2] = 0
    img[rng.random((h, w)) < 0.2] = 255
    return img.astype(np.uint8)


def make_thin_images() -> list[Path]:
    """Extreme aspect ratios, where the Rust side resizes only what the centre crop keeps."""
    images = [
        (Image.fromarray(thin_pattern(1500, 2, 13)), "thin_1500x2.png"),  # 168000 x 224 at n = 224
        (Image.fromarray(thin_pattern(2, 1500, 14)), "thin_2x1500.png"),
        (Image.fromarray(thin_pattern(997, 13, 15)).quantize(16), "thin_palette_997x13.png"),  # NEAREST
    ]
    for im, name in images:
        im.save(OUT / name)
    return [OUT / name for _, name in images]


def make_mode_images() -> list[Path]:
    """Small files whose PIL mode is read from the header (n = 32 references only)."""
    small = pattern(64, 48, 12)
    grey = np.asarray(Image.fromarray(small).convert("L"))
    images = [
        (Image.fromarray(grey > 128), "bilevel_64x48.png", {}),  # "1": NEAREST
        (Image.fromarray(small), "trns_rgb_64x48.png", {"transparency": tuple(int(v) for v in small[20, 20])}),
        (Image.fromarray(grey), "trns_gray_64x48.png", {"transparency": int(grey[20, 20])}),
        (Image.fromarray(grey), "gray_64x48.bmp", {}),  # grey-ramp palette: "L", bicubic
        (Image.fromarray(small).quantize(16), "palette_64x48.bmp", {}),  # "P": NEAREST
    ]
    for im, name, kw in images:
        im.save(OUT / name, **kw)
    return [OUT / name for _, name, _ in images]


def main() -> None:
    for old in OUT.glob("*"):
        old.unlink()
    refs = {}
    to_float = Compose([ToTensor(), Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
    for p in make_images() + make_thin_images():
        stem = p.stem
        refs[f"{stem}.n64"] = _transform(64)(Image.open(p)).contiguous()
        # The 8-bit image the reference normalises, and a check that it stands for the float output.
        resized = Compose([Resize(224, interpolation=InterpolationMode.BICUBIC), CenterCrop(224)])(Image.open(p))
        u8 = resized.convert("RGB")
        assert torch.equal(to_float(u8), _transform(224)(Image.open(p))), stem
        u8.save(OUT / f"{stem}.n224.png")
    for p in make_mode_images():
        refs[f"{p.stem}.n32"] = _transform(32)(Image.open(p)).contiguous()
    save_file(refs, str(OUT / "reference.safetensors"))
    total = sum(f.stat().st_size for f in OUT.glob("*"))
    print(f"wrote {len(list(OUT.glob('*')))} files, {total / 1024:.0f} KiB, to {OUT}")


if __name__ == "__main__":
    main()
