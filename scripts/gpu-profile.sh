#!/usr/bin/env bash
# GPU time per kernel entry point (METALCORE_PROFILE=1: each dispatch in its own timed pass) for
# the QR sizes of issue 8, on the lent GPU over binaries from ../shared/device/stage --example bench.
#   bash scripts/gpu-profile.sh ["row filter" ...]
source .gpu/env.sh
[ $# -gt 0 ] || set -- "qr reduced (Q, R) 4096×4096" "qr reduced (Q, R) 65536" "qr reduced (Q, R) 1024×1024"
for s in "$@"; do
  echo "=== $s"
  METALCORE_PROFILE=1 .gpu/bin/bench --large --no-cpu --no-check --runs 1 --warmup 0 --only "$s" 2>&1 | grep -A25 "^profile" | tail -26
done
