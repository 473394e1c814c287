#!/usr/bin/env bash
# Microbenchmarks of the primitives a sequential kernel step is made of (BENCHMARKS.md, session
# 5): per iteration of a 10 000-iteration loop, 64 invocations, one workgroup per SM (132 on an
# H100) and ten. Binary: `cargo build --release --example wgsl_probe` (or ../shared/device/stage
# --example wgsl_probe, then run from the project root with P=.gpu/bin/wgsl_probe).
P=${P:-target/release/examples/wgsl_probe}
for g in 132 1320; do
  for e in bar chain sgadd div divsqrt lds publish; do
    a=$($P scripts/probe/micro.wgsl $e "ITERS=1000" 1 64 64 64 $g 10 | sed 's/.*median \([0-9.]*\).*/\1/')
    b=$($P scripts/probe/micro.wgsl $e "ITERS=11000" 1 64 64 64 $g 10 | sed 's/.*median \([0-9.]*\).*/\1/')
    echo "$e, $g workgroups: $(python3 -c "print(round(($b-$a)/10000*1000,2))") ns per iteration"
  done
done
