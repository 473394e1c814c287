#!/usr/bin/env bash
# Everything issue 8 reports, in one call on the lent GPU: the test suites, GPU time per kernel
# for the big QR and trsm, the bench table, criterion batched QR (both kernels), and the CUDA
# libraries through torch on the same card. Binaries: ../shared/device/stage --example bench
# --bench batched --test qr --test blas --test trsm --test batched --test batched_columns
# --test batched_tall --test lstsq, then `tar -czf .gpu/bin.tgz -C .gpu bin && rm -r .gpu/bin` (64 MiB carry limit).
out=${OUT:-gpu-out}; mkdir -p "$out"
[ -f .gpu/bin.tgz ] && tar -xzf .gpu/bin.tgz -C .gpu
source .gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/card.txt"
# All suites into one file: the device tool brings back a limited number of files.
for t in .gpu/bin/*-test; do
  echo "== $t" | tee -a "$out/tests.txt"
  timeout 240 "$t" --test-threads=1 > "$out/last-test.txt" 2>&1
  cat "$out/last-test.txt" >> "$out/tests.txt"
  grep -E "test result|FAILED|panicked" "$out/last-test.txt" | head -5
done
rm -f "$out/last-test.txt"
bash scripts/gpu-profile.sh "qr reduced (Q, R) 4096×4096" "qr reduced (Q, R) 65536" "trsm lower L·X = B 4096×4096, k = 4096" > "$out/profile.txt" 2>&1
timeout 300 .gpu/bin/bench --large --no-cpu --runs 5 --warmup 2 2>&1 | tee "$out/bench.txt" | grep "^| [a-z]"
# The batched rows again in a fresh process: in the long run above they come after rows that
# allocated GBs, and have been timed up to 2.7x slower there (GPU time included).
timeout 120 .gpu/bin/bench --large --no-cpu --runs 5 --warmup 2 --only qr-batched 2>&1 | tee "$out/bench-batched.txt" | grep "^| [a-z]"
timeout 200 .gpu/bin/batched-bench --bench gpu 2>&1 | grep -E "^qr_batched|time:" | tee "$out/criterion-batched.txt"
PYTHONUNBUFFERED=1 timeout 200 python3 scripts/torch_ref.py 2>&1 | tee "$out/torch.txt"
