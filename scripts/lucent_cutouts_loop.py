"""Times, in PyTorch, the loop that `clip generate --param fft-decorrelated --augment cutouts:32,0.5,1`
runs: torch-lucent 0.1.8's image parameterisation, VQGAN-CLIP-style cutouts and OpenAI's CLIP
(openai-clip 1.0.1) with random weights. The baseline for scripts/bench_side_by_side.sh's second table.

    $PY scripts/lucent_cutouts_loop.py [--device cpu|cuda] [--steps N] [--warmup N] [--prompts P] [--cutouts N] MODEL...

MODEL: RN50 ViT-B/32 ViT-L/14. Prints one JSON object per line and model:
    {"model", "case": "lucent fft-decorrelated + cutouts", "prompts", "cutouts", "views_per_step",
     "ms_per_step", "ms_per_view", "device"}

One step:
- the images: `lucent.optvis.param.image(R, batch=P, fft=True, decorrelate=True)` (R = the model's
  input resolution, 224), rendered once per step;
- the views: for each of the P images its own N cutouts, as VQGAN-CLIP's MakeCutouts draws them:
  size = int(rand() ** cut_pow * (max_size - min_size) + min_size) with max_size = the short side,
  min_size = 0.5 x the short side, cut_pow = 1, offsets torch.randint(0, side - size + 1), the square
  crop resized to R x R by F.interpolate(mode="bilinear", align_corners=False);
- CLIP: all P x N views, CLIP-normalised, in one encode_image; the model as `clip.load(jit=False)`
  gives it on the device (fp16 on CUDA, fp32 on the CPU), random weights as in seed_loops.py;
- loss: for each prompt the mean over its N views of 1 - cosine(image embedding, its text embedding),
  summed over the prompts; torch.optim.Adam(params, lr=0.05).

Defaults: 3 prompts x 32 cutouts, 5 warm-up and 30 timed steps on CUDA; 1 prompt x 8 cutouts, 1
warm-up and 2 timed steps on the CPU (a step of 96 ViT-B/32 views takes tens of seconds on a 2-core
CPU). Needs torch-lucent 0.1.8 (`pip install --no-deps torch-lucent==0.1.8`: the parameterisation
imports nothing beyond torch and numpy). Lucent puts its tensors on cuda:0 whenever torch sees CUDA;
with --device cpu the script hides CUDA from Lucent before importing it.
"""

import json
import sys

import torch
import torch.nn.functional as F

from seed_loops import (PROMPTS, arguments, device_and_counts, distance, reference_model, text_features,
                        time_steps)

CASE = "lucent fft-decorrelated + cutouts"


def extra_arguments(parser):
    parser.add_argument("--prompts", type=int, help="images optimised at once, one prompt each (default: 3 on "
                        "CUDA, 1 on the CPU)")
    parser.add_argument("--cutouts", type=int, help="cutouts per image per step (default: 32 on CUDA, 8 on the CPU)")


class MakeCutouts(torch.nn.Module):
    """VQGAN-CLIP's MakeCutouts, crops and resampling only, with min_size a fraction of the short side."""

    def __init__(self, cut_size, cutn, min_fraction=0.5, cut_pow=1.0):
        super().__init__()
        self.cut_size, self.cutn, self.min_fraction, self.cut_pow = cut_size, cutn, min_fraction, cut_pow

    def forward(self, image):
        side_y, side_x = image.shape[2:4]
        max_size = min(side_x, side_y)
        min_size = int(self.min_fraction * max_size)
        cutouts = []
        for _ in range(self.cutn):
            size = int(torch.rand([]) ** self.cut_pow * (max_size - min_size) + min_size)
            offset_x = torch.randint(0, side_x - size + 1, ())
            offset_y = torch.randint(0, side_y - size + 1, ())
            cutout = image[:, :, offset_y:offset_y + size, offset_x:offset_x + size]
            cutouts.append(F.interpolate(cutout, size=(self.cut_size, self.cut_size), mode="bilinear",
                                         align_corners=False))
        return torch.cat(cutouts)


def lucent_cutouts(model, text, cutouts, device):
    from lucent.optvis import param

    resolution = model.visual.input_resolution
    prompts = len(text)
    params, render = param.image(resolution, batch=prompts, fft=True, decorrelate=True)
    assert all(p.device.type == torch.device(device).type for p in params), "Lucent chose another device"
    optimiser = torch.optim.Adam(params, lr=0.05)
    make_cutouts = MakeCutouts(resolution, cutouts)
    # view i belongs to prompt i // cutouts
    text_per_view = text.repeat_interleave(cutouts, dim=0)

    def step():
        optimiser.zero_grad()
        images = render()
        views = torch.cat([make_cutouts(images[i:i + 1]) for i in range(prompts)])
        loss = distance(model, views, text_per_view).view(prompts, cutouts).mean(dim=1).sum()
        loss.backward()
        optimiser.step()

    return step


def main():
    args = arguments(__doc__, extra_arguments)
    device, steps, warmup = device_and_counts(args)
    on_cuda = device == "cuda"
    prompts = args.prompts if args.prompts is not None else (3 if on_cuda else 1)
    cutouts = args.cutouts if args.cutouts is not None else (32 if on_cuda else 8)
    if not 1 <= prompts <= len(PROMPTS) or cutouts < 1:
        sys.exit(f"error: --prompts must be 1..{len(PROMPTS)} and --cutouts at least 1")
    if not on_cuda:
        # Lucent picks cuda:0 at import (spatial.py) and per call (color.py) whenever CUDA is there.
        torch.cuda.is_available = lambda: False
    torch.manual_seed(0)
    for arch in args.models:
        model = reference_model(arch, device)
        text = text_features(model, PROMPTS[:prompts], device)
        ms = time_steps(lucent_cutouts(model, text, cutouts, device), warmup, steps, device)
        views = prompts * cutouts
        print(json.dumps({"model": arch, "case": CASE, "prompts": prompts, "cutouts": cutouts,
                          "views_per_step": views, "ms_per_step": round(ms, 3),
                          "ms_per_view": round(ms / views, 4), "device": device}), flush=True)
        del model
        if on_cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
