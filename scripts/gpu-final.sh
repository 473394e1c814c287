#!/usr/bin/env bash
# Everything issue 8 reports, in one call on the lent GPU: the test suites, GPU time per kernel
# for the big QR and trsm, the bench table, criterion batched QR (both kernels), and the CUDA
# libraries through torch on the same card, and the driver's register counts per kernel.
# Binaries: ../shared/device/stage --example bench --example kernel_stats
# --bench batched --test qr --test blas --test trsm --test batched --test batched_columns
# --test batched_tall --test lstsq, then `tar -czf .gpu/bin.tgz -C .gpu bin && rm -r .gpu/bin` (64 MiB carry limit).
source scripts/gpu-setup.sh   # binaries, loader, card, every carried test suite
# The card's clocks, power and throttle reasons every 100 ms, and a timestamp on every bench
# line, to line slow rows up with the clock (BENCHMARKS.md, "Noticed").
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 100 > "$out/clocks.csv" 2>&1 &
clocks=$!
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$l"; done; }
timeout 300 .gpu/bin/bench --large --no-cpu --runs 5 --warmup 2 2>&1 | stamp | tee "$out/bench.txt" | grep "| [a-z]" | cut -c14-
# Profiled after the bench, on a card that is warm (first, its per-kernel times read 2.5× high).
bash scripts/gpu-profile.sh "qr reduced (Q, R) 4096×4096" "qr reduced (Q, R) 65536" "trsm lower L·X = B 4096×4096, k = 4096" > "$out/profile.txt" 2>&1
# The batched rows again in a fresh process: in the long run above they come after rows that
# allocated GBs, and have been timed up to 2.7x slower there (GPU time included).
timeout 120 .gpu/bin/bench --large --no-cpu --runs 5 --warmup 2 --only qr-batched 2>&1 | stamp | tee "$out/bench-batched.txt" | grep "| [a-z]" | cut -c14-
timeout 200 .gpu/bin/batched-bench --bench gpu 2>&1 | grep -E "^qr_batched|time:" | tee "$out/criterion-batched.txt"
PYTHONUNBUFFERED=1 timeout 200 python3 scripts/torch_ref.py 2>&1 | tee "$out/torch.txt"
if [ -x .gpu/bin/kernel_stats ]; then
  timeout 120 .gpu/bin/kernel_stats > "$out/kernel_stats.txt" 2>&1
fi
kill $clocks
