#!/usr/bin/env bash
# Issue 8 timing run on the lent GPU (binaries from ../shared/device/stage --example bench
# --test qr --test blas): correctness of the QR/GEMM suites on the card, then QR with each
# panel algorithm (auto: CholeskyQR2 in front of TSQR; tsqr; one) and TSQR block height, then
# cuSOLVER/cuBLAS on the same card.
#   bash scripts/gpu-perf.sh [quick]
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
source .gpu/env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$out/card.txt"
for t in .gpu/bin/*-test; do
  echo "== $t"
  timeout 240 "$t" --test-threads=1 > "$out/$(basename "$t").txt" 2>&1
  grep -E "test result|FAILED|panicked" "$out/$(basename "$t").txt" | head -5
done
B=(.gpu/bin/bench --large --no-cpu --runs 5 --warmup 2)
row() { grep -E "^\| [a-z]" | sed "s/^/$1 /"; }
"${B[@]}" --only "qr reduced" --only "geqrf" --only "matmul" --only "gemm" 2>&1 | tee "$out/auto.txt" | row auto
"${B[@]}" --panel tsqr --only "qr reduced (Q, R) 2048" --only "qr reduced (Q, R) 4096" --only "geqrf (R, reflectors) 4096" 2>&1 | tee "$out/tsqr.txt" | row tsqr
"${B[@]}" --panel one --only "qr reduced (Q, R) 256" --only "qr reduced (Q, R) 1024" --only "qr reduced (Q, R) 65536" 2>&1 | tee "$out/one.txt" | row one
for r in ${TSQR_ROWS:-128 352}; do
  "${B[@]}" --tsqr-rows "$r" --only "qr reduced (Q, R) 4096" --only "qr reduced (Q, R) 65536" --only "qr reduced (Q, R) 1024" 2>&1 | tee "$out/rows$r.txt" | row "rows=$r"
done
[ "${1:-}" = quick ] || PYTHONUNBUFFERED=1 timeout 300 python3 .gpu/torch_reference.py single 2>&1 | tee "$out/torch.txt" | tail -15
