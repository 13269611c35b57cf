"""Golden images for clip-app/tests/objectives.rs::one_model_without_negatives_keeps_its_images.

Reads the runs listed in clip-core/tests/fixtures/engine/single_model.json (a model, `clip
generate`'s flags), runs each with the `clip` binary on the CPU, and copies the PNGs it writes to
clip-core/tests/fixtures/engine/single_model/<model>/, listing them in the JSON.

The test compares decoded pixels within what libtorch's CPU kernels' rounding allows (the images
are those of our own engine, so a byte-exact hash would only hold on the CPU model that wrote
it). Regenerate only for a change that is meant to alter single-model images.

Run from the repository root after `cargo build -p clip-app`:
    python3 scripts/make_single_model_fixtures.py [--clip target/debug/clip]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "clip-core" / "tests" / "fixtures"
SPEC = FIXTURES / "engine" / "single_model.json"
OUT = FIXTURES / "engine" / "single_model"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=str(ROOT / "target" / "debug" / "clip"))
    args = parser.parse_args()
    spec = json.loads(SPEC.read_text())
    shutil.rmtree(OUT, ignore_errors=True)
    for run in spec["runs"]:
        weights = FIXTURES / "models" / run["weights"]
        token = weights.stem
        with tempfile.TemporaryDirectory() as tmp:
            command = [args.clip, "generate", "--device", "cpu", "--weights", str(weights)]
            command += ["--out", tmp, *run["args"]]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            run["png"] = sorted(p.name for p in (Path(tmp) / token).glob("*.png"))
            (OUT / token).mkdir(parents=True, exist_ok=True)
            for name in run["png"]:
                shutil.copyfile(Path(tmp) / token / name, OUT / token / name)
    SPEC.write_text(json.dumps(spec, indent=1) + "\n")
    print(f"wrote {sum(len(r['png']) for r in spec['runs'])} PNGs under {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
