#!/usr/bin/env bash
# The seed's loops and the Lucent/cutouts loop in PyTorch beside `clip bench --json`, on the same
# machine in one go, then two tables:
#   1. scripts/seed_loops.py against `clip bench --mode both --prompts 1,3`: ms per prompt-step, the
#      seed's vs ours, matched by model, mode and prompts;
#   2. scripts/lucent_cutouts_loop.py (torch-lucent's fft-decorrelated image, N cutouts per image)
#      against `clip bench --param fft-decorrelated --augment cutouts:N,0.5,1 --mode unconstrained`:
#      ms per view (one cutout through CLIP), matched by model and prompts.
# Both Python scripts need torch, torchvision and OpenAI's `clip` package importable by PYTHON (and
# scripts/clip_fixtures.py beside them); the second also torch-lucent 0.1.8 (scripts/setup.sh --reference).
#
# Environment (all optional):
#   SEED_LOOPS  the seed's loops (default scripts/seed_loops.py)
#   LUCENT_LOOP the Lucent/cutouts loop (default scripts/lucent_cutouts_loop.py); LUCENT=0 skips table 2
#   PYTHON      the Python to run them with (default $PY, else python3)
#   CLIP_BIN    a built `clip` binary (default: cargo build --release, then target/release/clip)
#   MODELS      space-separated architectures (default: RN50 ViT-B/32 on the CPU, and ViT-L/14 too on CUDA)
#   STEPS       timed steps (default: 2 on the CPU; 30 on CUDA), after 1 (CPU) or 5 (CUDA) warm-up steps
#   PROMPTS     table 2's prompts (default: 3 on CUDA, 1 on the CPU)
#   CUTOUTS     table 2's cutouts per image (default: 32 on CUDA, 8 on the CPU: one step of 96
#               ViT-B/32 views takes tens of seconds on a 2-core CPU; CUTOUTS=1 for the shortest run)
#   OUT         where the raw outputs are kept (default: a new temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."

SEED_LOOPS=${SEED_LOOPS:-scripts/seed_loops.py}
LUCENT_LOOP=${LUCENT_LOOP:-scripts/lucent_cutouts_loop.py}
LUCENT=${LUCENT:-1}
PYTHON=${PYTHON:-${PY:-python3}}
[ -f "$SEED_LOOPS" ] || { echo "error: $SEED_LOOPS not found (set SEED_LOOPS)" >&2; exit 1; }
[ "$LUCENT" = 0 ] || [ -f "$LUCENT_LOOP" ] || { echo "error: $LUCENT_LOOP not found (set LUCENT_LOOP, or LUCENT=0)" >&2; exit 1; }

if [ "$("$PYTHON" -c 'import torch; print(torch.cuda.is_available())')" = True ]; then
    device=cuda; warmup=5; STEPS=${STEPS:-30}; MODELS=${MODELS:-RN50 ViT-B/32 ViT-L/14}
    PROMPTS=${PROMPTS:-3}; CUTOUTS=${CUTOUTS:-32}
else
    device=cpu; warmup=1; STEPS=${STEPS:-2}; MODELS=${MODELS:-RN50 ViT-B/32}
    PROMPTS=${PROMPTS:-1}; CUTOUTS=${CUTOUTS:-8}
fi

if [ -z "${CLIP_BIN:-}" ]; then
    cargo build --release --quiet -p clip-app --bin clip
    CLIP_BIN=${CARGO_TARGET_DIR:-target}/release/clip
fi
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

echo "== seed loops ($SEED_LOOPS, $device, $MODELS, $STEPS steps after $warmup warm-up)" >&2
# shellcheck disable=SC2086  # MODELS is a list of words
"$PYTHON" "$SEED_LOOPS" --device "$device" --steps "$STEPS" --warmup "$warmup" $MODELS | tee "$OUT/seed.txt" >&2

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

[ "$LUCENT" = 0 ] && exit 0
echo "== Lucent/cutouts loop ($LUCENT_LOOP, $device, $MODELS, $PROMPTS prompts x $CUTOUTS cutouts)" >&2
# shellcheck disable=SC2086  # MODELS is a list of words
"$PYTHON" "$LUCENT_LOOP" --device "$device" --steps "$STEPS" --warmup "$warmup" --prompts "$PROMPTS" \
    --cutouts "$CUTOUTS" $MODELS | tee "$OUT/lucent.txt" >&2

echo "== clip bench --param fft-decorrelated --augment cutouts:$CUTOUTS,0.5,1 ($CLIP_BIN)" >&2
# shellcheck disable=SC2086  # MODELS is a list of words
"$CLIP_BIN" bench --json --device "$device" --arch "$(echo $MODELS | tr ' ' ,)" --param fft-decorrelated \
    --augment "cutouts:$CUTOUTS,0.5,1" --mode unconstrained --prompts "$PROMPTS" --steps "$STEPS" \
    --warmup "$warmup" | tee "$OUT/clip_bench_cutouts.jsonl" >&2

echo
"$PYTHON" - "$OUT/lucent.txt" "$OUT/clip_bench_cutouts.jsonl" <<'EOF'
import json, sys

def rows(path):
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)

ours = {(r["arch"], r["prompts"]): r for r in rows(sys.argv[2])}
print(f"{'model':9} | {'prompts':7} | {'views/step':10} | {'Lucent+cutouts ms/view':22} | "
      f"{'clip bench ms/view':18} | Lucent / ours")
for r in rows(sys.argv[1]):
    mine = ours.get((r["model"], r["prompts"]))
    if mine is None:
        mine_s, ratio = "n/a", "n/a"
    else:
        mine_s, ratio = f"{mine['ms_per_view']:.3f}", f"{r['ms_per_view'] / mine['ms_per_view']:.2f}"
        if mine.get("views_per_step") != r["views_per_step"]:
            ratio += f" (clip bench: {mine.get('views_per_step')} views/step)"
    print(f"{r['model']:9} | {r['prompts']:7} | {r['views_per_step']:10} | {r['ms_per_view']:22.3f} | "
          f"{mine_s:>18} | {ratio}")
print("Lucent / ours >= 1: clip bench is no slower per view than the PyTorch loop of the same "
      f"parameterisation and cutouts ({sys.argv[2]})")
EOF
