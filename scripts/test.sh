#!/usr/bin/env bash
# The README's test command: set up libtorch (cached per user) and the Python module, then build
# and run every test: the Rust workspace, the Python module's tests, every notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python module is built in dev profile here (faster to build; the same numbers: the work is
# libtorch's); `scripts/setup.sh --python` alone builds it in release.
CLIP_PY_PROFILE=${CLIP_PY_PROFILE:-dev} scripts/setup.sh --python
venv=${CLIP_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clip-rs}/torch-2.11.0
target=${CARGO_TARGET_DIR:-$(pwd)/target}

cargo fmt --all -- --check
# clip-py turns on tch's python-extension feature: it is checked apart (from its directory, whose
# .cargo/config.toml has torch-sys take libtorch from the venv's torch).
cargo clippy --workspace --exclude clip-py --all-targets --quiet -- -D warnings
(cd clip-py && VIRTUAL_ENV=$venv PATH="$venv/bin:$PATH" cargo clippy -p clip-py --quiet -- -D warnings)
cargo test --workspace --exclude clip-py

# The Python module against the reference package and the CLI built above.
CLIP_BIN=$target/debug/clip "$venv/bin/python" -m pytest -q clip-py/tests
# Every notebook, executed with a tiny checkpoint and a few steps; committed without outputs.
"$venv/bin/python" scripts/run_notebooks.py --check-clean
"$venv/bin/python" scripts/run_notebooks.py \
  --weights-rn clip-core/tests/fixtures/models/tiny-rn.pt \
  --weights-vit clip-core/tests/fixtures/models/tiny-vit.pt \
  --photo clip-core/tests/fixtures/preprocess/photo_300x200.jpg --steps 3 --device cpu
