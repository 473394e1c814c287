#!/usr/bin/env bash
# A shorter rerun of scripts/gpu-final.sh's QR, batched and CUDA-library rows (no trsm/GEMM
# rows, no profile), for re-measuring after a change on the same card in one call. Binaries:
# ../shared/device/stage --example bench --bench batched --test qr --test batched
# --test batched_columns --test batched_tall --test lstsq, then tar as gpu-final.sh says.
source scripts/gpu-setup.sh   # binaries, loader, card, every carried test suite
timeout 200 .gpu/bin/bench --large --no-cpu --runs 5 --warmup 2 --only "qr reduced" --only "geqrf" 2>&1 | tee "$out/bench-qr.txt" | grep "^| [a-z]"
METALCORE_BATCHED_KERNEL=new timeout 120 .gpu/bin/bench --large --no-cpu --runs 5 --warmup 2 --only qr-batched 2>&1 | tee "$out/bench-batched.txt" | grep "^| [a-z]"
timeout 120 .gpu/bin/batched-bench --bench "gpu/" 2>&1 | grep -E "^qr_batched|time:" | tee "$out/criterion-batched.txt"
PYTHONUNBUFFERED=1 timeout 200 python3 scripts/torch_ref.py 2>&1 | tee "$out/torch.txt"
