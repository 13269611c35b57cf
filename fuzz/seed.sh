#!/bin/sh
# Fills corpus/<target>/ with seeds from the test fixtures (run from fuzz/; needs python3).
set -eu
fixtures=../clip-core/tests/fixtures
mkdir -p corpus/unpickle corpus/checkpoint corpus/tokenizer
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
