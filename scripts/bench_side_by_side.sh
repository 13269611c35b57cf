#!/usr/bin/env bash
# The seed's loops (shared/bench/seed_loops.py) and `clip bench --json` on the same machine in one
# go, then a table of ms per prompt-step, the seed's vs ours, matched by model, mode and prompts.
#
# Environment (all optional):
#   SEED_LOOPS  the seed's timing script (default ../shared/bench/seed_loops.py, from the repo root);
#               it needs torch, torchvision and OpenAI's `clip` package importable by PYTHON
#   PYTHON      the Python to run it with (default $PY, else python3)
#   CLIP_BIN    a built `clip` binary (default: cargo build --release, then target/release/clip)
#   MODELS      space-separated architectures (default: RN50 ViT-B/32 on the CPU, and ViT-L/14 too on CUDA)
#   STEPS       timed steps (default: 2 on the CPU, as the seed's smoke mode; 30 on CUDA)
#   OUT         where both raw outputs are kept (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."

SEED_LOOPS=${SEED_LOOPS:-../shared/bench/seed_loops.py}
PYTHON=${PYTHON:-${PY:-python3}}
[ -f "$SEED_LOOPS" ] || { echo "error: $SEED_LOOPS not found (set SEED_LOOPS)" >&2; exit 1; }

if [ "$("$PYTHON" -c 'import torch; print(torch.cuda.is_available())')" = True ]; then
    device=cuda; warmup=5; STEPS=${STEPS:-30}; MODELS=${MODELS:-RN50 ViT-B/32 ViT-L/14}
else
    # seed_loops.py's smoke mode on the CPU: 1 warm-up step, 2 timed (it ignores STEPS there).
    device=cpu; warmup=1; STEPS=2; MODELS=${MODELS:-RN50 ViT-B/32}
fi

if [ -z "${CLIP_BIN:-}" ]; then
    cargo build --release --quiet -p clip-core --bin clip
    CLIP_BIN=${CARGO_TARGET_DIR:-target}/release/clip
fi
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

echo "== seed loops ($SEED_LOOPS, $device, $MODELS)" >&2
# shellcheck disable=SC2086  # MODELS is a list of words
STEPS=$STEPS "$PYTHON" "$SEED_LOOPS" $MODELS | tee "$OUT/seed.txt" >&2

echo "== clip bench ($CLIP_BIN, $device, $STEPS steps after $warmup warm-up)" >&2
"$CLIP_BIN" bench --json --device "$device" --arch "$(echo $MODELS | tr ' ' ,)" --mode both \
    --prompts 1,3 --steps "$STEPS" --warmup "$warmup" | tee "$OUT/clip_bench.jsonl" >&2

echo "raw outputs: $OUT" >&2
"$PYTHON" - "$OUT/seed.txt" "$OUT/clip_bench.jsonl" <<'EOF'
import json, sys

def rows(path):
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)

ours = {(r["arch"], r["mode"], r["prompts"]): r["ms_per_step"] / r["prompts"] for r in rows(sys.argv[2])}
print(f"{'model':9} | {'seed case':45} | {'prompts':7} | {'seed ms/prompt-step':19} | "
      f"{'clip bench ms/prompt-step':25} | seed / ours")
for r in rows(sys.argv[1]):
    mode = "unconstrained" if "unconstrained" in r["case"] else "constrained"
    seed = r["ms_per_step"] / r["prompts"]
    mine = ours.get((r["model"], mode, r["prompts"]))
    mine_s, ratio = ("n/a", "n/a") if mine is None else (f"{mine:.2f}", f"{seed / mine:.2f}")
    print(f"{r['model']:9} | {r['case']:45} | {r['prompts']:7} | {seed:19.2f} | {mine_s:>25} | {ratio}")
print("seed / ours >= 1: clip bench is no slower per prompt-step than that loop "
      f"(same mode, same prompts, {sys.argv[2]})")
EOF
