//! Blocked Householder QR in compact-WY form (LAPACK `sgeqrf`), forming Q (`sorgqr`) and
//! applying Q or Qᵀ without forming it (`sormqr`).
//!
//! Two levels of blocking. Each outer panel of `nb` columns (default 128) starting at column j0
//! is factored as inner panels of 32 columns:
//! 1. each inner panel is factored in place, with its T (compact WY) and explicit V:
//!    - by TSQR with Householder reconstruction (`kernels::tsqr`): the panel's rows are cut into
//!      blocks factored in parallel (in workgroup memory, or in registers where the adapter's
//!      subgroups have one size) and reduced as a tree, then V, T and R
//!      are rebuilt from the explicit Q. O(log m) dependent launches instead of a column loop
//!      over all m rows; chosen by [`PanelAlgorithm::Auto`] wherever the adapter fits it.
//!      Panels of several blocks (up to 8192 rows) get their explicit Q and R from CholeskyQR2
//!      first (`kernels::cholqr`), and the tree runs only where its check fails;
//!    - or by one workgroup walking the panel column by column (`geqr2`), V extracted, S = VᵀV
//!      by GEMM and T built by `larft` ([`PanelAlgorithm::OneWorkgroup`]);
//!
//!    and applied (larfb) to the outer panel's remaining columns;
//! 2. the outer panel's T is merged from the inner T blocks and S = VᵀV (`t_merge`);
//! 3. `larfb`: the trailing columns get C ← (I - V Tᵀ Vᵀ) C as three GEMMs with K = nb:
//!    W = VᵀC (split over K when the output is small), W = TᵀW, C = C - V W.
//!
//! All panels, T builds and trailing updates, and forming Q or R, are recorded into one
//! submission. Every routine here is batched (matrix b at `b * stride`), so the batched QR path
//! for matrices too large for one workgroup runs the same code.
//!
//! Block size rule: `nb = min(k, 128)` with k = min(m, n), 256 where k ≥ 2048, and 512 where
//! k ≥ 8192 on a context whose large GEMMs run on cooperative matrices, unless
//! [`QrOptions::block_size`] says otherwise. Inner panels of 32 keep the sequential part of
//! each panel short; outer panels of 128 or 256 give the trailing-update GEMMs, which do most
//! of the flops, a K of 128 or 256 instead of 32 (measured on an H100 at 4096²: the rank-32
//! updates ran at 2–7 TF/s).

use crate::context::{Context, Recorder};
use crate::error::{Error, Result, Shape};
use crate::kernels::gemm::{Gemm, GramOut, GRAM_TILE_ROWS, LEFT_MAX};
use crate::kernels::householder::{self as hh, Mats};
use crate::kernels::tsqr;
use crate::linalg::non_empty;
use crate::matrix::GpuMatrix;

/// Default panel width below min(m, n) = 2048 (see the module docs).
pub const DEFAULT_BLOCK_SIZE: usize = 128;

/// Panel width taken by default for matrices with min(m, n) ≥ [`WIDE_PANELS_FROM`]: their
/// trailing updates (and forming Q, all updates of K = nb) run faster at K = 256, and since the
/// panel chain and the T merge got cheaper (sessions 13–14) the factorization alone does too.
/// H100 span, outer panels 128 / 256 (BENCHMARKS.md, v76; two rounds): geqrf 2048² 7.57 /
/// 7.47–7.52 ms, 4096² 18.9 / 18.4, 8192² 62.0 / 61.1; QR with Q 2048² 8.99–9.02 / 8.62;
/// unchanged at 1024² (QR 3.79–3.80 / 3.81, geqrf 3.36 / 3.35–3.37); slower for the tall
/// 65536×256 (QR 4.05 / 4.42, geqrf 3.35 / 3.71), whose min(m, n) keeps it at 128. Forming Q
/// of 4096² and 8192² took 256 since session 10 (29.9–30.1 / 29.3–29.5 ms then).
const WIDE_BLOCK_SIZE: usize = 256;

/// Smallest min(m, n) that takes [`WIDE_BLOCK_SIZE`] panels by default.
const WIDE_PANELS_FROM: usize = 2048;

/// Panel width taken by default for matrices with min(m, n) ≥ [`COOP_PANELS_FROM`] where the
/// large GEMMs run on cooperative matrices ([`Context::coop_gemm`]): there the K = 512 updates
/// and the 512-row VᵀC products run at 42 and 51 TF/s against 32 and 40 at 256 (H200,
/// `examples/gemm_shapes`), which more than pays for the wider panel chain at 8192². H200
/// span, panels of 256 / 512 with cooperative matrices (BENCHMARKS.md, v94; two rounds): QR
/// with Q 8192² 79.2–79.3 / 76.1 ms, 4096² 21.7 / 21.3–21.4, 2048² 8.02–8.03 / 8.28–8.30; geqrf
/// 8192² 54.9 / 54.4–54.6, 4096² 17.5 / 17.8. On the f32 kernel 512 is slower (QR 8192² 84.4 /
/// 88.5).
const COOP_BLOCK_SIZE: usize = 512;

/// Smallest min(m, n) that takes [`COOP_BLOCK_SIZE`] panels by default.
const COOP_PANELS_FROM: usize = 8192;

/// Widest panel: outer panels are factored as inner panels of 32 columns, and `t_merge`
/// builds the outer T from them by recursive doubling (any number of them).
pub const MAX_BLOCK_SIZE: usize = 512;

/// Width of the inner panels an outer panel is factored in (the TSQR kernels' column count,
/// and the blocks `t_merge` merges).
pub(crate) const INNER_BLOCK: usize = hh::T_MERGE_BLOCK;

/// What [`qr`] returns, as `torch.linalg.qr`'s `mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QrMode {
    /// Q is m×k, R is k×n, with k = min(m, n).
    #[default]
    Reduced,
    /// Q is m×m, R is m×n.
    Complete,
    /// R only (k×n); no Q is formed.
    R,
}

/// How each panel of the blocked factorization is factored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PanelAlgorithm {
    /// The same as [`Self::CholeskyQr2`]: TSQR wherever the adapter's workgroup memory holds a
    /// block of 2·nb rows (for tall panels the tree has several levels, for short ones it is a
    /// single block), CholeskyQR2 in front of it on panels of several blocks and at most 8192
    /// rows, else one workgroup. Measured on an H100, TSQR was faster than one workgroup at every
    /// panel height, and CholeskyQR2 in front of it faster again (QR with Q 4096²: 26.5
    /// against 28.6 ms in one call, 25.7 after v67, 24.1 after v70, 23.3 after v75, 22.8
    /// after v83; `BENCHMARKS.md`, sessions 12 to 15).
    #[default]
    Auto,
    /// One workgroup walks the panel column by column (`geqr2`), then `larft` builds T.
    OneWorkgroup,
    /// TSQR with Householder reconstruction wherever the adapter's workgroup memory holds a
    /// block of at least 2·nb rows (one workgroup otherwise).
    Tsqr,
    /// As [`Self::Tsqr`], but panels of more than one TSQR block and at most 8192 rows are
    /// first factored by CholeskyQR2 (two Cholesky QRs: three short launches, or two where the
    /// update that formed the panel also formed its Gram), and the TSQR tree
    /// runs, inside the same submission, only where a check on the second Gram matrix finds
    /// CholeskyQR2 unsafe (ill-conditioned or rank-deficient panels, non-finite values): there
    /// the results are TSQR's, bit for bit; elsewhere they differ from TSQR's by rounding.
    CholeskyQr2,
}

/// Tuning for the blocked factorization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QrOptions {
    /// Panel width nb (at most [`MAX_BLOCK_SIZE`]; larger values are lowered to it); `None`
    /// picks `min(min(m, n), 128)`, or 256 where min(m, n) ≥ 2048, or 512 where min(m, n) ≥
    /// 8192 and the context's large GEMMs run on cooperative matrices
    /// ([`Context::coop_gemm`]).
    pub block_size: Option<usize>,
    /// Panel factorization; the default picks TSQR for tall panels.
    pub panel: PanelAlgorithm,
    /// Rows per TSQR block (`None`: 256, lowered to fit the adapter's workgroup memory and the
    /// register kernel's 16 rows per lane).
    pub tsqr_block_rows: Option<usize>,
}

/// The shape of a blocked factorization: sizes, panel width, and where its pieces live.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub nb: usize,
    pub batch: usize,
    pub panel: PanelAlgorithm,
    pub tsqr_rows: Option<usize>,
}

impl Plan {
    /// [`Plan::new`] with the default panel width for `ctx`: [`COOP_BLOCK_SIZE`] from
    /// [`COOP_PANELS_FROM`] on where its large GEMMs run on cooperative matrices.
    pub fn new_in(
        ctx: &Context,
        m: usize,
        n: usize,
        batch: usize,
        block_size: Option<usize>,
    ) -> Self {
        let wide = ctx.coop_gemm() && m.min(n) >= COOP_PANELS_FROM;
        let block_size = block_size.or(wide.then_some(COOP_BLOCK_SIZE));
        Self::new(m, n, batch, block_size)
    }

    /// The plan for an m×n factorization of `batch` matrices with panels of `block_size`
    /// (clamped to [`MAX_BLOCK_SIZE`] and k), or by default 128, or 256 from min(m, n) = 2048.
    pub fn new(m: usize, n: usize, batch: usize, block_size: Option<usize>) -> Self {
        let k = m.min(n);
        let default = if k >= WIDE_PANELS_FROM {
            WIDE_BLOCK_SIZE
        } else {
            DEFAULT_BLOCK_SIZE
        };
        let nb = block_size
            .unwrap_or(default)
            .clamp(1, MAX_BLOCK_SIZE)
            .min(k.max(1));
        Self {
            m,
            n,
            k,
            nb,
            batch,
            panel: PanelAlgorithm::Auto,
            tsqr_rows: None,
        }
    }

    /// The same plan with the panel choices of `options`.
    pub fn with_options(self, options: &QrOptions) -> Self {
        Self {
            panel: options.panel,
            tsqr_rows: options.tsqr_block_rows,
            ..self
        }
    }

    /// The TSQR variant for the panel at `j0` of width `w`, or `None` when that panel is
    /// factored by one workgroup.
    pub fn tsqr(&self, ctx: &Context, j0: usize, w: usize) -> Option<tsqr::Variant> {
        let rows = self.m - j0;
        if self.panel == PanelAlgorithm::OneWorkgroup {
            return None;
        }
        let cholqr = matches!(
            self.panel,
            PanelAlgorithm::Auto | PanelAlgorithm::CholeskyQr2
        );
        let v = tsqr::Variant::new(ctx, w, self.tsqr_rows)?.with_cholqr(ctx, cholqr);
        tsqr::fits_grid(ctx, &v, rows, self.batch).then_some(v)
    }

    /// Scratch elements per matrix the TSQR panels need (0 when no panel uses TSQR).
    fn tsqr_scratch(&self, ctx: &Context) -> usize {
        self.panel_iter()
            .into_iter()
            .flat_map(|(j0, w)| {
                (j0..j0 + w)
                    .step_by(INNER_BLOCK)
                    .map(move |ji| (ji, INNER_BLOCK.min(j0 + w - ji)))
            })
            .filter_map(|(j0, w)| {
                self.tsqr(ctx, j0, w)
                    .map(|v| tsqr::Layout::new(&v, self.m - j0).total)
            })
            .max()
            .unwrap_or(0)
    }

    pub fn panels(&self) -> usize {
        self.k.div_ceil(self.nb)
    }

    /// (j0, width) of every panel.
    pub fn panel_iter(&self) -> Vec<(usize, usize)> {
        (0..self.panels())
            .map(|p| (p * self.nb, self.nb.min(self.k - p * self.nb)))
            .collect()
    }
}

/// Narrowest C for which larfb forms Vᵀ explicitly (`extract_vt`) to compute VᵀC as a
/// product of untransposed operands: in `gemm_large` an Aᵀ·B product has both tiles stored down
/// K, both XOR-swizzled, and ran at ~27 TF/s where the QR's A·B updates of the same flops ran
/// at ~30 (BENCHMARKS.md, v87). The transpose costs a launch and a pass over V, which narrower
/// products do not win back. H100 span, without / with Vᵀ for every outer panel: QR with Q
/// 8192² 86.6–86.7 / 85.4–85.5 ms, 4096² 22.8–22.9 / 22.7–22.9; but 1024² 3.56–3.58 /
/// 3.66–3.67 and 65536×256 4.05–4.07 / 4.16. From C widths of 1024 / 2048 / 4096 (another
/// call): 8192² 85.3 / 85.1 / 85.3 ms (86.4 without), 1024² 3.59 / 3.55 / 3.54–3.55 (3.54),
/// 65536×256, 4096² and lstsq 4096×256 unchanged.
const VT_MIN_COLS: usize = 2048;

/// Whether larfb forms Vᵀ for a panel of width `w` updating `cols` columns: wider than
/// [`LEFT_MAX`] (narrower VᵀC products take T in their split-K reduction instead) and C at
/// least [`VT_MIN_COLS`] wide. [`Workspace::new`] asks it for the widest panel and C.
fn vt_pays(w: usize, cols: usize) -> bool {
    w > LEFT_MAX && cols >= VT_MIN_COLS
}

/// Workspace for V, S and the two GEMM intermediates, sized for C operands of up to `wcols`
/// columns, reused by every panel (wgpu orders the dispatches that share a buffer). Four buffers,
/// because a GEMM's output may not share a buffer with its inputs.
pub(crate) struct Workspace {
    v: wgpu::Buffer,
    s: wgpu::Buffer,
    w1: wgpu::Buffer,
    w2: wgpu::Buffer,
    /// Vᵀ of the outer panel (nb × m), for a single matrix whose panels are wider than
    /// [`LEFT_MAX`]: larfb's VᵀC is then a product of untransposed operands.
    vt: Option<wgpu::Buffer>,
    wcols: usize,
    /// TSQR scratch and its elements per matrix (none when no panel uses TSQR).
    tsqr: Option<(wgpu::Buffer, usize)>,
}

impl Workspace {
    pub fn new(ctx: &Context, op: &'static str, plan: &Plan, wcols: usize) -> Result<Self> {
        let nb = plan.nb as u64;
        // At least n: the factorization's trailing updates span n columns; narrower would split
        // each update into many GEMM triples (lstsq with one right-hand side once did: 10×).
        let wcols = wcols.max(plan.n).max(1);
        let batch = plan.batch as u64;
        let shape = Shape::batch(plan.batch, plan.m, plan.n);
        let make = |role: &'static str, elements: u64| -> Result<wgpu::Buffer> {
            ctx.check_elements(op, elements * batch, shape)?;
            Ok(ctx.scratch_buffer(role, elements * batch))
        };
        let tsqr_stride = plan.tsqr_scratch(ctx);
        let tsqr = if tsqr_stride > 0 {
            Some((make("metalcore qr tsqr", tsqr_stride as u64)?, tsqr_stride))
        } else {
            None
        };
        Ok(Self {
            v: make("metalcore qr v", plan.m as u64 * nb)?,
            s: make("metalcore qr s", nb * nb)?,
            w1: make("metalcore qr w1", nb * wcols as u64)?,
            w2: make("metalcore qr w2", nb * wcols as u64)?,
            vt: if plan.batch == 1 && vt_pays(plan.nb, wcols) {
                Some(make("metalcore qr vt", plan.m as u64 * nb)?)
            } else {
                None
            },
            wcols,
            tsqr,
        })
    }

    fn v(&self, plan: &Plan, rows: usize) -> Mats<'_> {
        Mats::new(&self.v, 0, rows, plan.m * plan.nb)
    }
    /// Extracts the explicit V of the outer panel at `j0` (width `w`) into the workspace, and
    /// Vᵀ too where the workspace has room for it and [`vt_pays`] for this panel and the `cols`
    /// columns of C it will update; returns Vᵀ for [`larfb_panel`].
    #[allow(clippy::too_many_arguments)]
    fn extract(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        plan: &Plan,
        a: Mats,
        j0: usize,
        w: usize,
        cols: usize,
    ) -> Option<Mats<'_>> {
        let rows = plan.m - j0;
        hh::extract_v(
            rec,
            ctx,
            plan.m,
            j0,
            w,
            a,
            self.v(plan, rows),
            plan.batch,
            false,
        );
        let buffer = self.vt.as_ref().filter(|_| vt_pays(w, cols))?;
        let vt = Mats::new(buffer, 0, w, plan.m * plan.nb);
        hh::extract_v(rec, ctx, plan.m, j0, w, a, vt, plan.batch, true);
        Some(vt)
    }

    fn s(&self, plan: &Plan) -> Mats<'_> {
        Mats::new(&self.s, 0, plan.nb, plan.nb * plan.nb)
    }
    fn w1(&self, plan: &Plan) -> Mats<'_> {
        Mats::new(&self.w1, 0, plan.nb, plan.nb * self.wcols)
    }
    fn w2(&self, plan: &Plan) -> Mats<'_> {
        Mats::new(&self.w2, 0, plan.nb, plan.nb * self.wcols)
    }
}

/// Views of the GEMM operands for a batch: A, B, C each with its own stride.
#[allow(clippy::too_many_arguments)]
fn gemm(
    rec: &mut Recorder,
    ctx: &Context,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Mats,
    trans_a: bool,
    b: Mats,
    trans_b: bool,
    beta: f32,
    c: Mats,
) {
    Gemm::new(
        m,
        n,
        k,
        alpha,
        a.view(),
        trans_a,
        b.view(),
        trans_b,
        beta,
        c.view(),
    )
    .batched(batch, [a.stride, b.stride, c.stride])
    .record(rec, ctx);
}

/// Applies the block reflector of the panel at `j0` (width w) to rows j0.. of C (`nc` columns):
/// C ← (I - V op(T) Vᵀ) C, where op(T) = Tᵀ when `trans` (applying Hᵀ) and T otherwise.
/// V must already be in the workspace. With `gram` (rows counted from j0), the product that
/// updates C's first columns also writes their partial Grams where it can; returns how many
/// it wrote (one per 64 rows), or `None`. With `vt` (Vᵀ, from [`Workspace::extract`]), VᵀC is
/// formed from it instead of from V transposed.
#[allow(clippy::too_many_arguments)]
fn larfb_panel(
    rec: &mut Recorder,
    ctx: &Context,
    plan: &Plan,
    ws: &Workspace,
    j0: usize,
    w: usize,
    vt: Option<Mats>,
    t: Mats,
    trans: bool,
    c: Mats,
    nc: usize,
    gram: Option<GramOut>,
) -> Option<usize> {
    if nc == 0 {
        return None;
    }
    let mut grams = None;
    let rows = plan.m - j0;
    let v = ws.v(plan, rows);
    let c = c.at(j0, 0);
    let mut done = 0;
    while done < nc {
        let cols = (nc - done).min(ws.wcols);
        let cc = c.at(0, done);
        // W2 = op(T)·VᵀC: in the reduction of a split VᵀC where it is one (a single matrix,
        // w ≤ 32), else VᵀC into W1 and a second product.
        let (w1, w2) = (ws.w1(plan), ws.w2(plan));
        let (vta, vta_trans) = vt.map_or((v, true), |vt| (vt, false));
        let vtc = Gemm::new(
            w,
            cols,
            rows,
            1.0,
            vta.view(),
            vta_trans,
            cc.view(),
            false,
            0.0,
            w1.view(),
        )
        .batched(plan.batch, [vta.stride, cc.stride, w1.stride]);
        let fused = Gemm {
            c: w2.view(),
            ..vtc
        };
        if !fused.record_split_left(rec, ctx, t.view(), trans) {
            vtc.record(rec, ctx);
            gemm(
                rec, ctx, plan.batch, w, cols, w, 1.0, t, trans, w1, false, 0.0, w2,
            );
        }
        let w2 = ws.w2(plan);
        let update = Gemm::new(
            rows,
            cols,
            w,
            -1.0,
            v.view(),
            false,
            w2.view(),
            false,
            1.0,
            cc.view(),
        )
        .batched(plan.batch, [v.stride, w2.stride, cc.stride]);
        match gram.filter(|_| done == 0) {
            Some(g) if update.record_with_gram(rec, ctx, &g) => {
                grams = Some(rows.div_ceil(GRAM_TILE_ROWS));
            }
            _ => update.record(rec, ctx),
        }
        done += cols;
    }
    grams
}

/// T block of panel p.
fn t_block<'a>(t: Mats<'a>, plan: &Plan, p: usize) -> Mats<'a> {
    Mats::new(
        t.buffer,
        t.offset + p * plan.nb * plan.nb,
        plan.nb,
        t.stride,
    )
}

/// Records the blocked factorization of the matrices in `a` (in place) into `tau` (k per
/// matrix) and `t` (the T block of every panel, nb×nb each, one after another).
pub(crate) fn record_geqrf(
    rec: &mut Recorder,
    ctx: &Context,
    plan: &Plan,
    ws: &Workspace,
    a: Mats,
    tau: Mats,
    t: Mats,
) {
    for (p, (j0, w)) in plan.panel_iter().into_iter().enumerate() {
        let trailing = plan.n - j0 - w;
        let rows = plan.m - j0;
        let tp = t_block(t, plan, p);
        // Inner panels of at most INNER_BLOCK columns, each applied to the rest of the outer
        // panel; their T blocks land on the outer T's diagonal.
        let inner: Vec<(usize, usize)> = (j0..j0 + w)
            .step_by(INNER_BLOCK)
            .map(|ji| (ji, INNER_BLOCK.min(j0 + w - ji)))
            .collect();
        // The partial Grams of the next inner panel that its update left for CholeskyQR2.
        let mut grams = None;
        for (i, &(ji, wi)) in inner.iter().enumerate() {
            let ti = tp.at(ji - j0, ji - j0);
            factor_inner_panel(rec, ctx, plan, ws, a, tau, ti, ji, wi, grams.take());
            let rest = j0 + w - ji - wi;
            if rest > 0 {
                let next = inner.get(i + 1).and_then(|&(jn, wn)| {
                    let (scratch, stride) = ws.tsqr.as_ref()?;
                    let v = plan.tsqr(ctx, jn, wn)?;
                    Some(GramOut {
                        buffer: scratch,
                        offset: tsqr::Layout::new(&v, plan.m - jn).grams()?,
                        stride: *stride,
                        skip: jn - ji,
                        b: wn,
                    })
                });
                let c = a.at(0, ji + wi);
                grams = larfb_panel(rec, ctx, plan, ws, ji, wi, None, ti, true, c, rest, next);
            }
        }
        let mut vt = None;
        if inner.len() > 1 {
            // The outer panel's explicit V (and Vᵀ), S = VᵀV, and T from the inner blocks.
            vt = ws.extract(rec, ctx, plan, a, j0, w, trailing);
            gram(rec, ctx, plan, ws, rows, w);
            hh::t_merge(rec, ctx, w, ws.s(plan), tp, plan.batch);
        }
        if trailing > 0 {
            larfb_panel(
                rec,
                ctx,
                plan,
                ws,
                j0,
                w,
                vt,
                tp,
                true,
                a.at(0, j0 + w),
                trailing,
                None,
            );
        }
    }
}

/// Factors the inner panel at column `ji` (width `wi` ≤ [`INNER_BLOCK`]) in place: tau of its
/// columns, its T into `t`, and its explicit V into the workspace, by TSQR where the plan picks
/// it, else one workgroup (geqr2) and larft. `grams`: the partial Grams of the panel that the
/// update before it left for CholeskyQR2 (see [`larfb_panel`]).
#[allow(clippy::too_many_arguments)]
fn factor_inner_panel(
    rec: &mut Recorder,
    ctx: &Context,
    plan: &Plan,
    ws: &Workspace,
    a: Mats,
    tau: Mats,
    t: Mats,
    ji: usize,
    wi: usize,
    grams: Option<usize>,
) {
    let rows = plan.m - ji;
    let tau_p = Mats::new(tau.buffer, tau.offset + ji, 1, tau.stride);
    let variant = plan.tsqr(ctx, ji, wi);
    if let (Some(v), Some((scratch, stride))) = (variant, ws.tsqr.as_ref()) {
        let out = tsqr::PanelOut {
            a: a.at(ji, ji),
            tau: tau_p,
            t,
            v: ws.v(plan, rows),
        };
        tsqr::record_panel(
            rec, ctx, &v, rows, &out, scratch, *stride, plan.batch, grams,
        );
    } else {
        hh::panel(rec, ctx, plan.m, ji, wi, wi, a, tau, plan.batch);
        hh::extract_v(
            rec,
            ctx,
            plan.m,
            ji,
            wi,
            a,
            ws.v(plan, rows),
            plan.batch,
            false,
        );
        gram(rec, ctx, plan, ws, rows, wi);
        hh::larft(rec, ctx, wi, ws.s(plan), tau_p, t, plan.batch);
    }
}

/// S = VᵀV (w×w) of the explicit V (rows × w) in the workspace, into the workspace's S.
fn gram(rec: &mut Recorder, ctx: &Context, plan: &Plan, ws: &Workspace, rows: usize, w: usize) {
    let v = ws.v(plan, rows);
    gemm(
        rec,
        ctx,
        plan.batch,
        w,
        w,
        rows,
        1.0,
        v,
        true,
        v,
        false,
        0.0,
        ws.s(plan),
    );
}

/// Records C ← Qᵀ C (`trans`) or C ← Q C for the m×nc matrices in `c`, with Q held as
/// reflectors in `a` and T blocks in `t` (from [`record_geqrf`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_apply_q(
    rec: &mut Recorder,
    ctx: &Context,
    plan: &Plan,
    ws: &Workspace,
    a: Mats,
    t: Mats,
    c: Mats,
    nc: usize,
    trans: bool,
) {
    let panels: Vec<(usize, (usize, usize))> = plan.panel_iter().into_iter().enumerate().collect();
    let mut apply = |p: usize, j0: usize, w: usize| {
        let vt = ws.extract(rec, ctx, plan, a, j0, w, nc);
        let tp = t_block(t, plan, p);
        larfb_panel(rec, ctx, plan, ws, j0, w, vt, tp, trans, c, nc, None);
    };
    if trans {
        for &(p, (j0, w)) in &panels {
            apply(p, j0, w);
        }
    } else {
        for &(p, (j0, w)) in panels.iter().rev() {
            apply(p, j0, w);
        }
    }
}

/// Records Q (m×qcols, the first qcols columns of H_0…H_{k-1}) into `q` (sorgqr): identity,
/// then the panels applied last to first, each to the columns from its own start.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_orgqr(
    rec: &mut Recorder,
    ctx: &Context,
    plan: &Plan,
    ws: &Workspace,
    a: Mats,
    t: Mats,
    q: Mats,
    qcols: usize,
) {
    hh::identity(rec, ctx, plan.m, qcols, q, plan.batch);
    for (p, (j0, w)) in plan.panel_iter().into_iter().enumerate().rev() {
        if j0 >= qcols {
            continue;
        }
        let vt = ws.extract(rec, ctx, plan, a, j0, w, qcols - j0);
        larfb_panel(
            rec,
            ctx,
            plan,
            ws,
            j0,
            w,
            vt,
            t_block(t, plan, p),
            false,
            q.at(0, j0),
            qcols - j0,
            None,
        );
    }
}

/// A blocked QR factorization held on the GPU (LAPACK `sgeqrf` output plus the T blocks).
///
/// - `rv`: m×n. R on and above the diagonal; below it, reflector c's vector v (its implicit 1 at
///   row c is not stored), as LAPACK stores them.
/// - `tau`: k×1, H_c = I - tau_c v_c v_cᵀ, Q = H_0 H_1 … H_{k-1}, k = min(m, n).
/// - `t`: nb × (panels·nb): the upper-triangular T of each panel side by side, so that the
///   panel's H_{j0} … H_{j0+w-1} = I - V T Vᵀ.
#[derive(Debug)]
pub struct QrFactors {
    /// R and the reflectors (see the type's docs).
    pub rv: GpuMatrix,
    /// The scalar factors of the reflectors, k×1.
    pub tau: GpuMatrix,
    /// The T blocks of the panels, nb × (panels·nb).
    pub t: GpuMatrix,
    /// Panel width used.
    pub block_size: usize,
}

impl QrFactors {
    pub(crate) fn plan(&self) -> Plan {
        Plan::new(self.rv.rows(), self.rv.cols(), 1, Some(self.block_size))
    }

    fn mats(&self) -> (Mats<'_>, Mats<'_>) {
        let plan = self.plan();
        (
            Mats::new(&self.rv.buffer, 0, plan.m, 0),
            Mats::new(&self.t.buffer, 0, plan.nb, 0),
        )
    }

    /// `Err(ForeignContext)` unless `ctx` created the factors' matrices.
    fn check_ctx(&self, ctx: &Context, op: &'static str) -> Result<()> {
        self.rv.check_ctx(ctx, op, "self.rv")?;
        self.tau.check_ctx(ctx, op, "self.tau")?;
        self.t.check_ctx(ctx, op, "self.t")
    }

    /// R: k×n (`complete = false`) or m×n (`complete = true`), zeros below the diagonal.
    pub fn r(&self, ctx: &Context, complete: bool) -> Result<GpuMatrix> {
        self.check_ctx(ctx, "QrFactors::r")?;
        let plan = self.plan();
        let rows = if complete { plan.m } else { plan.k };
        let r = GpuMatrix::uninit(ctx, "QrFactors::r", rows, plan.n)?;
        let mut rec = ctx.recorder("QrFactors::r");
        let (a, _) = self.mats();
        hh::extract_r(
            &mut rec,
            ctx,
            plan.m,
            a,
            rows,
            plan.n,
            Mats::new(&r.buffer, 0, rows, 0),
            1,
        );
        ctx.submit(rec)?;
        Ok(r)
    }

    /// Q: m×k (`complete = false`) or m×m (`complete = true`), formed on the GPU (sorgqr).
    pub fn q(&self, ctx: &Context, complete: bool) -> Result<GpuMatrix> {
        const OP: &str = "QrFactors::q";
        self.check_ctx(ctx, OP)?;
        let plan = self.plan();
        let cols = if complete { plan.m } else { plan.k };
        let q = GpuMatrix::uninit(ctx, OP, plan.m, cols)?;
        let ws = Workspace::new(ctx, OP, &plan, cols)?;
        let mut rec = ctx.recorder(OP);
        let (a, t) = self.mats();
        record_orgqr(
            &mut rec,
            ctx,
            &plan,
            &ws,
            a,
            t,
            Mats::new(&q.buffer, 0, plan.m, 0),
            cols,
        );
        ctx.submit(rec)?;
        Ok(q)
    }

    /// C ← Qᵀ C in place (LAPACK `sormqr`, side = left, trans = T), without forming Q.
    /// C must have m rows.
    pub fn apply_qt(&self, ctx: &Context, c: &mut GpuMatrix) -> Result<()> {
        self.apply(ctx, c, true, "QrFactors::apply_qt")
    }

    /// C ← Q C in place (LAPACK `sormqr`, side = left, trans = N), without forming Q.
    pub fn apply_q(&self, ctx: &Context, c: &mut GpuMatrix) -> Result<()> {
        self.apply(ctx, c, false, "QrFactors::apply_q")
    }

    fn apply(&self, ctx: &Context, c: &mut GpuMatrix, trans: bool, op: &'static str) -> Result<()> {
        self.check_ctx(ctx, op)?;
        c.check_ctx(ctx, op, "c")?;
        let plan = self.plan();
        if c.rows() != plan.m {
            return Err(Error::shape(
                op,
                format!(
                    "C is {} but Q is {}×{}: C needs {} rows",
                    c.shape_struct(),
                    plan.m,
                    plan.m,
                    plan.m
                ),
            ));
        }
        non_empty(op, "c", c.shape_struct())?;
        // As wide as C, so that each panel is one GEMM triple over all of C (and VᵀC takes
        // the explicit Vᵀ where C is wide, as in the factorization). The intermediates are
        // nb×(C's columns) with nb ≤ m: never larger than C, which fits a binding.
        let ws = Workspace::new(ctx, op, &plan, c.cols())?;
        let mut rec = ctx.recorder(op);
        let (a, t) = self.mats();
        record_apply_q(
            &mut rec,
            ctx,
            &plan,
            &ws,
            a,
            t,
            Mats::new(&c.buffer, 0, plan.m, 0),
            c.cols(),
            trans,
        );
        ctx.submit(rec)
    }
}

fn check_input(op: &'static str, a: &GpuMatrix, options: &QrOptions) -> Result<()> {
    non_empty(op, "a", a.shape_struct())?;
    if options.block_size == Some(0) {
        return Err(Error::shape(op, "block_size must be at least 1"));
    }
    Ok(())
}

/// Allocates the factors of an m×n matrix and records its factorization (copy of A, then
/// sgeqrf) into `rec`.
fn factor_into(
    rec: &mut Recorder,
    ctx: &Context,
    op: &'static str,
    a: &GpuMatrix,
    options: &QrOptions,
    ws_cols: usize,
) -> Result<(QrFactors, Workspace)> {
    a.check_ctx(ctx, op, "a")?;
    check_input(op, a, options)?;
    let plan = Plan::new_in(ctx, a.rows(), a.cols(), 1, options.block_size).with_options(options);
    let rv = GpuMatrix::uninit(ctx, op, plan.m, plan.n)?;
    let tau = GpuMatrix::uninit(ctx, op, plan.k, 1)?;
    let t = GpuMatrix::uninit(ctx, op, plan.nb, plan.panels() * plan.nb)?;
    let ws = Workspace::new(ctx, op, &plan, ws_cols.max(plan.n))?;
    rec.copy(&a.buffer, 0, &rv.buffer, 0, a.len() as u64);
    record_geqrf(
        rec,
        ctx,
        &plan,
        &ws,
        Mats::new(&rv.buffer, 0, plan.m, 0),
        Mats::new(&tau.buffer, 0, 1, 0),
        Mats::new(&t.buffer, 0, plan.nb, 0),
    );
    let factors = QrFactors {
        rv,
        tau,
        t,
        block_size: plan.nb,
    };
    Ok((factors, ws))
}

/// Blocked Householder QR factorization (LAPACK `sgeqrf`), one submission. `a` is not changed.
pub fn geqrf(ctx: &Context, a: &GpuMatrix, options: &QrOptions) -> Result<QrFactors> {
    const OP: &str = "geqrf";
    let mut rec = ctx.recorder(OP);
    let (factors, _ws) = factor_into(&mut rec, ctx, OP, a, options, 0)?;
    ctx.submit(rec)?;
    Ok(factors)
}

/// The result of [`qr`]: Q (absent in [`QrMode::R`]) and R.
#[derive(Debug)]
pub struct Qr {
    /// m×k (reduced) or m×m (complete); `None` in mode R.
    pub q: Option<GpuMatrix>,
    /// k×n (reduced, R) or m×n (complete), upper triangular (trapezoidal when m < n), exact
    /// zeros below the diagonal.
    pub r: GpuMatrix,
}

/// QR decomposition A = Q R of any m×n matrix, as `torch.linalg.qr` with `mode`.
///
/// The factorization, forming Q and extracting R are recorded into one submission; nothing is
/// read back. R's diagonal follows LAPACK's sign convention (it may be negative).
pub fn qr(ctx: &Context, a: &GpuMatrix, mode: QrMode) -> Result<Qr> {
    qr_with(ctx, a, mode, &QrOptions::default())
}

/// [`qr`] with explicit [`QrOptions`].
pub fn qr_with(ctx: &Context, a: &GpuMatrix, mode: QrMode, options: &QrOptions) -> Result<Qr> {
    const OP: &str = "qr";
    let (m, n) = a.shape();
    let k = m.min(n);
    let (r_rows, q_cols) = match mode {
        QrMode::Reduced => (k, Some(k)),
        QrMode::Complete => (m, Some(m)),
        QrMode::R => (k, None),
    };
    let mut rec = ctx.recorder(OP);
    let (f, ws) = factor_into(&mut rec, ctx, OP, a, options, q_cols.unwrap_or(0))?;
    let plan = f.plan();
    let (fa, ft) = f.mats();
    let r = GpuMatrix::uninit(ctx, OP, r_rows, n)?;
    hh::extract_r(
        &mut rec,
        ctx,
        m,
        fa,
        r_rows,
        n,
        Mats::new(&r.buffer, 0, r_rows, 0),
        1,
    );
    let q = match q_cols {
        Some(cols) => {
            let q = GpuMatrix::uninit(ctx, OP, m, cols)?;
            record_orgqr(
                &mut rec,
                ctx,
                &plan,
                &ws,
                fa,
                ft,
                Mats::new(&q.buffer, 0, m, 0),
                cols,
            );
            Some(q)
        }
        None => None,
    };
    ctx.submit(rec)?;
    Ok(Qr { q, r })
}
