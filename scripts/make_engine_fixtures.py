"""Reference values for the Rust engine's image parameterisations and Lucent transforms.

Writes clip-core/tests/fixtures/engine/:
- engine.safetensors (float32): the parameterisations of torch-lucent 0.1.8 (PyPI `torch-lucent`),
  computed by Lucent's own functions with their random initial values overwritten by fixed ones:
  `lucent.optvis.param.spatial.fft_image` / `pixel_image` and `lucent.optvis.param.color.to_valid_rgb`
  (what `lucent.optvis.param.image(w, h, batch, fft, decorrelate)` composes), for (h, w) in
  (32, 32), (24, 37), (31, 20), batch 2, decay_power 1.0 and 1.5 for the FFT ones: the parameters,
  the rendered image, a fixed weight G and the gradient of sum(image * G) with respect to the
  parameters, and the `scale` tensor fft_image builds;
- engine_transforms.safetensors (float32): `lucent.optvis.transform`'s jitter, random_scale,
  random_rotate and pad on fixed draws, random_scale's output also through torchvision 0.26.0's
  `transforms.functional.center_crop` back to the input size, and VQGAN-CLIP's MakeCutouts
  crop-and-resample (`F.interpolate(..., mode="bilinear", align_corners=False)`) on fixed crops;
- engine.json: every case (name, what, settings, draws, shapes) and the keys of its tensors, with
  the file that holds them.

Two tensor files because one would be over 1 MB (the parameterisation cases alone are about 0.8 MB).

Lucent's draws are fixed without re-implementing Lucent: random_scale and random_rotate are given a
one-element list, so their `np.random.choice` returns that value; jitter's two `np.random.choice(d)`
draws (dx first, then dy) are patched to return the case's values. Lucent's random_scale/pad
arguments (the upsampled size and F.pad's list) are recorded by wrapping torch.nn.functional.pad.
Lucent 0.1.8's transforms run on kornia 0.4.1 (its pin `kornia<=0.4.1`), which imports and runs
under torch 2.11 (with deprecation warnings for torch.jit.script), so kornia's own
`translate`, `get_rotation_matrix2d` and `warp_affine` are what compute these values.

Run: scripts/setup.sh --reference (installs torch-lucent 0.1.8, kornia 0.4.1 and safetensors), then
    ~/.cache/clip-rs/torch-2.11.0/bin/python scripts/make_engine_fixtures.py
"""

import json
import os
import warnings
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF
from safetensors.torch import save_file

warnings.filterwarnings("ignore", category=DeprecationWarning)  # kornia 0.4.1's torch.jit.script calls
warnings.filterwarnings("ignore", category=UserWarning)

import kornia  # noqa: E402
import lucent  # noqa: E402
from lucent.optvis import transform  # noqa: E402
from lucent.optvis.param import color, spatial  # noqa: E402
from lucent.optvis.param.images import image as lucent_image  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "clip-core", "tests", "fixtures", "engine")
PARAM_FILE, TRANSFORM_FILE = "engine.safetensors", "engine_transforms.safetensors"
SHAPES = [(32, 32), (24, 37), (31, 20)]  # (h, w): even square, odd width, odd height
DECAYS = [1.0, 1.5]
BATCH = 2
SD = 0.01  # Lucent's default; the initial draw it scales is overwritten below
# The fixed parameter values: larger than Lucent's sd=0.01 so that the images span the sigmoid's
# range and every step of the rendering shows in them.
FFT_AMPLITUDE, PIXEL_AMPLITUDE = 0.1, 0.5
# What kornia 0.4.1's warp_affine does (checked against grid_sample when this was written): it maps
# pixels to [-1, 1] with 2 / (d - 1) (the align_corners=True convention) but samples with
# align_corners=False, so its pixel matrices act scaled.
KORNIA_NOTE = (
    "kornia 0.4.1 warp_affine: bilinear, zeros outside, and pixels normalised with 2/(d-1) while "
    "affine_grid/grid_sample use align_corners=False; in pixel-centre coordinates c = index + 0.5 the "
    "source of output c is s * Minv(c / s), s = (W/(W-1), H/(H-1)), Minv = inverse of the pixel matrix M; "
    "so jitter(dx, dy) shifts by (dx*W/(W-1), dy*H/(H-1)) pixels, not whole pixels"
)


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def lucent_version():
    try:
        from importlib.metadata import version

        return version("torch-lucent")
    except Exception:  # noqa: BLE001
        return getattr(lucent, "__version__", "unknown")


def parameterisations(tensors, cases):
    assert str(spatial.device) == "cpu", "run on a machine without CUDA (Lucent picks cuda:0 when it can)"
    g = torch.Generator().manual_seed(20261130)
    for h, w in SHAPES:
        tag = f"{h}x{w}"
        # fft_image's own draw only fixes the shape; the values are overwritten with seeded ones.
        fft_params, _ = spatial.fft_image([BATCH, 3, h, w], sd=SD)
        spectrum_shape = list(fft_params[0].shape)
        fft_values = torch.randn(spectrum_shape, generator=g) * FFT_AMPLITUDE
        pixel_values = torch.randn(BATCH, 3, h, w, generator=g) * PIXEL_AMPLITUDE
        weight = torch.randn(BATCH, 3, h, w, generator=g)
        tensors[f"param/{tag}/fft_params"] = f32(fft_values)
        tensors[f"param/{tag}/pixel_params"] = f32(pixel_values)
        tensors[f"param/{tag}/G"] = f32(weight)

        variants = [("fft", True, False, d) for d in DECAYS]
        variants += [("fft-decorrelated", True, True, d) for d in DECAYS]
        variants += [("decorrelated", False, True, None)]
        for name, fft, decorrelate, decay in variants:
            if fft:
                params, image_f = spatial.fft_image([BATCH, 3, h, w], sd=SD, decay_power=decay)
                params[0].data = fft_values.clone()
                params_key = f"param/{tag}/fft_params"
            else:
                params, image_f = spatial.pixel_image([BATCH, 3, h, w], sd=SD)
                params[0].data = pixel_values.clone()
                params_key = f"param/{tag}/pixel_params"
            render = color.to_valid_rgb(image_f, decorrelate=decorrelate)
            image = render()
            (image * weight).sum().backward()
            case = f"{name} {tag}" + (f" decay {decay}" if fft else "")
            key = f"param/{tag}/{name}" + (f"/decay{decay}" if fft else "")
            tensors[f"{key}/image"] = f32(image)
            tensors[f"{key}/grad"] = f32(params[0].grad)
            entry = {
                "name": case,
                "kind": "param",
                "file": PARAM_FILE,
                "param": name,
                "what": (
                    f"{'fft_image' if fft else 'pixel_image'}([{BATCH}, 3, {h}, {w}], sd={SD}"
                    + (f", decay_power={decay}" if fft else "")
                    + f") with params[0] overwritten by `params`, then to_valid_rgb(image_f, "
                    f"decorrelate={decorrelate})(); grad = d(sum(image * G))/d(params)"
                ),
                "h": h,
                "w": w,
                "batch": BATCH,
                "fft": fft,
                "decorrelate": decorrelate,
                "decay_power": decay,
                "params_shape": list(params[0].shape),
                "image_shape": list(image.shape),
                "tensors": {"params": params_key, "image": f"{key}/image", "G": f"param/{tag}/G",
                            "grad": f"{key}/grad"},
            }
            if fft:
                # fft_image's `scale` (a closure variable of its inner function), as it builds it.
                cells = dict(zip(image_f.__code__.co_freevars, (c.cell_contents for c in image_f.__closure__)))
                scale = cells["scale"]
                tensors[f"{key}/scale"] = f32(scale)
                entry["tensors"]["scale"] = f"{key}/scale"
                entry["scale_shape"] = list(scale.shape)
                entry["spectrum_columns"] = spectrum_shape[3]
                entry["note"] = (
                    "params are [batch, 3, h, columns, 2] (real, imaginary); columns = w//2 + 1 for even "
                    "w and w//2 + 2 for odd w (Lucent keeps one extra frequency for odd widths; irfftn "
                    "with s=(h, w) reads only the first w//2 + 1). scale = 1 / max(freqs, 1 / max(w, h)) "
                    "** decay_power, [1, 1, h, columns, 1]. image = sigmoid([decorrelate] "
                    "irfftn(view_as_complex(scale * params), s=(h, w), norm='ortho') / 4)"
                )
                if decay == 1.0:
                    # The same through Lucent's high-level `param.image` (its default decay_power is 1).
                    params2, render2 = lucent_image(w, h, batch=BATCH, fft=True, decorrelate=decorrelate)
                    params2[0].data = fft_values.clone()
                    assert torch.equal(render2(), image), "param.image differs from fft_image + to_valid_rgb"
            else:
                params2, render2 = lucent_image(w, h, batch=BATCH, fft=False, decorrelate=True)
                params2[0].data = pixel_values.clone()
                assert torch.equal(render2(), image), "param.image differs from pixel_image + to_valid_rgb"
                entry["note"] = ("image = sigmoid(params permuted to NHWC @ color_correlation_normalized.T, "
                                 "back to NCHW)")
            cases.append(entry)
    tensors["param/color_correlation_normalized"] = torch.from_numpy(color.color_correlation_normalized).float()


class RecordPad:
    """Wraps torch.nn.functional.pad to record the arguments Lucent passes (calls the original)."""

    def __init__(self):
        self.original = F.pad
        self.calls = []

    def __call__(self, x, pad, *args, **kwargs):
        self.calls.append({"input_shape": list(x.shape), "pad": [int(p) for p in pad]})
        return self.original(x, pad, *args, **kwargs)


def transforms(tensors, cases):
    g = torch.Generator().manual_seed(4242)
    inputs = {
        "a": torch.rand(2, 3, 20, 24, generator=g),  # batch 2, non-square
        "b": torch.rand(1, 3, 32, 32, generator=g),  # square
        "c": torch.rand(1, 3, 40, 56, generator=g),  # the cutouts' source
    }
    # Asymmetric bright blocks, so that a wrong direction or sign moves them.
    inputs["a"][:, :, 2:6, 3:9] = 1.0
    inputs["b"][:, :, 4:9, 5:14] = 1.0
    for name, x in inputs.items():
        tensors[f"transform/input/{name}"] = f32(x)

    def add(entry, output):
        key = f"transform/{entry['name'].replace(' ', '_')}"
        tensors[key] = f32(output)
        entry.update(kind="transform", file=TRANSFORM_FILE, output_shape=list(output.shape))
        entry.setdefault("tensors", {})
        entry["tensors"].update(input=f"transform/input/{entry['input']}", output=key)
        cases.append(entry)

    # jitter(8): dx = np.random.choice(8), then dy = np.random.choice(8); kornia translate by (dx, dy).
    for inp in ("a", "b"):
        for dx, dy in [(0, 0), (3, 1), (7, 5)]:
            with mock.patch("numpy.random.choice", side_effect=[np.int64(dx), np.int64(dy)]) as choice:
                out = transform.jitter(8)(inputs[inp])
            assert choice.call_count == 2
            add({"name": f"jitter {inp} {dx} {dy}", "transform": "jitter", "input": inp, "d": 8, "dx": dx, "dy": dy,
                 "what": "lucent.optvis.transform.jitter(8) with its draws dx, dy (in that order): "
                         "kornia.geometry.transform.translate(image, [[dx, dy]]) (bilinear, zeros, "
                         "align_corners=False)", "note": KORNIA_NOTE}, out)
            if dx == dy == 0:
                assert torch.allclose(out, inputs[inp], atol=1e-6)

    # random_scale([s]): upsample (bilinear, align_corners=True) to ceil(s * d), pad; then center_crop.
    # Input c (40×56) at 0.5 and 0.7 pads its width by pad_y on the left and pad_x on the right
    # (F.pad's order in Lucent), with pad_y != pad_x: the order shows.
    scales = [0.83, 0.9, 0.95, 1.0, 1.05, 1.1, 1.27]
    for inp, inp_scales in (("a", scales), ("b", scales), ("c", [0.5, 0.7])):
        h, w = inputs[inp].shape[2:]
        for s in inp_scales:
            recorder = RecordPad()
            with mock.patch.object(torch.nn.functional, "pad", recorder):
                out = transform.random_scale([s])(inputs[inp])
            (call,) = recorder.calls
            cropped = TF.center_crop(out, [h, w])
            name = f"random_scale {inp} {s}"
            key = f"transform/{name.replace(' ', '_')}"
            tensors[f"{key}/center_crop"] = f32(cropped)
            add({"name": name, "transform": "random_scale", "input": inp, "scale": s,
                 "upsampled_shape": call["input_shape"], "pad": call["pad"],
                 "center_crop_shape": list(cropped.shape),
                 "tensors": {"center_crop": f"{key}/center_crop"},
                 "what": "lucent.optvis.transform.random_scale([scale]): Upsample(size=ceil(scale * (h, w)) "
                         "in float64, bilinear, align_corners=True) then F.pad(x, [pad_y, pad_x] * 2) (Lucent's "
                         "order: left=pad_y, right=pad_x, top=pad_y, bottom=pad_x; `pad` is that list), "
                         "pad_* = max(0, ceil((d - scaled d) / 2)); center_crop = torchvision "
                         "center_crop(output, [h, w]) (crops, or pads with zeros)"}, out)

    # random_rotate([angle]): kornia get_rotation_matrix2d about ((w-1)/2, (h-1)/2), warp_affine.
    for inp in ("a", "b"):
        b, _, h, w = inputs[inp].shape
        for angle in [-10.0, -3.5, 0.0, 7.0, 45.0]:
            out = transform.random_rotate([angle])(inputs[inp])
            center = torch.ones(b, 2)
            center[..., 0] = (w - 1) / 2
            center[..., 1] = (h - 1) / 2
            matrix = kornia.get_rotation_matrix2d(center, torch.ones(b) * angle, torch.ones(b, 2))
            name = f"random_rotate {inp} {angle}"
            key = f"transform/{name.replace(' ', '_')}"
            tensors[f"{key}/M"] = f32(matrix)
            add({"name": name, "transform": "random_rotate", "input": inp, "angle_degrees": angle,
                 "tensors": {"M": f"{key}/M"},
                 "what": "lucent.optvis.transform.random_rotate([angle]): kornia.get_rotation_matrix2d(center="
                         "((w-1)/2, (h-1)/2), angle, scale 1) (`M`, [b, 2, 3], the same call as Lucent's) then "
                         "kornia.warp_affine(image, M, dsize=(h, w)) (bilinear, zeros, align_corners=False)",
                 "note": KORNIA_NOTE}, out)

    # pad(12, constant 0.5)
    add({"name": "pad a 12 constant 0.5", "transform": "pad", "input": "a", "w": 12, "mode": "constant",
         "constant_value": 0.5,
         "what": "lucent.optvis.transform.pad(12, mode='constant', constant_value=0.5): F.pad(x, [12] * 4, value=0.5)"},
        transform.pad(12, mode="constant", constant_value=0.5)(inputs["a"]))

    # VQGAN-CLIP's MakeCutouts on fixed draws: crop size x size at (offset_x, offset_y), resize to R x R.
    resolution = 32
    for size, ox, oy in [(16, 0, 0), (24, 31, 9), (40, 16, 0), (40, 0, 0), (33, 5, 7)]:
        x = inputs["c"]
        out = F.interpolate(x[:, :, oy:oy + size, ox:ox + size], size=(resolution, resolution), mode="bilinear",
                            align_corners=False)
        add({"name": f"cutout c {size} {ox} {oy}", "transform": "cutout", "input": "c", "size": size,
             "offset_x": ox, "offset_y": oy, "resolution": resolution,
             "what": "F.interpolate(x[:, :, oy:oy+size, ox:ox+size], size=(R, R), mode='bilinear', "
                     "align_corners=False) (VQGAN-CLIP's MakeCutouts on fixed draws)"}, out)
    return {name: list(x.shape) for name, x in inputs.items()}


def main():
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    param_tensors, transform_tensors, cases = {}, {}, []
    parameterisations(param_tensors, cases)
    input_shapes = transforms(transform_tensors, cases)
    for tensors in (param_tensors, transform_tensors):
        assert all(t.dtype == torch.float32 for t in tensors.values())
    save_file(param_tensors, os.path.join(OUT, PARAM_FILE))
    save_file(transform_tensors, os.path.join(OUT, TRANSFORM_FILE))
    description = {
        "reference": {
            "torch-lucent": lucent_version(),
            "kornia": kornia.__version__,
            "torch": torch.__version__.split("+")[0],
            "torchvision": torchvision.__version__.split("+")[0],
            "script": "scripts/make_engine_fixtures.py",
        },
        "files": {"param": PARAM_FILE, "transform": TRANSFORM_FILE},
        "layout": (
            "Each case names its tensors' file (`file`) and the keys of its tensors (`tensors`: role -> key). "
            "param cases: params, image, G, grad (+ scale for FFT ones); params, G are shared by the cases of "
            "one (h, w). transform cases: input (transform/input/{a,b,c}), output, and center_crop "
            "(random_scale) or M (random_rotate). param/color_correlation_normalized is Lucent's 3x3 matrix."
        ),
        "inputs": input_shapes,
        "cases": cases,
    }
    with open(os.path.join(OUT, "engine.json"), "w") as f:
        json.dump(description, f, indent=1)
    for name in (PARAM_FILE, TRANSFORM_FILE, "engine.json"):
        print(f"{name}: {os.path.getsize(os.path.join(OUT, name)) / 1024:.0f} KiB")
    print(f"{len(cases)} cases written to {os.path.abspath(OUT)}")


if __name__ == "__main__":
    main()
