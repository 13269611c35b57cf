#!/usr/bin/env bash
# Installs libtorch for tch 0.24 (PyPI torch==2.11.0) into a per-user cache, once, and links it to
# `.libtorch` in this checkout, which `.cargo/config.toml` hands to torch-sys as LIBTORCH.
#
#   scripts/setup.sh              libtorch only (what building, running and testing need)
#   scripts/setup.sh --reference  also the Python reference (openai-clip 1.0.1, torchvision 0.26.0, ftfy)
#                                 used by scripts/ to regenerate fixtures and compare with OpenAI's CLIP
#   scripts/setup.sh --python     also the Python module clip_rs (clip-py/, built with maturin against the
#                                 cached torch), Jupyter, papermill and pytest, into the cached venv;
#                                 implies --reference (the Python tests compare with it)
#
# A libtorch of your own: export LIBTORCH=/path/to/libtorch (2.11.0) before building; this script then
# installs nothing and `.cargo/config.toml` leaves your LIBTORCH alone.
# The cache: $CLIP_RS_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/clip-rs. Fresh clones and CI reuse it.
set -euo pipefail

TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
CUDA_CRT_VERSION=13.0.88
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CLIP_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clip-rs}
venv=$cache/torch-$TORCH_VERSION
reference=0
python_module=0
for arg in "$@"; do
  case $arg in
    --reference) reference=1 ;;
    --python) python_module=1; reference=1 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

if [ -n "${LIBTORCH:-}" ]; then
  if [ ! -d "$LIBTORCH/lib" ] || [ ! -d "$LIBTORCH/include" ]; then
    echo "setup.sh: LIBTORCH=$LIBTORCH has no lib/ and include/: not a libtorch" >&2
    exit 1
  fi
  echo "setup.sh: using your LIBTORCH=$LIBTORCH (nothing installed)"
else
  python=${PYTHON:-python3}
  if [ ! -f "$venv/.complete" ]; then
    echo "setup.sh: installing torch==$TORCH_VERSION into $venv (once; about 5 GB with its CUDA libraries)"
    mkdir -p "$cache"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "torch==$TORCH_VERSION"
    touch "$venv/.complete"
  fi
  # The CUDA headers that PyPI's nvidia wheels leave out (crt/host_config.h), so that clip-core's
  # build script can compile its CUDA-graph shim against them (clip-core/build.rs).
  if [ ! -f "$venv/.cuda-headers-complete" ]; then
    "$venv/bin/python" -m pip install --quiet "nvidia-cuda-crt==$CUDA_CRT_VERSION"
    touch "$venv/.cuda-headers-complete"
  fi
  torch_dir=$("$venv/bin/python" -W ignore -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  ln -sfn "$torch_dir" "$root/.libtorch"
  echo "setup.sh: libtorch $("$venv/bin/python" -W ignore -c 'import torch; print(torch.__version__)') linked at $root/.libtorch -> $torch_dir"
fi

if [ "$reference" = 1 ]; then
  [ -x "$venv/bin/python" ] || { echo "setup.sh: --reference needs the cached venv ($venv); unset LIBTORCH and rerun" >&2; exit 1; }
  if [ ! -f "$venv/.reference-complete" ]; then
    echo "setup.sh: installing the reference implementation (openai-clip 1.0.1) into $venv"
    "$venv/bin/python" -m pip install --quiet "torchvision==$TORCHVISION_VERSION" ftfy regex tqdm numpy pillow setuptools wheel
    "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation "openai-clip==1.0.1"
    touch "$venv/.reference-complete"
  fi
  # scripts/make_engine_fixtures.py: torch-lucent 0.1.8 (its other pins are test and notebook tools)
  # with the kornia it pins (<=0.4.1), and safetensors.
  if [ ! -f "$venv/.reference-lucent-complete" ]; then
    "$venv/bin/python" -m pip install --quiet --no-deps "torch-lucent==0.1.8" "kornia==0.4.1"
    "$venv/bin/python" -m pip install --quiet safetensors
    touch "$venv/.reference-lucent-complete"
  fi
  echo "setup.sh: reference python: $venv/bin/python"
fi

if [ "$python_module" = 1 ]; then
  if [ ! -f "$venv/.python-tools-complete" ]; then
    echo "setup.sh: installing maturin, pytest, Jupyter and papermill into $venv"
    "$venv/bin/python" -m pip install --quiet "maturin>=1.5,<2" pytest jupyterlab ipykernel papermill nbclient nbformat matplotlib
    touch "$venv/.python-tools-complete"
  fi
  # The kernel the notebooks run on: this venv's python.
  "$venv/bin/python" -m ipykernel install --user --name clip-rs --display-name "Python (clip-rs)" >/dev/null
  # The workspace's target directory: the module turns on tch's python-extension feature (it links
  # libtorch_python), so tch, torch-sys, clip-core and clip-app are built a second time, beside the binaries'
  # (cargo keeps each feature set's artifacts apart); the other dependencies are shared.
  target=${CARGO_TARGET_DIR:-$root/target}
  profile=${CLIP_PY_PROFILE:-release}
  echo "setup.sh: building clip_rs (clip-py/, $profile) with maturin"
  rm -rf "$target/wheels"
  (cd "$root/clip-py" &&
    LIBTORCH=${LIBTORCH:-$root/.libtorch} VIRTUAL_ENV=$venv PATH="$venv/bin:$PATH" CARGO_TARGET_DIR=$target \
      "$venv/bin/maturin" build --quiet --profile "$profile" --interpreter "$venv/bin/python" \
      --auditwheel skip --out "$target/wheels")
  "$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$target"/wheels/clip_rs-*.whl
  echo "setup.sh: clip_rs installed in $venv (python: $venv/bin/python; jupyter lab notebooks/)"
fi
