# Sourced by gpu-final.sh and gpu-rerun.sh on the lent GPU: unpacks the carried binaries, sets
# up the Vulkan loader, records the card, and runs every carried test suite into one file
# ($out/tests.txt: the device tool brings back a limited number of files).
out=${OUT:-gpu-out}; mkdir -p "$out"
[ -f .gpu/bin.tgz ] && tar -xzf .gpu/bin.tgz -C .gpu
source .gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/card.txt"
for t in .gpu/bin/*-test; do
  echo "== $t" | tee -a "$out/tests.txt"
  timeout 240 "$t" --test-threads=1 > "$out/last-test.txt" 2>&1
  cat "$out/last-test.txt" >> "$out/tests.txt"
  grep -E "test result|FAILED|panicked" "$out/last-test.txt" | head -5
done
rm -f "$out/last-test.txt"
