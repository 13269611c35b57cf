"""Random-weight CLIP checkpoints in OpenAI's file format, made with the reference implementation.

OpenAI's released checkpoints are TorchScript archives of a traced `CLIP` module with fp16 weights.
This module builds `clip.model.CLIP` (openai-clip 1.0.1) with a given configuration, randomises every
parameter and the BatchNorm running statistics, traces it, converts it to fp16 and saves it with
`torch.jit.save`, so that `clip.load(path, jit=False)` and our Rust loader read the same file.

Used by `make_model_fixtures.py` (the committed test fixtures) and `make_random_checkpoint.py`
(full-size checkpoints for the acceptance comparisons). Run with the reference venv:
`scripts/setup.sh --reference`, then `~/.cache/clip-rs/torch-2.11.0/bin/python scripts/...`.
"""

import torch
from clip.model import CLIP

# The nine released configurations: CLIP(embed_dim, image_resolution, vision_layers, vision_width,
# vision_patch_size, context_length, vocab_size, transformer_width, transformer_heads, transformer_layers).
CONFIGS = {
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 77, 49408, 512, 8, 12),
    "RN50x4": (640, 288, (4, 6, 10, 6), 80, None, 77, 49408, 640, 10, 12),
    "RN50x16": (768, 384, (6, 8, 18, 8), 96, None, 77, 49408, 768, 12, 12),
    "RN50x64": (1024, 448, (3, 15, 36, 10), 128, None, 77, 49408, 1024, 16, 12),
    "ViT-B/32": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    "ViT-B/16": (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12),
    "ViT-L/14": (768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 77, 49408, 768, 12, 12),
}

# Tiny configurations for the committed fixtures (heads = width / 64 for transformers, as build_model infers).
TINY = {
    # ResNet: stem width 8 (attention pool: 256 channels, 4 heads), 64 px, two blocks in layer2.
    "tiny-rn": (32, 64, (1, 2, 1, 1), 8, None, 77, 49408, 64, 1, 2),
    # ViT: 32 px, 8 px patches (4x4 grid), width 128 (2 heads), 2 layers.
    "tiny-vit": (32, 32, 2, 128, 8, 77, 49408, 64, 1, 2),
}


def random_clip(config, seed):
    """`CLIP(*config)` with every parameter and BatchNorm statistic random (the reference's own
    initialisation zeroes `bn3.weight` and leaves the running statistics at 0 and 1, which would hide
    whole branches and the statistics from a comparison)."""
    torch.manual_seed(seed)
    model = CLIP(*config).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(int(torch.randint(1, 10**6, ())))
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
            elif isinstance(module, (torch.nn.Linear, torch.nn.MultiheadAttention)):
                for p_name, p in module.named_parameters(recurse=False):
                    if "bias" in p_name:
                        p.normal_(0.0, 0.02)
    return model


def save_openai_format(model, path):
    """Trace, convert to fp16 and `torch.jit.save`, like OpenAI's released files."""
    resolution = model.visual.input_resolution
    image = torch.rand(1, 3, resolution, resolution)
    text = torch.zeros(1, model.context_length, dtype=torch.long)
    text[0, 0], text[0, 1] = 49406, 49407
    with torch.no_grad():
        traced = torch.jit.trace(model, (image, text), check_trace=False)
    traced = traced.half()
    torch.jit.save(traced, path)


def state_dict_shapes(config):
    """Key -> shape of `CLIP(*config).state_dict()`, parameters and buffers counted apart."""
    with torch.device("meta"):
        model = CLIP(*config)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    return params, buffers, shapes
