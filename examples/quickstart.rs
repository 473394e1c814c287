//! The main job: every operation on a built-in random input. Prints the adapter, then for each
//! operation its error against an f64 CPU reference and its time (GPU, including the read-back).
//!
//! `cargo run --release --example quickstart`

use std::time::Instant;

use metalcore::{column_norms, qr, Context, GpuMatrix, QrMode};

/// SplitMix64 → uniform in [-1, 1): a fixed, reproducible input.
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> metalcore::Result<()> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.describe());

    // Column norms, scaled near 1e30 where naive squares overflow.
    let (m, n) = (512, 64);
    let a: Vec<f32> = random(m * n, 1).iter().map(|x| x * 1e30).collect();
    let t = Instant::now();
    let norms =
        column_norms(&ctx, &GpuMatrix::from_col_major(&ctx, m, n, &a)?)?.to_col_major(&ctx)?;
    let dt = t.elapsed();
    let err = (0..n)
        .map(|j| {
            let want = a[j * m..(j + 1) * m]
                .iter()
                .map(|&x| (x as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            ((norms[j] as f64 - want) / want).abs()
        })
        .fold(0.0, f64::max);
    println!(
        "column_norms {m}×{n} (×1e30): max relative error {err:.2e}, {:.2} ms",
        dt.as_secs_f64() * 1e3
    );

    // Blocked QR with Q.
    let (m, n) = (256, 128);
    let a = random(m * n, 2);
    let ga = GpuMatrix::from_col_major(&ctx, m, n, &a)?;
    let t = Instant::now();
    let res = qr(&ctx, &ga, QrMode::Reduced)?;
    let q = res
        .q
        .as_ref()
        .map(|q| q.to_col_major(&ctx))
        .transpose()?
        .unwrap_or_default();
    let r = res.r.to_col_major(&ctx)?;
    let dt = t.elapsed();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for j in 0..n {
        for i in 0..m {
            let qr: f64 = (0..=j.min(n - 1))
                .map(|p| q[i + p * m] as f64 * r[p + j * n] as f64)
                .sum();
            num += (qr - a[i + j * m] as f64).powi(2);
            den += (a[i + j * m] as f64).powi(2);
        }
    }
    println!(
        "qr {m}×{n} reduced: ‖QR − A‖/‖A‖ = {:.2e}, {:.2} ms",
        (num / den).sqrt(),
        dt.as_secs_f64() * 1e3
    );
    Ok(())
}
