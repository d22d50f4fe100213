#!/usr/bin/env bash
# Measures the Quickstart as a new user meets it: a fresh clone, an empty uv cache, `make demo`;
# then `featurestack run` alone on the same data (warm: packages installed, data generated).
# Usage: bash bench/make_demo.sh            (prints the figures; leaves everything in a temp dir)
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
git clone -q "$src" "$work/repo"
export UV_CACHE_DIR="$work/uv-cache"   # empty: every package is downloaded
cd "$work/repo"

start=$(date +%s.%N)
make demo > "$work/make_demo.log" 2>&1
demo_s=$(echo "$(date +%s.%N) - $start" | bc)

start=$(date +%s.%N)
.venv/bin/featurestack run > "$work/run.log" 2>&1
run_s=$(echo "$(date +%s.%N) - $start" | bc)

printf 'machine: %s cores, %s\n' "$(nproc)" "$(free -g | awk '/Mem:/{print $2 " GiB"}')"
printf 'make demo (fresh clone, empty uv cache): %6.1f s\n' "$demo_s"
printf 'featurestack run (demo data, warm):      %6.1f s\n' "$run_s"
printf 'uv cache downloaded: %s, .venv: %s\n' "$(du -sh "$UV_CACHE_DIR" | cut -f1)" "$(du -sh .venv | cut -f1)"
python3 - "$work/repo/data/reports/run_summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("stages (s):", ", ".join(f"{k} {v}" for k, v in s["stage_seconds"].items()))
h = s["model"]["holdout"]
print(f"holdout: ROC-AUC {h['roc_auc']:.4f}, log-loss {h['log_loss']:.4f} "
      f"(constant {h['log_loss_constant']:.4f}), F1 {h['f1']:.4f}")
PY
echo "logs: $work"
