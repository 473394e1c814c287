//! Level-3 building blocks exposed to users: column norms and matrix products.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::{gemm::Gemm, norms, View};
use crate::linalg::non_empty;
use crate::matrix::GpuMatrix;

/// 2-norm of every column of `a` (LAPACK `snrm2` per column), as a `1 × cols` matrix.
///
/// Safe against overflow and underflow: columns scaled near 1e30 or 1e-30 give the right norm.
/// A column holding NaN gives NaN. One submission.
pub fn column_norms(ctx: &Context, a: &GpuMatrix) -> Result<GpuMatrix> {
    const OP: &str = "column_norms";
    a.check_ctx(ctx, OP, "a")?;
    non_empty(OP, "a", a.shape_struct())?;
    let out = GpuMatrix::uninit(ctx, OP, 1, a.cols())?;
    let mut rec = ctx.recorder(OP);
    norms::record(
        &mut rec,
        ctx,
        a.rows(),
        a.cols(),
        View::new(&a.buffer, 0, a.rows()),
        &out.buffer,
        0,
    );
    ctx.submit(rec)?;
    Ok(out)
}

/// Matrix product `op(A) · op(B)` into a new matrix (BLAS `sgemm` with alpha = 1, beta = 0),
/// where op transposes when its flag is set. One submission on the tiled GEMM kernel.
pub fn matmul(
    ctx: &Context,
    a: &GpuMatrix,
    trans_a: bool,
    b: &GpuMatrix,
    trans_b: bool,
) -> Result<GpuMatrix> {
    a.check_ctx(ctx, "matmul", "a")?;
    b.check_ctx(ctx, "matmul", "b")?;
    let m = if trans_a { a.cols() } else { a.rows() };
    let n = if trans_b { b.rows() } else { b.cols() };
    let mut c = GpuMatrix::uninit(ctx, "matmul", m, n)?;
    gemm(ctx, 1.0, a, trans_a, b, trans_b, 0.0, &mut c)?;
    Ok(c)
}

/// BLAS `sgemm`: `C ← alpha · op(A) · op(B) + beta · C`. With `beta == 0`, C is only written
/// (whatever it held, NaN included, is ignored). C must not share a buffer with A or B.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    ctx: &Context,
    alpha: f32,
    a: &GpuMatrix,
    trans_a: bool,
    b: &GpuMatrix,
    trans_b: bool,
    beta: f32,
    c: &mut GpuMatrix,
) -> Result<()> {
    const OP: &str = "gemm";
    a.check_ctx(ctx, OP, "a")?;
    b.check_ctx(ctx, OP, "b")?;
    c.check_ctx(ctx, OP, "c")?;
    let (m, ka) = if trans_a {
        (a.cols(), a.rows())
    } else {
        (a.rows(), a.cols())
    };
    let (kb, n) = if trans_b {
        (b.cols(), b.rows())
    } else {
        (b.rows(), b.cols())
    };
    let t = |x: bool| if x { "ᵀ" } else { "" };
    if ka != kb || c.shape() != (m, n) {
        return Err(Error::shape(
            OP,
            format!(
                "op(A) = A{} is {m}×{ka} (A {}), op(B) = B{} is {kb}×{n} (B {}), C is {}: \
                 need op(A) m×k, op(B) k×n, C m×n",
                t(trans_a),
                a.shape_struct(),
                t(trans_b),
                b.shape_struct(),
                c.shape_struct()
            ),
        ));
    }
    non_empty(OP, "a", a.shape_struct())?;
    non_empty(OP, "b", b.shape_struct())?;
    if c.buffer == a.buffer || c.buffer == b.buffer {
        return Err(Error::shape(OP, "C must not be the same matrix as A or B"));
    }
    let mut rec = ctx.recorder(OP);
    Gemm::new(
        m,
        n,
        ka,
        alpha,
        View::new(&a.buffer, 0, a.rows()),
        trans_a,
        View::new(&b.buffer, 0, b.rows()),
        trans_b,
        beta,
        View::new(&c.buffer, 0, m),
    )
    .record(&mut rec, ctx);
    ctx.submit(rec)
}
