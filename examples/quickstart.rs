//! The main job: every operation of metalcore on a built-in random input. Prints the adapter,
//! then for each operation its error against an f64 CPU reference, the GPU time (upload
//! excluded, read-back included) and faer's time for the same work on the CPU.
//!
//! `cargo run --release --example quickstart`

use std::hint::black_box;
use std::time::Instant;

use faer::linalg::solvers::SolveLstsq;

use metalcore::{
    column_norms, lstsq, lstsq_batched, qr, qr_batched, trsm, Context, GpuBatch, GpuMatrix, QrMode,
    TrsmOptions, Uplo,
};

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

/// Column-major f64 product of an m×k and a k×n matrix given as f32.
fn matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for j in 0..n {
        for p in 0..k {
            let bpj = b[p + j * k] as f64;
            for i in 0..m {
                c[i + j * m] += a[i + p * m] as f64 * bpj;
            }
        }
    }
    c
}

fn rel(diff: f64, base: f64) -> f64 {
    diff / base.max(f64::MIN_POSITIVE)
}

fn fro(x: impl Iterator<Item = f64>) -> f64 {
    x.map(|v| v * v).sum::<f64>().sqrt()
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn faer_mat(m: usize, n: usize, a: &[f32]) -> faer::Mat<f32> {
    faer::Mat::<f32>::from_fn(m, n, |i, j| a[i + j * m])
}

fn line(op: &str, what: &str, err: f64, gpu_ms: f64, cpu_ms: f64) {
    println!("{op:<28} {what:<24} {err:>10.2e} {gpu_ms:>10.2} {cpu_ms:>10.2}");
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
    println!(
        "{:<28} {:<24} {:>10} {:>10} {:>10}",
        "operation", "error measure", "error", "GPU ms", "faer ms"
    );

    // Column norms near 1e30, where naive squares overflow f32.
    let (m, n) = (512, 64);
    let a: Vec<f32> = random(m * n, 1).iter().map(|x| x * 1e30).collect();
    let ga = GpuMatrix::from_col_major(&ctx, m, n, &a)?;
    let t = Instant::now();
    let norms = column_norms(&ctx, &ga)?.to_col_major(&ctx)?;
    let gpu = ms(t);
    let fa = faer_mat(m, n, &a);
    let t = Instant::now();
    black_box((0..n).map(|j| fa.col(j).norm_l2()).collect::<Vec<f32>>());
    let cpu = ms(t);
    let err = (0..n)
        .map(|j| {
            let want = fro(a[j * m..(j + 1) * m].iter().map(|&x| x as f64));
            rel((norms[j] as f64 - want).abs(), want)
        })
        .fold(0.0, f64::max);
    line("column_norms 512×64 ×1e30", "max rel. error", err, gpu, cpu);

    // Blocked QR with Q.
    let (m, n) = (512, 256);
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
    let gpu = ms(t);
    let fa = faer_mat(m, n, &a);
    let t = Instant::now();
    let f = fa.qr();
    black_box((f.compute_thin_Q(), f.thin_R().to_owned()));
    let cpu = ms(t);
    let qr_prod = matmul(m, n, n, &q, &r);
    let err = rel(
        fro(qr_prod.iter().zip(&a).map(|(x, &y)| x - y as f64)),
        fro(a.iter().map(|&x| x as f64)),
    );
    line("qr 512×256 (Q and R)", "‖QR − A‖/‖A‖", err, gpu, cpu);

    // Triangular solve with many right-hand sides.
    let (n, k) = (512, 64);
    let mut l = random(n * n, 3);
    for j in 0..n {
        for i in 0..j {
            l[i + j * n] = 0.0;
        }
        l[j + j * n] += if l[j + j * n] >= 0.0 { 4.0 } else { -4.0 };
    }
    let b = random(n * k, 4);
    let (gl, gb) = (
        GpuMatrix::from_col_major(&ctx, n, n, &l)?,
        GpuMatrix::from_col_major(&ctx, n, k, &b)?,
    );
    let opts = TrsmOptions {
        uplo: Uplo::Lower,
        ..Default::default()
    };
    let t = Instant::now();
    let x = trsm(&ctx, &gl, &gb, &opts)?.to_col_major(&ctx)?;
    let gpu = ms(t);
    let (fl, mut fb) = (faer_mat(n, n, &l), faer_mat(n, k, &b));
    let t = Instant::now();
    faer::linalg::triangular_solve::solve_lower_triangular_in_place(
        fl.as_ref(),
        fb.as_mut(),
        faer::Par::rayon(0),
    );
    let cpu = ms(t);
    let lx = matmul(n, n, k, &l, &x);
    let err = rel(
        fro(lx.iter().zip(&b).map(|(x, &y)| x - y as f64)),
        fro(l.iter().map(|&v| v as f64)) * fro(x.iter().map(|&v| v as f64)),
    );
    line("trsm 512×512, 64 rhs", "‖LX − B‖/(‖L‖‖X‖)", err, gpu, cpu);

    // Least squares, tall.
    let (m, n, k) = (1024, 64, 2);
    let a = random(m * n, 5);
    let b = random(m * k, 6);
    let (ga, gb) = (
        GpuMatrix::from_col_major(&ctx, m, n, &a)?,
        GpuMatrix::from_col_major(&ctx, m, k, &b)?,
    );
    let t = Instant::now();
    let x = lstsq(&ctx, &ga, &gb)?.to_col_major(&ctx)?;
    let gpu = ms(t);
    let (fa, fb) = (faer_mat(m, n, &a), faer_mat(m, k, &b));
    let t = Instant::now();
    black_box(fa.qr().solve_lstsq(&fb));
    let cpu = ms(t);
    // Normal-equations residual: Aᵀ(AX − B) vanishes at the least-squares solution.
    let r: Vec<f64> = matmul(m, n, k, &a, &x)
        .iter()
        .zip(&b)
        .map(|(v, &w)| v - w as f64)
        .collect();
    let r32: Vec<f32> = r.iter().map(|&v| v as f32).collect();
    let at: Vec<f32> = (0..n * m).map(|idx| a[(idx / n) + (idx % n) * m]).collect();
    let atr = matmul(n, m, k, &at, &r32);
    let err = rel(
        fro(atr.into_iter()),
        fro(a.iter().map(|&v| v as f64)) * fro(r.iter().copied()),
    );
    line("lstsq 1024×64, 2 rhs", "‖Aᵀr‖/(‖A‖‖r‖)", err, gpu, cpu);

    // Batched QR: many small matrices, one workgroup each.
    let (batch, m, n) = (1000, 16, 16);
    let a = random(batch * m * n, 7);
    let ga = GpuBatch::from_col_major(&ctx, batch, m, n, &a)?;
    let t = Instant::now();
    let res = qr_batched(&ctx, &ga, QrMode::Reduced)?;
    let q = res
        .q
        .as_ref()
        .map(|q| q.to_col_major(&ctx))
        .transpose()?
        .unwrap_or_default();
    let r = res.r.to_col_major(&ctx)?;
    let gpu = ms(t);
    let mats: Vec<faer::Mat<f32>> = (0..batch)
        .map(|i| faer_mat(m, n, &a[i * m * n..(i + 1) * m * n]))
        .collect();
    let t = Instant::now();
    for fa in &mats {
        let f = fa.qr();
        black_box((f.compute_thin_Q(), f.thin_R().to_owned()));
    }
    let cpu = ms(t);
    let mut err = 0.0f64;
    for i in 0..batch {
        let s = i * m * n;
        let prod = matmul(m, n, n, &q[s..s + m * n], &r[i * n * n..(i + 1) * n * n]);
        let e = rel(
            fro(prod
                .iter()
                .zip(&a[s..s + m * n])
                .map(|(x, &y)| x - y as f64)),
            fro(a[s..s + m * n].iter().map(|&x| x as f64)),
        );
        err = err.max(e);
    }
    line("qr_batched 1000×16×16", "max ‖QR − A‖/‖A‖", err, gpu, cpu);

    // Batched least squares.
    let (batch, m, n) = (1000, 32, 8);
    let a = random(batch * m * n, 8);
    let b = random(batch * m, 9);
    let (ga, gb) = (
        GpuBatch::from_col_major(&ctx, batch, m, n, &a)?,
        GpuBatch::from_col_major(&ctx, batch, m, 1, &b)?,
    );
    let t = Instant::now();
    let x = lstsq_batched(&ctx, &ga, &gb)?.to_col_major(&ctx)?;
    let gpu = ms(t);
    let mats: Vec<(faer::Mat<f32>, faer::Mat<f32>)> = (0..batch)
        .map(|i| {
            (
                faer_mat(m, n, &a[i * m * n..(i + 1) * m * n]),
                faer_mat(m, 1, &b[i * m..(i + 1) * m]),
            )
        })
        .collect();
    let t = Instant::now();
    for (fa, fb) in &mats {
        black_box(fa.qr().solve_lstsq(fb));
    }
    let cpu = ms(t);
    let mut err = 0.0f64;
    for i in 0..batch {
        let (ai, bi, xi) = (
            &a[i * m * n..(i + 1) * m * n],
            &b[i * m..(i + 1) * m],
            &x[i * n..(i + 1) * n],
        );
        let r: Vec<f32> = matmul(m, n, 1, ai, xi)
            .iter()
            .zip(bi)
            .map(|(v, &w)| (v - w as f64) as f32)
            .collect();
        let at: Vec<f32> = (0..n * m)
            .map(|idx| ai[(idx / n) + (idx % n) * m])
            .collect();
        let atr = matmul(n, m, 1, &at, &r);
        err = err.max(rel(
            fro(atr.into_iter()),
            fro(ai.iter().map(|&v| v as f64)) * fro(r.iter().map(|&v| v as f64)),
        ));
    }
    line(
        "lstsq_batched 1000×(32×8)",
        "max ‖Aᵀr‖/(‖A‖‖r‖)",
        err,
        gpu,
        cpu,
    );
    println!("(GPU times of a first call include pipeline compilation.)");
    Ok(())
}
