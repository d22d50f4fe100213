#!/usr/bin/env bash
# Measures the Quickstart as a new user meets it: a fresh clone, an empty uv cache, `make demo`;
# then `featurestack run` alone on the same data (warm: packages installed, data generated).
# Usage: bash bench/make_demo.sh            (prints the figures; leaves everything in a temp dir)
#        bash bench/make_demo.sh --tiny DIR (what `make test` runs: the same steps in DIR, with
#                                           the uv cache as it is and a small demo market)
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
tiny=""
if [ "${1:-}" = "--tiny" ]; then
  tiny=1
  work="$2"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
fi
git clone -q "$src" "$work/repo"
# a fresh machine: no featurestack variables (the clone keeps its state in its own data/)
unset FEATURESTACK_DATA_DIR FEATURESTACK_RAW_DIR FEATURESTACK_PROFILE MLFLOW_TRACKING_URI
if [ -z "$tiny" ]; then
  export UV_CACHE_DIR="$work/uv-cache"   # empty: every package is downloaded
fi
cd "$work/repo"
if [ -n "$tiny" ]; then
  # a small market in the raw folder first: `make demo` uses files it finds there
  make setup > "$work/setup.log" 2>&1
  .venv/bin/featurestack demo-data --symbols 8 --accounts 20 --days 260 --seed 7 > /dev/null
fi

start=$(date +%s.%N)
make demo > "$work/make_demo.log" 2>&1
demo_s=$(echo "$(date +%s.%N) - $start" | bc)

start=$(date +%s.%N)
.venv/bin/featurestack run > "$work/run.log" 2>&1
run_s=$(echo "$(date +%s.%N) - $start" | bc)

printf 'machine: %s cores, %s\n' "$(nproc)" "$(free -g | awk '/Mem:/{print $2 " GiB"}')"
cache="empty uv cache"
[ -n "$tiny" ] && cache="warm uv cache, small market"
printf 'make demo (fresh clone, %s): %6.1f s\n' "$cache" "$demo_s"
printf 'featurestack run (demo data, warm):      %6.1f s\n' "$run_s"
if [ -z "$tiny" ]; then
  printf 'uv cache downloaded: %s, .venv: %s\n' "$(du -sh "$UV_CACHE_DIR" | cut -f1)" "$(du -sh .venv | cut -f1)"
fi
python3 - "$work/repo/data/reports/run_summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("stages (s):", ", ".join(f"{k} {v}" for k, v in s["stage_seconds"].items()))
h = s["model"]["holdout"]
print(f"holdout: ROC-AUC {h['roc_auc']:.4f}, log-loss {h['log_loss']:.4f} "
      f"(constant {h['log_loss_constant']:.4f}), F1 {h['f1']:.4f}")
PY
echo "logs: $work"
