//! Batched QR, least squares and solves: every member's invariants in f64, both implementations
//! (one workgroup per matrix, blocked) on the same shapes, isolation of NaN / Inf / zero members,
//! chunking, WebGPU default limits, one submission, and bad input.
//!
//! Tolerances. Householder QR is backward stable: the computed factors satisfy
//! A + ΔA = Q̂R̂ with ‖Δa_j‖ ≤ γ(c·m·n)‖a_j‖ in the worst case (Higham, *Accuracy and Stability of
//! Numerical Algorithms*, Thm 19.4), and Q̂ is orthogonal to the same order. Each column passes
//! through at most k = min(m, n) reflections, each made of a dot product and an update of length
//! ≤ m in float32; their rounding errors add up like a random walk in practice, well below
//! max(m, n)·ε. We accept ‖QR − A‖_F/‖A‖_F and max|QᵀQ − I| up to `QR_C`·max(m, n)·ε with
//! `QR_C` = 4, fixed before running anything: a wrong reflector, sign or a missed update gives
//! errors of order 1 (or √ε for a lost orthogonalisation), orders of magnitude above it.

mod common;
use common::small_qr::assert_member_as_alone;
use common::*;
use metalcore::{
    batched_qr_path, lstsq_batched, lstsq_batched_with, qr_batched, qr_batched_into,
    qr_batched_with, solve_batched, solve_batched_checked, solve_batched_with, BatchedOptions,
    BatchedPath, Context, ContextOptions, Error, GpuBatch, LimitsPolicy, QrMode,
};

/// See the module docs.
const QR_C: f64 = 4.0;

const PATHS: [BatchedPath; 2] = [BatchedPath::WorkgroupPerMatrix, BatchedPath::Blocked];

fn opts(path: BatchedPath) -> BatchedOptions {
    BatchedOptions {
        path,
        ..Default::default()
    }
}

/// `batch` Gaussian m×n matrices, member b scaled by 10^e with e spread over [-20, 20]
/// (the first two members at the extremes).
fn scaled_members(batch: usize, m: usize, n: usize, seed: u64) -> Vec<Mat> {
    let mut rng = Rng::new(seed);
    (0..batch)
        .map(|b| {
            let e = match b {
                0 => -20.0,
                1 => 20.0,
                _ => -20.0 + 40.0 * rng.uniform(),
            };
            let s = 10f64.powf(e);
            let data: Vec<f32> = (0..m * n).map(|_| (rng.normal() * s) as f32).collect();
            Mat::from_f32(m, n, &data)
        })
        .collect()
}

fn plain_members(batch: usize, m: usize, n: usize, seed: u64) -> Vec<Mat> {
    let mut rng = Rng::new(seed);
    (0..batch)
        .map(|_| Mat::from_f32(m, n, &rng.normal_vec(m * n)))
        .collect()
}

fn upload(ctx: &Context, members: &[Mat]) -> GpuBatch {
    let (m, n) = (members[0].rows, members[0].cols);
    let data: Vec<f32> = members
        .iter()
        .flat_map(|a| a.data.iter().map(|&x| x as f32))
        .collect();
    GpuBatch::from_col_major(ctx, members.len(), m, n, &data).unwrap()
}

fn poisoned(ctx: &Context, batch: usize, rows: usize, cols: usize) -> GpuBatch {
    GpuBatch::from_col_major(ctx, batch, rows, cols, &vec![f32::NAN; batch * rows * cols]).unwrap()
}

/// Member `b` of a read-back batch.
fn member(data: &[f32], b: usize, rows: usize, cols: usize) -> Mat {
    Mat::from_f32(rows, cols, &data[b * rows * cols..(b + 1) * rows * cols])
}

fn shapes(m: usize, n: usize, mode: QrMode) -> (usize, usize) {
    let k = m.min(n);
    match mode {
        QrMode::Reduced => (k, k),
        QrMode::Complete => (m, m),
        QrMode::R => (k, 0),
    }
}

/// Runs `qr_batched_into` on NaN-poisoned outputs and returns (Q, R) read back.
fn run_qr(
    ctx: &Context,
    members: &[Mat],
    mode: QrMode,
    options: &BatchedOptions,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (m, n) = (members[0].rows, members[0].cols);
    let batch = members.len();
    let (r_rows, qcols) = shapes(m, n, mode);
    let a = upload(ctx, members);
    let mut r = poisoned(ctx, batch, r_rows, n);
    let mut q = (qcols > 0).then(|| poisoned(ctx, batch, m, qcols));
    qr_batched_into(ctx, &a, mode, q.as_mut(), &mut r, options).unwrap();
    (
        q.map(|q| q.to_col_major(ctx).unwrap()),
        r.to_col_major(ctx).unwrap(),
    )
}

/// R exactly zero below the diagonal, and the two invariants within QR_C·max(m, n)·ε; returns
/// (‖QR − A‖_F/‖A‖_F, max|QᵀQ − I|) (zeros without Q).
fn check_member(what: &str, a: &Mat, q: Option<&Mat>, r: &Mat) -> (f64, f64) {
    let (m, n) = (a.rows, a.cols);
    for j in 0..n {
        for i in j + 1..r.rows {
            assert_eq!(r[(i, j)], 0.0, "{what}: R[{i},{j}] below the diagonal");
        }
    }
    assert!(
        r.data.iter().all(|x| x.is_finite()),
        "{what}: R has a non-finite entry"
    );
    let Some(q) = q else { return (0.0, 0.0) };
    let tol = QR_C * m.max(n) as f64 * EPS;
    let recon = if a.fro() == 0.0 {
        q.matmul(r).fro()
    } else {
        q.matmul(r).sub(a).fro() / a.fro()
    };
    let orth = q.t().matmul(q).sub(&Mat::identity(q.cols)).max_abs();
    assert!(recon <= tol, "{what}: ‖QR−A‖/‖A‖ = {recon:e} > {tol:e}");
    assert!(orth <= tol, "{what}: max|QᵀQ−I| = {orth:e} > {tol:e}");
    (recon, orth)
}

/// Checks every member; returns the worst (‖QR − A‖_F/‖A‖_F, max|QᵀQ − I|) in units of ε.
fn check_batch(
    what: &str,
    members: &[Mat],
    mode: QrMode,
    q: Option<&[f32]>,
    r: &[f32],
) -> (f64, f64) {
    let (m, n) = (members[0].rows, members[0].cols);
    let (r_rows, qcols) = shapes(m, n, mode);
    let mut worst = (0.0f64, 0.0f64);
    for (b, a) in members.iter().enumerate() {
        let rb = member(r, b, r_rows, n);
        let qb = q.map(|q| member(q, b, m, qcols));
        let (recon, orth) = check_member(&format!("{what} member {b}"), a, qb.as_ref(), &rb);
        worst = (worst.0.max(recon / EPS), worst.1.max(orth / EPS));
    }
    worst
}

#[test]
fn qr_batched_issue_shapes_scaled_from_1e_minus_20_to_1e20() {
    let ctx = ctx();
    let shapes = [
        (500, 8, 8),
        (1000, 16, 16),
        (100, 32, 32),
        (50, 48, 48),
        (20, 64, 32),
        (10, 32, 64),
        (3, 1, 1),
        (7, 100, 5),
        (2, 200, 150),
    ];
    for (s, &(batch, m, n)) in shapes.iter().enumerate() {
        let members = scaled_members(batch, m, n, 10 + s as u64);
        let path = batched_qr_path(ctx, m, n, QrMode::Reduced);
        let what = format!("{batch}×{m}×{n} reduced ({path:?})");
        let (q, r) = run_qr(ctx, &members, QrMode::Reduced, &BatchedOptions::default());
        let (recon, orth) = check_batch(&what, &members, QrMode::Reduced, q.as_deref(), &r);
        eprintln!(
            "{what}: worst ‖QR−A‖/‖A‖ = {recon:.1}ε, max|QᵀQ−I| = {orth:.1}ε (bound {:.0}ε)",
            QR_C * m.max(n) as f64
        );
    }
}

#[test]
fn both_paths_all_modes_on_the_same_shapes() {
    let ctx = ctx();
    for (s, &(batch, m, n)) in [(6, 12, 12), (5, 20, 7), (4, 7, 20), (3, 1, 1), (3, 33, 1)]
        .iter()
        .enumerate()
    {
        let members = scaled_members(batch, m, n, 100 + s as u64);
        for path in PATHS {
            for mode in [QrMode::Reduced, QrMode::Complete, QrMode::R] {
                let what = format!("{batch}×{m}×{n} {mode:?} {path:?}");
                let (q, r) = run_qr(ctx, &members, mode, &opts(path));
                check_batch(&what, &members, mode, q.as_deref(), &r);
                if mode == QrMode::R {
                    // Mode R is the same computation as mode Reduced without Q.
                    let (_, r2) = run_qr(ctx, &members, QrMode::Reduced, &opts(path));
                    assert_eq!(
                        r.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        r2.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        "{what}: R differs from mode Reduced's"
                    );
                }
            }
        }
    }
}

#[test]
fn blocked_path_handles_256x256_and_tall_256x32() {
    let ctx = ctx();
    for (s, &(batch, m, n)) in [(2, 256, 256), (3, 256, 32)].iter().enumerate() {
        let members = plain_members(batch, m, n, 200 + s as u64);
        let auto = batched_qr_path(ctx, m, n, QrMode::Reduced);
        for path in [BatchedPath::Auto, BatchedPath::Blocked] {
            let what = format!("{batch}×{m}×{n} {path:?} (auto: {auto:?})");
            let (q, r) = run_qr(ctx, &members, QrMode::Reduced, &opts(path));
            check_batch(&what, &members, QrMode::Reduced, q.as_deref(), &r);
        }
    }
    // 256×256 never fits one workgroup (257·256 floats > any adapter's workgroup memory).
    assert_eq!(
        batched_qr_path(ctx, 256, 256, QrMode::Reduced),
        BatchedPath::Blocked
    );
}

#[test]
fn r_follows_lapack_conventions() {
    // Diagonally dominant with both signs on the diagonal, and a first column already zero
    // below its diagonal (tau = 0: R keeps alpha and its sign, as LAPACK's slarfg).
    let ctx = ctx();
    let n = 9;
    let mut rng = Rng::new(300);
    let members: Vec<Mat> = (0..4)
        .map(|b| {
            let mut a = Mat::zeros(n, n);
            for j in 0..n {
                for i in 0..n {
                    a[(i, j)] = (0.1 * rng.normal()) as f32 as f64;
                }
                a[(j, j)] = if (j + b) % 3 == 0 { -4.0 } else { 4.0 };
            }
            if b == 0 {
                for i in 1..n {
                    a[(i, 0)] = 0.0;
                }
            }
            a
        })
        .collect();
    for path in PATHS {
        let (_, r) = run_qr(ctx, &members, QrMode::R, &opts(path));
        for (b, a) in members.iter().enumerate() {
            let (rv_ref, _) = geqr2_f64(a);
            let want = upper(&rv_ref, n);
            let got = member(&r, b, n, n);
            // Well conditioned (cond ≈ 1.3): R agrees elementwise to a few n·ε of ‖A‖.
            let tol = 8.0 * n as f64 * EPS * a.max_abs() * (n as f64).sqrt();
            for j in 0..n {
                for i in 0..=j {
                    assert!(
                        (got[(i, j)] - want[(i, j)]).abs() <= tol,
                        "{path:?} member {b}: R[{i},{j}] = {} vs LAPACK convention {}",
                        got[(i, j)],
                        want[(i, j)]
                    );
                }
            }
        }
        assert_eq!(
            member(&r, 0, n, n)[(0, 0)],
            members[0][(0, 0)],
            "tau = 0 keeps alpha"
        );
    }
}

#[test]
fn webgpu_default_limits_pick_portable_variants() {
    let ctx = Context::with_options(ContextOptions {
        limits: LimitsPolicy::WebGpuDefaults,
        ..Default::default()
    })
    .unwrap();
    assert!(ctx.limits().max_compute_workgroup_storage_size <= 16 * 1024);
    // 48×48 with Q: 49·48 + 3·48 floats = 9.8 KB fits 16 KiB; 64×64: 65·64 + 3·64 floats = 17 KB
    // does not.
    assert_eq!(
        batched_qr_path(&ctx, 48, 48, QrMode::Reduced),
        BatchedPath::WorkgroupPerMatrix
    );
    assert_eq!(
        batched_qr_path(&ctx, 64, 64, QrMode::Reduced),
        BatchedPath::Blocked
    );
    let e = qr_batched_with(
        &ctx,
        &GpuBatch::zeros(&ctx, 2, 64, 64).unwrap(),
        QrMode::Reduced,
        &opts(BatchedPath::WorkgroupPerMatrix),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("qr_batched") && e.contains("2×64×64"), "{e}");
    for (s, &(batch, m, n)) in [(40, 8, 8), (6, 48, 48), (3, 64, 64)].iter().enumerate() {
        let members = scaled_members(batch, m, n, 400 + s as u64);
        let what = format!("WebGPU defaults {batch}×{m}×{n}");
        let (q, r) = run_qr(&ctx, &members, QrMode::Reduced, &BatchedOptions::default());
        check_batch(&what, &members, QrMode::Reduced, q.as_deref(), &r);
    }
}

#[test]
fn nan_inf_and_zero_members_leave_the_others_bitwise_unchanged() {
    let ctx = ctx();
    for &(m, n) in &[(16, 16), (20, 9)] {
        let mut members = scaled_members(10, m, n, 500 + m as u64);
        members[3][(m / 2, n / 2)] = f64::NAN;
        members[5] = Mat::zeros(m, n);
        members[8][(0, 0)] = f64::INFINITY;
        let special = [3, 5, 8];
        for path in PATHS {
            let (q, r) = run_qr(ctx, &members, QrMode::Reduced, &opts(path));
            let (q, r) = (q.unwrap(), r);
            let k = m.min(n);
            for (b, a) in members.iter().enumerate() {
                if special.contains(&b) {
                    continue;
                }
                let (q1, r1) = run_qr(ctx, std::slice::from_ref(a), QrMode::Reduced, &opts(path));
                let solo = (q1.unwrap(), r1);
                let what = format!("{m}×{n} {path:?}");
                assert_member_as_alone(&what, b, (m, n), (&q, &r), (&solo.0, &solo.1));
            }
            // The zero member: R = 0 exactly, Q orthogonal (H = I for every column).
            let rz = member(&r, 5, k, n);
            assert!(
                rz.data.iter().all(|&x| x == 0.0),
                "{path:?}: R of zero member"
            );
            let qz = member(&q, 5, m, k);
            check_member("zero member", &members[5], Some(&qz), &rz);
            // The NaN member shows NaN, as single QR does.
            assert!(
                member(&r, 3, k, n).data.iter().any(|x| x.is_nan()),
                "{path:?}: NaN member's R"
            );
        }
    }
}

/// The blocked path on matrices of over 256 rows, whose panels CholeskyQR2 factors where its
/// check passes and TSQR where it fails: the check and the fallback are per member, so a NaN,
/// a zero column or nearly dependent columns in one member leave the others bit for bit as
/// they are alone (factored by CholeskyQR2), and those members get TSQR's results.
#[test]
fn cholqr_fallback_is_per_member() {
    let ctx = ctx();
    let (m, n) = (300, 20);
    let mut members = plain_members(5, m, n, 520);
    members[1][(150, 4)] = f64::NAN;
    for i in 0..m {
        members[2][(i, 7)] = 0.0;
        members[3][(i, 9)] = members[3][(i, 8)] * (1.0 + 1e-6 * ((i % 7) as f64 - 3.0));
    }
    let blocked = opts(BatchedPath::Blocked);
    let (q, r) = run_qr(ctx, &members, QrMode::Reduced, &blocked);
    let q = q.unwrap();
    let k = m.min(n);
    for (b, a) in members.iter().enumerate() {
        let (q1, r1) = run_qr(ctx, std::slice::from_ref(a), QrMode::Reduced, &blocked);
        let solo = (q1.unwrap(), r1);
        assert_member_as_alone("blocked", b, (m, n), (&q, &r), (&solo.0, &solo.1));
        if b != 1 {
            let qb = member(&q, b, m, k);
            check_member(&format!("member {b}"), a, Some(&qb), &member(&r, b, k, n));
        }
    }
}

#[test]
fn chunked_batches_match_unchunked_in_one_submission() {
    let ctx = Context::new().unwrap();
    for (path, (m, n)) in [
        (BatchedPath::WorkgroupPerMatrix, (12, 10)),
        (BatchedPath::Blocked, (24, 16)),
    ] {
        let members = scaled_members(11, m, n, 600);
        let whole = run_qr(&ctx, &members, QrMode::Complete, &opts(path));
        // Room for two matrices' largest buffer per chunk: 6 chunks for 11 matrices. The whole
        // batch is then larger than the (pretended) binding limit, so this also runs the windowed
        // path: windows of matrices copied into binding-sized buffers, factored, copied back.
        let limit = 2 * (m * m).max(m * n) as u64;
        let chunked_opts = BatchedOptions {
            path,
            max_chunk_elements: Some(limit),
            ..Default::default()
        };
        let before = ctx.stats();
        let chunked = run_qr(&ctx, &members, QrMode::Complete, &chunked_opts);
        let after = ctx.stats();
        // run_qr: 3 uploads are queue writes, not submissions; 1 submission; 2 read-backs.
        assert_eq!(after.submissions - before.submissions, 1, "{path:?}");
        assert_eq!(after.readbacks - before.readbacks, 2, "{path:?}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&whole.1), bits(&chunked.1), "{path:?}: chunked R");
        assert_eq!(
            bits(whole.0.as_ref().unwrap()),
            bits(chunked.0.as_ref().unwrap()),
            "{path:?}: chunked Q"
        );
        // Mode R through windows too (no Q to copy back).
        let r_only = BatchedOptions {
            path,
            max_chunk_elements: Some(limit),
            ..Default::default()
        };
        let whole_r = run_qr(&ctx, &members, QrMode::R, &opts(path));
        let windowed_r = run_qr(&ctx, &members, QrMode::R, &r_only);
        assert_eq!(
            bits(&whole_r.1),
            bits(&windowed_r.1),
            "{path:?}: windowed R, mode R"
        );
        // Smaller than one matrix: refused, naming the op.
        let e = qr_batched_with(
            &ctx,
            &upload(&ctx, &members),
            QrMode::Complete,
            &BatchedOptions {
                path,
                max_chunk_elements: Some(8),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("qr_batched") && e.contains("11×"), "{e}");
    }
}

#[test]
fn one_submission_and_no_readback() {
    let ctx = Context::new().unwrap();
    let members = plain_members(20, 24, 12, 700);
    let a = upload(&ctx, &members);
    let b = upload(&ctx, &plain_members(20, 24, 2, 701));
    for path in PATHS {
        for mode in [QrMode::Reduced, QrMode::Complete, QrMode::R] {
            let before = ctx.stats();
            let res = qr_batched_with(&ctx, &a, mode, &opts(path)).unwrap();
            let after = ctx.stats();
            assert_eq!(
                after.submissions - before.submissions,
                1,
                "{path:?} {mode:?}"
            );
            assert_eq!(after.readbacks, before.readbacks, "{path:?} {mode:?}");
            assert_eq!(res.q.is_some(), mode != QrMode::R);
        }
        let before = ctx.stats();
        lstsq_batched_with(&ctx, &a, &b, &opts(path)).unwrap();
        let after = ctx.stats();
        assert_eq!(after.submissions - before.submissions, 1, "lstsq {path:?}");
        assert_eq!(after.readbacks, before.readbacks, "lstsq {path:?}");
        // The checked variant reads back one f32 per matrix, once.
        let before = ctx.stats();
        lstsq_batched_with(
            &ctx,
            &a,
            &b,
            &BatchedOptions {
                path,
                check_singular: true,
                ..Default::default()
            },
        )
        .unwrap();
        let after = ctx.stats();
        assert_eq!(after.submissions - before.submissions, 1);
        assert_eq!(after.readbacks - before.readbacks, 1);
    }
}

/// Least squares in f64 through the f64 Householder QR of common (dgeqr2), Qᵀb, back
/// substitution.
fn lstsq_f64(a: &Mat, b: &Mat) -> Mat {
    let (m, n) = (a.rows, a.cols);
    let (rv, tau) = geqr2_f64(a);
    let mut c = b.clone();
    for j in 0..n {
        for col in 0..c.cols {
            let mut w = c[(j, col)];
            for i in j + 1..m {
                w += rv[(i, j)] * c[(i, col)];
            }
            w *= tau[j];
            c[(j, col)] -= w;
            for i in j + 1..m {
                c[(i, col)] -= w * rv[(i, j)];
            }
        }
    }
    let mut x = Mat::zeros(n, b.cols);
    for col in 0..b.cols {
        for i in (0..n).rev() {
            let mut s = c[(i, col)];
            for t in i + 1..n {
                s -= rv[(i, t)] * x[(t, col)];
            }
            x[(i, col)] = s / rv[(i, i)];
        }
    }
    x
}

/// 2-norm condition number in f64.
fn cond(a: &Mat) -> f64 {
    let fa = faer::Mat::<f64>::from_fn(a.rows, a.cols, |i, j| a[(i, j)]);
    let s = fa.singular_values().unwrap();
    s[0] / s[s.len() - 1]
}

fn check_lstsq(what: &str, members: &[Mat], rhs: &[Mat], x: &[f32]) {
    let (m, n) = (members[0].rows, members[0].cols);
    let nrhs = rhs[0].cols;
    for (bi, (a, b)) in members.iter().zip(rhs).enumerate() {
        let got = member(x, bi, n, nrhs);
        let want = lstsq_f64(a, b);
        let kappa = cond(a);
        // Forward error of a backward-stable least-squares solver: κ·ε·(1 + κ·‖r‖/(‖A‖‖x‖))
        // times a modest function of the size (Higham, Thm 20.3); the residual term is checked
        // separately below, here c = QR_C·max(m, n) as for the factorization, with the κ² term.
        let r = a.matmul(&want).sub(b);
        let eta = r.fro() / (a.fro() * want.fro());
        let tol = QR_C * m as f64 * EPS * kappa * (1.0 + kappa * eta);
        let err = got.sub(&want).fro() / want.fro();
        assert!(
            err <= tol,
            "{what} member {bi}: ‖x − x_ref‖/‖x_ref‖ = {err:e} > {tol:e} (κ = {kappa:e})"
        );
        // The residual of the computed x is orthogonal to A's columns up to the backward error:
        // ‖Aᵀ(Ax − b)‖ ≤ c·ε·‖A‖(‖A‖‖x‖ + ‖r‖).
        let res = a.matmul(&got).sub(b);
        let ortho = a.t().matmul(&res).fro();
        let bound = QR_C * m as f64 * EPS * a.fro() * (a.fro() * got.fro() + res.fro());
        assert!(
            ortho <= bound,
            "{what} member {bi}: ‖Aᵀ(Ax−b)‖ = {ortho:e} > {bound:e}"
        );
    }
}

#[test]
fn lstsq_batched_matches_f64_least_squares() {
    let ctx = ctx();
    for (s, &(batch, m, n, nrhs)) in [(200, 12, 8, 1), (30, 40, 20, 3), (3, 150, 100, 2)]
        .iter()
        .enumerate()
    {
        let members = plain_members(batch, m, n, 800 + s as u64);
        // Half consistent right-hand sides (b = A x), half with a residual.
        let mut rng = Rng::new(900 + s as u64);
        let rhs: Vec<Mat> = members
            .iter()
            .enumerate()
            .map(|(bi, a)| {
                let noise = Mat::from_f32(m, nrhs, &rng.normal_vec(m * nrhs));
                if bi % 2 == 0 {
                    let xt = Mat::from_f32(n, nrhs, &rng.normal_vec(n * nrhs));
                    let b = a.matmul(&xt);
                    Mat::from_f32(
                        m,
                        nrhs,
                        &b.data.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                    )
                } else {
                    noise
                }
            })
            .collect();
        let ga = upload(ctx, &members);
        let gb = upload(ctx, &rhs);
        for path in [BatchedPath::Auto, BatchedPath::Blocked] {
            let x = lstsq_batched_with(ctx, &ga, &gb, &opts(path))
                .unwrap()
                .to_col_major(ctx)
                .unwrap();
            check_lstsq(
                &format!("lstsq {batch}×{m}×{n} {path:?}"),
                &members,
                &rhs,
                &x,
            );
        }
        if s == 0 {
            let x = lstsq_batched(ctx, &ga, &gb)
                .unwrap()
                .to_col_major(ctx)
                .unwrap();
            check_lstsq("lstsq default", &members, &rhs, &x);
        }
    }
}

#[test]
fn solve_batched_square_systems_and_singular_reporting() {
    let ctx = ctx();
    for &(batch, n) in &[(100, 16), (4, 70)] {
        let mut members = plain_members(batch, n, n, 1000 + n as u64);
        let rhs = plain_members(batch, n, 2, 1100 + n as u64);
        let x = solve_batched(ctx, &upload(ctx, &members), &upload(ctx, &rhs))
            .unwrap()
            .to_col_major(ctx)
            .unwrap();
        check_lstsq(&format!("solve {batch}×{n}×{n}"), &members, &rhs, &x);

        // Member 2 exactly singular at column 4 (zero column), member 3 all zero (column 0).
        for i in 0..n {
            members[2][(i, 4)] = 0.0;
        }
        members[3] = Mat::zeros(n, n);
        let (ga, gb) = (upload(ctx, &members), upload(ctx, &rhs));
        for path in PATHS {
            let e = solve_batched_with(
                ctx,
                &ga,
                &gb,
                &BatchedOptions {
                    path,
                    check_singular: true,
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Singular {
                        op: "solve_batched",
                        matrix: 2,
                        index: 4
                    }
                ),
                "{path:?}: {e}"
            );
            // Unchecked: the singular members' X is non-finite, the others' unaffected.
            let x = solve_batched_with(ctx, &ga, &gb, &opts(path))
                .unwrap()
                .to_col_major(ctx)
                .unwrap();
            assert!(member(&x, 2, n, 2).data.iter().any(|v| !v.is_finite()));
            let others: Vec<usize> = (0..batch).filter(|&b| b != 2 && b != 3).collect();
            check_lstsq(
                &format!("solve {n}×{n} {path:?} next to singular members"),
                &others
                    .iter()
                    .map(|&b| members[b].clone())
                    .collect::<Vec<_>>(),
                &others.iter().map(|&b| rhs[b].clone()).collect::<Vec<_>>(),
                &others
                    .iter()
                    .flat_map(|&b| x[b * n * 2..(b + 1) * n * 2].to_vec())
                    .collect::<Vec<_>>(),
            );
        }
        // Only the all-zero member left singular: reported at its column 0.
        members[2] = plain_members(1, n, n, 1200)[0].clone();
        let e = solve_batched_checked(ctx, &upload(ctx, &members), &gb).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Singular {
                    matrix: 3,
                    index: 0,
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn bad_input_is_rejected_naming_the_op_and_shapes() {
    let ctx = ctx();
    let err = |r: metalcore::Result<GpuBatch>| r.unwrap_err().to_string();
    let a = GpuBatch::zeros(ctx, 3, 6, 4).unwrap();
    let b = GpuBatch::zeros(ctx, 3, 5, 1).unwrap();
    let e = err(lstsq_batched(ctx, &a, &b));
    assert!(
        e.contains("lstsq_batched") && e.contains("3×6×4") && e.contains("3×5×1"),
        "{e}"
    );
    let b = GpuBatch::zeros(ctx, 2, 6, 1).unwrap();
    let e = err(lstsq_batched(ctx, &a, &b));
    assert!(e.contains("lstsq_batched") && e.contains("2×6×1"), "{e}");
    let wide = GpuBatch::zeros(ctx, 3, 4, 6).unwrap();
    let b = GpuBatch::zeros(ctx, 3, 4, 1).unwrap();
    let e = err(lstsq_batched(ctx, &wide, &b));
    assert!(e.contains("m ≥ n") && e.contains("3×4×6"), "{e}");
    let e = err(solve_batched(
        ctx,
        &a,
        &GpuBatch::zeros(ctx, 3, 6, 1).unwrap(),
    ));
    assert!(e.contains("solve_batched") && e.contains("square"), "{e}");
    let empty = GpuBatch::zeros(ctx, 0, 4, 4).unwrap();
    let e = qr_batched(ctx, &empty, QrMode::Reduced)
        .unwrap_err()
        .to_string();
    assert!(e.contains("qr_batched") && e.contains("0×4×4"), "{e}");
    let e = err(lstsq_batched(
        ctx,
        &a,
        &GpuBatch::zeros(ctx, 3, 6, 0).unwrap(),
    ));
    assert!(e.contains("lstsq_batched") && e.contains("3×6×0"), "{e}");
    // Outputs of the wrong shape.
    let mut r = GpuBatch::zeros(ctx, 3, 4, 4).unwrap();
    let mut q = GpuBatch::zeros(ctx, 3, 6, 6).unwrap();
    let e = qr_batched_into(
        ctx,
        &a,
        QrMode::Reduced,
        Some(&mut q),
        &mut r,
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("qr_batched_into") && e.contains("3×6×6") && e.contains("3×6×4"),
        "{e}"
    );
    let e = qr_batched_into(
        ctx,
        &a,
        QrMode::R,
        Some(&mut q),
        &mut r,
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mode R"), "{e}");
    let e = qr_batched_with(
        ctx,
        &a,
        QrMode::Reduced,
        &BatchedOptions {
            block_size: Some(0),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("block_size"), "{e}");
}

/// Numerically rank-deficient members (a column repeating another, so R's diagonal there is
/// rounding noise rather than an exact zero) are reported by the checked calls, on both paths.
#[test]
fn rank_deficient_members_are_reported_not_only_exact_zeros() {
    let ctx = ctx();
    let (batch, m, n) = (6, 24, 8);
    let mut members = plain_members(batch, m, n, 4242);
    for i in 0..m {
        members[4][(i, 5)] = members[4][(i, 2)];
    }
    let mut rng = Rng::new(4343);
    let rhs: Vec<Mat> = (0..batch)
        .map(|_| Mat::from_f32(m, 1, &rng.normal_vec(m)))
        .collect();
    let (ga, gb) = (upload(ctx, &members), upload(ctx, &rhs));
    for path in PATHS {
        let e = lstsq_batched_with(
            ctx,
            &ga,
            &gb,
            &BatchedOptions {
                path,
                check_singular: true,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Singular {
                    matrix: 4,
                    index: 5,
                    ..
                }
            ),
            "{path:?}: {e}"
        );
    }
}

/// Least squares on a batch larger than the (pretended) binding limit goes through windows in
/// one submission and gives bitwise the unwindowed result, on both paths.
#[test]
fn windowed_lstsq_matches_whole_in_one_submission() {
    let ctx = Context::new().unwrap();
    let (batch, m, n, nrhs) = (9, 20, 6, 2);
    let members = plain_members(batch, m, n, 7070);
    let mut rng = Rng::new(7171);
    let rhs: Vec<Mat> = (0..batch)
        .map(|_| Mat::from_f32(m, nrhs, &rng.normal_vec(m * nrhs)))
        .collect();
    let (ga, gb) = (upload(&ctx, &members), upload(&ctx, &rhs));
    for path in PATHS {
        let whole = lstsq_batched_with(&ctx, &ga, &gb, &opts(path))
            .unwrap()
            .to_col_major(&ctx)
            .unwrap();
        let windowed_opts = BatchedOptions {
            path,
            max_chunk_elements: Some(2 * (m * n) as u64), // two matrices per window: 5 windows
            ..Default::default()
        };
        let before = ctx.stats();
        let x = lstsq_batched_with(&ctx, &ga, &gb, &windowed_opts).unwrap();
        assert_eq!(ctx.stats().submissions - before.submissions, 1, "{path:?}");
        let windowed = x.to_col_major(&ctx).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&whole), bits(&windowed), "{path:?}: windowed X");
    }
}
