#!/usr/bin/env bash
# The README's test command: set up libtorch (cached per user) and the Python module, then build
# and run every test: the Rust workspace, the Python module's tests, every notebook.
#
# Every suite runs whatever failed before it (cargo's --no-fail-fast included), and the failures
# are listed together at the end; the exit status is 1 if any failed. Only a failed set-up stops
# it at once: nothing after it could run.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python module is built in dev profile here (faster to build; the same numbers: the work is
# libtorch's); `scripts/setup.sh --python` alone builds it in release.
CLIP_PY_PROFILE=${CLIP_PY_PROFILE:-dev} scripts/setup.sh --python
venv=${CLIP_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clip-rs}/torch-2.11.0
target=${CARGO_TARGET_DIR:-$(pwd)/target}

failed=()
suites=0
# suite NAME COMMAND...: runs one suite, remembers it if it fails, and goes on.
suite() {
  local name=$1
  shift
  suites=$((suites + 1))
  echo "test.sh: ── $name"
  if "$@"; then
    echo "test.sh: ── $name: ok"
  else
    local rc=$?
    echo "test.sh: ── $name: FAILED (exit $rc)"
    failed+=("$name (exit $rc)")
  fi
}

suite "cargo fmt --check" cargo fmt --all -- --check
# clip-py turns on tch's python-extension feature: it is checked apart (from its directory, whose
# .cargo/config.toml has torch-sys take libtorch from the venv's torch).
suite "clippy (workspace)" \
  cargo clippy --workspace --exclude clip-py --all-targets --quiet -- -D warnings
suite "clippy (clip-py)" bash -c \
  "cd clip-py && VIRTUAL_ENV='$venv' PATH='$venv/bin:$PATH' cargo clippy -p clip-py --quiet -- -D warnings"
suite "cargo test" cargo test --workspace --exclude clip-py --no-fail-fast

# The Python module against the reference package and the CLI built above.
suite "pytest clip-py/tests" env CLIP_BIN="$target/debug/clip" "$venv/bin/python" -m pytest -q clip-py/tests
# Every notebook, executed with a tiny checkpoint and a few steps; committed without outputs.
suite "notebooks committed clean" "$venv/bin/python" scripts/run_notebooks.py --check-clean
suite "notebooks executed" "$venv/bin/python" scripts/run_notebooks.py \
  --weights-rn clip-core/tests/fixtures/models/tiny-rn.pt \
  --weights-vit clip-core/tests/fixtures/models/tiny-vit.pt \
  --photo clip-core/tests/fixtures/preprocess/photo_300x200.jpg --steps 3 --device cpu

if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: ${#failed[@]} of $suites suites failed:"
  printf 'test.sh:   %s\n' "${failed[@]}"
  exit 1
fi
echo "test.sh: all $suites suites passed"
