//! The shared tiled GEMM (f32) on the GPU against faer's matmul on the CPU (all cores).
//!
//! `cargo bench --bench gemm` — 1024², 4096²; `METALCORE_BENCH_QUICK=1` — 128² only.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metalcore::{gemm, Context, GpuMatrix};

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("METALCORE_BENCH_QUICK").is_some();
    let sizes: &[usize] = if quick { &[128] } else { &[1024, 4096] };
    let ctx = Context::new().expect("adapter");
    eprintln!("adapter: {}", ctx.describe());
    let mut group = c.benchmark_group("gemm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 50 } else { 500 }))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 3 }));
    for &n in sizes {
        let data: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let a = GpuMatrix::from_col_major(&ctx, n, n, &data).unwrap();
        let b = GpuMatrix::from_col_major(&ctx, n, n, &data).unwrap();
        let mut out = GpuMatrix::zeros(&ctx, n, n).unwrap();
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        group.bench_function(format!("gpu {n}"), |bch| {
            bch.iter(|| {
                gemm(&ctx, 1.0, &a, false, &b, false, 0.0, &mut out).unwrap();
                ctx.synchronize().unwrap();
            })
        });
        let fa = faer::Mat::<f32>::from_fn(n, n, |i, j| data[i + j * n]);
        group.bench_function(format!("faer {n}"), |bch| bch.iter(|| &fa * &fa));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
