//! `wgsl/householder.wgsl`: the fused panel factorization (geqr2), explicit V, T (larft), R and
//! identity extraction. Every entry point is batched: matrix b of a batch starts `b * stride`
//! elements after the first.

use crate::context::{grid, Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "householder",
    source: include_str!("../../wgsl/householder.wgsl"),
};

/// `batch` matrices in one buffer: matrix b's element (i, j) is at
/// `offset + b * stride + i + j * ld`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mats<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub ld: usize,
    pub stride: usize,
}

impl<'a> Mats<'a> {
    pub fn new(buffer: &'a wgpu::Buffer, offset: usize, ld: usize, stride: usize) -> Self {
        Self {
            buffer,
            offset,
            ld,
            stride,
        }
    }

    /// The same batch shifted to start at element (i, j) of each matrix.
    pub fn at(self, i: usize, j: usize) -> Self {
        Self {
            offset: self.offset + i + j * self.ld,
            ..self
        }
    }

    /// Matrix 0 of the batch as a GEMM view.
    pub fn view(self) -> super::View<'a> {
        super::View::new(self.buffer, self.offset, self.ld)
    }
}

pub(crate) const SOURCE_SUBGROUP: KernelSource = KernelSource {
    name: "householder_sg",
    source: include_str!("../../wgsl/householder_sg.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    j0: u32,
    k: u32,
    ncols: u32,
    ld: u32,
    offset: u32,
    stride: u32,
    batch: u32,
    aux_ld: u32,
    aux_offset: u32,
    aux_stride: u32,
    tau_offset: u32,
    tau_stride: u32,
    rows_out: u32,
    cols_out: u32,
    t_ld: u32,
    t_offset: u32,
    t_stride: u32,
    _pad: [u32; 2],
}

impl Params {
    /// The fields of an operation on columns `j0 .. j0+k` of the m-row matrices in `a`.
    fn columns(m: usize, j0: usize, k: usize, a: Mats, batch: usize) -> Self {
        Self {
            m: m as u32,
            j0: j0 as u32,
            k: k as u32,
            ld: a.ld as u32,
            offset: a.offset as u32,
            stride: a.stride as u32,
            batch: batch as u32,
            ..Default::default()
        }
    }

    /// The fields of a T build from S (`larft`, `t_merge`): k, the batch, S in `aux` and T.
    fn t_from_s(k: usize, batch: usize, s: &Mats, t: &Mats) -> Self {
        Self {
            k: k as u32,
            batch: batch as u32,
            aux_ld: s.ld as u32,
            aux_offset: s.offset as u32,
            aux_stride: s.stride as u32,
            t_ld: t.ld as u32,
            t_offset: t.offset as u32,
            t_stride: t.stride as u32,
            ..Default::default()
        }
    }
}

fn dispatch(
    rec: &mut Recorder,
    ctx: &Context,
    entry: &'static str,
    params: &Params,
    buffers: [&wgpu::Buffer; 3],
    groups: u32,
) {
    dispatch_from(rec, ctx, &SOURCE, entry, params, buffers, groups)
}

fn dispatch_from(
    rec: &mut Recorder,
    ctx: &Context,
    source: &KernelSource,
    entry: &'static str,
    params: &Params,
    buffers: [&wgpu::Buffer; 3],
    groups: u32,
) {
    let wg = ctx.workgroup_1d();
    rec.dispatch(
        ctx,
        source,
        entry,
        &[("WG", wg as f64)],
        params,
        &[
            (buffers[0], Access::ReadWrite),
            (buffers[1], Access::ReadWrite),
            (buffers[2], Access::ReadWrite),
        ],
        grid(ctx, groups),
    );
}

fn elementwise_groups(ctx: &Context, elements: usize) -> u32 {
    (elements as u32).div_ceil(ctx.workgroup_1d())
}

/// Factors columns `j0 .. j0+k` of each m-row matrix (rows j0..m) in place, one workgroup per
/// matrix, applying each reflector to the columns up to `j0 + ncols`. tau of column j0+c goes to
/// `tau[offset + b * stride + j0 + c]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn panel(
    rec: &mut Recorder,
    ctx: &Context,
    m: usize,
    j0: usize,
    k: usize,
    ncols: usize,
    a: Mats,
    tau: Mats,
    batch: usize,
) {
    let params = Params {
        ncols: ncols as u32,
        tau_offset: tau.offset as u32,
        tau_stride: tau.stride as u32,
        ..Params::columns(m, j0, k, a, batch)
    };
    let buffers = [a.buffer, tau.buffer, tau.buffer];
    if ctx.subgroups_usable(ctx.workgroup_1d()) {
        let entry = "geqr2_panel_sg";
        dispatch_from(
            rec,
            ctx,
            &SOURCE_SUBGROUP,
            entry,
            &params,
            buffers,
            batch as u32,
        );
    } else {
        dispatch(rec, ctx, "geqr2_panel", &params, buffers, batch as u32);
    }
}

/// Writes the reflectors of columns `j0 .. j0+k` as explicit (m-j0)×k matrices V (unit diagonal,
/// zeros above) into `out`, or with `transposed` their Vᵀ (k × (m-j0) per matrix, `out.ld` at
/// least k; `extract_vt`, 32×32 tiles through workgroup memory).
#[allow(clippy::too_many_arguments)]
pub(crate) fn extract_v(
    rec: &mut Recorder,
    ctx: &Context,
    m: usize,
    j0: usize,
    k: usize,
    a: Mats,
    out: Mats,
    batch: usize,
    transposed: bool,
) {
    let params = Params {
        aux_ld: out.ld as u32,
        aux_offset: out.offset as u32,
        aux_stride: out.stride as u32,
        ..Params::columns(m, j0, k, a, batch)
    };
    let (entry, groups) = if transposed {
        debug_assert!(out.ld >= k);
        let tiles = (m - j0).div_ceil(32) * k.div_ceil(32) * batch;
        ("extract_vt", tiles as u32)
    } else {
        ("extract_v", elementwise_groups(ctx, (m - j0) * k * batch))
    };
    dispatch(
        rec,
        ctx,
        entry,
        &params,
        [a.buffer, out.buffer, out.buffer],
        groups,
    );
}

/// T (k×k) of each batch member from S = VᵀV and `tau[tau.offset + b*tau.stride + i]`.
pub(crate) fn larft(
    rec: &mut Recorder,
    ctx: &Context,
    k: usize,
    s: Mats,
    tau: Mats,
    t: Mats,
    batch: usize,
) {
    let params = Params {
        tau_offset: tau.offset as u32,
        tau_stride: tau.stride as u32,
        ..Params::t_from_s(k, batch, &s, &t)
    };
    dispatch(
        rec,
        ctx,
        "larft",
        &params,
        [t.buffer, s.buffer, tau.buffer],
        batch as u32,
    );
}

/// `out` (rows_out × cols_out) = the upper triangle of the first `min(m, rows_out)` rows of A,
/// zeros elsewhere.
#[allow(clippy::too_many_arguments)]
pub(crate) fn extract_r(
    rec: &mut Recorder,
    ctx: &Context,
    m: usize,
    a: Mats,
    rows_out: usize,
    cols_out: usize,
    out: Mats,
    batch: usize,
) {
    let params = Params {
        aux_ld: out.ld as u32,
        aux_offset: out.offset as u32,
        aux_stride: out.stride as u32,
        rows_out: rows_out as u32,
        cols_out: cols_out as u32,
        ..Params::columns(m, 0, 0, a, batch)
    };
    let groups = elementwise_groups(ctx, rows_out * cols_out * batch);
    dispatch(
        rec,
        ctx,
        "extract_r",
        &params,
        [a.buffer, out.buffer, out.buffer],
        groups,
    );
}

/// `out` (rows × cols) = the first columns of the identity.
pub(crate) fn identity(
    rec: &mut Recorder,
    ctx: &Context,
    rows: usize,
    cols: usize,
    out: Mats,
    batch: usize,
) {
    let params = Params {
        batch: batch as u32,
        aux_ld: out.ld as u32,
        aux_offset: out.offset as u32,
        aux_stride: out.stride as u32,
        rows_out: rows as u32,
        cols_out: cols as u32,
        ..Default::default()
    };
    let groups = elementwise_groups(ctx, rows * cols * batch);
    dispatch(
        rec,
        ctx,
        "identity",
        &params,
        [out.buffer, out.buffer, out.buffer],
        groups,
    );
}

/// Width of the inner panels whose T blocks [`t_merge`] merges: its tiles (the WGSL's TB).
pub(crate) const T_MERGE_BLOCK: usize = 32;

/// Completes the T (k×k, ld `t.ld`) of an outer panel of `k` columns whose inner panels of
/// [`T_MERGE_BLOCK`] columns already have their T blocks on the diagonal, from S = VᵀV of the
/// outer panel (`s`): the off-diagonal blocks by the compact-WY product rule, zeros below the
/// diagonal blocks. Recursive doubling: one launch per level (pairs of 32-, 64-, 128-column blocks
/// merged; 3 launches for k = 256), one workgroup per 32×32 tile of each pair's new block.
pub(crate) fn t_merge(rec: &mut Recorder, ctx: &Context, k: usize, s: Mats, t: Mats, batch: usize) {
    let mut bs = T_MERGE_BLOCK;
    while bs < k {
        let pairs = (k - bs).div_ceil(2 * bs);
        let tiles = bs / T_MERGE_BLOCK;
        let params = Params {
            j0: bs as u32,
            ncols: pairs as u32,
            ..Params::t_from_s(k, batch, &s, &t)
        };
        rec.dispatch(
            ctx,
            &SOURCE,
            "t_merge",
            &[],
            &params,
            &[
                (t.buffer, Access::ReadWrite),
                (s.buffer, Access::ReadWrite),
                (s.buffer, Access::ReadWrite),
            ],
            grid(ctx, (batch * pairs * tiles * tiles) as u32),
        );
        bs *= 2;
    }
}
