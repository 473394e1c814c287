//! Triangular solve L·X = B (lower, non-unit, left side) on the GPU against faer's
//! `solve_lower_triangular_in_place` on the CPU (all cores, f32).
//!
//! `cargo bench --bench trsm` — n = 1024 and 4096, each with k = 1 and k = n.
//! `METALCORE_BENCH_QUICK=1 cargo bench --bench trsm` — n = 256 with k = 1 and k = 256 (CI smoke).
//! Each GPU iteration submits the whole blocked solve and waits for it (`synchronize`); the
//! faer iteration solves a fresh copy of B (the copy is outside the timing).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use metalcore::{trsm, Context, GpuMatrix, TrsmOptions};

/// A well-conditioned lower-triangular n×n matrix (column-major) and an n×k right-hand side.
fn problem(n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let val = |i: usize| ((i.wrapping_mul(7919) % 1000) as f32) / 1000.0 - 0.5;
    let mut a = vec![0.0f32; n * n];
    for j in 0..n {
        for i in j..n {
            a[i + j * n] = if i == j {
                2.0 + val(i)
            } else {
                val(i + j * n) / n as f32
            };
        }
    }
    let b = (0..n * k).map(|i| val(i + 17)).collect();
    (a, b)
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("METALCORE_BENCH_QUICK").is_some();
    let sizes: &[usize] = if quick { &[256] } else { &[1024, 4096] };
    let ctx = Context::new().expect("adapter");
    eprintln!("adapter: {}", ctx.describe());
    let mut group = c.benchmark_group("trsm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 50 } else { 500 }))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 3 }));
    for &n in sizes {
        for k in [1, n] {
            let (a, b) = problem(n, k);
            let ga = GpuMatrix::from_col_major(&ctx, n, n, &a).unwrap();
            let gb = GpuMatrix::from_col_major(&ctx, n, k, &b).unwrap();
            let opts = TrsmOptions::default();
            // n²·k multiply-adds.
            group.throughput(Throughput::Elements((n * n * k) as u64));
            group.bench_function(format!("gpu n={n} k={k}"), |bch| {
                bch.iter(|| {
                    let x = trsm(&ctx, &ga, &gb, &opts).unwrap();
                    ctx.synchronize().unwrap();
                    x
                })
            });
            let fa = faer::Mat::<f32>::from_fn(n, n, |i, j| a[i + j * n]);
            let fb = faer::Mat::<f32>::from_fn(n, k, |i, j| b[i + j * n]);
            group.bench_function(format!("faer n={n} k={k}"), |bch| {
                bch.iter_batched_ref(
                    || fb.clone(),
                    |rhs| {
                        faer::linalg::triangular_solve::solve_lower_triangular_in_place(
                            fa.as_ref(),
                            rhs.as_mut(),
                            faer::Par::rayon(0),
                        )
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
