#!/usr/bin/env bash
# Issue 5's checks on a GPU machine, from what scripts/gpu_prepare.sh packed into .gpu/.
#
#   bash scripts/gpu_check.sh [PART...]   PART: test bench engine layouts seed sweep runs (default: test bench engine seed)
#
#   test     the CUDA-graph test (graph replay against eager, 20 steps, RN50/ViT-B/32/tiny, both
#            presets and an fft-decorrelated + Lucent transforms + cutouts pipeline)
#   bench    clip bench --arch all --prompts 1,3,32 --mode both, graphs; and 3 prompts --eager
#   engine   clip bench --param fft-decorrelated --augment cutouts:32,0.5,1, 3 prompts (96 views a
#            step), graph and eager: the issue's "within 3x of the FLOP floor"; then RN50, ViT-B/32 and
#            their ensemble (several models in one captured step)
#   layouts  ViT patch embedding conv vs matmul, ResNet NCHW vs channels-last (1 and 3 prompts, eager
#            and graph)
#   seed     scripts/bench_side_by_side.sh: the seed's loops and clip bench, ratios
#   sweep    clip sweep on random full-size RN50, ViT-B/32 and ViT-L/14: 64 prompts × constrained,
#            200 steps, batches of 32 (graph): prompt-steps/s per batch and the time outside the
#            loop (loading, encoding, saving), for BENCHMARKS.md's scale estimate
#   runs     the 18 seed runs: the six experiment binaries with their constants (3 prompts × 10 000
#            steps each) on random full-size checkpoints, one after another; total wall time
#
# Device-tool budget (15 min a session, 10 min a call): `test bench seed` fits one call (~5 min),
# `runs` another (~5 min if the speed targets hold). Logs, JSON and result images are packed into
# $OUT/gpu-check.tar.gz (the device tool returns at most 8 files) beside $OUT/summary.txt, which
# is also printed last. STEPS overrides the runs' steps and BENCH_STEPS the benchmarks' (a smoke
# test: `STEPS=2 BENCH_STEPS=2`); DEVICE=cpu runs everything on the CPU (a smoke test of this script
# where there is no GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
final=${OUT:-/tmp/gpu-check-out}
device=${DEVICE:-cuda}
bench_steps=${BENCH_STEPS:-}
out=$(mktemp -d)
mkdir -p "$final"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(test bench engine seed)
want() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$torch_lib:${LD_LIBRARY_PATH:-}
bin=$(mktemp -d)
tar -C "$bin" -xJf .gpu/bin.tar.xz || { echo "error: .gpu/bin.tar.xz missing: run scripts/gpu_prepare.sh and carry .gpu" >&2; exit 1; }
site=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --target "$site" .gpu/py/*.whl
export PYTHONPATH=$site:$(pwd)/.gpu/py:$(pwd)/scripts
summary=$out/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

note "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
note "torch $(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())')"

if want test; then
    "$bin/cuda_graph_test" --nocapture --test-threads 1 >"$out/test.log" 2>&1
    status=$?
    note "-- test (exit $status):"
    grep -E "max \|graph|skipped|test result|panicked" "$out/test.log" | tee -a "$summary"
fi

bench_table() {
    python3 - "$1" <<'PY' | tee -a "$summary"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for r in rows:
    mem = r["peak_memory_bytes"]
    mem = "n/a" if mem is None else f"{mem / 2**20:.0f} MiB"
    parts = f"{r.get('param', 'pixels')} {' '.join(r.get('augment', [])) or 'none'}"
    print(f"{r['arch']:13} {r['mode']:13} {r['prompts']:3} {r.get('views_per_step', r['prompts']):4} views "
          f"{r['layout']:16} {'graph' if r['graph'] else 'eager':5} {parts:40} "
          f"{r['ms_per_step']:8.3f} ms/step {r.get('ms_per_view', float('nan')):7.3f} ms/view  {mem:>9}  "
          f"floor x{r['floor_ratio'] or float('nan'):.1f}")
PY
}

if want bench; then
    note "-- bench (graphs):"
    "$bin/clip" bench --device "$device" --arch all --prompts 1,3,32 --mode both --steps "${bench_steps:-200}" --json \
        >"$out/bench.jsonl" 2>"$out/bench.err"
    bench_table "$out/bench.jsonl"
    note "-- bench (--eager, 3 prompts):"
    "$bin/clip" bench --device "$device" --arch all --prompts 3 --mode both --steps "${bench_steps:-50}" --eager --json \
        >"$out/bench-eager.jsonl" 2>"$out/bench-eager.err"
    bench_table "$out/bench-eager.jsonl"
fi

if want engine; then
    note "-- engine: fft-decorrelated + 32 cutouts, 3 prompts (graph, then --eager):"
    for eager in "" --eager; do
        "$bin/clip" bench --device "$device" --arch all --prompts 3 --mode unconstrained \
            --param fft-decorrelated --augment cutouts:32,0.5,1 --steps "${bench_steps:-50}" $eager --json \
            >>"$out/engine.jsonl" 2>>"$out/engine.err"
    done
    bench_table "$out/engine.jsonl"
    note "-- objectives: RN50, ViT-B/32 and their ensemble, 3 prompts, constrained (graph: several models in one capture):"
    "$bin/clip" bench --device "$device" --arch RN50,ViT-B/32 --ensemble RN50+ViT-B/32 --prompts 3 \
        --mode constrained --steps "${bench_steps:-50}" --json \
        >>"$out/objectives.jsonl" 2>>"$out/objectives.err"
    bench_table "$out/objectives.jsonl"
fi

if want layouts; then
    note "-- layouts:"
    for eager in "" --eager; do
        "$bin/clip" bench --device "$device" --arch ViT-B/32,ViT-L/14 --patch-embedding conv,matmul \
            --prompts 1,3 --mode constrained --steps "${bench_steps:-50}" $eager --json >>"$out/layouts.jsonl" 2>>"$out/layouts.err"
        "$bin/clip" bench --device "$device" --arch RN50 --channels-last off,on \
            --prompts 1,3 --mode constrained --steps "${bench_steps:-50}" $eager --json >>"$out/layouts.jsonl" 2>>"$out/layouts.err"
    done
    bench_table "$out/layouts.jsonl"
fi

if want seed; then
    note "-- seed's loops vs clip bench:"
    SEED_LOOPS=.gpu/seed_loops.py LUCENT_LOOP=.gpu/lucent_cutouts_loop.py PYTHON=python3 CLIP_BIN="$bin/clip" \
        OUT="$out/side-by-side" bash scripts/bench_side_by_side.sh 2>"$out/side-by-side.err" | tee -a "$summary"
fi

if want runs; then
    ckpt=$(mktemp -d)
    for arch in RN50 ViT-B/32 ViT-L/14; do
        python3 scripts/make_random_checkpoint.py --arch "$arch" --seed 1 \
            --out "$ckpt/$(echo "$arch" | tr -d '/-' | tr 'A-Z' 'a-z').pt" >>"$out/checkpoints.log" 2>&1
    done
    note "-- the 18 seed runs (six binaries × 3 prompts, ${STEPS:-10000} steps each):"
    steps=()
    [ -n "${STEPS:-}" ] && steps=(--steps "$STEPS")
    start=$(date +%s%N)
    for run in rn50:rn50 vit-b:vitb32 vit-l14:vitl14; do
        crate=${run%%:*}
        for mode in unconstrained constrained; do
            t0=$(date +%s%N)
            "$bin/$crate-$mode" --weights "$ckpt/${run##*:}.pt" --device "$device" --seed 1 \
                --out "$out/results" --log-every 1000 "${steps[@]}" >"$out/run-$crate-$mode.log" 2>&1
            status=$?
            t1=$(date +%s%N)
            note "$(printf '%-8s %-13s exit %d  %7s s wall  ' "$crate" "$mode" "$status" \
                "$(seconds "$t0" "$t1")")$(grep -E '^[0-9]+ steps in' "$out/run-$crate-$mode.log")"
        done
    done
    note "all 18 runs: $(seconds "$start" "$(date +%s%N)") s wall (loading included)"
    rm -rf "$ckpt"
fi
if want sweep; then
    ckpt=$(mktemp -d)
    prompts=$(python3 -c 'print(", ".join(f"\"prompt number {i}\"" for i in range(64)))')
    note "-- sweep: 64 prompts, constrained, ${SWEEP_STEPS:-200} steps, batches of 32:"
    for arch in RN50 ViT-B/32 ViT-L/14; do
        file="$ckpt/$(echo "$arch" | tr -d '/-' | tr 'A-Z' 'a-z').pt"
        python3 scripts/make_random_checkpoint.py --arch "$arch" --seed 1 --out "$file" >>"$out/checkpoints.log" 2>&1
        spec="$ckpt/$(basename "$file" .pt).toml"
        printf 'models = ["m"]\nprompts = [%s]\nsteps = %s\n\n[weights]\nm = "%s"\n' \
            "$prompts" "${SWEEP_STEPS:-200}" "$file" >"$spec"
        t0=$(date +%s%N)
        "$bin/clip" sweep "$spec" --device "$device" --batch-prompts 32 --out "$out/sweep-$(basename "$file" .pt)" \
            >"$out/sweep-$(basename "$file" .pt).log" 2>&1
        status=$?
        note "$arch: exit $status, $(seconds "$t0" "$(date +%s%N)") s wall for the process"
        python3 - "$out/sweep-$(basename "$file" .pt)" <<'PY' | tee -a "$summary"
import glob, json, sys
recs = [json.load(open(p)) for p in glob.glob(sys.argv[1] + "/*/*.json")]
for loop in sorted({r["loop_seconds"] for r in recs}):
    rs = [r for r in recs if r["loop_seconds"] == loop]
    steps, wall = rs[0]["steps_done"], max(r["wall_seconds"] for r in rs)
    print(f"  batch of {len(rs)} (width {rs[0]['batch_size']}, {rs[0]['execution']}): loop {loop:.2f} s, "
          f"{len(rs) * steps / loop:.1f} prompt-steps/s; outside the loop {wall - loop:.2f} s")
PY
    done
    rm -rf "$ckpt"
fi
tar -czf "$final/gpu-check.tar.gz" -C "$out" .
cp "$summary" "$final/summary.txt"
echo "== summary (also $final/summary.txt; logs in $final/gpu-check.tar.gz)"
cat "$summary"
