//! Blocked QR (Q and R, reduced) on the GPU against faer's QR on the CPU (all cores).
//!
//! `cargo bench --bench qr` — sizes 256², 1024², 2048², 8192×256.
//! `METALCORE_BENCH_QUICK=1 cargo bench --bench qr` — 64² and 256×32 only (CI smoke).
//! Each GPU iteration submits the whole factorization and waits for it (`synchronize`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use metalcore::{qr, Context, GpuMatrix, QrMode};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let quick = std::env::var_os("METALCORE_BENCH_QUICK").is_some();
    let sizes: &[(usize, usize)] = if quick {
        &[(64, 64), (256, 32)]
    } else {
        &[(256, 256), (1024, 1024), (2048, 2048), (8192, 256)]
    };
    let ctx = Context::new().expect("adapter");
    eprintln!("adapter: {}", ctx.describe());
    let mut group = c.benchmark_group("qr");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 50 } else { 500 }))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 4 }));
    for &(m, n) in sizes {
        let data = random(m * n, (m * 31 + n) as u64);
        let a = GpuMatrix::from_col_major(&ctx, m, n, &data).unwrap();
        group.bench_function(format!("gpu {m}x{n}"), |b| {
            b.iter(|| {
                let res = qr(&ctx, &a, QrMode::Reduced).unwrap();
                ctx.synchronize().unwrap();
                res
            })
        });
        let fa = faer::Mat::<f32>::from_fn(m, n, |i, j| data[i + j * m]);
        group.bench_function(format!("faer {m}x{n}"), |b| {
            b.iter(|| {
                let f = fa.qr();
                (f.compute_thin_Q(), f.thin_R().to_owned())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
