#!/usr/bin/env bash
# Runs on the lent GPU machine, over binaries staged here by ../shared/device/stage:
#   ../shared/device/stage && device run (carry .gpu): bash scripts/gpu-run.sh [tests|bench|torch|all]
# Logs go to $OUT (or ./gpu-out); a short summary is printed last.
set -uo pipefail
what=${1:-all}
out=${OUT:-gpu-out}
mkdir -p "$out"
source .gpu/env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$out/card.txt"
if [[ $what == all || $what == tests ]]; then
  for t in .gpu/bin/*-test; do
    case "$t" in *metalcore-test) continue ;; esac
    echo "== $t" | tee -a "$out/tests.txt"
    timeout 300 "$t" --test-threads=1 2>&1 | grep -E "^test |test result|tests on|panicked|FAILED" >> "$out/tests.txt"
  done
  grep -E "test result|tests on" "$out/tests.txt"
fi
if [[ $what == all || $what == bench ]]; then
  for b in .gpu/bin/*-bench; do
    echo "== $b" | tee -a "$out/bench.txt"
    timeout 300 "$b" --bench --noplot 2>&1 | grep -vE "^\s*$|Warming|Collecting|Analyzing|Found|outlier|high mild|high severe|low mild|low severe" >> "$out/bench.txt"
  done
  [ -x .gpu/bin/bench ] && timeout 300 .gpu/bin/bench >> "$out/bench.txt" 2>&1
  grep -E "^(==|[a-z].*time:)|adapter" "$out/bench.txt"
fi
if [[ $what == all || $what == torch ]]; then
  PYTHONUNBUFFERED=1 timeout 400 python3 .gpu/torch_reference.py "${TORCH_WHAT:-all}" 2>&1 | tee "$out/torch.txt"
fi
