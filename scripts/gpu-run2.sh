out=${OUT:-gpu-out}; mkdir -p $out
source .gpu/env.sh
for t in .gpu/bin/*-test; do echo "== $t"; timeout 240 "$t" --test-threads=1 > "$out/$(basename $t).txt" 2>&1; grep -E "test result|FAILED|panicked" "$out/$(basename $t).txt" | head -5; done
bash scripts/gpu-profile.sh "qr reduced (Q, R) 4096×4096" "qr reduced (Q, R) 65536" "trsm lower L·X = B 4096×4096, k = 4096" 2>&1 | cut -c1-1500
.gpu/bin/bench --large --no-cpu --runs 5 --warmup 2 --only "qr reduced" --only "geqrf" --only trsm --only batched --only lstsq 2>&1 | tee $out/bench.txt | grep "^| [a-z]"
PYTHONUNBUFFERED=1 timeout 200 python3 .gpu/torch_reference.py batched 2>&1 | tail -12
