//! Least squares and square solves on top of blocked QR (LAPACK `sgels`, as
//! `torch.linalg.lstsq` with a full-rank A):
//!
//! - m ≥ n: A = QR; x = R⁻¹ (Qᵀ b)[0..n], Qᵀ applied through the reflectors (no Q formed);
//! - m < n: the minimum-norm solution from Aᵀ = QR: y = R⁻ᵀ b, x = Q [y; 0].
//!
//! Everything — the factorization, applying Q or Qᵀ, the triangular solve and the copies — is
//! recorded into one submission. The checked calls then read back R's diagonal (min(m, n)
//! values, one small read-back) and report a rank-deficient or singular A: the first column
//! whose |R_ii| is at most max(m, n)·ε·max|R_jj|.

use crate::context::{Context, Recorder};
use crate::error::{Error, Result};
use crate::kernels::copy;
use crate::kernels::householder::Mats;
use crate::linalg::non_empty;
use crate::linalg::qr::{self, Plan, Workspace};
use crate::linalg::trsm::{self, Side, TrsmOptions, Uplo};
use crate::matrix::GpuMatrix;

/// Checks shapes and returns (m, n, k): A m×n, B m×k (a vector is m×1).
fn check(op: &'static str, a: &GpuMatrix, b: &GpuMatrix) -> Result<(usize, usize, usize)> {
    non_empty(op, "a", a.shape_struct())?;
    non_empty(op, "b", b.shape_struct())?;
    if b.rows() != a.rows() {
        return Err(Error::shape(
            op,
            format!(
                "A is {} but B is {}: B needs {} rows (one per equation)",
                a.shape_struct(),
                b.shape_struct(),
                a.rows()
            ),
        ));
    }
    Ok((a.rows(), a.cols(), b.cols()))
}

/// Records the solve and returns X (n×k) and the buffer R's diagonal is copied to.
fn record(
    rec: &mut Recorder,
    ctx: &Context,
    op: &'static str,
    a: &GpuMatrix,
    b: &GpuMatrix,
) -> Result<(GpuMatrix, GpuMatrix)> {
    a.check_ctx(ctx, op, "a")?;
    b.check_ctx(ctx, op, "b")?;
    let (m, n, k) = check(op, a, b)?;
    let tall = m >= n;
    // Factor A (tall) or Aᵀ (wide): the factored matrix is rows × cols with rows >= cols.
    let (rows, cols) = if tall { (m, n) } else { (n, m) };
    let plan = Plan::new_in(ctx, rows, cols, 1, None);
    let f = GpuMatrix::uninit(ctx, op, rows, cols)?;
    let tau = GpuMatrix::uninit(ctx, op, plan.k, 1)?;
    let t = GpuMatrix::uninit(ctx, op, plan.nb, plan.panels() * plan.nb)?;
    let ws = Workspace::new(ctx, op, &plan, k)?;
    let fm = Mats::new(&f.buffer, 0, rows, 0);
    let tm = Mats::new(&t.buffer, 0, plan.nb, 0);
    let src = Mats::new(&a.buffer, 0, m, 0);
    copy::record(rec, ctx, m, n, 1, src, fm, !tall);
    qr::record_geqrf(
        rec,
        ctx,
        &plan,
        &ws,
        fm,
        Mats::new(&tau.buffer, 0, 1, 0),
        tm,
    );

    // C (rows × k) carries B in and X out.
    let c = GpuMatrix::uninit(ctx, op, rows, k)?; // zero-initialised by wgpu
    let cm = Mats::new(&c.buffer, 0, rows, 0);
    copy::record(rec, ctx, m, k, 1, Mats::new(&b.buffer, 0, m, 0), cm, false);
    let solve = |trans: bool| TrsmOptions {
        side: Side::Left,
        uplo: Uplo::Upper,
        trans,
        unit_diagonal: false,
    };
    if tall {
        qr::record_apply_q(rec, ctx, &plan, &ws, fm, tm, cm, k, true);
        trsm::record_solve(
            rec,
            ctx,
            op,
            &trsm::Problem::new(n, k, 1, solve(false)),
            fm,
            cm,
        )?;
    } else {
        trsm::record_solve(
            rec,
            ctx,
            op,
            &trsm::Problem::new(m, k, 1, solve(true)),
            fm,
            cm,
        )?;
        qr::record_apply_q(rec, ctx, &plan, &ws, fm, tm, cm, k, false);
    }
    let x = GpuMatrix::uninit(ctx, op, n, k)?;
    copy::record(rec, ctx, n, k, 1, cm, Mats::new(&x.buffer, 0, n, 0), false);
    // R's diagonal, for the rank check.
    let diag = GpuMatrix::uninit(ctx, op, plan.k, 1)?;
    crate::kernels::trsm::extract_diagonal(rec, ctx, plan.k, 1, fm, &diag.buffer, 0);
    Ok((x, diag))
}

/// The first column whose |R_ii| <= max(m, n)·ε·max|R_jj| (or that is not finite), if any.
pub(crate) fn first_deficient(diag: &[f32], m: usize, n: usize) -> Option<usize> {
    let max = diag.iter().fold(0.0f32, |acc, d| acc.max(d.abs()));
    let tol = max * (m.max(n) as f32) * f32::EPSILON;
    diag.iter().position(|d| d.abs() <= tol || !d.is_finite())
}

/// Least squares `min ‖A X − B‖` for a full-rank m×n A (minimum-norm X when m < n); B is m×k
/// (a vector is m×1). Returns X (n×k).
///
/// One submission, then one read-back of R's diagonal (min(m, n) values) to report a
/// rank-deficient A as [`Error::RankDeficient`] (see the module docs); [`lstsq_unchecked`]
/// skips it.
pub fn lstsq(ctx: &Context, a: &GpuMatrix, b: &GpuMatrix) -> Result<GpuMatrix> {
    const OP: &str = "lstsq";
    let mut rec = ctx.recorder(OP);
    let (x, diag) = record(&mut rec, ctx, OP, a, b)?;
    ctx.submit(rec)?;
    let d = diag.to_col_major(ctx)?;
    if let Some(column) = first_deficient(&d, a.rows(), a.cols()) {
        return Err(Error::RankDeficient {
            op: OP,
            matrix: 0,
            column,
            shape: a.shape_struct(),
        });
    }
    Ok(x)
}

/// [`lstsq`] without the rank check: one submission, no read-back. A rank-deficient A gives
/// inf or NaN in X.
pub fn lstsq_unchecked(ctx: &Context, a: &GpuMatrix, b: &GpuMatrix) -> Result<GpuMatrix> {
    const OP: &str = "lstsq";
    let mut rec = ctx.recorder(OP);
    let (x, _) = record(&mut rec, ctx, OP, a, b)?;
    ctx.submit(rec)?;
    Ok(x)
}

/// Solves the square system A X = B through QR (B n×k, a vector is n×1). A singular A is
/// reported as [`Error::RankDeficient`] naming the first dependent column (one small
/// read-back, as [`lstsq`]).
pub fn solve(ctx: &Context, a: &GpuMatrix, b: &GpuMatrix) -> Result<GpuMatrix> {
    a.check_ctx(ctx, "solve", "a")?;
    b.check_ctx(ctx, "solve", "b")?;
    if a.rows() != a.cols() {
        return Err(Error::shape(
            "solve",
            format!(
                "A must be square, got {} (use lstsq for rectangular systems)",
                a.shape_struct()
            ),
        ));
    }
    lstsq(ctx, a, b).map_err(|e| match e {
        Error::RankDeficient {
            matrix,
            column,
            shape,
            ..
        } => Error::RankDeficient {
            op: "solve",
            matrix,
            column,
            shape,
        },
        other => other,
    })
}
