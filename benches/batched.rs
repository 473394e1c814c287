//! Batched QR (Q and R, reduced) on the GPU against faer on all CPU cores.
//!
//! GPU: `qr_batched_into` into preallocated outputs, then `Context::synchronize` inside the timed
//! closure, so each sample is the whole submission run to completion. CPU: faer's QR (f32) of
//! every matrix, Q formed, one matrix per rayon task over all cores.
//!
//! Two GPU rows per size: `gpu` (the default kernel choice: `qr_columns` where it fits) and
//! `gpu_shared` (the original workgroup-memory kernel, `SmallKernel::Shared`), so one run times
//! both. `METALCORE_BATCHED_KERNEL=new` or `=old` keeps only one of them.
//!
//! `cargo bench --bench batched`; `METALCORE_BENCH_QUICK=1` runs only the three smallest sizes
//! with few samples (CI smoke run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use metalcore::{qr_batched_into, BatchedOptions, Context, GpuBatch, QrMode, SmallKernel};
use rayon::prelude::*;

/// (batch, m, n), smallest first.
const SIZES: [(usize, usize, usize); 8] = [
    (500, 8, 8),
    (1000, 16, 16),
    (500, 32, 32),
    (10000, 16, 16),
    (10000, 32, 32),
    (100000, 16, 16),
    (1000, 64, 64),
    (10000, 256, 32),
];

/// The GPU rows: (`gpu`, default kernel) and (`gpu_shared`, the original one), or one of them
/// after `METALCORE_BATCHED_KERNEL=new|old`.
fn kernels() -> Vec<(&'static str, SmallKernel)> {
    let all = [
        ("gpu", SmallKernel::Auto),
        ("gpu_shared", SmallKernel::Shared),
    ];
    match std::env::var("METALCORE_BATCHED_KERNEL").as_deref() {
        Ok("new") => all[..1].to_vec(),
        Ok("old") => all[1..].to_vec(),
        _ => all.to_vec(),
    }
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bench(c: &mut Criterion, ctx: &Context, quick: bool) {
    let sizes = if quick { &SIZES[..3] } else { &SIZES[..] };
    let mut group = c.benchmark_group("qr_batched");
    for &(batch, m, n) in sizes {
        let id = format!("{batch}x{m}x{n}");
        let k = m.min(n);
        let data = values(batch * m * n, (batch * m * n) as u64);
        group.throughput(Throughput::Elements(batch as u64));

        match GpuBatch::from_col_major(ctx, batch, m, n, &data) {
            Ok(a) => {
                let mut q = GpuBatch::zeros(ctx, batch, m, k).expect("Q buffer");
                let mut r = GpuBatch::zeros(ctx, batch, k, n).expect("R buffer");
                for (name, kernel) in kernels() {
                    let options = BatchedOptions {
                        kernel,
                        ..Default::default()
                    };
                    group.bench_function(BenchmarkId::new(name, &id), |bench| {
                        bench.iter(|| {
                            qr_batched_into(
                                ctx,
                                &a,
                                QrMode::Reduced,
                                Some(&mut q),
                                &mut r,
                                &options,
                            )
                            .expect("qr_batched");
                            ctx.synchronize().expect("synchronize");
                        })
                    });
                }
            }
            Err(e) => eprintln!("gpu {id}: skipped ({e})"),
        }

        let mats: Vec<faer::Mat<f32>> = (0..batch)
            .map(|b| {
                let s = &data[b * m * n..(b + 1) * m * n];
                faer::Mat::from_fn(m, n, |i, j| s[i + j * m])
            })
            .collect();
        group.bench_function(BenchmarkId::new("faer_cpu_all_cores", &id), |bench| {
            bench.iter(|| {
                mats.par_iter().for_each(|a| {
                    let f = a.qr();
                    black_box((f.compute_thin_Q(), f.thin_R().to_owned()));
                })
            })
        });
    }
    group.finish();
}

fn main() {
    let quick = std::env::var("METALCORE_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let mut c = Criterion::default();
    if quick {
        c = c
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500));
    }
    let mut c = c.configure_from_args();
    let ctx = Context::new().expect("a GPU or software adapter");
    eprintln!("metalcore batched bench on: {}", ctx.describe());
    eprintln!(
        "CPU baseline: faer on {} threads",
        rayon::current_num_threads()
    );
    bench(&mut c, &ctx, quick);
    c.final_summary();
}
