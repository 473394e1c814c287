//! The column-per-lane batched QR kernel (`qr_columns`, [`SmallKernel::Columns`]) against the f64
//! reference, next to the original workgroup-memory kernel ([`SmallKernel::Shared`]) on the same
//! inputs: square sizes around the register boundaries (1, 7, 8, 16, 31, 32, 33, 64), tall and
//! wide shapes, all modes; zero columns, NaN / Inf members isolated bit for bit, NaN spread
//! exactly where LAPACK spreads it, columns scaled from 1e-30 to 1e30 inside one matrix, nearly
//! dependent columns (the tiny-residual path), and LAPACK's sign conventions. The kernel has no subgroup variant (it needs no cross-lane
//! reduction), so one portable path is tested on every backend.
//!
//! Tolerances are those of tests/batched.rs (see its module docs), fixed before running:
//! ‖QR − A‖_F/‖A‖_F and max|QᵀQ − I| ≤ 4·max(m, n)·ε, and per column ‖(QR − A)_j‖/‖A_j‖ within
//! the same bound where columns have very different scales (Householder QR is columnwise
//! backward stable, Higham Thm 19.4).

mod common;
use common::small_qr::*;
use common::*;
use metalcore::{
    batched_qr_kernel, BatchedOptions, BatchedPath, Context, ContextOptions, LimitsPolicy, QrMode,
    SmallKernel,
};

const KERNELS: [SmallKernel; 2] = [SmallKernel::Columns, SmallKernel::Shared];

#[test]
fn columns_kernel_is_chosen_where_it_fits() {
    let ctx = ctx();
    let auto = BatchedOptions::default();
    for &(m, n) in &[(8, 8), (16, 16), (32, 32), (64, 64), (64, 8), (8, 40)] {
        assert_eq!(
            batched_qr_kernel(ctx, m, n, QrMode::Reduced, &auto),
            Some(SmallKernel::Columns),
            "{m}×{n}"
        );
    }
    // More than 64 rows: the register kernel of subgroups where the adapter's subgroups have
    // one size (tests/batched_tall.rs), else the workgroup-memory kernel.
    let fixed = ctx.subgroup_size().is_some_and(|(lo, hi)| lo == hi);
    assert_eq!(
        batched_qr_kernel(ctx, 100, 5, QrMode::Reduced, &auto),
        Some(if fixed {
            SmallKernel::Tall
        } else {
            SmallKernel::Shared
        })
    );
    assert_eq!(
        batched_qr_kernel(ctx, 32, 32, QrMode::Reduced, &opts(SmallKernel::Shared)),
        Some(SmallKernel::Shared)
    );
    let blocked = BatchedOptions {
        path: BatchedPath::Blocked,
        ..Default::default()
    };
    assert_eq!(batched_qr_kernel(ctx, 32, 32, QrMode::R, &blocked), None);

    // WebGPU's default limits: 32×32 and 48×48 with Q fit (staging ≤ 10 KiB, ≤ 96 lanes);
    // 64×64's staging (68·64 floats) does not, nor does the shared kernel's, so it is blocked.
    let small = Context::with_options(ContextOptions {
        limits: LimitsPolicy::WebGpuDefaults,
        ..Default::default()
    })
    .unwrap();
    for (m, want) in [
        (32, Some(SmallKernel::Columns)),
        (48, Some(SmallKernel::Columns)),
        (64, None),
    ] {
        assert_eq!(
            batched_qr_kernel(&small, m, m, QrMode::Reduced, &auto),
            want,
            "WebGPU defaults {m}×{m}"
        );
    }
    let members = gaussian(5, 48, 48, 1);
    let (q, r) = run(&small, &members, QrMode::Reduced, SmallKernel::Columns);
    check_batch(
        "WebGPU defaults 48×48",
        &members,
        QrMode::Reduced,
        q.as_deref(),
        &r,
    );
}

#[test]
fn sizes_shapes_and_modes_against_the_f64_reference() {
    let ctx = ctx();
    let mut cases: Vec<(usize, usize)> = [1, 7, 8, 16, 31, 32, 33, 64].map(|s| (s, s)).to_vec();
    // Tall, wide, and m < n across the register boundaries.
    cases.extend([
        (17, 3),
        (40, 24),
        (64, 8),
        (33, 32),
        (3, 17),
        (8, 20),
        (16, 40),
        (31, 64),
    ]);
    for (s, &(m, n)) in cases.iter().enumerate() {
        let members = gaussian(5, m, n, 10 + s as u64);
        for kernel in KERNELS {
            for mode in MODES {
                let what = format!("{m}×{n} {mode:?} {kernel:?}");
                let (q, r) = run(ctx, &members, mode, kernel);
                check_batch(&what, &members, mode, q.as_deref(), &r);
                if mode == QrMode::R {
                    let (_, r2) = run(ctx, &members, QrMode::Reduced, kernel);
                    assert_eq!(bits(&r), bits(&r2), "{what}: R differs from mode Reduced's");
                }
            }
        }
    }
}

#[test]
fn lapack_sign_conventions_and_tau_zero() {
    // Diagonally dominant, both signs on the diagonal; member 0's first column is zero below the
    // diagonal (tau = 0: R keeps alpha exactly, its sign included), member 1's third column is
    // zero (reflections keep it zero: R's column 2 is exactly zero).
    let ctx = ctx();
    for &n in &[9, 32, 33] {
        let mut rng = Rng::new(300 + n as u64);
        let mut members: Vec<Mat> = (0..4)
            .map(|b| {
                let mut a = Mat::zeros(n, n);
                for j in 0..n {
                    for i in 0..n {
                        a[(i, j)] = (0.1 * rng.normal()) as f32 as f64;
                    }
                    a[(j, j)] = if (j + b) % 3 == 0 { -4.0 } else { 4.0 };
                }
                a
            })
            .collect();
        for i in 1..n {
            members[0][(i, 0)] = 0.0;
        }
        for i in 0..n {
            members[1][(i, 2)] = 0.0;
        }
        let (_, r) = run(ctx, &members, QrMode::R, SmallKernel::Columns);
        check_lapack_r(&members, &r, &[]);
    }
}

#[test]
fn column_scales_from_1e_minus_30_to_1e30_and_whole_matrix_extremes() {
    let ctx = ctx();
    for &(m, n) in &[(16, 16), (32, 32), (33, 20), (64, 64), (8, 24)] {
        let mut rng = Rng::new(700 + (m * n) as u64);
        let mut members = gaussian(6, m, n, 800 + m as u64);
        // Members 0-2: every column its own scale in [1e-30, 1e30].
        for a in members.iter_mut().take(3) {
            for j in 0..n {
                let s = 10f64.powf(-30.0 + 60.0 * rng.uniform());
                for i in 0..m {
                    a[(i, j)] = (a[(i, j)] * s) as f32 as f64;
                }
            }
        }
        // Members 3-5: whole matrices near the ends of the f32 range.
        for (a, s) in members.iter_mut().skip(3).zip([1e-35, 1e35, 1e37]) {
            for x in a.data.iter_mut() {
                *x = (*x * s) as f32 as f64;
            }
        }
        for kernel in KERNELS {
            let what = format!("{m}×{n} {kernel:?}");
            let (q, r) = run(ctx, &members, QrMode::Reduced, kernel);
            check_batch(&what, &members, QrMode::Reduced, q.as_deref(), &r);
        }
    }
}

#[test]
fn tiny_residual_columns_take_the_rescaled_path() {
    // Column 0 zero below the diagonal (H_0 = I); column 1 has 1 in row 0 and rows 1.. of
    // magnitude 10^-e with mixed exponents e in [15, 35] (some squares flush to zero in f32), so
    // the norm² of reflector 1's x is far below 2^-60 after the column's prescaling and is
    // computed rescaled. Member 5: those rows exactly zero (tau = 0). Also columns that are
    // equal in f32 (exactly dependent).
    let ctx = ctx();
    for &(m, n) in &[(16, 4), (32, 32), (64, 16)] {
        let mut rng = Rng::new(900 + m as u64);
        let mut members = gaussian(7, m, n, 950 + m as u64);
        for (b, a) in members.iter_mut().enumerate() {
            for i in 1..m {
                a[(i, 0)] = 0.0;
            }
            a[(0, 1)] = 1.0;
            for i in 1..m {
                let e = 15.0 + 20.0 * rng.uniform() + b as f64;
                a[(i, 1)] = if b == 5 {
                    0.0
                } else {
                    (rng.normal() * 10f64.powf(-e)) as f32 as f64
                };
            }
            if b == 6 && n > 3 {
                for i in 0..m {
                    a[(i, 3)] = a[(i, 2)];
                }
            }
        }
        for kernel in KERNELS {
            for mode in [QrMode::Reduced, QrMode::Complete] {
                let what = format!("{m}×{n} {mode:?} {kernel:?}");
                let (q, r) = run(ctx, &members, mode, kernel);
                check_batch(&what, &members, mode, q.as_deref(), &r);
            }
        }
    }
}

#[test]
fn nan_inf_and_zero_members_are_isolated_bit_for_bit() {
    let ctx = ctx();
    for &(m, n) in &[(16, 16), (32, 32), (20, 9), (7, 12), (64, 64)] {
        check_isolation(ctx, m, n, SmallKernel::Columns);
    }
}

#[test]
fn nan_spreads_only_where_lapack_spreads_it() {
    let ctx = ctx();
    for &(m, n) in &[(13, 3), (32, 20), (64, 7), (9, 9)] {
        check_nan_spread(ctx, m, n, SmallKernel::Columns);
    }
}
