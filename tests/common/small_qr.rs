//! Shared by the one-workgroup-per-matrix batched QR suites (tests/batched_columns.rs,
//! tests/batched_tall.rs): running a kernel on NaN-poisoned outputs, and the checks of its
//! results against the definitions (tolerances explained in tests/batched.rs's module docs).

use super::*;
use metalcore::{
    qr_batched_into, BatchedOptions, BatchedPath, Context, GpuBatch, QrMode, SmallKernel,
};

pub const QR_C: f64 = 4.0;

pub const MODES: [QrMode; 3] = [QrMode::Reduced, QrMode::Complete, QrMode::R];

pub fn opts(kernel: SmallKernel) -> BatchedOptions {
    BatchedOptions {
        path: BatchedPath::WorkgroupPerMatrix,
        kernel,
        ..Default::default()
    }
}

pub fn shapes(m: usize, n: usize, mode: QrMode) -> (usize, usize) {
    let k = m.min(n);
    match mode {
        QrMode::Reduced => (k, k),
        QrMode::Complete => (m, m),
        QrMode::R => (k, 0),
    }
}

pub fn gaussian(batch: usize, m: usize, n: usize, seed: u64) -> Vec<Mat> {
    let mut rng = Rng::new(seed);
    (0..batch)
        .map(|_| Mat::from_f32(m, n, &rng.normal_vec(m * n)))
        .collect()
}

/// Runs `qr_batched_into` on NaN-poisoned outputs: (Q, R) read back.
pub fn run(
    ctx: &Context,
    members: &[Mat],
    mode: QrMode,
    kernel: SmallKernel,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (m, n) = (members[0].rows, members[0].cols);
    let batch = members.len();
    let (r_rows, qcols) = shapes(m, n, mode);
    let data: Vec<f32> = members
        .iter()
        .flat_map(|a| a.data.iter().map(|&x| x as f32))
        .collect();
    let a = GpuBatch::from_col_major(ctx, batch, m, n, &data).unwrap();
    let nan = |rows, cols| {
        GpuBatch::from_col_major(ctx, batch, rows, cols, &vec![f32::NAN; batch * rows * cols])
            .unwrap()
    };
    let mut r = nan(r_rows, n);
    let mut q = (qcols > 0).then(|| nan(m, qcols));
    qr_batched_into(ctx, &a, mode, q.as_mut(), &mut r, &opts(kernel)).unwrap();
    (
        q.map(|q| q.to_col_major(ctx).unwrap()),
        r.to_col_major(ctx).unwrap(),
    )
}

pub fn member(data: &[f32], b: usize, rows: usize, cols: usize) -> Mat {
    Mat::from_f32(rows, cols, &data[b * rows * cols..(b + 1) * rows * cols])
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Asserts that member `b` of a batched QR's outputs (`q` m×k and `r` k×n per member, k =
/// min(m, n)) is bit for bit what the member's solo run gave (`q1`, `r1`).
pub fn assert_member_as_alone(
    what: &str,
    b: usize,
    (m, n): (usize, usize),
    (q, r): (&[f32], &[f32]),
    (q1, r1): (&[f32], &[f32]),
) {
    let k = m.min(n);
    assert_eq!(
        bits(&r[b * k * n..(b + 1) * k * n]),
        bits(r1),
        "{what}: member {b}'s R differs from its solo run"
    );
    assert_eq!(
        bits(&q[b * m * k..(b + 1) * m * k]),
        bits(q1),
        "{what}: member {b}'s Q differs from its solo run"
    );
}

/// R exactly zero below the diagonal and finite; with Q: Q orthogonal and QR = A column by
/// column (relative to each column's norm), within QR_C·max(m, n)·ε.
pub fn check(what: &str, a: &Mat, q: Option<&Mat>, r: &Mat) {
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
    let tol = QR_C * m.max(n) as f64 * EPS;
    let Some(q) = q else { return };
    let orth = q.t().matmul(q).sub(&Mat::identity(q.cols)).max_abs();
    assert!(orth <= tol, "{what}: max|QᵀQ−I| = {orth:e} > {tol:e}");
    // Q·R restricted to Q's columns (complete Q's extra columns meet R's zero rows).
    let qr = q
        .cols_range(0, r.rows.min(q.cols))
        .matmul(&r.rows_range(0, r.rows.min(q.cols)));
    let d = qr.sub(a);
    // Flush-to-zero: Vulkan on NVIDIA (and Metal) flush f32 results below 2^-126 to zero, so
    // an entry of R (or an update) that is exactly a denormal comes out 0: an absolute error
    // up to 2^-126 per entry, at most max(m, n)·2^-126 in ‖(QR − A)_j‖ with Q orthonormal. It
    // matters only for whole matrices near the bottom of the range (the 1e-35 member, whose
    // columns have norms ~1e-34); elsewhere it is 30 orders of magnitude below tol·‖A_j‖.
    let underflow = m.max(n) as f64 * f32::MIN_POSITIVE as f64;
    for j in 0..n {
        let col = |x: &Mat| (0..m).map(|i| x[(i, j)].powi(2)).sum::<f64>().sqrt();
        let (err, norm) = (col(&d), col(a));
        if norm == 0.0 {
            assert_eq!(
                err, 0.0,
                "{what}: zero column {j} reconstructed as non-zero"
            );
        } else {
            assert!(
                err <= tol * norm + underflow,
                "{what}: column {j}: ‖(QR−A)_j‖/‖A_j‖ = {:e} > {tol:e}",
                err / norm
            );
        }
    }
}

pub fn check_batch(what: &str, members: &[Mat], mode: QrMode, q: Option<&[f32]>, r: &[f32]) {
    let (m, n) = (members[0].rows, members[0].cols);
    let (r_rows, qcols) = shapes(m, n, mode);
    for (b, a) in members.iter().enumerate() {
        let rb = member(r, b, r_rows, n);
        let qb = q.map(|q| member(q, b, m, qcols));
        check(&format!("{what} member {b}"), a, qb.as_ref(), &rb);
    }
}

/// Nine m×n members, among them a NaN, a zero, a +Inf, a -Inf and a leading-zero-columns one,
/// through `kernel` in one batch: every finite member's Q and R bit for bit as in its solo run
/// and correct, the zero member's R exactly zero, the NaN member's R showing NaN.
pub fn check_isolation(ctx: &Context, m: usize, n: usize, kernel: SmallKernel) {
    let mut members = gaussian(9, m, n, 1000 + m as u64);
    members[2][(m / 2, n / 2)] = f64::NAN;
    members[4] = Mat::zeros(m, n);
    members[6][(0, 0)] = f64::INFINITY;
    members[7][(m - 1, n - 1)] = f64::NEG_INFINITY;
    for c in 0..n.min(3) {
        for i in 0..m {
            members[8][(i, c)] = 0.0; // leading zero columns
        }
    }
    let special = [2, 4, 6, 7];
    let k = m.min(n);
    let (q, r) = run(ctx, &members, QrMode::Reduced, kernel);
    let (q, r) = (q.unwrap(), r);
    for (b, a) in members.iter().enumerate() {
        if special.contains(&b) {
            continue;
        }
        let (q1, r1) = run(ctx, std::slice::from_ref(a), QrMode::Reduced, kernel);
        let solo = (q1.unwrap(), r1);
        assert_member_as_alone(&format!("{m}×{n}"), b, (m, n), (&q, &r), (&solo.0, &solo.1));
        let what = format!("{m}×{n} member {b}");
        check(&what, a, Some(&member(&q, b, m, k)), &member(&r, b, k, n));
    }
    let rz = member(&r, 4, k, n);
    assert!(
        rz.data.iter().all(|&x| x == 0.0),
        "{m}×{n}: R of the zero member"
    );
    check("zero member", &members[4], Some(&member(&q, 4, m, k)), &rz);
    assert!(
        member(&r, 2, k, n).data.iter().any(|x| x.is_nan()),
        "{m}×{n}: the NaN member's R shows NaN"
    );
}

/// R of each member (k×n each in `r`, k = min(m, n)) against LAPACK's sgeqr2 in f64, entry by
/// entry (the sign conventions, not only a valid QR), members in `skip` left out; within
/// 8·m·ε·max|A|·√m per entry (Householder QR's normwise backward error bound, per entry of R).
/// Then member 0's R[0,0] equals A[0,0] exactly (its column 0 is zero below the diagonal:
/// tau = 0 keeps alpha) and member 1's column 2 is exactly zero (a zero column stays zero).
pub fn check_lapack_r(members: &[Mat], r: &[f32], skip: &[usize]) {
    let (m, n) = (members[0].rows, members[0].cols);
    let k = m.min(n);
    for (b, a) in members.iter().enumerate() {
        if skip.contains(&b) {
            continue;
        }
        let (rv_ref, _) = geqr2_f64(a);
        let want = upper(&rv_ref, k);
        let got = member(r, b, k, n);
        let tol = 8.0 * m as f64 * EPS * a.max_abs() * (m as f64).sqrt();
        for j in 0..n {
            for i in 0..=j.min(k - 1) {
                assert!(
                    (got[(i, j)] - want[(i, j)]).abs() <= tol,
                    "{m}×{n} member {b}: R[{i},{j}] = {} vs LAPACK convention {}",
                    got[(i, j)],
                    want[(i, j)]
                );
            }
        }
    }
    assert_eq!(
        member(r, 0, k, n)[(0, 0)],
        members[0][(0, 0)],
        "{m}×{n}: tau = 0 keeps alpha"
    );
    let r1 = member(r, 1, k, n);
    assert!(
        (0..k).all(|i| r1[(i, 2)] == 0.0),
        "{m}×{n}: zero column's R"
    );
}

/// NaN at the last row of column 1 of member 0 (m×n, n ≥ 3): H_0 (from the finite column 0)
/// carries it into all of column 1, so reflector 1 is NaN and so is every entry of R it produces
/// (rows ≥ 1 of columns ≥ 1); row 0 of R (touched by H_0 only) stays finite. Rows above a
/// reflector's first row must be left exactly alone even when its coefficient is NaN, as LAPACK's
/// slarf leaves them. Member 1 (finite) must be unaffected.
pub fn check_nan_spread(ctx: &Context, m: usize, n: usize, kernel: SmallKernel) {
    let mut members = gaussian(2, m, n, 1200 + m as u64);
    members[0][(m - 1, 1)] = f64::NAN;
    let (_, r) = run(ctx, &members, QrMode::R, kernel);
    let r0 = member(&r, 0, n, n);
    for j in 1..n {
        for i in 1..=j {
            assert!(
                r0[(i, j)].is_nan(),
                "{m}×{n} {kernel:?}: R[{i},{j}] = {} should be NaN",
                r0[(i, j)]
            );
        }
    }
    for j in [0, 2] {
        assert!(
            r0[(0, j)].is_finite(),
            "{m}×{n} {kernel:?}: R[0,{j}] = {}",
            r0[(0, j)]
        );
    }
    check("finite neighbour", &members[1], None, &member(&r, 1, n, n));
}
