//! Column norms and GEMM against f64 references.

mod common;
use common::*;
use metalcore::{column_norms, gemm, matmul, Context, GpuMatrix};

fn norms_of(rows: usize, cols: usize, data: &[f32]) -> Vec<f32> {
    let ctx = ctx();
    let a = GpuMatrix::from_col_major(ctx, rows, cols, data).unwrap();
    column_norms(ctx, &a).unwrap().to_col_major(ctx).unwrap()
}

fn ref_norms(rows: usize, cols: usize, data: &[f32]) -> Vec<f64> {
    (0..cols)
        .map(|j| {
            data[j * rows..(j + 1) * rows]
                .iter()
                .map(|&x| (x as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect()
}

#[test]
fn column_norms_match_f64_on_random_and_odd_sizes() {
    let mut rng = Rng::new(1);
    for &(rows, cols) in &[(1, 1), (7, 3), (33, 33), (257, 5), (1000, 2), (3, 70000)] {
        let data = rng.normal_vec(rows * cols);
        let got = norms_of(rows, cols, &data);
        let want = ref_norms(rows, cols, &data);
        // Scaled sum of squares: rows roundings of relative size ε, then a sqrt: rows·ε relative.
        for (j, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                ((g as f64) - w).abs() <= 2.0 * rows as f64 * EPS * w + f64::MIN_POSITIVE,
                "{rows}×{cols} column {j}: got {g}, want {w}"
            );
        }
    }
}

#[test]
fn column_norms_do_not_overflow_or_underflow() {
    // Squares of 1e30 overflow f32 and squares of 1e-30 underflow: snrm2 scales first.
    for &scale in &[1e30f32, 1e-30, 5e37, 1e-37] {
        let data = vec![3.0 * scale, 4.0 * scale, 0.0];
        let got = norms_of(3, 1, &data)[0] as f64;
        let want = 5.0 * scale as f64;
        assert!(
            ((got - want) / want).abs() < 4.0 * EPS,
            "scale {scale:e}: got {got:e}, want {want:e}"
        );
    }
}

#[test]
fn column_norms_of_zero_nan_and_inf_columns() {
    let data = [0.0, 0.0, 1.0, f32::NAN, f32::INFINITY, 1.0, 2.0, 2.0];
    let got = norms_of(2, 4, &data);
    assert_eq!(got[0], 0.0);
    assert!(got[1].is_nan(), "NaN column gave {}", got[1]);
    assert_eq!(got[2], f32::INFINITY);
    assert!((got[3] - 8f32.sqrt()).abs() < 4.0 * f32::EPSILON);
}

#[test]
fn column_norms_reject_empty_input() {
    let ctx = ctx();
    let a = GpuMatrix::zeros(ctx, 0, 3).unwrap();
    let e = column_norms(ctx, &a).unwrap_err().to_string();
    assert!(e.contains("column_norms") && e.contains("0×3"), "{e}");
}

/// Rows and columns of A and B as stored for C (m×n) = op(A)·op(B) with inner dimension k:
/// k×m and n×k where transposed.
fn stored_dims(m: usize, n: usize, k: usize, ta: bool, tb: bool) -> [(usize, usize); 2] {
    [
        if ta { (k, m) } else { (m, k) },
        if tb { (n, k) } else { (k, n) },
    ]
}

/// Asserts C[i, j] of C = 0.5·op(A)·op(B) − 2·C_old against the f64 dot product `dot`, with
/// `bound` = (|op(A)||op(B)|)_ij and the old value `old`. A dot product of length k in f32 is
/// off by at most k·ε·bound, plus the rounding of the alpha/beta combination (a few ε of the
/// terms' magnitudes).
#[allow(clippy::too_many_arguments)]
fn assert_gemm_entry(
    what: &str,
    k: usize,
    i: usize,
    j: usize,
    got: f32,
    dot: f64,
    bound: f64,
    old: f32,
) {
    let old = f64::from(old);
    let want = 0.5 * dot - 2.0 * old;
    let g = f64::from(got);
    let tol = (k as f64 + 4.0) * EPS * (0.5 * bound + 2.0 * old.abs());
    assert!(
        (g - want).abs() <= tol,
        "{what}: C[{i},{j}] got {g:e}, want {want:e}, tol {tol:e}"
    );
}

/// The operands of a seeded C = 0.5·op(A)·op(B) − 2·C over a random C, and the GPU's result:
/// (A, B, C before, C after), A and B as stored (`stored_dims`).
fn run_gemm(
    ctx: &Context,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    rng: &mut Rng,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let [(ar, ac), (br, bc)] = stored_dims(m, n, k, ta, tb);
    let a = rng.normal_vec(ar * ac);
    let b = rng.normal_vec(br * bc);
    let c0 = rng.normal_vec(m * n);
    let ga = GpuMatrix::from_col_major(ctx, ar, ac, &a).unwrap();
    let gb = GpuMatrix::from_col_major(ctx, br, bc, &b).unwrap();
    let mut gc = GpuMatrix::from_col_major(ctx, m, n, &c0).unwrap();
    gemm(ctx, 0.5, &ga, ta, &gb, tb, -2.0, &mut gc).unwrap();
    let got = gc.to_col_major(ctx).unwrap();
    (a, b, c0, got)
}

fn check_gemm(m: usize, n: usize, k: usize, ta: bool, tb: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let (a, b, c0, got) = run_gemm(ctx(), m, n, k, ta, tb, &mut rng);
    let [(ar, ac), (br, bc)] = stored_dims(m, n, k, ta, tb);
    let ma = Mat::from_f32(ar, ac, &a);
    let mb = Mat::from_f32(br, bc, &b);
    let opa = if ta { ma.t() } else { ma };
    let opb = if tb { mb.t() } else { mb };
    let ab = opa.matmul(&opb);
    let abs = |x: &Mat| Mat {
        data: x.data.iter().map(|v| v.abs()).collect(),
        ..x.clone()
    };
    let bound = abs(&opa).matmul(&abs(&opb));
    let what = format!("gemm {m}×{n}×{k} ta={ta} tb={tb}");
    for j in 0..n {
        for i in 0..m {
            let (g, old) = (got[i + j * m], c0[i + j * m]);
            assert_gemm_entry(&what, k, i, j, g, ab[(i, j)], bound[(i, j)], old);
        }
    }
}

#[test]
fn gemm_all_transposes_odd_sizes() {
    let mut seed = 10;
    for &(m, n, k) in &[
        (1, 1, 1),
        (7, 3, 5),
        (33, 65, 17),
        (127, 64, 130),
        (64, 127, 1),
        (3, 200, 257),
        // Both dimensions >= 128 but fewer than 128 whole 128×128 tiles: the 64×64 variant.
        (128, 128, 16),
        (257, 131, 45),
        // 16·8 = 128 whole 128×128 tiles: the gemm_large variant, with ragged edges.
        (2053, 1027, 9),
    ] {
        for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
            seed += 1;
            check_gemm(m, n, k, ta, tb, seed);
        }
    }
}

#[test]
fn gemm_with_zero_beta_overwrites_poisoned_output() {
    let ctx = ctx();
    let mut rng = Rng::new(5);
    let (m, n, k) = (2053, 1027, 9); // gemm_large (128 whole tiles) with ragged edges
    let a = rng.normal_vec(m * k);
    let b = rng.normal_vec(k * n);
    let ga = GpuMatrix::from_col_major(ctx, m, k, &a).unwrap();
    let gb = GpuMatrix::from_col_major(ctx, k, n, &b).unwrap();
    let mut gc = GpuMatrix::filled(ctx, m, n, f32::NAN).unwrap();
    gemm(ctx, 1.0, &ga, false, &gb, false, 0.0, &mut gc).unwrap();
    let got = gc.to_col_major(ctx).unwrap();
    let want = Mat::from_f32(m, k, &a).matmul(&Mat::from_f32(k, n, &b));
    let scale = want.max_abs();
    assert_close(
        "gemm beta=0",
        &got,
        &want.data,
        (k as f64) * EPS * 4.0,
        scale,
    );
}

#[test]
fn matmul_rejects_mismatched_shapes_with_a_clear_error() {
    let ctx = ctx();
    let a = GpuMatrix::zeros(ctx, 3, 4).unwrap();
    let b = GpuMatrix::zeros(ctx, 5, 2).unwrap();
    let e = matmul(ctx, &a, false, &b, false).unwrap_err().to_string();
    assert!(
        e.contains("gemm") && e.contains("3×4") && e.contains("5×2"),
        "{e}"
    );
}

#[test]
fn one_submission_and_no_readback_per_operation() {
    let ctx = metalcore::Context::new().unwrap();
    let a = GpuMatrix::from_col_major(&ctx, 4, 4, &[1.0; 16]).unwrap();
    let before = ctx.stats();
    let c = matmul(&ctx, &a, false, &a, true).unwrap();
    let _ = column_norms(&ctx, &c).unwrap();
    let after = ctx.stats();
    assert_eq!(after.submissions - before.submissions, 2);
    assert_eq!(after.readbacks, before.readbacks);
}

/// Few output tiles and a deep K take the split-K path (slices in parallel, then a reduction):
/// exact slice multiples, a remainder slice, every transpose, slices on both GEMM kernels, and
/// beta = 0 over a NaN-poisoned C.
#[test]
fn gemm_split_k_for_skinny_outputs_with_deep_k() {
    let mut seed = 500;
    // 512×256 has eight whole 128×128 tiles: split so that the slices run on the large kernel
    // (2048: equal slices; 2060: a remainder slice, which runs on the small one).
    for &(m, n, k) in &[
        (5, 7, 3000),
        (33, 40, 2100),
        (64, 64, 1024),
        (1, 130, 1500),
        (512, 256, 2048),
        (512, 256, 2060),
    ] {
        for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
            seed += 1;
            check_gemm(m, n, k, ta, tb, seed);
        }
    }
    let ctx = ctx();
    let mut rng = Rng::new(7);
    let (m, n, k) = (32, 96, 4000);
    let a = rng.normal_vec(k * m);
    let b = rng.normal_vec(k * n);
    let ga = GpuMatrix::from_col_major(ctx, k, m, &a).unwrap();
    let gb = GpuMatrix::from_col_major(ctx, k, n, &b).unwrap();
    let mut gc = GpuMatrix::filled(ctx, m, n, f32::NAN).unwrap();
    gemm(ctx, 1.0, &ga, true, &gb, false, 0.0, &mut gc).unwrap();
    let got = gc.to_col_major(ctx).unwrap();
    let want = Mat::from_f32(k, m, &a).t().matmul(&Mat::from_f32(k, n, &b));
    // Sums of k products of unit normals: error ≤ k·ε·Σ|a||b| ≈ k·ε·k·E|ab|; relative to the
    // largest entry (≈ 3√k) a bound of 4·k·ε·√k holds with room.
    let scale = want.max_abs();
    assert_close(
        "split-K gemm beta=0",
        &got,
        &want.data,
        4.0 * k as f64 * EPS * (k as f64).sqrt() / 3.0,
        scale,
    );
}

#[test]
fn gpu_timing_reports_the_last_submission() {
    let ctx = metalcore::Context::with_options(metalcore::ContextOptions {
        gpu_timing: true,
        ..Default::default()
    })
    .unwrap();
    let has = ctx.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    assert_eq!(ctx.last_gpu_time().unwrap(), None, "nothing submitted yet");
    let mut rng = Rng::new(77);
    let (m, n, k) = (300, 200, 100);
    let ga = GpuMatrix::from_col_major(&ctx, m, k, &rng.normal_vec(m * k)).unwrap();
    let gb = GpuMatrix::from_col_major(&ctx, k, n, &rng.normal_vec(k * n)).unwrap();
    let mut gc = GpuMatrix::filled(&ctx, m, n, 0.0).unwrap();
    gemm(&ctx, 1.0, &ga, false, &gb, false, 0.0, &mut gc).unwrap();
    let t = ctx.last_gpu_time().unwrap();
    assert_eq!(
        t.is_some(),
        has,
        "a time exactly where the adapter has timestamp queries"
    );
    if let Some(t) = t {
        // A 300×200×100 product takes some time, and far less than a minute, on any adapter.
        assert!(
            t > std::time::Duration::ZERO && t < std::time::Duration::from_secs(60),
            "{t:?}"
        );
    }
    assert_eq!(ctx.last_gpu_time().unwrap(), None, "read once");
}

/// `Context::compiled_kernels` lists what a context built: after one GEMM on a fresh context, the
/// gemm family — its WGSL text holding each entry point, the `gemm` entry's override constants,
/// A and B bound read-only, C and the partial Grams' binding read-write — and nothing new after
/// the same call again (the cache is hit).
#[test]
fn compiled_kernels_lists_the_specializations_built() {
    let ctx = Context::new().expect("a GPU or software adapter (see README)");
    assert!(
        ctx.compiled_kernels().is_empty(),
        "a fresh context compiled nothing"
    );
    let mut rng = Rng::new(71);
    let (m, k, n) = (33, 17, 9);
    let a = GpuMatrix::from_col_major(&ctx, m, k, &rng.normal_vec(m * k)).unwrap();
    let b = GpuMatrix::from_col_major(&ctx, k, n, &rng.normal_vec(k * n)).unwrap();
    matmul(&ctx, &a, false, &b, false).unwrap();
    let built = ctx.compiled_kernels();
    assert!(built.iter().all(|c| c.kernel == "gemm"), "{built:?}");
    assert!(
        built.windows(2).all(|w| w[0].entry <= w[1].entry),
        "not sorted: {built:?}"
    );
    for c in &built {
        assert!(
            c.source.contains(&format!("fn {}(", c.entry)),
            "{}: not in the source",
            c.entry
        );
    }
    let g = built
        .iter()
        .find(|c| c.entry.starts_with("gemm"))
        .unwrap_or_else(|| panic!("no gemm entry among {built:?}"));
    let names: Vec<&str> = g.constants.iter().map(|&(name, _)| name).collect();
    assert!(
        names.contains(&"TRANS_A") && names.contains(&"TRANS_B"),
        "{names:?}"
    );
    // The 64×64 kernel also binds the output of its partial Grams (C again when it writes
    // none), read-write.
    assert_eq!(
        g.storage_read_only,
        [true, true, false, false],
        "A, B read; C written; the Grams' binding written"
    );
    matmul(&ctx, &a, false, &b, false).unwrap();
    assert_eq!(
        ctx.compiled_kernels().len(),
        built.len(),
        "the second call compiled again"
    );
}

/// A product deep enough for `gemm_large`'s written-out K loop with every transpose (K ≥ 2048,
/// the host's `DEEP_MIN_K_TN`, and 512 for the other transposes: the test asserts the
/// specialization through `Context::compiled_kernels`; 16·8 = 128 whole 128×128 tiles), ragged
/// in M, N and K (a last K tile of one), every transpose, over a random C. Checked on every
/// entry of the last five rows and last three columns (the ragged tiles) and on 3000 seeded
/// entries elsewhere: a full f64 reference is 4·10⁹ products per case, minutes on the CI
/// machine, and a kernel fault here (a wrong kk, a dropped tile) is not confined to single
/// entries.
#[test]
fn gemm_deep_k_every_transpose() {
    let (m, n, k) = (2053, 1027, 2049);
    let mut seed = 900;
    // On the default context (cooperative matrices where the adapter has them), then on one
    // that keeps gemm_large: on such adapters the only way its written-out loop runs.
    let contexts: &[&Context] = if ctx().coop_gemm() {
        &[ctx(), f32_gemm_ctx()]
    } else {
        &[ctx()]
    };
    for &c in contexts {
        for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
            seed += 1;
            check_sampled_entries(c, m, n, k, ta, tb, seed);
        }
    }
    // The written-out loop is what this test is for, with every transpose: were a host threshold
    // (DEEP_MIN_K, or DEEP_MIN_K_TN for Aᵀ·B) moved above this K, that product would run the
    // loop and the test would check nothing new for it. Other tests of this binary build UNROLL
    // for some transposes (K ≥ 512 is enough for all but Aᵀ·B), so each one is looked for.
    let flag = |c: &metalcore::CompiledKernel, name: &str| {
        c.constants.iter().any(|&(n, v)| n == name && v == 1.0)
    };
    let f32_ctx = contexts[contexts.len() - 1];
    let built = f32_ctx.compiled_kernels();
    for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
        assert!(
            built.iter().any(|c| c.entry == "gemm_large"
                && flag(c, "UNROLL")
                && flag(c, "TRANS_A") == ta
                && flag(c, "TRANS_B") == tb),
            "no gemm_large specialization with UNROLL for ta={ta} tb={tb}: {:?}",
            built
                .iter()
                .map(|c| (c.entry, &c.constants))
                .collect::<Vec<_>>()
        );
    }
    // Where the default context has cooperative matrices, its products ran on gemm_coop.
    if ctx().coop_gemm() {
        let built = ctx().compiled_kernels();
        for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
            assert!(
                built.iter().any(|c| c.entry == "gemm_coop"
                    && flag(c, "TRANS_A") == ta
                    && flag(c, "TRANS_B") == tb),
                "no gemm_coop specialization for ta={ta} tb={tb}"
            );
        }
    }
}

/// Checks C = 0.5·op(A)·op(B) − 2·C (seeded) against f64 on every entry of the last five rows
/// and last three columns (the ragged tiles) and on 3000 seeded entries elsewhere.
fn check_sampled_entries(
    ctx: &Context,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let (a, b, c0, got) = run_gemm(ctx, m, n, k, ta, tb, &mut rng);
    let opa = |i: usize, l: usize| a[if ta { l + i * k } else { i + l * m }] as f64;
    let opb = |l: usize, j: usize| b[if tb { j + l * n } else { l + j * k }] as f64;
    let mut entries: Vec<(usize, usize)> = Vec::new();
    entries.extend((m - 5..m).flat_map(|i| (0..n).map(move |j| (i, j))));
    entries.extend((n - 3..n).flat_map(|j| (0..m).map(move |i| (i, j))));
    entries.extend((0..3000).map(|_| {
        let i = (rng.next_u64() % m as u64) as usize;
        let j = (rng.next_u64() % n as u64) as usize;
        (i, j)
    }));
    let what = format!("gemm {m}×{n}×{k} ta={ta} tb={tb}");
    for (i, j) in entries {
        let (mut dot, mut bound) = (0.0f64, 0.0f64);
        for l in 0..k {
            let x = opa(i, l) * opb(l, j);
            dot += x;
            bound += x.abs();
        }
        let (g, old) = (got[i + j * m], c0[i + j * m]);
        assert_gemm_entry(&what, k, i, j, g, dot, bound, old);
    }
}

/// A product split along K into slices that are split again while they stay at least 512 deep
/// (the large kernel's split of the 8192² QR's VᵀC products): 1024×1024 has 64 whole 128×128
/// tiles, so K = 4096 goes to 8 slices of 512 (4 before that rule), each transpose of A.
#[test]
fn gemm_split_k_deep_slices() {
    for (seed, ta) in [(950, true), (951, false)] {
        check_sampled_entries(ctx(), 1024, 1024, 4096, ta, false, seed);
    }
}

/// The large kernels (128 whole 128×128 tiles, ragged edges, a ragged K deep enough for the
/// cooperative-matrix kernel where there is one) on operands whose rows of op(A) and columns of
/// op(B) differ in scale by up to 2^±60 (and entries within each by 2^±4), with a zero row and a
/// zero column, every transpose: every entry of the ragged edges and 3000 others against f64
/// within the f32 bound (k + 4)·ε·(|op(A)||op(B)|)_ij. The cooperative-matrix kernel scales each
/// row and column by its own power of two; one scale per operand would leave the small rows'
/// products at about 2^-39 of the largest, far outside this bound. Then an Inf in op(A) and a
/// NaN in op(B): row and column of C non-finite, every other entry as before; and beta = 0 over
/// a C of NaNs.
#[test]
fn gemm_large_lines_of_very_different_scales_and_non_finite_entries() {
    let (m, n, k) = (2053, 1027, 523);
    let ctx = ctx();
    let mut seed = 970;
    for &(ta, tb) in &[(false, false), (true, false), (false, true), (true, true)] {
        seed += 1;
        let mut rng = Rng::new(seed);
        let [(ar, ac), (br, bc)] = stored_dims(m, n, k, ta, tb);
        let row_scale = |i: usize| 2f64.powi((i % 121) as i32 - 60);
        let col_scale = |j: usize| 2f64.powi((j % 97) as i32 - 48);
        let inner = |l: usize| 2f64.powi((l % 9) as i32 - 4);
        // op(A)[i, l] and op(B)[l, j] as stored.
        let mut a = rng.normal_vec(ar * ac);
        let mut b = rng.normal_vec(br * bc);
        for i in 0..m {
            for l in 0..k {
                let at = if ta { l + i * k } else { i + l * m };
                a[at] = (a[at] as f64 * row_scale(i) * inner(l)) as f32;
                if i == 77 {
                    a[at] = 0.0;
                }
            }
        }
        for l in 0..k {
            for j in 0..n {
                let at = if tb { j + l * n } else { l + j * k };
                b[at] = (b[at] as f64 * col_scale(j) * inner(l + 3)) as f32;
                if j == 300 {
                    b[at] = 0.0;
                }
            }
        }
        let c0 = rng.normal_vec(m * n);
        let run_with = |a: &[f32], b: &[f32], c: &[f32], beta: f32| {
            let ga = GpuMatrix::from_col_major(ctx, ar, ac, a).unwrap();
            let gb = GpuMatrix::from_col_major(ctx, br, bc, b).unwrap();
            let mut gc = GpuMatrix::from_col_major(ctx, m, n, c).unwrap();
            gemm(ctx, 0.5, &ga, ta, &gb, tb, beta, &mut gc).unwrap();
            gc.to_col_major(ctx).unwrap()
        };
        let run = |a: &[f32], b: &[f32]| run_with(a, b, &c0, -2.0);
        let opa = |a: &[f32], i: usize, l: usize| a[if ta { l + i * k } else { i + l * m }] as f64;
        let opb = |b: &[f32], l: usize, j: usize| b[if tb { j + l * n } else { l + j * k }] as f64;
        let mut entries: Vec<(usize, usize)> = Vec::new();
        entries.extend((m - 5..m).flat_map(|i| (0..n).map(move |j| (i, j))));
        entries.extend((n - 3..n).flat_map(|j| (0..m).map(move |i| (i, j))));
        entries.extend((0..n).map(|j| (77, j)));
        entries.extend((0..m).map(|i| (i, 300)));
        entries.extend((0..3000).map(|_| {
            let i = (rng.next_u64() % m as u64) as usize;
            let j = (rng.next_u64() % n as u64) as usize;
            (i, j)
        }));
        let what = format!("scaled gemm {m}×{n}×{k} ta={ta} tb={tb}");
        let check = |got: &[f32], skip: &dyn Fn(usize, usize) -> bool| {
            for &(i, j) in &entries {
                if skip(i, j) {
                    continue;
                }
                let (mut dot, mut bound) = (0.0f64, 0.0f64);
                for l in 0..k {
                    let x = opa(&a, i, l) * opb(&b, l, j);
                    dot += x;
                    bound += x.abs();
                }
                let (g, old) = (got[i + j * m], c0[i + j * m]);
                assert_gemm_entry(&what, k, i, j, g, dot, bound, old);
            }
        };
        check(&run(&a, &b), &|_, _| false);

        // Inf at op(A)[5, 3], NaN at op(B)[10, 9]: row 5 and column 9 of C are not finite, the
        // rest is unchanged.
        let mut a2 = a.clone();
        let mut b2 = b.clone();
        a2[if ta { 3 + 5 * k } else { 5 + 3 * m }] = f32::INFINITY;
        b2[if tb { 9 + 10 * n } else { 10 + 9 * k }] = f32::NAN;
        let got = run(&a2, &b2);
        for j in 0..n {
            assert!(
                !got[5 + j * m].is_finite(),
                "{what}: C[5, {j}] = {} with an Inf in row 5",
                got[5 + j * m]
            );
        }
        for i in 0..m {
            assert!(
                got[i + 9 * m].is_nan(),
                "{what}: C[{i}, 9] = {} with a NaN in column 9",
                got[i + 9 * m]
            );
        }
        check(&got, &|i, j| i == 5 || j == 9);

        // beta = 0 over NaNs: C = 0.5·op(A)·op(B), the old C never read.
        let got = run_with(&a, &b, &vec![f32::NAN; m * n], 0.0);
        for &(i, j) in &entries {
            let (mut dot, mut bound) = (0.0f64, 0.0f64);
            for l in 0..k {
                let x = opa(&a, i, l) * opb(&b, l, j);
                dot += x;
                bound += x.abs();
            }
            assert_gemm_entry(&what, k, i, j, got[i + j * m], dot, bound, 0.0);
        }
    }
}

/// The cooperative-matrix GEMM (where the adapter has it) against the f32 kernel on the same
/// random 1024×2048×4096 product (128 whole tiles, no split): its normwise error over 2000
/// seeded entries, against f64, may not exceed the f32 kernel's by more than 2×. It sums each
/// K step's 16 products in the tensor cores and adds them in f32 (wgsl/gemm_coop.wgsl, `mma3`),
/// which measured 2.9e-7 against gemm_large's 1.1e-6 on an H200 at 4096²; chaining the
/// accumulation through the tensor cores' own additions measured 1.4e-5 and fails here. On
/// adapters without cooperative matrices both contexts run the f32 kernel.
#[test]
fn coop_gemm_is_as_accurate_as_the_f32_kernel() {
    let (m, n, k) = (1024, 2048, 4096);
    let mut rng = Rng::new(990);
    let a = rng.normal_vec(m * k);
    let b = rng.normal_vec(k * n);
    let entries: Vec<(usize, usize)> = (0..2000)
        .map(|_| {
            let i = (rng.next_u64() % m as u64) as usize;
            let j = (rng.next_u64() % n as u64) as usize;
            (i, j)
        })
        .collect();
    let want: Vec<f64> = entries
        .iter()
        .map(|&(i, j)| {
            (0..k)
                .map(|l| a[i + l * m] as f64 * b[l + j * k] as f64)
                .sum()
        })
        .collect();
    let error = |ctx: &Context| {
        let ga = GpuMatrix::from_col_major(ctx, m, k, &a).unwrap();
        let gb = GpuMatrix::from_col_major(ctx, k, n, &b).unwrap();
        let got = matmul(ctx, &ga, false, &gb, false)
            .unwrap()
            .to_col_major(ctx)
            .unwrap();
        let (mut e2, mut w2) = (0.0f64, 0.0f64);
        for (&(i, j), &w) in entries.iter().zip(&want) {
            e2 += (got[i + j * m] as f64 - w).powi(2);
            w2 += w * w;
        }
        (e2 / w2).sqrt()
    };
    let (coop, f32_kernel) = (error(ctx()), error(f32_gemm_ctx()));
    assert!(
        coop <= 2.0 * f32_kernel,
        "‖C − AB‖/‖AB‖ over the sample: {coop:e} (default context, cooperative matrices: {}) \
         against {f32_kernel:e} for the f32 kernel",
        ctx().coop_gemm()
    );
}
