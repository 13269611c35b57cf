"""Times the seed's two optimisation loops in PyTorch with OpenAI's `clip` package (openai-clip 1.0.1),
the baseline that `clip bench` is compared with (scripts/bench_side_by_side.sh).

    $PY scripts/seed_loops.py [--device cpu|cuda] [--steps N] [--warmup N] MODEL...    MODEL: RN50 ViT-B/32 ViT-L/14

Prints one JSON object per line and case:
    {"model", "case", "prompts", "steps", "ms_per_step", "device"}

The model: `clip.model.build_model` on a random state dict of the released configuration
(clip_fixtures.random_clip; there are no downloads here), so fp16 conv/linear/attention weights
(`convert_weights`); then as `clip.load(..., jit=False)` does: moved to the device, and `.float()` on
the CPU only. On CUDA the model is fp16 (`encode_image` casts its input), and the device is
synchronised before each clock reading.

Cases, each from a fresh image and a fresh Adam:
- "seed unconstrained" (1 prompt): image 1x3x224x224 = 0.5 + N(0, 0.1), torch.optim.Adam([image],
  lr=0.05); loss = the mean over 4 forward passes of the same image of 1 - cosine(normalised
  embedding of CLIP-normalised image, normalised text embedding) (the seed runs 4 passes per step);
  clamp_(0, 1) after every step.
- "seed constrained" (1 prompt): each step's view is torchvision's RandomAffine(degrees=10,
  translate=(0.1, 0.1), scale=(0.9, 1.1)) then RandomHorizontalFlip(p=0.3) of the image, one forward;
  loss = (1 - cosine) + 1e-4 * TV, TV = the sum of squared differences of vertical and horizontal
  neighbours of the image; clamp; and the best image kept with `sim.item() < best` (sim = 1 - cosine),
  a host synchronisation every step, as the seed does.
- "batched unconstrained" (3 prompts): 3 images in one 3x3x224x224 tensor, one forward per step,
  loss = the sum of the 3 prompts' 1 - cosine.
- "batched constrained" (3 prompts): each image's own affine + flip draw, one forward of the 3 views,
  the sum of the 3 losses with each image's TV; the best image per prompt kept on the device with
  torch.where (no host synchronisation).

ms_per_step: wall time of the timed steps / steps, after the warm-up steps (defaults: 5 warm-up and
30 timed on CUDA, 1 and 2 on the CPU, where one step of a full-size model takes a fraction of a second
to seconds).
"""

import argparse
import json
import sys
import time

import torch
import torchvision.transforms as T

import clip
from clip_fixtures import CONFIGS, random_clip

MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's preprocessing normalisation
STD = (0.26862954, 0.26130258, 0.27577711)
PROMPTS = ["a photo of a golden retriever", "a snow-covered mountain peak", "a bright red tomato"]
MODELS = ("RN50", "ViT-B/32", "ViT-L/14")


def reference_model(arch, device, seed=0):
    """The reference CLIP with random weights, in the precision `clip.load(jit=False)` gives on `device`."""
    state_dict = random_clip(CONFIGS[arch], seed).state_dict()
    model = clip.model.build_model(state_dict).to(device)
    if str(device) == "cpu":
        model.float()
    model.requires_grad_(False)  # only the image is optimised
    return model.eval()


def text_features(model, prompts, device):
    with torch.no_grad():
        features = model.encode_text(clip.tokenize(prompts).to(device)).float()
    return features / features.norm(dim=-1, keepdim=True)


def clip_normalise(image):
    mean = torch.tensor(MEAN, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=image.device).view(1, 3, 1, 1)
    return (image - mean) / std


def distance(model, views, text):
    """1 - cosine of each view's image embedding with its prompt's text embedding ([views])."""
    features = model.encode_image(clip_normalise(views)).float()
    features = features / features.norm(dim=-1, keepdim=True)
    return 1.0 - (features * text).sum(dim=-1)


def total_variation(image):
    """Per image: sum of squared differences of vertical and horizontal neighbours."""
    dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).pow(2).sum(dim=(1, 2, 3))
    dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).pow(2).sum(dim=(1, 2, 3))
    return dy + dx


def synchronise(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, warmup, steps, device):
    """ms per step of `step()` over `steps` calls after `warmup` calls."""
    for _ in range(warmup):
        step()
    synchronise(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronise(device)
    return (time.perf_counter() - start) * 1000.0 / steps


def initial_image(batch, resolution, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    image = 0.5 + 0.1 * torch.randn(batch, 3, resolution, resolution, generator=generator)
    return image.to(device).requires_grad_(True)


def seed_unconstrained(model, text, device, passes=4):
    image = initial_image(1, model.visual.input_resolution, device)
    optimiser = torch.optim.Adam([image], lr=0.05)

    def step():
        optimiser.zero_grad()
        loss = sum(distance(model, image, text).mean() for _ in range(passes)) / passes
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            image.clamp_(0, 1)

    return step


def augmentation():
    return T.Compose([T.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)),
                      T.RandomHorizontalFlip(p=0.3)])


def seed_constrained(model, text, device):
    image = initial_image(1, model.visual.input_resolution, device)
    optimiser = torch.optim.Adam([image], lr=0.05)
    augment = augmentation()
    state = {"best": float("inf"), "best_image": image.detach().clone()}

    def step():
        optimiser.zero_grad()
        sim = distance(model, augment(image), text).mean()
        loss = sim + 1e-4 * total_variation(image).sum()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            image.clamp_(0, 1)
        if sim.item() < state["best"]:  # a host synchronisation every step, as the seed
            state["best"] = sim.item()
            state["best_image"] = image.detach().clone()

    return step


def batched_unconstrained(model, text, device):
    image = initial_image(len(text), model.visual.input_resolution, device)
    optimiser = torch.optim.Adam([image], lr=0.05)

    def step():
        optimiser.zero_grad()
        distance(model, image, text).sum().backward()
        optimiser.step()
        with torch.no_grad():
            image.clamp_(0, 1)

    return step


def batched_constrained(model, text, device):
    image = initial_image(len(text), model.visual.input_resolution, device)
    optimiser = torch.optim.Adam([image], lr=0.05)
    augment = augmentation()
    best = torch.full((len(text),), float("inf"), device=device)
    best_image = image.detach().clone()

    def step():
        nonlocal best, best_image
        optimiser.zero_grad()
        views = torch.cat([augment(image[i:i + 1]) for i in range(len(text))])
        sim = distance(model, views, text)
        (sim + 1e-4 * total_variation(image)).sum().backward()
        optimiser.step()
        with torch.no_grad():
            image.clamp_(0, 1)
            better = sim.detach() < best
            best = torch.where(better, sim.detach(), best)
            best_image = torch.where(better.view(-1, 1, 1, 1), image, best_image)

    return step


CASES = [
    ("seed unconstrained", 1, seed_unconstrained),
    ("seed constrained", 1, seed_constrained),
    ("batched unconstrained", 3, batched_unconstrained),
    ("batched constrained", 3, batched_constrained),
]


def device_and_counts(args):
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no CUDA device")
    steps = args.steps if args.steps is not None else (30 if on_cuda else 2)
    warmup = args.warmup if args.warmup is not None else (5 if on_cuda else 1)
    return device, steps, warmup


def arguments(description, extra=None):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when torch sees one, else cpu")
    parser.add_argument("--steps", type=int, help="timed steps (default: 30 on CUDA, 2 on the CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 5 on CUDA, 1 on the CPU)")
    if extra:
        extra(parser)
    parser.add_argument("models", nargs="+", metavar="MODEL", choices=MODELS)
    args = parser.parse_args()
    if (args.steps is not None and args.steps < 1) or (args.warmup is not None and args.warmup < 0):
        parser.error("--steps must be at least 1 and --warmup at least 0")
    return args


def main():
    args = arguments(__doc__)
    device, steps, warmup = device_and_counts(args)
    torch.manual_seed(0)
    for arch in args.models:
        model = reference_model(arch, device)
        for case, prompts, make_step in CASES:
            text = text_features(model, PROMPTS[:prompts], device)
            ms = time_steps(make_step(model, text, device), warmup, steps, device)
            print(json.dumps({"model": arch, "case": case, "prompts": prompts, "steps": steps,
                              "ms_per_step": round(ms, 3), "device": device}), flush=True)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
