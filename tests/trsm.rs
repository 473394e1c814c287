//! Triangular solve (strsm / strtrs), single and batched, against f64 references.
//!
//! The measure is the normwise backward error
//!     η = ‖op(A)·X − B‖_F / (‖op(A)‖_F·‖X‖_F + ‖B‖_F)     (left; X·op(A) on the right)
//! computed in f64 from the f32 inputs and the f32 result. Substitution is backward stable:
//! the computed X satisfies (T + ΔT)·x = b column by column with |ΔT| ≤ γ_{n+1}·|T|,
//! γ_m = m·u/(1 − m·u), u = 2⁻²⁴ (Higham, Accuracy and Stability, Thm 8.5); the blocked method
//! keeps this bound because every element of X is still b_i minus a sum of n products, divided
//! once, each term passing through at most n + 1 roundings (fma in the GEMM and the
//! substitution alike; §13.1). Hence η ≤ γ_{n+1} ≈ (n + 1)·u ≤ n·ε for ε = 2u = f32::EPSILON.
//! We allow TOL_C·n·ε with TOL_C = 2: twice that a-priori bound, fixed before any run. Bugs
//! (a wrong block, a missed update, a wrong triangle) give η of order 1. The bound holds however
//! ill-conditioned A is, which one test uses (growth ‖X‖/‖B‖ ~ 1e15).
//!
//! The triangle of A that must not be read is filled with NaN in every test, and so is the
//! diagonal whenever the solve is asked to take it as unit: a read of either shows as NaN in X.

mod common;
use common::*;
use metalcore::{
    trsm, trsm_batched, trsm_batched_checked, trsm_batched_in_place, trsm_checked, trsm_in_place,
    Context, ContextOptions, Error, GpuBatch, GpuMatrix, LimitsPolicy, Side, TrsmOptions, Uplo,
};

const TOL_C: f64 = 2.0;

/// How the diagonal of a test matrix is made.
#[derive(Clone, Copy, Debug)]
enum Diag {
    /// ±(10 + |N(0,1)|): the seed's `tril(randn) + 10·I` with random signs. Condition numbers
    /// about 5 (n = 64) to 3e3 (n = 1000).
    Boosted,
    /// ±(1 + |N(0,1)|) under N(0,1) off-diagonal entries: exponentially ill-conditioned
    /// (condition ~1e4 at n = 64, ~1e18 at n = 300), X grows far beyond B.
    Mild,
}

fn all_options() -> Vec<TrsmOptions> {
    let mut v = Vec::new();
    for side in [Side::Left, Side::Right] {
        for uplo in [Uplo::Lower, Uplo::Upper] {
            for trans in [false, true] {
                for unit_diagonal in [false, true] {
                    v.push(TrsmOptions {
                        side,
                        uplo,
                        trans,
                        unit_diagonal,
                    });
                }
            }
        }
    }
    v
}

fn in_triangle(i: usize, j: usize, uplo: Uplo) -> bool {
    match uplo {
        Uplo::Lower => i > j,
        Uplo::Upper => i < j,
    }
}

/// An n×n column-major triangular test matrix: N(0,1) in `uplo`'s strict triangle, the diagonal
/// per `diag`, NaN in the other triangle. With `unit`, the same matrix scaled to a unit
/// diagonal (row i divided by its diagonal, so the conditioning stays that of `diag`) and NaN
/// stored on the diagonal, as it must not be read.
fn triangular(n: usize, uplo: Uplo, unit: bool, diag: Diag, rng: &mut Rng) -> Vec<f32> {
    let d: Vec<f64> = (0..n)
        .map(|_| {
            let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
            sign * match diag {
                Diag::Boosted => 10.0 + rng.normal().abs(),
                Diag::Mild => 1.0 + rng.normal().abs(),
            }
        })
        .collect();
    let mut a = vec![f32::NAN; n * n];
    for j in 0..n {
        for i in 0..n {
            if in_triangle(i, j, uplo) {
                let v = rng.normal();
                a[i + j * n] = if unit { v / d[i] } else { v } as f32;
            } else if i == j && !unit {
                a[i + j * n] = d[i] as f32;
            }
        }
    }
    a
}

/// op(A) in f64 as the solve must see it: the named triangle, ones on the diagonal when unit,
/// zeros elsewhere (so NaN in unread places does not reach the reference).
fn op_a(a: &[f32], n: usize, o: &TrsmOptions) -> faer::Mat<f64> {
    let t = faer::Mat::<f64>::from_fn(n, n, |i, j| {
        if i == j {
            if o.unit_diagonal {
                1.0
            } else {
                a[i + j * n] as f64
            }
        } else if in_triangle(i, j, o.uplo) {
            a[i + j * n] as f64
        } else {
            0.0
        }
    });
    if o.trans {
        t.transpose().to_owned()
    } else {
        t
    }
}

fn fmat(rows: usize, cols: usize, d: &[f32]) -> faer::Mat<f64> {
    faer::Mat::<f64>::from_fn(rows, cols, |i, j| d[i + j * rows] as f64)
}

/// Normwise backward error of X (for B, both `b_rows × b_cols` col-major; a right-side vector
/// given as n×1 is read as 1×n).
fn backward_error(
    a: &[f32],
    n: usize,
    o: &TrsmOptions,
    b: &[f32],
    x: &[f32],
    b_shape: (usize, usize),
) -> f64 {
    let t = op_a(a, n, o);
    let (rows, cols) = match o.side {
        Side::Right if b_shape == (n, 1) && n != 1 => (1, n),
        _ => b_shape,
    };
    let bm = fmat(rows, cols, b);
    let xm = fmat(rows, cols, x);
    let r = match o.side {
        Side::Left => &t * &xm - &bm,
        Side::Right => &xm * &t - &bm,
    };
    r.norm_l2() / (t.norm_l2() * xm.norm_l2() + bm.norm_l2())
}

fn b_shape(n: usize, k: usize, side: Side) -> (usize, usize) {
    match side {
        Side::Left => (n, k),
        Side::Right => (k, n),
    }
}

/// Solves one random system with `trsm` and checks X is finite with η ≤ TOL_C·n·ε.
fn check_one(ctx: &Context, n: usize, k: usize, o: &TrsmOptions, diag: Diag, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let a = triangular(n, o.uplo, o.unit_diagonal, diag, &mut rng);
    let (br, bc) = b_shape(n, k, o.side);
    let b = rng.normal_vec(br * bc);
    let ga = GpuMatrix::from_col_major(ctx, n, n, &a).unwrap();
    let gb = GpuMatrix::from_col_major(ctx, br, bc, &b).unwrap();
    let x = trsm(ctx, &ga, &gb, o).unwrap();
    assert_eq!(x.shape(), (br, bc), "n={n} k={k} {o:?}: X shape");
    let x = x.to_col_major(ctx).unwrap();
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        panic!(
            "n={n} k={k} {o:?} {diag:?}: X[{i}] = {} is not finite",
            x[i]
        );
    }
    let eta = backward_error(&a, n, o, &b, &x, (br, bc));
    let tol = TOL_C * n as f64 * EPS;
    assert!(
        eta <= tol,
        "n={n} k={k} {o:?} {diag:?}: backward error {eta:e} > {tol:e}"
    );
    eta
}

#[test]
fn every_flag_combination_small_and_medium_n() {
    let ctx = ctx();
    let mut seed = 1000;
    for o in all_options() {
        for &n in &[1, 5, 64, 100] {
            for &k in &[1, 3, 200] {
                seed += 1;
                check_one(ctx, n, k, &o, Diag::Boosted, seed);
            }
        }
        // n = 300: several blocks (and a partial last one) on either block size.
        for &k in &[1, 3] {
            seed += 1;
            check_one(ctx, 300, k, &o, Diag::Boosted, seed);
        }
    }
}

#[test]
fn every_flag_combination_with_an_ill_conditioned_matrix() {
    // Off-diagonal N(0,1) over a diagonal of 1 + |N(0,1)|: X grows by up to ~1e15 over B, yet
    // backward stability bounds the residual as for a benign matrix.
    let ctx = ctx();
    let mut seed = 2000;
    for o in all_options() {
        // k = 40: three tiles of 16 right-hand sides, the last one partial.
        for &(n, k) in &[(64, 3), (300, 5), (100, 40)] {
            seed += 1;
            check_one(ctx, n, k, &o, Diag::Mild, seed);
        }
    }
}

#[test]
fn large_n_with_many_right_hand_sides() {
    // n = 1000 (16 or 32 blocks): a sample of the flag combinations covering both sides, both
    // triangles, both transposes, unit and not, and both substitution directions.
    let ctx = ctx();
    let o = |side, uplo, trans, unit_diagonal| TrsmOptions {
        side,
        uplo,
        trans,
        unit_diagonal,
    };
    let cases = [
        (200, o(Side::Left, Uplo::Upper, true, false)),
        (200, o(Side::Right, Uplo::Upper, true, true)),
        (1, o(Side::Left, Uplo::Lower, false, false)),
        (1, o(Side::Left, Uplo::Upper, false, true)),
        (1, o(Side::Right, Uplo::Upper, false, false)),
        (3, o(Side::Right, Uplo::Lower, false, false)),
    ];
    for (s, (k, opts)) in cases.iter().enumerate() {
        check_one(ctx, 1000, *k, opts, Diag::Boosted, 3000 + s as u64);
    }
}

#[test]
fn vector_right_hand_sides_on_either_side() {
    let ctx = ctx();
    let n = 77;
    for (s, o) in all_options().iter().enumerate() {
        let mut rng = Rng::new(4000 + s as u64);
        let a = triangular(n, o.uplo, o.unit_diagonal, Diag::Boosted, &mut rng);
        let b = rng.normal_vec(n);
        let ga = GpuMatrix::from_col_major(ctx, n, n, &a).unwrap();
        // An n×1 column works on both sides (on the right it is read as the row xᵀ).
        let mut shapes = vec![(n, 1)];
        if o.side == Side::Right {
            shapes.push((1, n));
        }
        for shape in shapes {
            let gb = GpuMatrix::from_col_major(ctx, shape.0, shape.1, &b).unwrap();
            let x = trsm(ctx, &ga, &gb, o).unwrap();
            assert_eq!(x.shape(), shape);
            let x = x.to_col_major(ctx).unwrap();
            let eta = backward_error(&a, n, o, &b, &x, shape);
            assert!(eta <= TOL_C * n as f64 * EPS, "{o:?} {shape:?}: {eta:e}");
        }
    }
}

#[test]
fn in_place_overwrites_b_and_matches_trsm() {
    let ctx = ctx();
    for (s, o) in all_options().iter().enumerate() {
        let (n, k) = (70, 9);
        let mut rng = Rng::new(5000 + s as u64);
        let a = triangular(n, o.uplo, o.unit_diagonal, Diag::Boosted, &mut rng);
        let (br, bc) = b_shape(n, k, o.side);
        let b = rng.normal_vec(br * bc);
        let ga = GpuMatrix::from_col_major(ctx, n, n, &a).unwrap();
        let gb = GpuMatrix::from_col_major(ctx, br, bc, &b).unwrap();
        let x = trsm(ctx, &ga, &gb, o).unwrap().to_col_major(ctx).unwrap();
        let mut gb2 = GpuMatrix::from_col_major(ctx, br, bc, &b).unwrap();
        trsm_in_place(ctx, &ga, &mut gb2, o).unwrap();
        // Same kernels, same order of operations: bitwise equal.
        assert_eq!(gb2.to_col_major(ctx).unwrap(), x, "{o:?}");
    }
}

#[test]
fn unread_places_may_hold_anything() {
    // The unread triangle and a unit diagonal hold NaN in every test; here they hold ±1e30 and
    // inf instead, which would not show as NaN but would wreck X if read.
    let ctx = ctx();
    let n = 150;
    for (s, o) in all_options().iter().enumerate() {
        let mut rng = Rng::new(6000 + s as u64);
        let mut a = triangular(n, o.uplo, o.unit_diagonal, Diag::Boosted, &mut rng);
        for j in 0..n {
            for i in 0..n {
                let other = i != j && !in_triangle(i, j, o.uplo);
                if other || (i == j && o.unit_diagonal) {
                    a[i + j * n] = match (i + j) % 3 {
                        0 => 1e30,
                        1 => -1e30,
                        _ => f32::INFINITY,
                    };
                }
            }
        }
        let (br, bc) = b_shape(n, 4, o.side);
        let b = rng.normal_vec(br * bc);
        let ga = GpuMatrix::from_col_major(ctx, n, n, &a).unwrap();
        let gb = GpuMatrix::from_col_major(ctx, br, bc, &b).unwrap();
        let x = trsm(ctx, &ga, &gb, o).unwrap().to_col_major(ctx).unwrap();
        let eta = backward_error(&a, n, o, &b, &x, (br, bc));
        assert!(eta <= TOL_C * n as f64 * EPS, "{o:?}: {eta:e}");
    }
}

/// Checks every member of a batched solve; members listed in `skip` are not checked.
#[allow(clippy::too_many_arguments)]
fn check_batch(
    name: &str,
    n: usize,
    k: usize,
    batch: usize,
    o: &TrsmOptions,
    a: &[f32],
    b: &[f32],
    x: &[f32],
    skip: &[usize],
) {
    let (br, bc) = b_shape(n, k, o.side);
    for m in 0..batch {
        if skip.contains(&m) {
            continue;
        }
        let am = &a[m * n * n..(m + 1) * n * n];
        let bm = &b[m * br * bc..(m + 1) * br * bc];
        let xm = &x[m * br * bc..(m + 1) * br * bc];
        assert!(
            xm.iter().all(|v| v.is_finite()),
            "{name} n={n} k={k} {o:?}: member {m} has non-finite X"
        );
        let eta = backward_error(am, n, o, bm, xm, (br, bc));
        let tol = TOL_C * n as f64 * EPS;
        assert!(
            eta <= tol,
            "{name} n={n} k={k} {o:?}: member {m}: backward error {eta:e} > {tol:e}"
        );
    }
}

fn random_batch(
    n: usize,
    k: usize,
    batch: usize,
    o: &TrsmOptions,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let mut a = Vec::with_capacity(batch * n * n);
    for _ in 0..batch {
        a.extend(triangular(
            n,
            o.uplo,
            o.unit_diagonal,
            Diag::Boosted,
            &mut rng,
        ));
    }
    let (br, bc) = b_shape(n, k, o.side);
    let b = rng.normal_vec(batch * br * bc);
    (a, b)
}

fn batched_solve(
    ctx: &Context,
    n: usize,
    k: usize,
    batch: usize,
    o: &TrsmOptions,
    a: &[f32],
    b: &[f32],
) -> Vec<f32> {
    let (br, bc) = b_shape(n, k, o.side);
    let ga = GpuBatch::from_col_major(ctx, batch, n, n, a).unwrap();
    let gb = GpuBatch::from_col_major(ctx, batch, br, bc, b).unwrap();
    let x = trsm_batched(ctx, &ga, &gb, o).unwrap();
    assert_eq!((x.batch(), x.rows(), x.cols()), (batch, br, bc));
    x.to_col_major(ctx).unwrap()
}

#[test]
fn batched_small_systems_every_flag_combination() {
    // n = 8, 16, 32: one workgroup per system, matrix and right-hand sides in workgroup memory.
    let ctx = ctx();
    let mut seed = 7000;
    for (s, o) in all_options().into_iter().enumerate() {
        for &n in &[8, 16, 32] {
            // Every combination with 3 right-hand sides; one vector and one wider block of
            // right-hand sides (two workgroups per system) for a quarter of the combinations.
            let mut shapes = vec![(3, 40)];
            if s % 4 == n / 8 - 1 {
                shapes.extend([(1, 300), (70, 3)]);
            }
            for (k, batch) in shapes {
                seed += 1;
                let (a, b) = random_batch(n, k, batch, &o, seed);
                let x = batched_solve(ctx, n, k, batch, &o, &a, &b);
                check_batch("batched", n, k, batch, &o, &a, &b, &x, &[]);
            }
        }
    }
}

#[test]
fn batched_systems_too_large_for_one_workgroup() {
    // n = 80 exceeds the largest in-workgroup block (64, or 32 at WebGPU defaults): blocked path
    // with batched GEMMs. n = 33 and 65 straddle the block sizes.
    let ctx = ctx();
    let mut seed = 8000;
    for o in all_options() {
        for &(n, k, batch) in &[(80, 3, 9), (33, 1, 5), (65, 20, 4)] {
            seed += 1;
            let (a, b) = random_batch(n, k, batch, &o, seed);
            let x = batched_solve(ctx, n, k, batch, &o, &a, &b);
            check_batch("batched blocked", n, k, batch, &o, &a, &b, &x, &[]);
        }
    }
}

#[test]
fn batched_nan_stays_in_its_system() {
    let ctx = ctx();
    for &n in &[16, 80] {
        for uplo in [Uplo::Lower, Uplo::Upper] {
            let o = TrsmOptions {
                uplo,
                ..Default::default()
            };
            let (k, batch) = (5, 6);
            let (mut a, mut b) = random_batch(n, k, batch, &o, 9000 + n as u64);
            // Member 1: NaN in B. Member 3: NaN inside A's triangle (row n-1 / 0, read last or
            // first). Member 4: zero on the diagonal (inf/NaN by IEEE).
            b[n * k + 2] = f32::NAN;
            let (ti, tj) = match uplo {
                Uplo::Lower => (n - 1, 0),
                Uplo::Upper => (0, n - 1),
            };
            a[3 * n * n + ti + tj * n] = f32::NAN;
            a[4 * n * n + 5 + 5 * n] = 0.0;
            let x = batched_solve(ctx, n, k, batch, &o, &a, &b);
            check_batch("nan isolation", n, k, batch, &o, &a, &b, &x, &[1, 3, 4]);
            for m in [1, 3, 4] {
                let xm = &x[m * n * k..(m + 1) * n * k];
                assert!(
                    xm.iter().any(|v| !v.is_finite()),
                    "n={n} {uplo:?}: member {m} should show its NaN/zero"
                );
            }
        }
    }
}

#[test]
fn batched_in_place_matches_batched() {
    let ctx = ctx();
    let o = TrsmOptions {
        side: Side::Right,
        uplo: Uplo::Upper,
        trans: true,
        unit_diagonal: false,
    };
    for &n in &[12, 70] {
        let (k, batch) = (6, 5);
        let (a, b) = random_batch(n, k, batch, &o, 9500 + n as u64);
        let x = batched_solve(ctx, n, k, batch, &o, &a, &b);
        let ga = GpuBatch::from_col_major(ctx, batch, n, n, &a).unwrap();
        let mut gb = GpuBatch::from_col_major(ctx, batch, k, n, &b).unwrap();
        trsm_batched_in_place(ctx, &ga, &mut gb, &o).unwrap();
        assert_eq!(gb.to_col_major(ctx).unwrap(), x);
    }
}

#[test]
fn webgpu_default_limits_take_the_32_block_variant() {
    // With only 16 KiB of workgroup storage the 64-block variant is not allowed; the solves must
    // still be right through the 32-block one (single: blocked; batched n = 48: blocked too).
    let ctx = Context::with_options(ContextOptions {
        limits: LimitsPolicy::WebGpuDefaults,
        ..Default::default()
    })
    .unwrap();
    assert!(ctx.limits().max_compute_workgroup_storage_size <= 16 * 1024);
    let mut seed = 9700;
    for o in all_options() {
        seed += 1;
        check_one(&ctx, 100, 7, &o, Diag::Boosted, seed);
        // 40 right-hand sides: three tiles of 16, the last one partial, on 32-row blocks.
        check_one(&ctx, 100, 40, &o, Diag::Boosted, seed);
        let (n, k, batch) = (48, 3, 4);
        let (a, b) = random_batch(n, k, batch, &o, seed);
        let x = batched_solve(&ctx, n, k, batch, &o, &a, &b);
        check_batch("webgpu limits", n, k, batch, &o, &a, &b, &x, &[]);
    }
}

#[test]
fn nan_in_b_gives_nan_without_hanging() {
    let ctx = ctx();
    let n = 200;
    let mut rng = Rng::new(9800);
    let a = triangular(n, Uplo::Lower, false, Diag::Boosted, &mut rng);
    let mut b = rng.normal_vec(n * 2);
    b[10] = f32::NAN;
    let ga = GpuMatrix::from_col_major(ctx, n, n, &a).unwrap();
    let gb = GpuMatrix::from_col_major(ctx, n, 2, &b).unwrap();
    let x = trsm(ctx, &ga, &gb, &TrsmOptions::default())
        .unwrap()
        .to_col_major(ctx)
        .unwrap();
    // Forward substitution: rows before 10 are untouched by the NaN, rows from 10 on are NaN;
    // the second column is clean.
    assert!(x[..10].iter().all(|v| v.is_finite()));
    assert!(x[10..n].iter().all(|v| v.is_nan()));
    assert!(x[n..].iter().all(|v| v.is_finite()));
}

#[test]
fn zero_on_the_diagonal() {
    let ctx = ctx();
    let n = 100;
    for uplo in [Uplo::Lower, Uplo::Upper] {
        let o = TrsmOptions {
            uplo,
            ..Default::default()
        };
        let mut rng = Rng::new(9900);
        let mut a = triangular(n, uplo, false, Diag::Boosted, &mut rng);
        a[37 + 37 * n] = 0.0;
        a[80 + 80 * n] = -0.0;
        let b = rng.normal_vec(n * 3);
        let ga = GpuMatrix::from_col_major(ctx, n, n, &a).unwrap();
        let gb = GpuMatrix::from_col_major(ctx, n, 3, &b).unwrap();
        // Checked: the first zero, 0-based, like strtrs's info (which is 1-based).
        match trsm_checked(ctx, &ga, &gb, &o) {
            Err(Error::Singular { op, matrix, index }) => {
                assert_eq!((op, matrix, index), ("trsm_checked", 0, 37));
            }
            other => panic!("{uplo:?}: expected Singular, got {other:?}"),
        }
        // Plain: IEEE inf/NaN, no error, no hang.
        let x = trsm(ctx, &ga, &gb, &o).unwrap().to_col_major(ctx).unwrap();
        assert!(x.iter().any(|v| !v.is_finite()));
        // A unit diagonal is never read, so the zero does not matter.
        let unit = TrsmOptions {
            unit_diagonal: true,
            ..o
        };
        let x = trsm_checked(ctx, &ga, &gb, &unit).unwrap();
        let x = x.to_col_major(ctx).unwrap();
        let eta = backward_error(&a, n, &unit, &b, &x, (n, 3));
        assert!(eta <= TOL_C * n as f64 * EPS);
    }
    // A non-singular matrix passes the check and gives the same X as the plain call.
    let mut rng = Rng::new(9901);
    let a = triangular(n, Uplo::Upper, false, Diag::Boosted, &mut rng);
    let b = rng.normal_vec(n);
    let ga = GpuMatrix::from_col_major(ctx, n, n, &a).unwrap();
    let gb = GpuMatrix::from_col_major(ctx, n, 1, &b).unwrap();
    let o = TrsmOptions {
        uplo: Uplo::Upper,
        ..Default::default()
    };
    let x1 = trsm_checked(ctx, &ga, &gb, &o).unwrap().to_col_major(ctx);
    let x2 = trsm(ctx, &ga, &gb, &o).unwrap().to_col_major(ctx);
    assert_eq!(x1.unwrap(), x2.unwrap());
}

#[test]
fn zero_on_the_diagonal_of_a_batch_member() {
    let ctx = ctx();
    for &n in &[8, 80] {
        let o = TrsmOptions::default();
        let (k, batch) = (2, 5);
        let (mut a, b) = random_batch(n, k, batch, &o, 9950 + n as u64);
        a[2 * n * n + 5 + 5 * n] = 0.0;
        a[4 * n * n + 1 + n] = 0.0;
        let ga = GpuBatch::from_col_major(ctx, batch, n, n, &a).unwrap();
        let gb = GpuBatch::from_col_major(ctx, batch, n, k, &b).unwrap();
        match trsm_batched_checked(ctx, &ga, &gb, &o) {
            Err(Error::Singular { matrix, index, .. }) => assert_eq!((matrix, index), (2, 5)),
            other => panic!("n={n}: expected Singular, got {other:?}"),
        }
    }
}

#[test]
fn bad_shapes_are_errors_naming_the_op_and_shapes() {
    let ctx = ctx();
    let m = |r, c| GpuMatrix::zeros(ctx, r, c).unwrap();
    let left = TrsmOptions::default();
    let right = TrsmOptions {
        side: Side::Right,
        ..Default::default()
    };
    let msg = |r: metalcore::Result<GpuMatrix>| match r {
        Err(e) => e.to_string(),
        Ok(x) => panic!("expected an error, got {:?}", x.shape()),
    };
    let e = msg(trsm(ctx, &m(3, 4), &m(3, 1), &left));
    assert!(e.contains("trsm") && e.contains("3×4"), "{e}");
    let e = msg(trsm(ctx, &m(4, 4), &m(5, 2), &left));
    assert!(
        e.contains("trsm") && e.contains("5×2") && e.contains("4×4"),
        "{e}"
    );
    let e = msg(trsm(ctx, &m(4, 4), &m(4, 2), &right));
    assert!(e.contains("trsm") && e.contains("4×2"), "{e}");
    let e = msg(trsm(ctx, &m(0, 0), &m(0, 1), &left));
    assert!(matches!(
        trsm(ctx, &m(0, 0), &m(0, 1), &left),
        Err(Error::Empty { name: "a", .. })
    ));
    assert!(e.contains("trsm") && e.contains("empty"), "{e}");
    assert!(matches!(
        trsm(ctx, &m(4, 4), &m(4, 0), &left),
        Err(Error::Empty { name: "b", .. })
    ));
    assert!(matches!(
        trsm(ctx, &m(4, 4), &m(0, 4), &right),
        Err(Error::Empty { name: "b", .. })
    ));
    let e = msg(trsm_checked(ctx, &m(2, 3), &m(2, 2), &left));
    assert!(e.contains("trsm_checked"), "{e}");
    let mut b = m(3, 3);
    assert!(trsm_in_place(ctx, &m(4, 4), &mut b, &left).is_err());

    let bt = |n, r, c| GpuBatch::zeros(ctx, n, r, c).unwrap();
    let e = trsm_batched(ctx, &bt(3, 4, 4), &bt(2, 4, 1), &left).unwrap_err();
    assert!(
        e.to_string().contains("3×4×4") && e.to_string().contains("2×4×1"),
        "{e}"
    );
    assert!(trsm_batched(ctx, &bt(3, 4, 5), &bt(3, 4, 1), &left).is_err());
    assert!(trsm_batched(ctx, &bt(3, 4, 4), &bt(3, 5, 1), &left).is_err());
    assert!(matches!(
        trsm_batched(ctx, &bt(0, 4, 4), &bt(0, 4, 1), &left),
        Err(Error::Empty { .. })
    ));
}

#[test]
fn one_submission_no_read_back() {
    // A fresh context so that no other test's work is counted.
    let ctx = Context::new().unwrap();
    let n = 300;
    let mut rng = Rng::new(9990);
    let a = triangular(n, Uplo::Upper, false, Diag::Boosted, &mut rng);
    let b = rng.normal_vec(n * 5);
    let ga = GpuMatrix::from_col_major(&ctx, n, n, &a).unwrap();
    let gb = GpuMatrix::from_col_major(&ctx, n, 5, &b).unwrap();
    for o in all_options().iter().filter(|o| o.side == Side::Left) {
        let before = ctx.stats();
        let x = trsm(&ctx, &ga, &gb, o).unwrap();
        let after = ctx.stats();
        assert_eq!(after.submissions - before.submissions, 1, "{o:?}");
        assert_eq!(after.readbacks, before.readbacks, "{o:?}");
        drop(x);
    }
    // The checked call: one submission and one read-back (the diagonal).
    let before = ctx.stats();
    let o = TrsmOptions {
        uplo: Uplo::Upper,
        ..Default::default()
    };
    trsm_checked(&ctx, &ga, &gb, &o).unwrap();
    let after = ctx.stats();
    assert_eq!(after.submissions - before.submissions, 1);
    assert_eq!(after.readbacks - before.readbacks, 1);
    // Batched, blocked path: also one submission.
    let (a, b) = random_batch(80, 3, 4, &o, 9991);
    let ga = GpuBatch::from_col_major(&ctx, 4, 80, 80, &a).unwrap();
    let gb = GpuBatch::from_col_major(&ctx, 4, 80, 3, &b).unwrap();
    let before = ctx.stats();
    trsm_batched(&ctx, &ga, &gb, &o).unwrap();
    let after = ctx.stats();
    assert_eq!(after.submissions - before.submissions, 1);
    assert_eq!(after.readbacks, before.readbacks);
}

/// A context whose blocked trsm splits every sub-problem of at least `split_min` rows ×
/// right-hand sides × batch in half (1: recursion all the way down to single blocks), so the
/// recursive schedule is exercised at sizes a software adapter solves quickly.
fn split_ctx(split_min: usize, limits: LimitsPolicy) -> Context {
    Context::with_options(ContextOptions {
        limits,
        trsm_split_min: Some(split_min),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn recursive_split_every_flag_combination() {
    // Full recursion: n = 257 and 513 give 3 and 4 levels of halving above the 64-blocks
    // (5 and 9 blocks, a 1-row remainder block at the end going forward, at the start going
    // backward); n = 200 with 70 right-hand sides takes a 3-row partial block and two RHS tiles.
    let ctx = split_ctx(1, LimitsPolicy::Adapter);
    let mut seed = 12000;
    for o in all_options() {
        for &(n, k) in &[(257, 3), (513, 2), (200, 70)] {
            seed += 1;
            check_one(&ctx, n, k, &o, Diag::Boosted, seed);
        }
    }
}

#[test]
fn recursive_split_with_an_ill_conditioned_matrix() {
    // The residual bound does not depend on the conditioning with recursion either.
    let ctx = split_ctx(1, LimitsPolicy::Adapter);
    let mut seed = 13000;
    for o in all_options() {
        seed += 1;
        check_one(&ctx, 300, 5, &o, Diag::Mild, seed);
    }
}

#[test]
fn halving_above_peeling_below() {
    // split_min = 1200 with k = 5: ranges of ≥ 240 rows are halved, shorter ones peel one
    // block at a time (n = 513: halve 513 and 257..513, 256 and 0..256, peel below), so both
    // kinds of step share the full-size workspace.
    let ctx = split_ctx(1200, LimitsPolicy::Adapter);
    let mut seed = 14000;
    for o in all_options() {
        seed += 1;
        check_one(&ctx, 513, 5, &o, Diag::Boosted, seed);
    }
}

#[test]
fn recursive_split_at_webgpu_default_limits() {
    // 32-blocks: n = 161 is 6 blocks, the last one a single row.
    let ctx = split_ctx(1, LimitsPolicy::WebGpuDefaults);
    let mut seed = 15000;
    for o in all_options() {
        seed += 1;
        check_one(&ctx, 161, 4, &o, Diag::Boosted, seed);
    }
}

#[test]
fn recursive_split_batched() {
    // Batched GEMMs on the halving steps, with per-member strides into the workspace.
    let ctx = split_ctx(1, LimitsPolicy::Adapter);
    let mut seed = 16000;
    for o in all_options() {
        for &(n, k, batch) in &[(150, 4, 3), (129, 1, 2)] {
            seed += 1;
            let (a, b) = random_batch(n, k, batch, &o, seed);
            let x = batched_solve(&ctx, n, k, batch, &o, &a, &b);
            check_batch("batched recursive", n, k, batch, &o, &a, &b, &x, &[]);
        }
    }
}

#[test]
fn default_schedule_halves_a_large_enough_problem() {
    // n·k ≥ 2²⁰ with the built-in threshold. Left, n = 130, k = 8192: the top range is halved
    // (128 | 2) and so is its first half (64 | 64). Right, n = 65, k = 16384: one halving.
    let ctx = ctx();
    let o = |side, uplo, trans| TrsmOptions {
        side,
        uplo,
        trans,
        unit_diagonal: false,
    };
    check_one(
        ctx,
        130,
        8192,
        &o(Side::Left, Uplo::Lower, false),
        Diag::Boosted,
        17001,
    );
    check_one(
        ctx,
        130,
        8192,
        &o(Side::Right, Uplo::Lower, true),
        Diag::Boosted,
        17002,
    );
}

#[test]
fn recursive_split_nan_and_zero_stay_in_their_system() {
    // NaN in B, NaN in A's triangle, a zero on the diagonal: each stays in its batch member
    // under the recursive schedule too.
    let ctx = split_ctx(1, LimitsPolicy::Adapter);
    let n = 140;
    for uplo in [Uplo::Lower, Uplo::Upper] {
        let o = TrsmOptions {
            uplo,
            ..Default::default()
        };
        let (k, batch) = (3, 5);
        let (mut a, mut b) = random_batch(n, k, batch, &o, 18000 + uplo as u64);
        b[n * k + 2] = f32::NAN;
        let (ti, tj) = match uplo {
            Uplo::Lower => (n - 1, 0),
            Uplo::Upper => (0, n - 1),
        };
        a[2 * n * n + ti + tj * n] = f32::NAN;
        a[3 * n * n + 70 + 70 * n] = 0.0;
        let x = batched_solve(&ctx, n, k, batch, &o, &a, &b);
        check_batch(
            "recursive isolation",
            n,
            k,
            batch,
            &o,
            &a,
            &b,
            &x,
            &[1, 2, 3],
        );
        for m in [1, 2, 3] {
            let xm = &x[m * n * k..(m + 1) * n * k];
            assert!(
                xm.iter().any(|v| !v.is_finite()),
                "{uplo:?}: member {m} should show its NaN/zero"
            );
        }
    }
}
