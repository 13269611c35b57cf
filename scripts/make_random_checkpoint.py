"""A full-size random-weight CLIP checkpoint in OpenAI's TorchScript fp16 format.

    python scripts/make_random_checkpoint.py --arch RN50 --seed 7 --out /tmp/rn50-random.pt

The architecture is one of the nine released configurations; every weight and BatchNorm statistic
is random (see clip_fixtures.py). Speed and loading do not depend on the values, and the reference
`clip.load(path, jit=False)` reads the file like OpenAI's own.
"""

import argparse

import torch

from clip_fixtures import CONFIGS, random_clip, save_openai_format


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    save_openai_format(random_clip(CONFIGS[args.arch], args.seed), args.out)
    print(f"wrote {args.out} ({args.arch}, seed {args.seed})")


if __name__ == "__main__":
    main()
