//! Householder primitives (geqr2, larft, larfb) and blocked QR (qr, geqrf, orgqr, ormqr)
//! against f64 references, with faer's float32 QR as the yardstick for the invariants.

mod common;
use common::*;
use metalcore::{
    geqr2, geqrf, larfb, larft, qr, qr_with, GpuMatrix, PanelAlgorithm, QrMode, QrOptions,
};

fn upload(m: &Mat) -> GpuMatrix {
    upload_to(ctx(), m)
}

fn download(g: &GpuMatrix) -> Mat {
    download_from(ctx(), g)
}

fn upload_to(ctx: &metalcore::Context, m: &Mat) -> GpuMatrix {
    let data: Vec<f32> = m.data.iter().map(|&x| x as f32).collect();
    GpuMatrix::from_col_major(ctx, m.rows, m.cols, &data).unwrap()
}

fn download_from(ctx: &metalcore::Context, g: &GpuMatrix) -> Mat {
    Mat::from_f32(g.rows(), g.cols(), &g.to_col_major(ctx).unwrap())
}

fn random(rows: usize, cols: usize, seed: u64) -> Mat {
    let mut rng = Rng::new(seed);
    let data = rng.normal_vec(rows * cols);
    Mat::from_f32(rows, cols, &data)
}

/// What float32 LAPACK-style QR (faer, f32) achieves on this matrix: (‖QR − A‖_F/‖A‖_F,
/// max|QᵀQ − I|), both measured in f64.
fn faer_f32_quality(a: &Mat) -> (f64, f64) {
    let fa = faer::Mat::<f32>::from_fn(a.rows, a.cols, |i, j| a[(i, j)] as f32);
    let f = fa.qr();
    let q = f.compute_thin_Q();
    let r = f.thin_R();
    let q = Mat {
        rows: q.nrows(),
        cols: q.ncols(),
        data: (0..q.ncols())
            .flat_map(|j| (0..q.nrows()).map(move |i| (i, j)))
            .map(|(i, j)| q[(i, j)] as f64)
            .collect(),
    };
    let r = Mat {
        rows: r.nrows(),
        cols: r.ncols(),
        data: (0..r.ncols())
            .flat_map(|j| (0..r.nrows()).map(move |i| (i, j)))
            .map(|(i, j)| r[(i, j)] as f64)
            .collect(),
    };
    quality(a, &q, &r)
}

fn quality(a: &Mat, q: &Mat, r: &Mat) -> (f64, f64) {
    let recon = q.matmul(r).sub(a).fro() / a.fro().max(f64::MIN_POSITIVE);
    let orth = q.t().matmul(q).sub(&Mat::identity(q.cols)).max_abs();
    (recon, orth)
}

/// GPU QR of `a` in `mode` with panel width `nb`; checks shapes, exact zeros below R's
/// diagonal, and the two invariants against faer's float32 result on the same matrix.
fn check_qr(name: &str, a: &Mat, mode: QrMode, nb: Option<usize>) {
    for panel in PANELS {
        let opts = QrOptions {
            block_size: nb,
            ..panel
        };
        check_qr_with(&format!("{name} {:?}", panel.panel), a, mode, &opts);
    }
}

/// Panel algorithms every shape is checked with: one workgroup, and TSQR with the smallest
/// blocks it takes (2·nb rows), so that even small test matrices get trees of several levels,
/// alone and behind CholeskyQR2 (which factors every panel of more than one block, or leaves it
/// to the tree where its check fails).
const PANELS: [QrOptions; 3] = [
    QrOptions {
        block_size: None,
        panel: PanelAlgorithm::OneWorkgroup,
        tsqr_block_rows: None,
    },
    QrOptions {
        block_size: None,
        panel: PanelAlgorithm::Tsqr,
        tsqr_block_rows: Some(1),
    },
    QrOptions {
        block_size: None,
        panel: PanelAlgorithm::CholeskyQr2,
        tsqr_block_rows: Some(1),
    },
];

fn check_qr_with(name: &str, a: &Mat, mode: QrMode, opts: &QrOptions) {
    check_qr_in(ctx(), name, a, mode, opts);
}

/// [`check_qr_with`] on a given context.
fn check_qr_in(ctx: &metalcore::Context, name: &str, a: &Mat, mode: QrMode, opts: &QrOptions) {
    let nb = opts.block_size;
    let (m, n) = (a.rows, a.cols);
    let k = m.min(n);
    let res = qr_with(ctx, &upload_to(ctx, a), mode, opts).unwrap();
    let r = download_from(ctx, &res.r);
    let r_rows = if mode == QrMode::Complete { m } else { k };
    assert_eq!((r.rows, r.cols), (r_rows, n), "{name}: R shape");
    for j in 0..n {
        for i in j + 1..r_rows {
            assert_eq!(
                r[(i, j)],
                0.0,
                "{name}: R[{i},{j}] below the diagonal is not zero"
            );
        }
    }
    let Some(q) = res.q else {
        assert_eq!(mode, QrMode::R);
        return;
    };
    let q = download_from(ctx, &q);
    let q_cols = if mode == QrMode::Complete { m } else { k };
    assert_eq!((q.rows, q.cols), (m, q_cols), "{name}: Q shape");
    let (recon, orth) = quality(a, &q, &r);
    let (f_recon, f_orth) = faer_f32_quality(a);
    // Householder QR is backward stable: both errors are O(n·ε) in theory and a few ε·√n in
    // practice. We accept up to 10× what faer's float32 QR reaches on the same matrix, with a
    // floor of 10ε (faer can be lucky on tiny matrices): a wrong reflector or a missed update
    // gives errors of order 1, far outside this.
    let tol_recon = 10.0 * f_recon.max(EPS);
    let tol_orth = 10.0 * f_orth.max(EPS);
    assert!(
        recon <= tol_recon,
        "{name} {mode:?} nb={nb:?}: ‖QR−A‖/‖A‖ = {recon:e} > {tol_recon:e} (faer f32: {f_recon:e})"
    );
    assert!(
        orth <= tol_orth,
        "{name} {mode:?} nb={nb:?}: max|QᵀQ−I| = {orth:e} > {tol_orth:e} (faer f32: {f_orth:e})"
    );
}

#[test]
fn qr_reduced_on_odd_shapes_and_block_sizes() {
    let shapes = [
        (1, 1),
        (7, 3),
        (3, 7),
        (33, 33),
        (127, 64),
        (64, 127),
        (257, 255),
        (500, 20),
        (20, 500),
        // Panels of over 512 rows: VᵀC is split along K and T applied in its reduction.
        (700, 40),
    ];
    for (s, &(m, n)) in shapes.iter().enumerate() {
        let a = random(m, n, 100 + s as u64);
        // None is 128 wide (inner panels of 32 and the merged T); 40 leaves an inner remainder;
        // 200 merges seven inner T blocks, the last 8 wide.
        for nb in [None, Some(5), Some(16), Some(40), Some(200)] {
            check_qr(&format!("{m}×{n}"), &a, QrMode::Reduced, nb);
        }
    }
}

/// Panels of 512 (the default from min(m, n) = 8192 where the large GEMMs run on cooperative
/// matrices): sixteen inner T blocks merged by four levels of `t_merge`, and a last panel of
/// 88 columns; Q in full and R alone too.
#[test]
fn qr_with_panels_of_512() {
    let a = random(700, 600, 160);
    for mode in [QrMode::Reduced, QrMode::Complete, QrMode::R] {
        check_qr("700×600 nb=512", &a, mode, Some(512));
    }
    // Were MAX_BLOCK_SIZE lowered, 512 would quietly become the smaller width.
    let opts = QrOptions {
        block_size: Some(512),
        ..Default::default()
    };
    assert_eq!(
        metalcore::geqrf(ctx(), &upload(&a), &opts)
            .unwrap()
            .block_size,
        512
    );
}

/// Fails unless `ctx` has built `extract_vt`: a test of the Vᵀ path whose shape no longer
/// reaches `VT_MIN_COLS` would otherwise check the transposed-V path again. Each such test runs
/// on a context of its own, so that no other test's Vᵀ can satisfy it.
fn assert_vt_path_taken(ctx: &metalcore::Context) {
    assert!(
        ctx.compiled_kernels()
            .iter()
            .any(|c| c.entry == "extract_vt"),
        "the QR never formed Vᵀ (extract_vt): has VT_MIN_COLS moved above this test's shape?"
    );
}

/// Trailing updates of at least 2048 columns form VᵀC from an explicit Vᵀ (`VT_MIN_COLS`):
/// the first panel of a 260×2300 matrix (2172 columns after a panel of 128, 2100 after one of
/// 200 built from seven inner blocks); the later panels take V transposed.
#[test]
fn qr_of_a_wide_matrix_whose_first_update_uses_vt() {
    let a = random(260, 2300, 150);
    for nb in [None, Some(200)] {
        let ctx = metalcore::Context::new().unwrap();
        let opts = QrOptions {
            block_size: nb,
            ..Default::default()
        };
        check_qr_in(&ctx, "260×2300", &a, QrMode::Reduced, &opts);
        assert_vt_path_taken(&ctx);
    }
}

/// Forming a complete Q whose first panel updates at least 2048 columns takes VᵀC from an
/// explicit Vᵀ too (sorgqr, `VT_MIN_COLS`): Q of a 2100×40 matrix, 2100 columns, its one panel
/// of 40 merged from two inner blocks. A full QᵀQ in f64 is 9·10⁹ products in an unoptimized
/// test, so orthogonality is checked on the panel's columns, the next eight and every 97th.
#[test]
fn complete_q_of_a_tall_matrix_uses_vt() {
    let ctx = &metalcore::Context::new().unwrap();
    let (m, n) = (2100, 40);
    let a = random(m, n, 160);
    let res = qr_with(
        ctx,
        &upload_to(ctx, &a),
        QrMode::Complete,
        &QrOptions::default(),
    )
    .unwrap();
    let q = download_from(ctx, &res.q.unwrap());
    let r = download_from(ctx, &res.r);
    assert_eq!((q.rows, q.cols, r.rows, r.cols), (m, m, m, n));
    let recon = q.cols_range(0, n).matmul(&r.rows_range(0, n)).sub(&a).fro() / a.fro();
    let cols: Vec<usize> = (0..n + 8).chain((n + 8..m).step_by(97)).collect();
    let mut qs = Mat::zeros(m, cols.len());
    for (c, &j) in cols.iter().enumerate() {
        for i in 0..m {
            qs[(i, c)] = q[(i, j)];
        }
    }
    let orth = qs.t().matmul(&qs).sub(&Mat::identity(cols.len())).max_abs();
    // Householder QR's backward error and loss of orthogonality grow like m·ε at worst (in
    // practice √m·ε, ~5e-6 here); a wrong or missing reflector in the update gives O(1).
    let tol = m as f64 * EPS;
    assert!(recon <= tol, "‖QR−A‖/‖A‖ = {recon:e} > {tol:e}");
    assert!(
        orth <= tol,
        "max|QᵀQ−I| on sampled columns = {orth:e} > {tol:e}"
    );
    // R below its first n rows is zero.
    assert_eq!(
        r.rows_range(n, m).max_abs(),
        0.0,
        "R below row {n} is not zero"
    );
    assert_vt_path_taken(ctx);
}

#[test]
fn qr_complete_and_r_modes() {
    for (s, &(m, n)) in [(7, 3), (3, 7), (65, 33), (40, 40)].iter().enumerate() {
        let a = random(m, n, 200 + s as u64);
        check_qr(&format!("{m}×{n}"), &a, QrMode::Complete, Some(8));
        check_qr(&format!("{m}×{n}"), &a, QrMode::R, Some(8));
        // Mode R gives the same R as mode Reduced (same computation).
        let ctx = ctx();
        let r1 = qr(ctx, &upload(&a), QrMode::R)
            .unwrap()
            .r
            .to_col_major(ctx)
            .unwrap();
        let r2 = qr(ctx, &upload(&a), QrMode::Reduced)
            .unwrap()
            .r
            .to_col_major(ctx)
            .unwrap();
        assert_eq!(r1, r2);
    }
}

#[test]
fn qr_of_awkward_matrices() {
    let (m, n) = (60, 24);
    // Zero columns (first, middle, last).
    let mut z = random(m, n, 300);
    for &j in &[0, 11, n - 1] {
        for i in 0..m {
            z[(i, j)] = 0.0;
        }
    }
    check_qr("zero columns", &z, QrMode::Reduced, Some(8));
    // Rank 5 = (60×5)(5×24).
    let low = random(m, 5, 301).matmul(&random(5, n, 302));
    check_qr("rank-deficient", &low, QrMode::Reduced, Some(8));
    // Graded columns spanning 12 orders of magnitude.
    let mut g = random(m, n, 303);
    for j in 0..n {
        for i in 0..m {
            g[(i, j)] *= 10f64.powf(-(j as f64) / 2.0);
        }
    }
    check_qr("graded columns", &g, QrMode::Reduced, Some(8));
    // Huge and tiny scales: squares would overflow / underflow f32 without scaled norms.
    for &s in &[1e30, 1e-30] {
        let mut a = random(m, n, 304);
        for x in a.data.iter_mut() {
            *x *= s;
        }
        check_qr(&format!("scaled {s:e}"), &a, QrMode::Reduced, Some(8));
    }
}

#[test]
fn geqr2_matches_lapack_convention_in_f64() {
    geqr2_against_f64(ctx());
}

/// The portable panel kernel, on an adapter that would otherwise use the subgroup one.
#[test]
fn geqr2_portable_panel_matches_lapack_convention_in_f64() {
    let portable = portable_ctx();
    geqr2_against_f64(portable);
}

fn geqr2_against_f64(ctx: &metalcore::Context) {
    let up = |m: &Mat| {
        let data: Vec<f32> = m.data.iter().map(|&x| x as f32).collect();
        GpuMatrix::from_col_major(ctx, m.rows, m.cols, &data).unwrap()
    };
    let down = |g: &GpuMatrix| Mat::from_f32(g.rows(), g.cols(), &g.to_col_major(ctx).unwrap());
    for (s, &(m, n)) in [(1, 1), (7, 3), (3, 7), (40, 17), (33, 33)]
        .iter()
        .enumerate()
    {
        let a = random(m, n, 400 + s as u64);
        let (rv, tau) = geqr2(ctx, &up(&a)).unwrap();
        let rv = down(&rv);
        let tau = down(&tau).data;
        let (rv_ref, tau_ref) = geqr2_f64(&a);
        // Same sign convention, so R, V and tau agree elementwise up to rounding: each entry is
        // the result of O(m·n) f32 operations on O(‖A‖) values.
        let tol = 4.0 * (m * n) as f64 * EPS;
        let scale = a.max_abs() * (m as f64).sqrt();
        for j in 0..n {
            for i in 0..m {
                let d = (rv[(i, j)] - rv_ref[(i, j)]).abs();
                let sc = if i <= j { scale } else { 1.0 };
                assert!(
                    d <= tol * sc,
                    "{m}×{n}: R_V[{i},{j}] = {} vs {}",
                    rv[(i, j)],
                    rv_ref[(i, j)]
                );
            }
        }
        for c in 0..m.min(n) {
            assert!(
                (tau[c] - tau_ref[c]).abs() <= tol,
                "{m}×{n}: tau[{c}] = {} vs {}",
                tau[c],
                tau_ref[c]
            );
            assert!(
                tau[c] == 0.0 || (1.0..=2.0).contains(&tau[c]),
                "LAPACK's tau lies in [1, 2]"
            );
        }
    }
}

#[test]
fn geqr2_leaves_h_identity_for_an_already_zero_column() {
    let ctx = ctx();
    // Column 0 is already upper triangular (only its first entry is non-zero): tau_0 = 0.
    let a = Mat::from_f32(3, 2, &[-2.0, 0.0, 0.0, 1.0, 2.0, 3.0]);
    let (rv, tau) = geqr2(ctx, &upload(&a)).unwrap();
    let tau = download(&tau).data;
    assert_eq!(tau[0], 0.0);
    assert_eq!(download(&rv)[(0, 0)], -2.0, "beta = alpha when tau = 0");
}

/// The T of a panel merged from seven inner blocks (nb = 200: six of 32 and one of 8) is the
/// compact-WY T of all 200 reflectors, checked against their product in f64, and the panel
/// width asked for is the one used (a width clamped back to 128 would merge at most four).
#[test]
fn merged_t_of_a_wide_panel_is_the_compact_wy_t() {
    let ctx = ctx();
    let (m, n, nb) = (230, 210, 200);
    let a = random(m, n, 900);
    for panel in [PanelAlgorithm::Tsqr, PanelAlgorithm::OneWorkgroup] {
        let opts = QrOptions {
            block_size: Some(nb),
            panel,
            tsqr_block_rows: None,
        };
        let f = geqrf(ctx, &upload(&a), &opts).unwrap();
        let t_all = download(&f.t);
        assert_eq!(t_all.rows, nb, "{panel:?}: T's rows are the panel width");
        let rv = download(&f.rv);
        let tau = download(&f.tau).data;
        let t = t_all.cols_range(0, nb);
        assert_compact_wy(&format!("{panel:?}"), &rv, &tau[..nb], 0, nb, &t);
    }
}

/// Asserts that I − V T Vᵀ equals H_{j0} … H_{j0+k−1}, the reflectors stored in `rv` with
/// `tau` (all in f64 from the f32 values), and that T is upper triangular.
fn assert_compact_wy(what: &str, rv: &Mat, tau: &[f64], j0: usize, k: usize, t: &Mat) {
    let m = rv.rows;
    let v = explicit_v(rv, j0, k);
    let block = Mat::identity(m).sub(&v.matmul(t).matmul(&v.t()));
    let err = block.sub(&reflector_product(rv, tau, j0, k)).max_abs();
    // T's entries are sums of k products of O(1) values: k·ε relative, times ‖V‖² ~ m.
    let tol = 4.0 * (k * m) as f64 * EPS;
    assert!(err <= tol, "{what}: max|I − VTVᵀ − ΠH| = {err:e} > {tol:e}");
    for j in 0..k {
        for i in j + 1..k {
            assert_eq!(t[(i, j)], 0.0, "{what}: T[{i},{j}] below the diagonal");
        }
    }
}

#[test]
fn larft_builds_t_of_the_compact_wy_form() {
    let ctx = ctx();
    for &(m, k, j0) in &[(20, 6, 0), (33, 7, 5), (9, 1, 3), (64, 32, 16)] {
        let a = random(m, j0 + k + 3, 500 + m as u64);
        let (rv_ref, tau_ref) = geqr2_f64(&a);
        let rv = upload(&rv_ref);
        let tau_p: Vec<f64> = tau_ref[j0..j0 + k].to_vec();
        let tau = upload(&Mat {
            rows: k,
            cols: 1,
            data: tau_p.clone(),
        });
        let t = download(&larft(ctx, &rv, &tau, j0).unwrap());
        let what = format!("larft m={m} k={k} j0={j0}");
        assert_compact_wy(&what, &download(&rv), &tau_p, j0, k, &t);
    }
}

#[test]
fn larfb_applies_the_block_reflector_and_its_transpose() {
    let ctx = ctx();
    for &(m, k, j0, nc) in &[(30, 8, 0, 5), (41, 5, 6, 70), (16, 16, 0, 1)] {
        let a = random(m, j0 + k, 600 + m as u64);
        let (rv_ref, tau_ref) = geqr2_f64(&a);
        let rv = upload(&rv_ref);
        let rv32 = download(&rv);
        let tau_p: Vec<f64> = tau_ref[j0..j0 + k].to_vec();
        let tau = upload(&Mat {
            rows: k,
            cols: 1,
            data: tau_p.clone(),
        });
        let t = larft(ctx, &rv, &tau, j0).unwrap();
        let h = reflector_product(&rv32, &tau_p, j0, k);
        let c = random(m, nc, 700 + m as u64);
        for trans in [false, true] {
            let mut gc = upload(&c);
            larfb(ctx, &mut gc, &rv, &t, trans, j0).unwrap();
            let got = download(&gc);
            let op = if trans { h.t() } else { h.clone() };
            let want = op.matmul(&c);
            let err = got.sub(&want).max_abs() / c.max_abs();
            // Three GEMMs with inner dimensions m, k, k: O((m + 2k)·ε) relative.
            let tol = 8.0 * (m + 2 * k) as f64 * EPS;
            assert!(
                err <= tol,
                "larfb m={m} k={k} j0={j0} trans={trans}: error {err:e} > {tol:e}"
            );
        }
    }
}

#[test]
fn apply_qt_and_q_without_forming_q() {
    let ctx = ctx();
    // 600 rows: split VᵀC products, T applied in their reduction (both op(T) = T and Tᵀ).
    for &(m, n, nc) in &[(50, 20, 3), (20, 50, 4), (37, 37, 1), (600, 20, 3)] {
        let a = random(m, n, 800 + m as u64);
        let f = geqrf(
            ctx,
            &upload(&a),
            &QrOptions {
                block_size: Some(8),
                ..Default::default()
            },
        )
        .unwrap();
        let q = download(&f.q(ctx, true).unwrap());
        let b = random(m, nc, 900 + m as u64);
        let mut gb = upload(&b);
        f.apply_qt(ctx, &mut gb).unwrap();
        let qtb = download(&gb);
        let want = q.t().matmul(&b);
        let tol = 16.0 * m as f64 * EPS * b.max_abs();
        assert!(
            qtb.sub(&want).max_abs() <= tol,
            "{m}×{n}: Qᵀb differs from (formed Q)ᵀ b"
        );
        f.apply_q(ctx, &mut gb).unwrap();
        assert!(
            download(&gb).sub(&b).max_abs() <= 2.0 * tol,
            "{m}×{n}: Q Qᵀ b ≠ b"
        );
    }
}

/// Qᵀ and Q applied to a C of at least 2048 columns take VᵀC from an explicit Vᵀ, as the
/// factorization's wide updates do (`VT_MIN_COLS`): one panel of 40 on a 260-row matrix, C
/// 260×2060. Until session 17 the application worked in chunks of 1024 columns and never
/// formed Vᵀ. A context of its own, so that the Vᵀ kernel seen is this test's.
#[test]
fn apply_qt_and_q_to_a_wide_c_use_vt() {
    let ctx = metalcore::Context::new().unwrap();
    let (m, n, nc) = (260, 40, 2060);
    let a = random(m, n, 850);
    let f = geqrf(&ctx, &upload_to(&ctx, &a), &QrOptions::default()).unwrap();
    let q = download_from(&ctx, &f.q(&ctx, true).unwrap());
    let b = random(m, nc, 860);
    let mut gb = upload_to(&ctx, &b);
    f.apply_qt(&ctx, &mut gb).unwrap();
    let want = q.t().matmul(&b);
    // Each entry of QᵀB is a length-m dot product against Q's reflectors applied in f32: m·ε
    // of B's scale bounds it (16× for the blocked products' extra roundings, as above); a
    // wrong Vᵀ gives O(1).
    let tol = 16.0 * m as f64 * EPS * b.max_abs();
    let err = download_from(&ctx, &gb).sub(&want).max_abs();
    assert!(err <= tol, "QᵀB: max error {err:e} > {tol:e}");
    f.apply_q(&ctx, &mut gb).unwrap();
    let err = download_from(&ctx, &gb).sub(&b).max_abs();
    assert!(
        err <= 2.0 * tol,
        "Q QᵀB: max error {err:e} > {:e}",
        2.0 * tol
    );
    assert_vt_path_taken(&ctx);
}

#[test]
fn qr_is_one_submission_with_no_readback() {
    let ctx = metalcore::Context::new().unwrap();
    let a = random(100, 70, 1000);
    let data: Vec<f32> = a.data.iter().map(|&x| x as f32).collect();
    let ga = GpuMatrix::from_col_major(&ctx, 100, 70, &data).unwrap();
    let before = ctx.stats();
    let res = qr_with(
        &ctx,
        &ga,
        QrMode::Complete,
        &QrOptions {
            block_size: Some(16),
            ..Default::default()
        },
    )
    .unwrap();
    let after = ctx.stats();
    assert_eq!(
        after.submissions - before.submissions,
        1,
        "blocked QR with Q must be one submission"
    );
    assert_eq!(after.readbacks, before.readbacks, "no read-back inside qr");
    // And the result is real: reading it is the first read-back.
    let r = res.r.to_col_major(&ctx).unwrap();
    assert!(r[0] != 0.0);
    assert_eq!(ctx.stats().readbacks, before.readbacks + 1);
}

#[test]
fn qr_rejects_empty_input_and_propagates_nan() {
    let ctx = ctx();
    let e = qr(ctx, &GpuMatrix::zeros(ctx, 0, 4).unwrap(), QrMode::Reduced)
        .unwrap_err()
        .to_string();
    assert!(e.contains("qr") && e.contains("0×4"), "{e}");
    let e = geqr2(ctx, &GpuMatrix::zeros(ctx, 3, 0).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("geqr2") && e.contains("3×0"), "{e}");
    let mut a = random(20, 10, 1100);
    a[(5, 3)] = f64::NAN;
    let res = qr(ctx, &upload(&a), QrMode::Reduced).unwrap();
    let r = download(&res.r);
    assert!(
        r.data.iter().any(|x| x.is_nan()),
        "NaN input must show in R"
    );
    // NaN at (4, 1) of a 5×3: H_0 (from the finite column 0) carries it into all of column 1,
    // so reflector 1 is NaN and R's entries it produces — R[1,1], R[1,2], R[2,2] — are NaN;
    // R[0,0] and R[0,2] (touched by H_0 only) stay finite. None may come out as a silent finite
    // value where NaN belongs.
    let mut a = random(5, 3, 1101);
    a[(4, 1)] = f64::NAN;
    for mode in [QrMode::Reduced, QrMode::R] {
        let r = download(&qr(ctx, &upload(&a), mode).unwrap().r);
        for &(i, j) in &[(1, 1), (1, 2), (2, 2)] {
            assert!(
                r[(i, j)].is_nan(),
                "{mode:?}: R[{i},{j}] = {} should be NaN",
                r[(i, j)]
            );
        }
        assert!(
            r[(0, 0)].is_finite() && r[(0, 2)].is_finite(),
            "{mode:?}: R row 0"
        );
    }
}

/// TSQR with Householder reconstruction must give the factors geqr2 + larft give (same sign
/// rule), not just some valid QR: compare R, the reflectors, tau and T of both panel algorithms.
#[test]
fn tsqr_panels_give_the_factors_of_one_workgroup_panels() {
    tsqr_against_one_workgroup(ctx());
}

/// The same with the portable TSQR kernels (no subgroup operations), which adapters with
/// subgroups would otherwise never run.
#[test]
fn portable_tsqr_panels_give_the_factors_of_one_workgroup_panels() {
    let portable = portable_ctx();
    tsqr_against_one_workgroup(portable);
}

fn tsqr_against_one_workgroup(ctx: &metalcore::Context) {
    // Tall random Gaussian matrices (m ≥ 3n) have condition numbers below ~4, so two backward
    // stable computations of the same unique factorization agree to a few m·ε in every entry
    // (R relative to max|A|·√m; reflector entries, tau and T are O(1)). 32·m·ε leaves room for
    // the different summation orders; a wrong sign or reflector gives differences of order 1.
    for &(m, n, nb, rows) in &[
        (300, 40, 16, 1),
        (97, 33, 8, 20),
        (200, 21, 21, 60),
        (400, 100, 72, 1),
        (300, 90, 128, 100),
    ] {
        let a = random(m, n, 1300 + m as u64);
        compare_tsqr_one_workgroup(ctx, &a, nb, rows);
    }
}

/// Factors `a` with TSQR panels and with one-workgroup panels and compares rv, tau and T entry
/// by entry (bounds argued in `tsqr_against_one_workgroup`); returns (rv, tau) of the TSQR run.
fn compare_tsqr_one_workgroup(
    ctx: &metalcore::Context,
    a: &Mat,
    nb: usize,
    rows: usize,
) -> (Mat, Mat) {
    compare_panels(ctx, a, nb, rows, PanelAlgorithm::Tsqr)
}

/// As [`compare_tsqr_one_workgroup`], with `panel` in TSQR's place.
fn compare_panels(
    ctx: &metalcore::Context,
    a: &Mat,
    nb: usize,
    rows: usize,
    panel: PanelAlgorithm,
) -> (Mat, Mat) {
    let (m, n) = (a.rows, a.cols);
    let opts = |panel| QrOptions {
        block_size: Some(nb),
        panel,
        tsqr_block_rows: Some(rows),
    };
    let one = geqrf(ctx, &upload_to(ctx, a), &opts(PanelAlgorithm::OneWorkgroup)).unwrap();
    let ts = geqrf(ctx, &upload_to(ctx, a), &opts(panel)).unwrap();
    let tol = 32.0 * m as f64 * EPS;
    let scale = a.max_abs() * (m as f64).sqrt();
    let (rv1, rv2) = (download_from(ctx, &one.rv), download_from(ctx, &ts.rv));
    for j in 0..n {
        for i in 0..m {
            let s = if i <= j { scale } else { 1.0 };
            let d = (rv1[(i, j)] - rv2[(i, j)]).abs();
            assert!(
                d <= tol * s,
                "{m}×{n} nb={nb} {panel:?}: rv[{i},{j}] {} vs {}",
                rv1[(i, j)],
                rv2[(i, j)]
            );
        }
    }
    for (what, x, y) in [("tau", &one.tau, &ts.tau), ("T", &one.t, &ts.t)] {
        let d = download_from(ctx, x).sub(&download_from(ctx, y)).max_abs();
        assert!(
            d <= tol,
            "{m}×{n} nb={nb} {panel:?}: {what} differs by {d:e}"
        );
    }
    (rv2, download_from(ctx, &ts.tau))
}

/// LAPACK's no-reflection case through TSQR: a column already zero below the diagonal gets
/// tau = 0 and keeps its diagonal entry (beta = alpha, here +3 where a reflection would give
/// -3). Column 0 is such a column from the start; in the reconstruction its Q column is
/// exactly e_0, the case the LU of Q − S handles specially (both the portable and the subgroup
/// kernels: the default context and one without subgroups).
#[test]
fn tsqr_keeps_lapacks_no_reflection_columns() {
    for c in [ctx(), portable_ctx()] {
        for &(nb, rows) in &[(16, 1), (8, 20)] {
            let mut a = random(300, 40, 1500);
            a[(0, 0)] = 3.0;
            for i in 1..300 {
                a[(i, 0)] = 0.0;
            }
            let (rv, tau) = compare_tsqr_one_workgroup(c, &a, nb, rows);
            assert_eq!(tau.data[0], 0.0, "nb={nb}: tau_0");
            assert_eq!(rv[(0, 0)], 3.0, "nb={nb}: R_00 = alpha");
        }
    }
}

#[test]
fn tsqr_panels_propagate_nan_and_keep_zero_columns_exact() {
    let ctx = ctx();
    let opts = QrOptions {
        block_size: Some(8),
        panel: PanelAlgorithm::Tsqr,
        tsqr_block_rows: Some(1),
    };
    let mut a = random(90, 12, 1400);
    a[(70, 3)] = f64::NAN;
    let r = download(&qr_with(ctx, &upload(&a), QrMode::R, &opts).unwrap().r);
    assert!(r[(3, 3)].is_nan(), "NaN in column 3 must reach R[3,3]");
    assert!(r[(0, 0)].is_finite() && r[(2, 2)].is_finite());
    // A zero column stays a zero column of R above the diagonal's row, with R_jj = 0.
    let mut z = random(90, 12, 1401);
    for i in 0..90 {
        z[(i, 5)] = 0.0;
    }
    let r = download(&qr_with(ctx, &upload(&z), QrMode::R, &opts).unwrap().r);
    for i in 0..12 {
        assert_eq!(r[(i, 5)], 0.0, "R[{i},5] of a zero column");
    }
}

/// CholeskyQR2 panels (`PanelAlgorithm::CholeskyQr2`) against TSQR panels on the same matrix:
/// where its check passes (well-conditioned panels) CholeskyQR2 factors them, so the results
/// differ from TSQR's, by rounding only; where the check fails (nearly dependent, zero or NaN
/// columns) the TSQR tree factors the panel again and the results are TSQR's, bit for bit.
/// Both kernels sets: the default context and one without subgroups (the portable tree).
#[test]
fn cholqr_panels_factor_well_conditioned_panels_and_leave_the_rest_to_tsqr() {
    for c in [ctx(), portable_ctx()] {
        let (m, n, nb, rows) = (300, 40, 16, 1);
        let opts = |panel| QrOptions {
            block_size: Some(nb),
            panel,
            tsqr_block_rows: Some(rows),
        };
        let factor = |a: &Mat, panel| {
            let f = geqrf(c, &upload_to(c, a), &opts(panel)).unwrap();
            let rv = f.rv.to_col_major(c).unwrap();
            let tau = f.tau.to_col_major(c).unwrap();
            let t = f.t.to_col_major(c).unwrap();
            (rv, tau, t)
        };
        // How many entries of two results differ in their bits.
        let differ = |x: &[f32], y: &[f32]| {
            assert_eq!(x.len(), y.len());
            x.iter()
                .zip(y)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count()
        };
        // Well conditioned: CholeskyQR2 runs (results not TSQR's bits) and agrees with the
        // one-workgroup factors to the bounds of `compare_tsqr_one_workgroup`.
        let a = random(m, n, 1600);
        let (rv_c, _, _) = factor(&a, PanelAlgorithm::CholeskyQr2);
        let (rv_t, _, _) = factor(&a, PanelAlgorithm::Tsqr);
        assert!(
            differ(&rv_c, &rv_t) > 0,
            "CholeskyQR2 did not factor the panels"
        );
        compare_panels(c, &a, nb, rows, PanelAlgorithm::CholeskyQr2);
        // Scaled by 2^-27: G is 2^-54 smaller, R₁ and R₂ 2^27 apart, well within f32's range, so
        // CholeskyQR2 still factors the panels. (A race in pass 2 that let R₁ overwrite G₂
        // before R₂ was formed gave max|QᵀQ − I| ≈ 4e-4 at this scale on lavapipe.)
        let mut tiny = a.clone();
        for x in tiny.data.iter_mut() {
            *x *= 2f64.powi(-27);
        }
        let (rv_s, _, _) = factor(&tiny, PanelAlgorithm::CholeskyQr2);
        let (rv_st, _, _) = factor(&tiny, PanelAlgorithm::Tsqr);
        assert!(
            differ(&rv_s, &rv_st) > 0,
            "scaled: CholeskyQR2 did not factor the panels"
        );
        let o = opts(PanelAlgorithm::CholeskyQr2);
        check_qr_with("scaled 2^-27", &tiny, QrMode::Reduced, &o);
        // One panel with κ ≈ 160 that column scaling cannot undo (A = U·diag(s)·W, s from 1
        // down to 1/100, W a random orthogonal matrix): pass 1 leaves Q₁ᵀQ₁ − I at up to
        // κ²ε ≈ 1.5e-3, inside the check (0.5/16 per entry), so CholeskyQR2 factors the panel
        // and pass 2 must restore orthogonality to f32's level (a pass 2 that applied only
        // R₂'s diagonal leaves QᵀQ − I far above the bound).
        let w = {
            let (rv, tau) = geqr2_f64(&random(nb, nb, 1608));
            reflector_product(&rv, &tau, 0, nb)
        };
        let mut us = random(m, nb, 1607);
        for i in 0..m {
            for j in 0..nb {
                us[(i, j)] *= 100f64.powf(-(j as f64) / (nb - 1) as f64);
            }
        }
        let graded = us.matmul(&w);
        let (rv_g, _, _) = factor(&graded, PanelAlgorithm::CholeskyQr2);
        let (rv_gt, _, _) = factor(&graded, PanelAlgorithm::Tsqr);
        assert!(
            differ(&rv_g, &rv_gt) > 0,
            "graded: CholeskyQR2 did not factor the panels"
        );
        check_qr_with("graded, κ ≈ 160", &graded, QrMode::Reduced, &o);
        // Unsafe for CholeskyQR2, in one panel of nb columns (so that no later panel, safe
        // again, gets CholeskyQR2's rounding): column 1 = column 0 + 1e-5·noise (κ ≈ 10⁵, so
        // G = AᵀA is singular in f32), a zero column, a NaN.
        let n = nb;
        let mut near = random(m, n, 1601);
        let noise = random(m, 1, 1602);
        for i in 0..m {
            near[(i, 1)] = near[(i, 0)] + 1e-5 * noise[(i, 0)];
        }
        let mut zero = random(m, n, 1603);
        for i in 0..m {
            zero[(i, 9)] = 0.0;
        }
        let mut nan = random(m, n, 1604);
        nan[(150, 7)] = f64::NAN;
        for (what, a) in [
            ("nearly dependent", &near),
            ("zero column", &zero),
            ("NaN", &nan),
        ] {
            let (rv_c, tau_c, t_c) = factor(a, PanelAlgorithm::CholeskyQr2);
            let (rv_t, tau_t, t_t) = factor(a, PanelAlgorithm::Tsqr);
            for (part, x, y) in [
                ("rv", &rv_c, &rv_t),
                ("tau", &tau_c, &tau_t),
                ("T", &t_c, &t_t),
            ] {
                let d = differ(x, y);
                assert_eq!(d, 0, "{what}: {d} entries of {part} are not TSQR's");
            }
        }
        // After a panel that falls back, the next ones are CholeskyQR2's again (TSQR's launches,
        // direct or indirect, do not factor them too). A zero column in the first of three
        // panels: its columns are TSQR's bits, so the later panels start from the same matrix,
        // and theirs must not be.
        let mut first = random(m, 3 * nb, 1605);
        for i in 0..m {
            first[(i, 3)] = 0.0;
        }
        let (rv_c, _, _) = factor(&first, PanelAlgorithm::CholeskyQr2);
        let (rv_t, _, _) = factor(&first, PanelAlgorithm::Tsqr);
        let (head, tail) = (m * nb, m * 3 * nb);
        assert_eq!(
            differ(&rv_c[..head], &rv_t[..head]),
            0,
            "first panel: not TSQR's"
        );
        assert!(
            differ(&rv_c[head..tail], &rv_t[head..tail]) > 0,
            "after a fallback, CholeskyQR2 did not factor the later panels"
        );
        // The same inside one outer panel of two inner ones, where the update of the second
        // by the first also hands CholeskyQR2 its first Gram (gemm.wgsl's GRAM): a zero column
        // in the first inner panel, which falls back; the second is CholeskyQR2's, not TSQR's,
        // and the whole factorization is accurate.
        let o64 = |panel| QrOptions {
            block_size: Some(64),
            panel,
            tsqr_block_rows: Some(rows),
        };
        let mut inner = random(m, 64, 1606);
        for i in 0..m {
            inner[(i, 3)] = 0.0;
        }
        let rv_c = geqrf(c, &upload_to(c, &inner), &o64(PanelAlgorithm::CholeskyQr2))
            .unwrap()
            .rv
            .to_col_major(c)
            .unwrap();
        let rv_t = geqrf(c, &upload_to(c, &inner), &o64(PanelAlgorithm::Tsqr))
            .unwrap()
            .rv
            .to_col_major(c)
            .unwrap();
        let half = m * 32;
        assert_eq!(
            differ(&rv_c[..half], &rv_t[..half]),
            0,
            "first inner panel: not TSQR's"
        );
        assert!(
            differ(&rv_c[half..], &rv_t[half..]) > 0,
            "CholeskyQR2 did not factor the second inner panel"
        );
        check_qr_with(
            "zero column, then an inner panel",
            &inner,
            QrMode::Reduced,
            &o64(PanelAlgorithm::CholeskyQr2),
        );
        // And the nearly dependent matrix is still factored to working accuracy.
        check_qr_with(
            "nearly dependent",
            &near,
            QrMode::Reduced,
            &opts(PanelAlgorithm::CholeskyQr2),
        );
    }
}
