#!/usr/bin/env bash
# Regenerates docs/sample-report/: `clip compare` on short runs with random-weight full-size RN50
# and ViT-B/32 checkpoints in OpenAI's format (the scores mean nothing; the report's shape is
# shown), both presets, two prompts, 30 steps, seed 1, on the CPU, a drawn "photo" as the real
# photo, the default probes and zero-shot verdicts over a small label list (the ImageNet list would
# mean 80 000 texts per model on a CPU). Needs the reference Python (scripts/setup.sh --reference)
# for the checkpoints.
#
#   bash scripts/make_sample_report.sh [CLIP_BINARY]   # default target/release/clip
set -euo pipefail
cd "$(dirname "$0")/.."
clip=${1:-target/release/clip}
py=${PYTHON:-$HOME/.cache/clip-rs/torch-2.11.0/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CLIP_RS_CACHE=$work/cache
for arch in RN50 ViT-B/32; do
    PYTHONPATH=scripts "$py" scripts/make_random_checkpoint.py --arch "$arch" --seed 1 \
        --out "$work/$(echo "$arch" | tr -d '/').pt" >/dev/null
done
"$py" - "$work/photo.png" <<'EOF'
import sys
from PIL import Image, ImageDraw
img = Image.new("RGB", (300, 220), (90, 140, 60))
d = ImageDraw.Draw(img)
d.ellipse((90, 50, 210, 170), fill=(200, 30, 25))
d.polygon([(140, 45), (150, 30), (160, 45)], fill=(40, 120, 30))
img.save(sys.argv[1])
EOF
for preset in constrained unconstrained; do
    for weights in RN50 ViT-B32; do
        "$clip" generate --weights "$work/$weights.pt" --preset "$preset" --steps 30 --seed 1 \
            --device cpu --prompt "A cute golden retriever" --prompt "A bright red tomato" \
            --out "$work/results" --log-every 30 >/dev/null
    done
done
printf 'golden retriever\ntomato\nmountain\nstatic noise\nwindow screen\ntabby cat\n' >"$work/labels.txt"
"$clip" compare "$work/results" --weights "RN50=$work/RN50.pt" --weights "ViT-B/32=$work/ViT-B32.pt" \
    --device cpu --cell-size 96 --real "$work/photo.png=A bright red tomato" \
    --zero-shot "$work/labels.txt"
out=docs/sample-report
rm -rf "$out"
mkdir -p "$out"
for f in transfer.csv robustness.csv zeroshot.csv transfer.png contact_sheet.png curves.png \
    robustness.png; do
    cp "$work/results/$f" "$out/"
done
# The result images are not committed: their links become plain names; temporary paths go.
sed -E -e 's/\[([^]]*\.(png|jpg))\]\([^)]*\)/\1/g' -e "s#$work/##g" \
    "$work/results/report.md" >"$out/report.md"
sed -i -e "s#$work/##g" "$out"/*.csv
echo "wrote $out"
