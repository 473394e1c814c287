//! The Householder primitives on their own, with LAPACK semantics: `geqr2` (unblocked panel
//! QR), `larft` (T of the compact-WY form) and `larfb` (apply a block reflector).
//!
//! Storage convention, shared with [`QrFactors`](crate::linalg::qr::QrFactors): reflector c of a
//! factored matrix lives in column `panel_start + c`; its implicit 1 sits at row
//! `panel_start + c`, its vector v below it, and the rows above are zero (R lives there).
//! `H_c = I - tau_c v_c v_cᵀ`, and the block `H_0 H_1 … H_{k-1} = I - V T Vᵀ`.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::gemm::Gemm;
use crate::kernels::householder::{self as hh, Mats};
use crate::linalg::non_empty;
use crate::matrix::GpuMatrix;

/// Unblocked Householder QR of an m×n matrix (LAPACK `sgeqr2`), returning `(R_V, tau)`.
///
/// `R_V` (m×n) holds R on and above the diagonal and the reflectors' vectors below it (implicit
/// unit diagonal); `tau` is k×1 (k = min(m, n)). LAPACK's sign convention: beta = -sign(alpha)·
/// ‖(alpha, x)‖, tau = (beta - alpha)/beta, and tau = 0 (H = I) when the column below the
/// diagonal is already zero. Norms are scaled as in `snrm2`/`slarfg`, so inputs near 1e±30
/// factor correctly.
///
/// The whole matrix is factored by one workgroup in one fused launch: for wide or large matrices
/// prefer the blocked [`qr`](crate::linalg::qr::qr) / [`geqrf`](crate::linalg::qr::geqrf).
pub fn geqr2(ctx: &Context, a: &GpuMatrix) -> Result<(GpuMatrix, GpuMatrix)> {
    const OP: &str = "geqr2";
    a.check_ctx(ctx, OP, "a")?;
    non_empty(OP, "a", a.shape_struct())?;
    let (m, n) = a.shape();
    let k = m.min(n);
    let rv = GpuMatrix::uninit(ctx, OP, m, n)?;
    let tau = GpuMatrix::uninit(ctx, OP, k, 1)?;
    let mut rec = ctx.recorder(OP);
    rec.copy(&a.buffer, 0, &rv.buffer, 0, a.len() as u64);
    hh::panel(
        &mut rec,
        ctx,
        m,
        0,
        k,
        n,
        Mats::new(&rv.buffer, 0, m, 0),
        Mats::new(&tau.buffer, 0, 1, 0),
        1,
    );
    ctx.submit(rec)?;
    Ok((rv, tau))
}

fn check_reflectors(op: &'static str, rv: &GpuMatrix, k: usize, panel_start: usize) -> Result<()> {
    non_empty(op, "r_v", rv.shape_struct())?;
    if k == 0 {
        return Err(Error::shape(op, "no reflectors (tau / T is empty)"));
    }
    let (m, n) = rv.shape();
    if panel_start + k > m.min(n) {
        return Err(Error::shape(
            op,
            format!(
                "{k} reflectors from panel_start {panel_start} do not fit R_V {}: need panel_start + k <= min(m, n) = {}",
                rv.shape_struct(),
                m.min(n)
            ),
        ));
    }
    Ok(())
}

/// The upper-triangular k×k T of the compact-WY form (LAPACK `slarft`, forward, columnwise):
/// `H_0 H_1 … H_{k-1} = I - V T Vᵀ` for the k reflectors stored in columns
/// `panel_start .. panel_start + k` of `r_v` (see the module docs), with `tau` (k×1) their
/// scalars. Computed on the GPU: V explicit, S = VᵀV by GEMM, then the triangular recurrence.
pub fn larft(
    ctx: &Context,
    r_v: &GpuMatrix,
    tau: &GpuMatrix,
    panel_start: usize,
) -> Result<GpuMatrix> {
    const OP: &str = "larft";
    r_v.check_ctx(ctx, OP, "r_v")?;
    tau.check_ctx(ctx, OP, "tau")?;
    let k = tau.len();
    check_reflectors(OP, r_v, k, panel_start)?;
    let m = r_v.rows();
    let rows = m - panel_start;
    let t = GpuMatrix::uninit(ctx, OP, k, k)?;
    let v = GpuMatrix::uninit(ctx, OP, rows, k)?;
    let s = GpuMatrix::uninit(ctx, OP, k, k)?;
    let mut rec = ctx.recorder(OP);
    hh::extract_v(
        &mut rec,
        ctx,
        m,
        panel_start,
        k,
        Mats::new(&r_v.buffer, 0, m, 0),
        Mats::new(&v.buffer, 0, rows, 0),
        1,
        false,
    );
    let vv = Mats::new(&v.buffer, 0, rows, 0).view();
    Gemm::new(
        k,
        k,
        rows,
        1.0,
        vv,
        true,
        vv,
        false,
        0.0,
        Mats::new(&s.buffer, 0, k, 0).view(),
    )
    .record(&mut rec, ctx);
    hh::larft(
        &mut rec,
        ctx,
        k,
        Mats::new(&s.buffer, 0, k, 0),
        Mats::new(&tau.buffer, 0, 1, 0),
        Mats::new(&t.buffer, 0, k, 0),
        1,
    );
    ctx.submit(rec)?;
    Ok(t)
}

/// Applies the block reflector `H = I - V T Vᵀ` (or `Hᵀ` when `trans`) to `c` in place
/// (LAPACK `slarfb`, side = left, forward, columnwise): C ← H C or C ← Hᵀ C.
///
/// V is the k reflectors in columns `panel_start ..` of `r_v` (k = T's order), which act on rows
/// `panel_start ..` of C; rows above are unchanged. C must have as many rows as `r_v`. Done as
/// three GEMMs: W = VᵀC, W = op(T) W, C = C - V W.
pub fn larfb(
    ctx: &Context,
    c: &mut GpuMatrix,
    r_v: &GpuMatrix,
    t: &GpuMatrix,
    trans: bool,
    panel_start: usize,
) -> Result<()> {
    const OP: &str = "larfb";
    c.check_ctx(ctx, OP, "c")?;
    r_v.check_ctx(ctx, OP, "r_v")?;
    t.check_ctx(ctx, OP, "t")?;
    let k = t.rows();
    if t.cols() != k {
        return Err(Error::shape(
            OP,
            format!("T must be square, got {}", t.shape_struct()),
        ));
    }
    check_reflectors(OP, r_v, k, panel_start)?;
    non_empty(OP, "c", c.shape_struct())?;
    let m = r_v.rows();
    if c.rows() != m {
        return Err(Error::shape(
            OP,
            format!(
                "C is {} but R_V is {}: C needs {m} rows",
                c.shape_struct(),
                r_v.shape_struct()
            ),
        ));
    }
    let rows = m - panel_start;
    let nc = c.cols();
    let v = GpuMatrix::uninit(ctx, OP, rows, k)?;
    let w1 = GpuMatrix::uninit(ctx, OP, k, nc)?;
    let w2 = GpuMatrix::uninit(ctx, OP, k, nc)?;
    let mut rec = ctx.recorder(OP);
    hh::extract_v(
        &mut rec,
        ctx,
        m,
        panel_start,
        k,
        Mats::new(&r_v.buffer, 0, m, 0),
        Mats::new(&v.buffer, 0, rows, 0),
        1,
        false,
    );
    let vv = Mats::new(&v.buffer, 0, rows, 0).view();
    let cv = Mats::new(&c.buffer, 0, m, 0).at(panel_start, 0).view();
    let w1v = Mats::new(&w1.buffer, 0, k, 0).view();
    let w2v = Mats::new(&w2.buffer, 0, k, 0).view();
    let tv = Mats::new(&t.buffer, 0, k, 0).view();
    Gemm::new(k, nc, rows, 1.0, vv, true, cv, false, 0.0, w1v).record(&mut rec, ctx);
    Gemm::new(k, nc, k, 1.0, tv, trans, w1v, false, 0.0, w2v).record(&mut rec, ctx);
    Gemm::new(rows, nc, k, -1.0, vv, false, w2v, false, 1.0, cv).record(&mut rec, ctx);
    ctx.submit(rec)
}
