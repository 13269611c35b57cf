#!/usr/bin/env bash
# How long and how much memory `clip sweep --dry-run` and `--status` take on SPECs of 10^5, 10^6
# and 10^7 runs (the plan is streamed: memory should not grow with the runs), and on a SPEC whose
# 10^6 runs are 10^4 settings points (the file-name check keeps 8 bytes per point and seed).
#
#   scripts/bench_sweep_plan.sh [CLIP_BINARY] [SIZES...]     (default: target/release/clip, all)
#
# Prints one line per case: runs, command, seconds, max RSS. Nothing is run (no weights needed: the
# SPECs name a [weights] file that is only checked to exist).
set -euo pipefail
clip=${1:-target/release/clip}
shift || true
sizes=${*:-"1e5 1e6 1e7 points"}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" <<'PY'
import pathlib, sys
d = pathlib.Path(sys.argv[1])
(d / "prompts.txt").write_text("".join(f"a photo of thing number {i}\n" for i in range(1000)))
(d / "ckpt.pt").write_bytes(b"not loaded by --dry-run or --status")
head = 'out = "res"\nmodels = ["mine"]\nprompts_file = "prompts.txt"\n'
tail = '\n[weights]\nmine = "ckpt.pt"\n'
seeds = lambda n: "seeds = [" + ", ".join(map(str, range(n))) + "]\n"
(d / "1e5.toml").write_text(head + seeds(100) + tail)
(d / "1e6.toml").write_text(head + seeds(1000) + tail)
(d / "1e7.toml").write_text(head + seeds(1000) + "steps = [" + ", ".join(map(str, range(1, 11))) + "]\n" + tail)
# 10^4 settings points (100 step counts × 100 learning rates) × 100 prompts.
(d / "points.toml").write_text(
    'out = "res"\nmodels = ["mine"]\nname = "{preset}-{steps}-{learning_rate}"\n'
    + 'prompts = [' + ", ".join(f'"p{i}"' for i in range(100)) + "]\n"
    + "steps = [" + ", ".join(map(str, range(1, 101))) + "]\n"
    + "learning_rate = [" + ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(100)) + "]\n" + tail
)
PY
printf '%-8s %-10s %10s %12s\n' runs command seconds max_rss_MB
for size in $sizes; do
  for cmd in --dry-run --status; do
    /usr/bin/time -o "$dir/time" -f '%e %M' "$clip" sweep "$dir/$size.toml" $cmd --device cpu \
      >/dev/null 2>"$dir/err" || { cat "$dir/err"; exit 1; }
    read -r seconds kb <"$dir/time"
    printf '%-8s %-10s %10s %12.0f\n' "$size" "$cmd" "$seconds" "$((kb / 1024))"
  done
done
