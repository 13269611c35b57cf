#!/usr/bin/env python3
"""Writes the checkpoint fixtures of clip-core/tests/weights.rs into clip-core/tests/fixtures/weights/.

Run with the project's Python (torch 2.11, safetensors): `$PY scripts/make_weight_fixtures.py`.
Every fixture is a few KB; each `*.json` holds the reference values the Rust tests compare against,
as `{key: {"dtype": str, "shape": [int], "values": [number]}}` (values flattened in row-major order).
"""
import collections
import io
import json
import os
import zipfile

import torch
import torch.nn as nn
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clip-core", "tests", "fixtures", "weights")


def reference(state_dict):
    return {
        k: {
            "dtype": str(v.dtype).removeprefix("torch."),
            "shape": list(v.shape),
            "values": v.detach().flatten().tolist(),
        }
        for k, v in state_dict.items()
    }


def write_json(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=0, sort_keys=True)


class Block(nn.Module):
    """Scripted, so it can hold a plain tensor attribute, which is not in state_dict()."""

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(4)
        self.plain = torch.full((2,), 5.0)  # neither parameter nor buffer

    def forward(self, x):
        return self.ln(x) + self.plain.sum()


class Net(nn.Module):
    """The layer kinds OpenAI's checkpoints use, plus the int attributes their JIT files carry."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layers = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.attn = nn.MultiheadAttention(4, 2)
        self.block = torch.jit.script(Block())
        self.logit_scale = nn.Parameter(torch.ones([]) * 2.5)
        self.register_buffer("input_resolution", torch.tensor(5))

    def forward(self, x):
        x = self.bn1(self.conv1(x)).mean((2, 3))
        x = self.layers(x)[None]
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return self.block(x) * self.logit_scale


def strip_debug_info(path):
    """Drops the `*.debug_pkl` source maps (most of the file); torch.jit.load does not need them."""
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info)) for info in z.infolist() if not info.filename.endswith(".debug_pkl")]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in entries:
            z.writestr(info, data)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)

    # OpenAI-style TorchScript archive: traced, then .half() (fp16 storages), random BN stats.
    net = Net().eval()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-1, 1)
        net.bn1.running_var.uniform_(0.5, 2)
        net.bn1.num_batches_tracked.fill_(7)
    traced = torch.jit.trace(net, torch.randn(1, 3, 5, 5)).half()
    path = os.path.join(OUT, "jit_fp16.pt")
    torch.jit.save(traced, path)
    strip_debug_info(path)
    write_json("jit_fp16.json", reference(torch.jit.load(path).state_dict()))

    # torch.save state dict: fp32, fp16, int64, a slice and a transpose sharing one storage.
    base = torch.randn(3, 4)
    sd = collections.OrderedDict(
        [
            ("base", base),
            ("slice", base[1:, 1:3]),  # storage offset 5, strides (4, 1)
            ("transposed", base.t()),  # strides (1, 4)
            ("half", torch.randn(2, 3).half()),
            ("count", torch.tensor(42)),
            ("param", nn.Parameter(torch.randn(3))),  # pickled with _rebuild_parameter
        ]
    )
    path = os.path.join(OUT, "state_dict.pt")
    torch.save(sd, path)
    write_json("state_dict.json", reference(torch.load(path)))

    # A training checkpoint wrapping the state dict.
    linear = nn.Linear(2, 3)
    path = os.path.join(OUT, "nested.pt")
    torch.save({"state_dict": linear.state_dict(), "epoch": 3}, path)
    write_json("nested.json", reference(torch.load(path)["state_dict"]))

    # safetensors (open_clip's format), same kind of keys.
    st = {"visual.proj": torch.randn(4, 2).half(), "logit_scale": torch.tensor(4.6052), "ids": torch.arange(3)}
    path = os.path.join(OUT, "weights.safetensors")
    save_file(st, path)
    write_json("weights_safetensors.json", reference(st))

    # A dtype this crate does not load (torch writes it with _rebuild_tensor_v3 + UntypedStorage).
    torch.save({"x": torch.zeros(2, dtype=torch.uint16)}, os.path.join(OUT, "uint16.pt"))

    # What plain `pickle` emits for an object whose __reduce__ runs a command: it must be refused.
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch clip_rs_pickle_marker",))

    buf = io.BytesIO()
    import pickle

    pickle.dump({"weight": Evil()}, buf, protocol=2)
    with zipfile.ZipFile(os.path.join(OUT, "os_system.pt"), "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/version", "3\n")


if __name__ == "__main__":
    main()
