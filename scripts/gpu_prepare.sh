#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on a GPU machine that has python3 + torch 2.11.0 (and
# torchvision, numpy, regex, tqdm) but no Rust toolchain, no network, no CLIP package and no
# torch-lucent (docs/gpu.md) into .gpu/ (git-ignored):
#   .gpu/bin.tar.xz   stripped release builds: clip, the six experiment binaries (renamed
#                     <crate>-<mode>, as the three crates' binaries share one path), and the
#                     CUDA-graph test (clip-app/tests/cuda_graph.rs) as cuda_graph_test
#   .gpu/py/          OpenAI's clip package (openai-clip 1.0.1) and the ftfy/wcwidth wheels, for
#                     the seed's loops and the random checkpoints; the torch-lucent 0.1.8 wheel for
#                     the Lucent/cutouts loop (its image parameterisation needs only torch and numpy,
#                     so none of its declared dependencies is packed)
#   .gpu/seed_loops.py, .gpu/lucent_cutouts_loop.py, .gpu/clip_fixtures.py
#                     copies of scripts/' timing scripts and the random-weight models they build,
#                     as they were when the binaries were built
# Then, with the device tool: carry [".gpu"], command `bash scripts/gpu_check.sh …` (its header).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || grep -qx '/.gpu/' .gitignore ||
    echo '/.gpu/' >>.git/info/exclude
target=${CARGO_TARGET_DIR:-$root/target}
python=${PY:-python3}
rm -rf .gpu
mkdir -p .gpu/stage .gpu/py

cargo build --release --quiet -p clip-app --bin clip
cp "$target/release/clip" .gpu/stage/clip
for crate in rn50 vit-b vit-l14; do
    cargo build --release --quiet -p "$crate" --bins
    for mode in constrained unconstrained; do
        cp "$target/release/$mode" ".gpu/stage/$crate-$mode"
    done
done
test_bin=$(cargo test --release --quiet -p clip-app --test cuda_graph --no-run --message-format=json |
    "$python" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda_graph":
        print(m["executable"])')
cp "$test_bin" .gpu/stage/cuda_graph_test
strip .gpu/stage/*
tar -C .gpu/stage -cJf .gpu/bin.tar.xz .
rm -rf .gpu/stage

"$python" -m pip download --quiet --no-deps --no-binary openai-clip openai-clip==1.0.1 -d .gpu/dl
"$python" -m pip download --quiet --no-deps --only-binary=:all: ftfy wcwidth -d .gpu/py
"$python" -m pip download --quiet --no-deps --only-binary=:all: torch-lucent==0.1.8 -d .gpu/py
tar -xzf .gpu/dl/openai*clip-1.0.1.tar.gz -C .gpu/dl
cp -r .gpu/dl/openai*clip-1.0.1/clip .gpu/py/clip
rm -rf .gpu/dl
cp scripts/seed_loops.py scripts/lucent_cutouts_loop.py scripts/clip_fixtures.py .gpu/
du -sh .gpu
