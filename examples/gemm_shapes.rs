//! GPU time of the blocked QR's GEMM shapes: the trailing updates C −= V·W (K = the panel width,
//! 256 or 512) and the VᵀC products (explicit Vᵀ, or V transposed), each alone.
//!
//! ```text
//! cargo run --release --example gemm_shapes
//! python3 scripts/torch_gemm_shapes.py      # the same shapes with cuBLAS (torch.addmm)
//! ```
//!
//! Medians of ten calls after two, from [`Context::last_gpu_time`]. Shapes whose operands do
//! not fit one storage binding of the adapter (software adapters allow 128 MiB) are skipped.

use metalcore::{gemm, Context, ContextOptions, GpuMatrix};

fn main() -> metalcore::Result<()> {
    let ctx = Context::with_options(ContextOptions {
        gpu_timing: true,
        disable_cooperative_matrix: std::env::args().any(|a| a == "--no-coop"),
        ..Default::default()
    })?;
    println!("{}", ctx.describe());
    // (m, n, k, A transposed, what)
    let shapes: &[(usize, usize, usize, bool, &str)] = &[
        (8192, 7936, 256, false, "V·W update, K = 256"),
        (8192, 7936, 512, false, "V·W update, K = 512"),
        (4096, 3840, 256, false, "V·W update, K = 256"),
        (4096, 3584, 512, false, "V·W update, K = 512"),
        (256, 7936, 8192, false, "Vᵀ·C, explicit Vᵀ, w = 256"),
        (512, 7936, 8192, false, "Vᵀ·C, explicit Vᵀ, w = 512"),
        (256, 7936, 8192, true, "Vᵀ·C, V transposed, w = 256"),
        (512, 7936, 8192, true, "Vᵀ·C, V transposed, w = 512"),
    ];
    for &(m, n, k, trans_a, what) in shapes {
        if [m * k, k * n, m * n]
            .iter()
            .any(|&e| e as u64 > ctx.max_elements())
        {
            println!("{what:30} {m}×{n}×{k}: skipped (larger than one storage binding)");
            continue;
        }
        let (ar, ac) = if trans_a { (k, m) } else { (m, k) };
        let a = GpuMatrix::filled(&ctx, ar, ac, 1e-3)?;
        let b = GpuMatrix::filled(&ctx, k, n, 1e-3)?;
        let mut c = GpuMatrix::filled(&ctx, m, n, 1.0)?;
        let mut times = Vec::new();
        for i in 0..12 {
            gemm(&ctx, -1.0, &a, trans_a, &b, false, 1.0, &mut c)?;
            let t = ctx.last_gpu_time()?;
            if i >= 2 {
                times.extend(t.map(|d| d.as_secs_f64() * 1e3));
            }
        }
        times.sort_by(f64::total_cmp);
        match times.get(times.len() / 2) {
            Some(&ms) => println!(
                "{what:30} {m}×{n}×{k}: {ms:.3} ms = {:.1} TF/s",
                2.0 * (m * n * k) as f64 / ms / 1e9
            ),
            None => println!("{what:30} {m}×{n}×{k}: no GPU timestamps on this adapter"),
        }
    }
    Ok(())
}
