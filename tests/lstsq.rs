//! Least squares and square solves on top of QR, against an f64 reference (Householder QR in
//! f64 from `tests/common`), with tolerances from the least-squares perturbation bound.

mod common;
use common::*;
use metalcore::{lstsq, lstsq_batched, lstsq_unchecked, solve, Error, GpuBatch, GpuMatrix};

fn upload(m: &Mat) -> GpuMatrix {
    let data: Vec<f32> = m.data.iter().map(|&x| x as f32).collect();
    GpuMatrix::from_col_major(ctx(), m.rows, m.cols, &data).unwrap()
}

fn download(g: &GpuMatrix) -> Mat {
    Mat::from_f32(g.rows(), g.cols(), &g.to_col_major(ctx()).unwrap())
}

fn random(rows: usize, cols: usize, seed: u64) -> Mat {
    let mut rng = Rng::new(seed);
    Mat::from_f32(rows, cols, &rng.normal_vec(rows * cols))
}

/// Solves the upper-triangular n×n system R x = b in f64 (b: n×k).
fn back_substitute(r: &Mat, b: &Mat) -> Mat {
    let n = r.cols;
    let mut x = b.clone();
    for c in 0..b.cols {
        for i in (0..n).rev() {
            let mut s = x[(i, c)];
            for j in i + 1..n {
                s -= r[(i, j)] * x[(j, c)];
            }
            x[(i, c)] = s / r[(i, i)];
        }
    }
    x
}

/// f64 least squares for a full-rank A (m ≥ n): x = R⁻¹ (Qᵀ b)[..n]; also κ₂-estimate ‖R‖_F‖R⁻¹‖_F.
fn reference(a: &Mat, b: &Mat) -> (Mat, f64) {
    let n = a.cols;
    let (rv, tau) = geqr2_f64(a);
    let q = reflector_product(&rv, &tau, 0, n);
    let qtb = q.t().matmul(b).rows_range(0, n);
    let r = upper(&rv, n).cols_range(0, n);
    let x = back_substitute(&r, &qtb);
    let rinv = back_substitute(&r, &Mat::identity(n));
    (x, r.fro() * rinv.fro())
}

/// Relative solution error and residual orthogonality of the GPU solution of a tall or square
/// system, both checked against the first-order least-squares perturbation bound
/// (Higham, Accuracy and Stability, §20.1): Householder QR solves a problem within
/// c·max(m, n)·ε of A and b, which moves x by κ·ε·(1 + κ·‖r‖/(‖A‖‖x‖)) relative. c = 4.
fn check_tall(name: &str, a: &Mat, b: &Mat) {
    let ctx = ctx();
    let (m, n) = (a.rows, a.cols);
    let x = download(&lstsq(ctx, &upload(a), &upload(b)).unwrap());
    assert_eq!((x.rows, x.cols), (n, b.cols), "{name}: X shape");
    let (x_ref, kappa) = reference(a, b);
    let r = a.matmul(&x_ref).sub(b);
    let eta = r.fro() / (a.fro() * x_ref.fro());
    let tol = 4.0 * m.max(n) as f64 * EPS * kappa * (1.0 + kappa * eta);
    let err = x.sub(&x_ref).fro() / x_ref.fro();
    assert!(
        err <= tol,
        "{name}: ‖x − x_ref‖/‖x_ref‖ = {err:e} > {tol:e} (κ ≈ {kappa:.1})"
    );
    if m > n {
        // Aᵀ(Ax − b) = AᵀA(x − x_ref): bounded by ‖A‖²‖x − x_ref‖, i.e. the same bound again.
        let atr = a.t().matmul(&a.matmul(&x).sub(b)).fro();
        let bound = a.fro() * (a.fro() * x_ref.fro() + b.fro()) * tol;
        assert!(atr <= bound, "{name}: ‖Aᵀ(Ax − b)‖ = {atr:e} > {bound:e}");
    }
}

#[test]
fn tall_systems() {
    check_tall("100×10, 1 rhs", &random(100, 10, 1), &random(100, 1, 2));
    check_tall("300×40, 3 rhs", &random(300, 40, 3), &random(300, 3, 4));
    // Consistent system: b in the range of A, residual zero.
    let a = random(120, 33, 5);
    let b = a.matmul(&random(33, 2, 6));
    check_tall("120×33 consistent", &a, &b);
}

#[test]
fn square_solve() {
    let ctx = ctx();
    let a = random(50, 50, 7);
    let b = random(50, 2, 8);
    check_tall("50×50 via lstsq", &a, &b);
    let x = download(&solve(ctx, &upload(&a), &upload(&b)).unwrap());
    let (x_ref, kappa) = reference(&a, &b);
    let err = x.sub(&x_ref).fro() / x_ref.fro();
    let tol = 4.0 * 50.0 * EPS * kappa;
    assert!(err <= tol, "solve 50×50: {err:e} > {tol:e}");
}

#[test]
fn wide_system_gives_the_minimum_norm_solution() {
    let ctx = ctx();
    let (m, n) = (10, 100);
    let a = random(m, n, 9);
    let b = random(m, 2, 10);
    let x = download(&lstsq(ctx, &upload(&a), &upload(&b)).unwrap());
    assert_eq!((x.rows, x.cols), (n, 2));
    // Minimum-norm solution x = Aᵀ (A Aᵀ)⁻¹ b = Q R⁻ᵀ b from Aᵀ = QR, in f64.
    let at = a.t();
    let (rv, tau) = geqr2_f64(&at);
    let q = reflector_product(&rv, &tau, 0, m).cols_range(0, m);
    let r = upper(&rv, m).cols_range(0, m);
    // R⁻ᵀ b: forward substitution with Rᵀ (lower).
    let mut y = b.clone();
    for c in 0..b.cols {
        for i in 0..m {
            let mut s = y[(i, c)];
            for j in 0..i {
                s -= r[(j, i)] * y[(j, c)];
            }
            y[(i, c)] = s / r[(i, i)];
        }
    }
    let x_ref = q.matmul(&y);
    let kappa = r.fro() * back_substitute(&r, &Mat::identity(m)).fro();
    let err = x.sub(&x_ref).fro() / x_ref.fro();
    let tol = 4.0 * n as f64 * EPS * kappa;
    assert!(
        err <= tol,
        "wide 10×100: ‖x − x_mn‖/‖x_mn‖ = {err:e} > {tol:e}"
    );
    // It solves the system exactly (up to rounding) …
    let res = a.matmul(&x).sub(&b).fro() / (a.fro() * x.fro());
    assert!(res <= tol, "wide: relative residual {res:e}");
    // … and has no component in A's null space: x = Q Qᵀ x (Q spans the row space of A).
    let outside = x.sub(&q.matmul(&q.t().matmul(&x))).fro() / x.fro();
    assert!(
        outside <= tol,
        "wide: component outside the row space {outside:e}"
    );
}

#[test]
fn batched_lstsq_200_systems_of_20x6() {
    let ctx = ctx();
    let (batch, m, n) = (200, 20, 6);
    let mats: Vec<Mat> = (0..batch).map(|i| random(m, n, 1000 + i as u64)).collect();
    let rhs: Vec<Mat> = (0..batch).map(|i| random(m, 1, 5000 + i as u64)).collect();
    let flat = |v: &[Mat]| {
        v.iter()
            .flat_map(|x| x.data.iter().map(|&y| y as f32))
            .collect::<Vec<f32>>()
    };
    let ga = GpuBatch::from_col_major(ctx, batch, m, n, &flat(&mats)).unwrap();
    let gb = GpuBatch::from_col_major(ctx, batch, m, 1, &flat(&rhs)).unwrap();
    let x = lstsq_batched(ctx, &ga, &gb)
        .unwrap()
        .to_col_major(ctx)
        .unwrap();
    for i in 0..batch {
        let xi = Mat::from_f32(n, 1, &x[i * n..(i + 1) * n]);
        let (x_ref, kappa) = reference(&mats[i], &rhs[i]);
        let r = mats[i].matmul(&x_ref).sub(&rhs[i]);
        let eta = r.fro() / (mats[i].fro() * x_ref.fro());
        let tol = 4.0 * m as f64 * EPS * kappa * (1.0 + kappa * eta);
        let err = xi.sub(&x_ref).fro() / x_ref.fro();
        assert!(err <= tol, "batched member {i}: {err:e} > {tol:e}");
    }
}

#[test]
fn rank_deficient_and_singular_systems_are_reported() {
    let ctx = ctx();
    // Column 4 repeats column 1: rank 5 of 6.
    let mut a = random(30, 6, 11);
    for i in 0..30 {
        a[(i, 4)] = a[(i, 1)];
    }
    let b = random(30, 1, 12);
    match lstsq(ctx, &upload(&a), &upload(&b)) {
        Err(Error::RankDeficient { op, column, .. }) => {
            assert_eq!(op, "lstsq");
            assert_eq!(column, 4, "the first dependent column");
        }
        other => panic!("rank-deficient A gave {other:?}"),
    }
    // Exactly singular square system: a zero column.
    let mut s = random(8, 8, 13);
    for i in 0..8 {
        s[(i, 2)] = 0.0;
    }
    let e = solve(ctx, &upload(&s), &upload(&random(8, 1, 14))).unwrap_err();
    assert!(
        matches!(
            e,
            Error::RankDeficient {
                op: "solve",
                column: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bad_shapes_are_rejected_naming_the_op() {
    let ctx = ctx();
    let a = upload(&random(10, 4, 15));
    let e = lstsq(ctx, &a, &upload(&random(9, 1, 16)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lstsq") && e.contains("10×4") && e.contains("9×1"),
        "{e}"
    );
    let e = solve(ctx, &a, &upload(&random(10, 1, 17)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("solve") && e.contains("square"), "{e}");
    let empty = GpuMatrix::zeros(ctx, 0, 3).unwrap();
    let e = lstsq(ctx, &empty, &empty).unwrap_err().to_string();
    assert!(e.contains("lstsq") && e.contains("0×3"), "{e}");
}

#[test]
fn lstsq_is_one_submission() {
    let ctx = metalcore::Context::new().unwrap();
    let a = random(64, 20, 18);
    let b = random(64, 2, 19);
    let up = |m: &Mat| {
        let d: Vec<f32> = m.data.iter().map(|&x| x as f32).collect();
        GpuMatrix::from_col_major(&ctx, m.rows, m.cols, &d).unwrap()
    };
    let (ga, gb) = (up(&a), up(&b));
    let s0 = ctx.stats();
    let _x = lstsq_unchecked(&ctx, &ga, &gb).unwrap();
    let s1 = ctx.stats();
    assert_eq!(
        (s1.submissions - s0.submissions, s1.readbacks - s0.readbacks),
        (1, 0)
    );
    let _x = lstsq(&ctx, &ga, &gb).unwrap();
    let s2 = ctx.stats();
    assert_eq!(
        (s2.submissions - s1.submissions, s2.readbacks - s1.readbacks),
        (1, 1),
        "checked: one small read-back of R's diagonal"
    );
}
