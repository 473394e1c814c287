//! The register-resident batched QR kernel (`qr_tall`, [`SmallKernel::Tall`]: rows spread over
//! the lanes of a subgroup, columns over the subgroups of one workgroup) against the f64
//! reference: shapes from one subgroup's rows to its 16-row-per-lane limit, around the register
//! and subgroup boundaries, tall, square and m < n, all modes; zero columns, NaN / Inf members
//! isolated bit for bit, columns scaled from 1e-30 to 1e30 inside one matrix, the tiny-residual
//! path, LAPACK's sign conventions; and its choice by `SmallKernel::Auto` (shapes past the
//! column kernel's 64 rows that fit one workgroup's registers).
//!
//! The kernel needs subgroups of one fixed size (lavapipe: 8 lanes, the H100 through Vulkan:
//! 32); the sizes are picked per adapter from that size, so the same shapes relative to the
//! kernel's limits run everywhere. Without such subgroups (llvmpipe GL) there is nothing to
//! run, which the tests assert instead.
//!
//! Tolerances are those of tests/batched.rs (see its module docs), fixed before running:
//! ‖QR − A‖_F/‖A‖_F and max|QᵀQ − I| ≤ 4·max(m, n)·ε, and per column ‖(QR − A)_j‖/‖A_j‖ within
//! the same bound where columns have very different scales (Householder QR is columnwise
//! backward stable, Higham Thm 19.4).

mod common;
use common::small_qr::*;
use common::*;
use metalcore::{batched_qr_kernel, BatchedOptions, BatchedPath, Context, QrMode, SmallKernel};

/// The fixed subgroup size the kernel runs with, or `None` (then the kernel is never chosen,
/// which is checked).
fn lanes(ctx: &Context) -> Option<usize> {
    let s = ctx
        .subgroup_size()
        .filter(|(lo, hi)| lo == hi)
        .map(|(s, _)| s as usize);
    if s.is_none() {
        assert_eq!(
            batched_qr_kernel(ctx, 100, 8, QrMode::Reduced, &opts(SmallKernel::Tall)),
            Some(SmallKernel::Shared),
            "no fixed subgroup size: the tall kernel must not be chosen"
        );
    }
    s
}

/// Runs the tall kernel (asserting that it is the one that runs) on `members`, every mode,
/// and checks each result; mode R's R must equal mode Reduced's bit for bit.
fn check_all_modes(ctx: &Context, what: &str, members: &[Mat]) {
    let (m, n) = (members[0].rows, members[0].cols);
    for mode in MODES {
        assert_eq!(
            batched_qr_kernel(ctx, m, n, mode, &opts(SmallKernel::Tall)),
            Some(SmallKernel::Tall),
            "{what} {m}×{n} {mode:?}: the tall kernel takes this shape"
        );
        let what = format!("{what} {m}×{n} {mode:?}");
        let (q, r) = run(ctx, members, mode, SmallKernel::Tall);
        check_batch(&what, members, mode, q.as_deref(), &r);
        if mode == QrMode::R {
            let (_, r2) = run(ctx, members, QrMode::Reduced, SmallKernel::Tall);
            assert_eq!(bits(&r), bits(&r2), "{what}: R differs from mode Reduced's");
        }
    }
}

#[test]
fn tall_kernel_is_chosen_past_the_column_kernel() {
    let ctx = ctx();
    let Some(s) = lanes(ctx) else { return };
    let auto = BatchedOptions::default();
    // Up to 64 rows the column kernel stays the default; past it, the tall kernel up to 16
    // rows per lane; past that, the shared kernel or the blocked path.
    assert_eq!(
        batched_qr_kernel(ctx, 64, 32, QrMode::Reduced, &auto),
        Some(SmallKernel::Columns)
    );
    let m = (16 * s).max(65);
    assert_eq!(
        batched_qr_kernel(ctx, m.min(16 * s), 8, QrMode::Reduced, &auto),
        Some(if 16 * s > 64 {
            SmallKernel::Tall
        } else {
            SmallKernel::Columns
        })
    );
    assert_ne!(
        batched_qr_kernel(ctx, 16 * s + 1, 8, QrMode::Reduced, &auto),
        Some(SmallKernel::Tall),
        "more than 16 rows per lane"
    );
    let blocked = BatchedOptions {
        path: BatchedPath::Blocked,
        ..Default::default()
    };
    assert_eq!(batched_qr_kernel(ctx, 100, 8, QrMode::R, &blocked), None);
}

/// Shapes relative to the subgroup size s: one lane row, partial and full register rows, the
/// 16-rows-per-lane limit, m < n; columns up to 32 (4 per subgroup of a 256-invocation
/// workgroup at s = 32, where WebGPU's default limits leave it) and reflectors within 48 KiB of
/// workgroup memory (the H100's limit).
fn shapes_for(s: usize) -> Vec<(usize, usize)> {
    vec![
        (1, 1),
        (7, 7),
        (s, 3),
        (s + 1, 17),
        (4 * s + 3, 17),
        (8 * s - 1, 32),
        (16 * s, 16),
        (16 * s - 5, 20),
        (33, 32),
        (5, 27),
        (2 * s, 32),
    ]
    .into_iter()
    // Where subgroups are narrow (lavapipe: 8 lanes, 64 subgroups), also columns past one per
    // subgroup, so that every column-slot count (1 to 4) runs on the CI's adapter too.
    .chain(
        (s <= 8)
            .then_some([
                (3 * s + 1, 200),
                (2 * s, 256),
                (6 * s, 150),
                (4 * s, 100),
                (16 * s - 5, 60),
            ])
            .into_iter()
            .flatten(),
    )
    .collect()
}

#[test]
fn sizes_shapes_and_modes_against_the_f64_reference() {
    let ctx = ctx();
    let Some(s) = lanes(ctx) else { return };
    for (i, (m, n)) in shapes_for(s).into_iter().enumerate() {
        let members = gaussian(3, m, n, 40 + i as u64);
        check_all_modes(ctx, "gaussian", &members);
    }
}

#[test]
fn lapack_sign_conventions_tau_zero_and_awkward_columns() {
    // Diagonally dominant, both signs on the diagonal; member 0's first column is zero below the
    // diagonal (tau = 0: R keeps alpha exactly, its sign included), member 1's third column is
    // zero, member 2 has two equal columns (rank-deficient).
    let ctx = ctx();
    let Some(s) = lanes(ctx) else { return };
    for &(m, n) in &[(4 * s + 1, 9), (6 * s, 32)] {
        let mut rng = Rng::new(300 + n as u64);
        let mut members: Vec<Mat> = (0..4)
            .map(|b| {
                let mut a = Mat::zeros(m, n);
                for j in 0..n {
                    for i in 0..m {
                        a[(i, j)] = (0.1 * rng.normal()) as f32 as f64;
                    }
                    a[(j, j)] = if (j + b) % 3 == 0 { -4.0 } else { 4.0 };
                }
                a
            })
            .collect();
        for i in 1..m {
            members[0][(i, 0)] = 0.0;
        }
        for i in 0..m {
            members[1][(i, 2)] = 0.0;
            members[2][(i, 4)] = members[2][(i, 3)];
        }
        let (q, r) = run(ctx, &members, QrMode::Reduced, SmallKernel::Tall);
        check_batch("signs", &members, QrMode::Reduced, q.as_deref(), &r);
        // Member 2 is rank-deficient: R's rows past the dependent column follow rounding
        // noise, so only the residual checks above apply to it.
        check_lapack_r(&members, &r, &[2]);
    }
}

#[test]
fn column_scales_tiny_residuals_and_whole_matrix_extremes() {
    let ctx = ctx();
    let Some(s) = lanes(ctx) else { return };
    for &(m, n) in &[(5 * s + 2, 20), (12 * s, 24)] {
        let mut rng = Rng::new(700 + (m * n) as u64);
        let mut members = gaussian(8, m, n, 800 + m as u64);
        // Members 0-2: every column its own scale in [1e-30, 1e30].
        for a in members.iter_mut().take(3) {
            for j in 0..n {
                let sc = 10f64.powf(-30.0 + 60.0 * rng.uniform());
                for i in 0..m {
                    a[(i, j)] = (a[(i, j)] * sc) as f32 as f64;
                }
            }
        }
        // Members 3-5: whole matrices near the ends of the f32 range.
        for (a, sc) in members.iter_mut().skip(3).take(3).zip([1e-35, 1e35, 1e37]) {
            for x in a.data.iter_mut() {
                *x = (*x * sc) as f32 as f64;
            }
        }
        // Members 6-7: column 0 zero below the diagonal, column 1 one in row 0 and rows below
        // of magnitude 1e-15 .. 1e-35 (reflector 1's ‖x‖² far below 2^-60: the rescaled path);
        // member 7's exactly zero (tau = 0).
        for (b, a) in members.iter_mut().enumerate().skip(6) {
            for i in 1..m {
                a[(i, 0)] = 0.0;
            }
            a[(0, 1)] = 1.0;
            for i in 1..m {
                let e = 15.0 + 20.0 * rng.uniform();
                a[(i, 1)] = if b == 7 {
                    0.0
                } else {
                    (rng.normal() * 10f64.powf(-e)) as f32 as f64
                };
            }
        }
        for mode in [QrMode::Reduced, QrMode::Complete] {
            let (q, r) = run(ctx, &members, mode, SmallKernel::Tall);
            check_batch(
                &format!("{m}×{n} {mode:?}"),
                &members,
                mode,
                q.as_deref(),
                &r,
            );
        }
    }
}

#[test]
fn nan_inf_and_zero_members_are_isolated_bit_for_bit() {
    let ctx = ctx();
    let Some(s) = lanes(ctx) else { return };
    for &(m, n) in &[(3 * s + 1, 16), (9 * s, 28)] {
        check_isolation(ctx, m, n, SmallKernel::Tall);
    }
}

#[test]
fn nan_spreads_only_where_lapack_spreads_it() {
    let ctx = ctx();
    let Some(s) = lanes(ctx) else { return };
    for &(m, n) in &[(4 * s + 1, 3), (9 * s, 20)] {
        check_nan_spread(ctx, m, n, SmallKernel::Tall);
    }
}
