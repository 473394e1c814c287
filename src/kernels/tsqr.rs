//! `wgsl/tsqr.wgsl`: the TSQR panel factorization with Householder reconstruction, used by the
//! blocked QR for tall panels (see the WGSL header for the algorithm).
//!
//! [`Variant`] sizes the kernels for one panel width and block height; [`Layout`] places the
//! levels of the reduction tree, their explicit Q factors and taus in one scratch buffer;
//! [`record_panel`] records the whole panel: factor levels bottom-up, expand levels top-down,
//! then the reconstruction of Y, T, tau and R_H.

use super::householder::Mats;
use crate::context::{Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "tsqr",
    source: include_str!("../../wgsl/tsqr.wgsl"),
};

pub(crate) const SOURCE_SUBGROUP: KernelSource = KernelSource {
    name: "tsqr_sg",
    source: include_str!("../../wgsl/tsqr_sg.wgsl"),
};

/// Block height used when the caller does not ask for one (capped by workgroup memory).
pub(crate) const DEFAULT_BLOCK_ROWS: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    nblocks: u32,
    batch: u32,
    top: u32,
    x_off: u32,
    x_ld: u32,
    x_stride: u32,
    r_off: u32,
    r_ld: u32,
    q_off: u32,
    q_ld: u32,
    tau_off: u32,
    tau_stride: u32,
    s_stride: u32,
    a_off: u32,
    a_ld: u32,
    a_stride: u32,
    v_off: u32,
    v_ld: u32,
    v_stride: u32,
    t_off: u32,
    t_ld: u32,
    t_stride: u32,
    u_off: u32,
}

/// The kernels specialised for panels of `b` columns cut into blocks of at most `rb` rows:
/// the subgroup kernels (`tsqr_sg.wgsl`, one subgroup of `sg` lanes per column) where the
/// adapter's subgroups have a fixed size, the portable ones (`wg` invocations) otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    pub b: usize,
    pub rb: usize,
    wg: usize,
    sg: Option<usize>,
}

impl Variant {
    /// The variant for width `b` with blocks of `rows` rows (default [`DEFAULT_BLOCK_ROWS`]),
    /// lowered to what the adapter's workgroup memory holds; `None` when blocks of at least
    /// 2·b rows do not fit (the reconstruction needs every block to have b rows or more).
    pub fn new(ctx: &Context, b: usize, rows: Option<usize>) -> Option<Self> {
        if b == 0 {
            return None;
        }
        let limits = ctx.limits();
        let limit = limits.max_compute_workgroup_storage_size as usize;
        let wanted = rows.unwrap_or(DEFAULT_BLOCK_ROWS).max(2 * b);
        let fit = |bytes: &dyn Fn(usize) -> usize| -> Option<usize> {
            let mut rb = wanted;
            while rb >= 2 * b && bytes(rb) > limit {
                rb -= 1;
            }
            (rb >= 2 * b).then_some(rb)
        };
        let most = limits
            .max_compute_invocations_per_workgroup
            .min(limits.max_compute_workgroup_size_x) as usize;
        if let Some(s) = ctx.fixed_subgroup_size().map(|s| s as usize) {
            if b * s <= most {
                if let Some(rb) = fit(&|rb| 4 * (Self::smem(b, rb) + 4 * b + 1)) {
                    return Some(Self {
                        b,
                        rb,
                        wg: b * s,
                        sg: Some(s),
                    });
                }
            }
        }
        let wg = ctx.workgroup_1d() as usize;
        if 2 * b > wg {
            return None;
        }
        let rb = fit(&|rb| Self::portable_bytes(b, rb, wg))?;
        Some(Self {
            b,
            rb,
            wg,
            sg: None,
        })
    }

    fn smem(b: usize, rb: usize) -> usize {
        ((rb + 1) * b).max(3 * b * (b + 1))
    }

    fn portable_bytes(b: usize, rb: usize, wg: usize) -> usize {
        4 * (Self::smem(b, rb) + wg + 5 * b + 2 * rb)
    }

    /// Constants of the portable kernels with blocks of `rb` rows on `wg` invocations.
    fn portable(b: usize, rb: usize, wg: usize) -> Vec<(&'static str, f64)> {
        vec![
            ("B", b as f64),
            ("RB", rb as f64),
            ("LDS", (rb + 1) as f64),
            ("SMEM", Self::smem(b, rb) as f64),
            ("TPC", (wg / b) as f64),
            ("VC", (2 * rb) as f64),
            ("WG", wg as f64),
        ]
    }

    /// Kernel source, constants and entry names (factor, expand, lu) of this variant.
    fn tree_kernels(
        &self,
    ) -> (
        &'static KernelSource,
        Vec<(&'static str, f64)>,
        [&'static str; 3],
    ) {
        match self.sg {
            Some(s) => (
                &SOURCE_SUBGROUP,
                vec![
                    ("B", self.b as f64),
                    ("RB", self.rb as f64),
                    ("LDS", (self.rb + 1) as f64),
                    ("SMEM", Self::smem(self.b, self.rb) as f64),
                    ("S", s as f64),
                    ("WG", self.wg as f64),
                ],
                ["tsqr_factor_sg", "tsqr_expand_sg", "tsqr_lu_sg"],
            ),
            None => (
                &SOURCE,
                Self::portable(self.b, self.rb, self.wg),
                ["tsqr_factor", "tsqr_expand", "tsqr_lu"],
            ),
        }
    }
}

/// One level of the reduction tree.
#[derive(Clone, Copy, Debug)]
struct Level {
    rows: usize,
    nblocks: usize,
    /// Where this level's input lives in scratch (levels above the first; the first is the
    /// panel itself).
    input: usize,
    q: usize,
    tau: usize,
}

/// Where the tree of one panel lives in the scratch buffer (offsets in elements, per batch
/// member).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    levels: Vec<Level>,
    rtop: usize,
    uinv: usize,
    /// Scratch elements one batch member needs.
    pub total: usize,
}

impl Layout {
    /// The tree for a panel of `rows` × `v.b` (rows ≥ v.b).
    pub fn new(v: &Variant, rows: usize) -> Self {
        let b = v.b;
        let mut shapes = vec![(rows, rows.div_ceil(v.rb))];
        while let Some(&(_, nblocks)) = shapes.last().filter(|s| s.1 > 1) {
            let r = nblocks * b;
            shapes.push((r, r.div_ceil(v.rb)));
        }
        let mut cursor = 0;
        let mut levels = Vec::with_capacity(shapes.len());
        for (l, &(rows, nblocks)) in shapes.iter().enumerate() {
            let input = if l == 0 { 0 } else { cursor };
            if l > 0 {
                cursor += rows * b;
            }
            levels.push(Level {
                rows,
                nblocks,
                input,
                q: 0,
                tau: 0,
            });
        }
        let rtop = cursor;
        cursor += b * b;
        for level in &mut levels {
            level.q = cursor;
            cursor += level.rows * b;
            level.tau = cursor;
            cursor += level.nblocks * b;
        }
        let uinv = cursor;
        cursor += b * b;
        Self {
            levels,
            rtop,
            uinv,
            total: cursor,
        }
    }
}

/// Outputs of one panel, all batched: `a` is the panel's top-left element in A (rows × b is
/// overwritten with Y below the diagonal and R_H on and above it); `tau` gets b taus, `t` the
/// b×b T, `v` the explicit rows × b V (unit diagonal, zeros above).
pub(crate) struct PanelOut<'a> {
    pub a: Mats<'a>,
    pub tau: Mats<'a>,
    pub t: Mats<'a>,
    pub v: Mats<'a>,
}

/// Records the TSQR factorization and reconstruction of a rows × v.b panel of each of `batch`
/// matrices. `scratch` holds `stride` elements per batch member (at least the layout's total).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_panel(
    rec: &mut Recorder,
    ctx: &Context,
    v: &Variant,
    rows: usize,
    out: &PanelOut,
    scratch: &wgpu::Buffer,
    stride: usize,
    batch: usize,
) {
    let layout = Layout::new(v, rows);
    debug_assert!(layout.total <= stride && rows >= v.b);
    let b = v.b;
    let (source, consts, [factor, expand, lu]) = v.tree_kernels();
    let base = Params {
        batch: batch as u32,
        s_stride: stride as u32,
        ..Default::default()
    };
    let levels = &layout.levels;
    let top = levels.len() - 1;
    // The level's matrix: the panel in A for the first level, scratch above.
    let level_x = |l: usize| -> (&wgpu::Buffer, u32, u32, u32) {
        if l == 0 {
            (
                out.a.buffer,
                out.a.offset as u32,
                out.a.ld as u32,
                out.a.stride as u32,
            )
        } else {
            (
                scratch,
                levels[l].input as u32,
                levels[l].rows as u32,
                stride as u32,
            )
        }
    };
    for (l, level) in levels.iter().enumerate() {
        let (xbuf, x_off, x_ld, x_stride) = level_x(l);
        let (r_off, r_ld) = if l == top {
            (layout.rtop, b)
        } else {
            (levels[l + 1].input, levels[l + 1].rows)
        };
        let params = Params {
            rows: level.rows as u32,
            nblocks: level.nblocks as u32,
            x_off,
            x_ld,
            x_stride,
            r_off: r_off as u32,
            r_ld: r_ld as u32,
            tau_off: level.tau as u32,
            ..base
        };
        rec.dispatch(
            ctx,
            source,
            factor,
            &consts,
            &params,
            &[(xbuf, Access::ReadWrite), (scratch, Access::ReadWrite)],
            [level.nblocks as u32, batch as u32, 1],
        );
    }
    for (l, level) in levels.iter().enumerate().rev() {
        let (xbuf, x_off, x_ld, x_stride) = level_x(l);
        let (r_off, r_ld) = if l == top {
            (0, 0)
        } else {
            (levels[l + 1].q, levels[l + 1].rows)
        };
        let params = Params {
            rows: level.rows as u32,
            nblocks: level.nblocks as u32,
            top: (l == top) as u32,
            x_off,
            x_ld,
            x_stride,
            r_off: r_off as u32,
            r_ld: r_ld as u32,
            q_off: level.q as u32,
            q_ld: level.rows as u32,
            tau_off: level.tau as u32,
            ..base
        };
        rec.dispatch(
            ctx,
            source,
            expand,
            &consts,
            &params,
            &[(xbuf, Access::ReadWrite), (scratch, Access::ReadWrite)],
            [level.nblocks as u32, batch as u32, 1],
        );
    }
    let params = Params {
        rows: rows as u32,
        nblocks: 1,
        r_off: layout.rtop as u32,
        r_ld: b as u32,
        q_off: levels[0].q as u32,
        q_ld: rows as u32,
        tau_off: out.tau.offset as u32,
        tau_stride: out.tau.stride as u32,
        a_off: out.a.offset as u32,
        a_ld: out.a.ld as u32,
        a_stride: out.a.stride as u32,
        v_off: out.v.offset as u32,
        v_ld: out.v.ld as u32,
        v_stride: out.v.stride as u32,
        t_off: out.t.offset as u32,
        t_ld: out.t.ld as u32,
        t_stride: out.t.stride as u32,
        u_off: layout.uinv as u32,
        ..base
    };
    let buffers = [
        (out.a.buffer, Access::ReadWrite),
        (scratch, Access::ReadWrite),
        (out.a.buffer, Access::ReadWrite),
        (out.tau.buffer, Access::ReadWrite),
        (out.t.buffer, Access::ReadWrite),
        (out.v.buffer, Access::ReadWrite),
    ];
    rec.dispatch(
        ctx,
        source,
        lu,
        &consts,
        &params,
        &buffers,
        [batch as u32, 1, 1],
    );
    // tsqr_rows is portable in every variant; it needs only b×b floats of workgroup memory,
    // so it gets the smallest blocks.
    let wg = ctx.workgroup_1d() as usize;
    let below = (rows - b) * b;
    let max_x = ctx.limits().max_compute_workgroups_per_dimension as usize;
    let groups = below.div_ceil(wg).clamp(1, max_x.min(4096));
    rec.dispatch(
        ctx,
        &SOURCE,
        "tsqr_rows",
        &Variant::portable(b, 2 * b, wg),
        &params,
        &buffers,
        [groups as u32, batch as u32, 1],
    );
}

/// Whether a panel of `rows` rows of `batch` matrices fits the dispatch grid of this variant.
pub(crate) fn fits_grid(ctx: &Context, v: &Variant, rows: usize, batch: usize) -> bool {
    let max = ctx.limits().max_compute_workgroups_per_dimension as usize;
    rows >= v.b && rows.div_ceil(v.rb) <= max && batch <= max
}
