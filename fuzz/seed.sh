#!/bin/sh
# Fills corpus/<target>/ with seeds from the test fixtures (run from fuzz/; needs python3).
set -eu
fixtures=../clip-core/tests/fixtures
mkdir -p corpus/unpickle corpus/checkpoint corpus/tokenizer
mkdir -p corpus/sweep_spec corpus/augment corpus/probes corpus/zeroshot_lists
# Whole small checkpoints (the 7 MB tiny models would slow every run; their pickles go below).
cp "$fixtures"/weights/*.pt "$fixtures"/weights/*.safetensors corpus/checkpoint/
python3 - "$fixtures" <<'PY'
import json, pathlib, sys, zipfile
fixtures = pathlib.Path(sys.argv[1])
for pt in [*fixtures.glob("weights/*.pt"), *fixtures.glob("models/*.pt")]:
    try:
        with zipfile.ZipFile(pt) as z:
            for name in z.namelist():
                if name.endswith("data.pkl") or name.endswith("constants.pkl"):
                    out = pathlib.Path("corpus/unpickle") / f"{pt.stem}-{name.replace('/', '_')}"
                    out.write_bytes(z.read(name))
    except zipfile.BadZipFile:  # os_system.pt is a bare pickle
        (pathlib.Path("corpus/unpickle") / pt.name).write_bytes(pt.read_bytes())
lines = (fixtures / "tokenizer_corpus.jsonl").read_text(encoding="utf-8").split("\n")
for i, line in enumerate(l for l in lines if l):
    (pathlib.Path("corpus/tokenizer") / f"{i:04}").write_bytes(json.loads(line)["text"].encode("utf-8", "surrogatepass"))
PY

# The parsers' targets: the vendored lists, and specs as the README writes them.
cp ../clip-core/assets/zeroshot/imagenet_classes.txt ../clip-core/assets/zeroshot/openai_templates.txt corpus/zeroshot_lists/
printf '{{}} a photo of a {}.\n{0} and {0}\n' > corpus/zeroshot_lists/braces
printf 'jitter:8 flip:0.5\n' > corpus/augment/jitter
printf 'affine:10,0.1,0.9,1.1 flip:0.3\n' > corpus/augment/seed
printf 'pad:12 jitter:8 scale:0.9,1.1 rotate:10 jitter:4 cutouts:32,0.5,1 noise:0.05\n' > corpus/augment/lucent
printf 'none flip:1\n' > corpus/augment/none
printf 'jpeg:75,blur:1,down:4,rotate:10,noise:0.05' > corpus/probes/default
printf 'none' > corpus/probes/none
cat > corpus/sweep_spec/readme.toml <<'TOML'
out = "results/sweep-1"
models = ["RN50", "ViT-B/32", ["RN50", "ViT-B/32"], { members = ["RN50", "ViT-B/16"], weights = [1, 2] }]
presets = ["constrained", "unconstrained"]
prompts = ["a golden retriever", "a red tomato"]
param = ["pixels", "fft-decorrelated"]
augment = [["jitter:8", "flip:0.5"], []]
negative = [["text", "watermark"], []]
size = ["320x256", 224]
epsilon = "8/255"
seeds = [1, 2, 3]
steps = [20, 2000]
name = "{preset}-{hash}-{seed}"
precision = "fp32"
TOML
cat > corpus/sweep_spec/weights.toml <<'TOML'
models = ["mine", "RN50"]
prompts = ["a dog"]
learning_rate = [0.05, 0.1]
tv_weight = 1e-4
keep = "best"
[weights]
mine = "spec.toml"
TOML
