//! `wgsl/tsqr.wgsl`: the TSQR panel factorization with Householder reconstruction, used by the
//! blocked QR for tall panels (see the WGSL header for the algorithm).
//!
//! [`Variant`] sizes the kernels for one panel width and block height; [`Layout`] places the
//! levels of the reduction tree, their explicit Q factors and taus in one scratch buffer;
//! [`record_panel`] records the whole panel: factor levels bottom-up, expand levels top-down
//! (behind CholeskyQR2, the leaf level's expansion is folded into the reconstruction), then the
//! reconstruction of Y, T, tau and R_H.

use super::batched_qr::Tall;
use super::cholqr;
use super::householder::Mats;
use crate::context::{Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "tsqr",
    source: include_str!("../../wgsl/tsqr.wgsl"),
};

pub(crate) const SOURCE_LU: KernelSource = KernelSource {
    name: "tsqr_lu",
    source: include_str!("../../wgsl/tsqr_lu.wgsl"),
};

/// Block height used when the caller does not ask for one (capped by workgroup memory and, for
/// `qr_tall`, by its 16 rows per lane).
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
    gate: u32,
    fold_q: u32,
    fold_p: u32,
    fold_ld: u32,
}

/// `Params::gate` of launches that always run.
const NO_GATE: u32 = u32::MAX;

/// `Params::fold_q` of panels without CholeskyQR2 in front, whose leaf level is never folded
/// (the WGSL's NO_FOLD, in tsqr.wgsl and tsqr_lu.wgsl).
const NO_FOLD: u32 = u32::MAX;

/// The kernels specialised for panels of `b` columns cut into blocks of at most `rb` rows:
/// where the adapter's subgroups have a fixed size, blocks factored in registers by `qr_tall`
/// (`wgsl/batched_qr_tall.wgsl`); by the portable `tsqr_factor` (`wg` invocations) otherwise.
/// The reconstruction (`wgsl/tsqr_lu.wgsl`, then `tsqr_rows`) is the same for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    pub b: usize,
    pub rb: usize,
    /// Invocations of the portable tsqr_factor (0 where qr_tall factors the blocks).
    wg: usize,
    /// Invocations of tsqr_lu: b² where the adapter allows.
    lu_wg: usize,
    /// Where the subgroups have a fixed size: the `qr_tall` variant that factors the blocks.
    sg: Option<Tall>,
    /// Where the levels above the leaves can take stacked-triangle blocks (`Tall::stacked`)
    /// of more R factors than dense blocks hold: that many R factors at most, and the variant
    /// for them.
    stack: Option<(usize, Tall)>,
    /// Panels of more than one block are first factored by CholeskyQR2 (`kernels::cholqr`);
    /// the tree runs only where its check fails.
    cholqr: bool,
}

/// Which kernel a set of override constants is for (their workgroup arrays differ).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    Factor,
    /// tsqr_apply and tsqr_rows (portable in every variant).
    Portable,
}

impl Variant {
    /// The variant for width `b` (at most [`MAX_WIDTH`]) with blocks of `rows` rows (default
    /// [`DEFAULT_BLOCK_ROWS`]), lowered to what the adapter's workgroup memory holds; `None`
    /// when blocks of at least 2·b rows do not fit (the reconstruction needs every block to have
    /// b rows or more).
    pub fn new(ctx: &Context, b: usize, rows: Option<usize>) -> Option<Self> {
        if b == 0 || b > MAX_WIDTH {
            return None;
        }
        let limits = ctx.limits();
        let limit = limits.max_compute_workgroup_storage_size as usize;
        if 4 * lu_floats(b) > limit {
            return None;
        }
        let wanted = rows.unwrap_or(DEFAULT_BLOCK_ROWS).max(2 * b);
        let most = limits
            .max_compute_invocations_per_workgroup
            .min(limits.max_compute_workgroup_size_x) as usize;
        let lu_wg = (b * b).min(most);
        if ctx.fixed_subgroup_size().is_some() {
            // Blocks factored in registers by qr_tall, as tall as it takes them (up to
            // `wanted` rows).
            let tall = (2 * b..=wanted)
                .rev()
                .find_map(|rb| Tall::new(ctx, rb, b, b, b).map(|t| (rb, t)));
            if let Some((rb, t)) = tall {
                let dense = rb / b;
                let stack = (dense + 1..=TALL_STACK_MAX / b)
                    .rev()
                    .find_map(|r| Tall::stacked(ctx, stack_height(r, b), b).map(|t| (r, t)));
                return Some(Self {
                    b,
                    rb,
                    wg: 0,
                    lu_wg,
                    sg: Some(t),
                    stack,
                    cholqr: false,
                });
            }
        }
        let wg = ctx.workgroup_1d() as usize;
        if 2 * b > wg {
            return None;
        }
        // tsqr_factor's workgroup arrays: the block and its Q, the reduction buffer, 5·b more,
        // and the gate flag.
        let extra = wg + 5 * b + 1;
        let rb = (2 * b..=wanted)
            .rev()
            .find(|rb| 4 * (2 * (rb + 1) * b + extra) <= limit)?;
        Some(Self {
            b,
            rb,
            wg,
            lu_wg,
            sg: None,
            stack: None,
            cholqr: false,
        })
    }

    /// The same variant with CholeskyQR2 in front of the tree (`on`, where the adapter runs
    /// `kernels::cholqr`), or without.
    pub fn with_cholqr(self, ctx: &Context, on: bool) -> Self {
        Self {
            cholqr: on && self.b <= cholqr::MAX_WIDTH && cholqr::fits(ctx),
            ..self
        }
    }

    /// Override constants for `entry` of tsqr.wgsl (workgroup arrays sized for that kernel).
    fn constants(&self, entry: Entry) -> Vec<(&'static str, f64)> {
        let (b, rb) = (self.b, self.rb);
        let smem = match entry {
            Entry::Factor => (rb + 1) * b,
            Entry::Portable => b * b,
        };
        let (tpc, wg) = match entry {
            Entry::Factor => (self.wg / b, self.wg),
            Entry::Portable => (1, PORTABLE_WG),
        };
        // The block's Q array is only tsqr_factor's.
        let smq = if entry == Entry::Factor { smem } else { 1 };
        vec![
            ("B", b as f64),
            ("SMEM", smem as f64),
            ("TPC", tpc as f64),
            ("WG", wg as f64),
            ("RB", rb as f64),
            ("LDS", (rb + 1) as f64),
            ("SMQ", smq as f64),
        ]
    }

    /// Override constants of tsqr_lu.wgsl.
    fn lu_constants(&self) -> Vec<(&'static str, f64)> {
        let b = self.b;
        vec![
            ("B", b as f64),
            ("BB", (b * b) as f64),
            ("WG", self.lu_wg as f64),
        ]
    }
}

/// Granularity of the shorter `qr_tall` variants for the tree's upper levels.
const SHORT_STEP: usize = 32;

/// Most rows of a stacked-triangle block (`qr_tall` holds 16 rows per lane; 512 with 32-lane
/// subgroups).
const TALL_STACK_MAX: usize = 512;

/// Rows of the `qr_tall` variant for stacked blocks of `r` R factors of b rows: rounded up to
/// 128, so that only a few variants are built (each is a pipeline compiled on first use).
fn stack_height(r: usize, b: usize) -> usize {
    (r * b).next_multiple_of(128)
}

/// Widest panel the reconstruction kernel takes (its per-column arrays).
pub(crate) const MAX_WIDTH: usize = 32;

/// Workgroup memory of tsqr_lu.wgsl in floats: three b×b arrays, 32 vec4 and 32 flags.
fn lu_floats(b: usize) -> usize {
    3 * b * b + 4 * 32 + 32
}

/// Invocations of tsqr_apply and tsqr_rows (within WebGPU's default limit).
const PORTABLE_WG: usize = 256;

/// One level of the reduction tree.
#[derive(Clone, Copy, Debug)]
struct Level {
    rows: usize,
    nblocks: usize,
    /// Blocks of whole stacked R factors, factored by the variant's stacked `qr_tall`.
    stacked: bool,
    /// Where this level's input lives in scratch (levels above the first; the first is the
    /// panel itself).
    input: usize,
    /// The level's blockwise Q (from tsqr_factor).
    q: usize,
    /// The level's explicit Q (from tsqr_apply; the blockwise Q itself at the top).
    qx: usize,
    tau: usize,
}

/// Where the tree of one panel lives in the scratch buffer (offsets in elements, per batch
/// member).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    levels: Vec<Level>,
    rtop: usize,
    uinv: usize,
    /// CholeskyQR2's intermediates, where it runs before the tree (trees of several levels).
    cq: Option<cholqr::Layout>,
    /// Scratch elements one batch member needs (a multiple of 4: see `new`).
    pub total: usize,
}

impl Layout {
    /// Where CholeskyQR2, if it runs first, takes the partial Grams of X (element offset per
    /// member): a GEMM that forms X may leave them there (`gemm::GramOut`).
    pub fn grams(&self) -> Option<usize> {
        self.cq.map(|cq| cq.parts)
    }

    /// The tree for a panel of `rows` × `v.b` (rows ≥ v.b).
    pub fn new(v: &Variant, rows: usize) -> Self {
        let b = v.b;
        let mut shapes = vec![(rows, rows.div_ceil(v.rb), false)];
        while let Some(&(_, nr, _)) = shapes.last().filter(|s| s.1 > 1) {
            // The level above stacks the nr R factors in dense blocks of at most rb rows, or,
            // where they would need more than one such block and the stacked variant takes
            // them all, in one stacked block: the top, a level fewer. (Stacked blocks cost
            // about twice a dense 256-row one on an H100 — 512 rows, 16 per lane — so more
            // than one of them, or one where a dense block would do, is slower: BENCHMARKS.md,
            // v43.)
            let r = nr * b;
            let dense = r.div_ceil(v.rb);
            let one = v.stack.is_some_and(|(most, _)| nr <= most);
            shapes.push(if dense > 1 && one {
                (r, 1, true)
            } else {
                (r, dense, false)
            });
        }
        let top = shapes.len() - 1;
        let mut cursor = 0;
        let mut take = |n: usize| {
            cursor += n;
            cursor - n
        };
        let mut levels = Vec::with_capacity(shapes.len());
        for (l, &(rows, nblocks, stacked)) in shapes.iter().enumerate() {
            let input = if l == 0 { 0 } else { take(rows * b) };
            let q = take(rows * b);
            let qx = if l == top { q } else { take(rows * b) };
            let tau = take(nblocks * b);
            levels.push(Level {
                rows,
                nblocks,
                stacked,
                input,
                q,
                qx,
                tau,
            });
        }
        let rtop = take(b * b);
        let uinv = take(b * b);
        let cq = (v.cholqr && top > 0 && rows <= cholqr::MAX_ROWS)
            .then(|| cholqr::Layout::new(b, rows, cursor));
        Self {
            levels,
            rtop,
            uinv,
            cq,
            // A multiple of 4, so that any stride of at least the largest total keeps every
            // matrix's CholeskyQR2 partial Grams at multiples of 4 (read as vec4s).
            total: (cursor + cq.map_or(0, |c| c.total)).next_multiple_of(4),
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
/// matrices. `scratch` holds `stride` elements per batch member (at least the layout's total, and
/// like it a multiple of 4).
/// `grams`: how many partial Grams of the panel the GEMM that formed it left at
/// [`Layout::grams`] (where CholeskyQR2 runs first).
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
    grams: Option<usize>,
) {
    let layout = Layout::new(v, rows);
    debug_assert!(layout.total <= stride && rows >= v.b);
    let b = v.b;
    let levels = &layout.levels;
    let top = levels.len() - 1;
    // CholeskyQR2 first, where the variant asks for it: its Q and R go where the tree's would,
    // and the tree's launches (factor, apply) return at once unless its gate is set.
    let gate = layout.cq.map(|cq| {
        let q = cholqr::Out {
            q: levels[0].qx,
            q_ld: rows,
            r: layout.rtop,
        };
        cholqr::record(
            rec, ctx, b, rows, out.a, &cq, &q, scratch, stride, batch, grams,
        );
        cq.gate
    });
    let base = Params {
        batch: batch as u32,
        s_stride: stride as u32,
        gate: gate.map_or(NO_GATE, |g| g as u32),
        fold_q: NO_FOLD,
        ..Default::default()
    };
    // Behind CholeskyQR2 the leaf level's expansion is folded into the reconstruction (the
    // WGSL's fold_on): one launch fewer per panel, which would almost always return at once.
    let fold = gate.is_some();
    let portable = v.constants(Entry::Portable);
    let max_x = ctx.limits().max_compute_workgroups_per_dimension as usize;
    let elementwise = |elements: usize| elements.div_ceil(PORTABLE_WG).clamp(1, max_x.min(4096));

    // Factor every level bottom-up: R to the level above (or rtop), the block Qs (the portable
    // kernel also leaves V in place, unused).
    let consts = v.constants(Entry::Factor);
    for (l, level) in levels.iter().enumerate() {
        let (xbuf, x_off, x_ld, x_stride) = if l == 0 {
            (out.a.buffer, out.a.offset, out.a.ld, out.a.stride)
        } else {
            (scratch, level.input, level.rows, stride)
        };
        let (r_off, r_ld) = if l == top {
            (layout.rtop, b)
        } else {
            (levels[l + 1].input, levels[l + 1].rows)
        };
        let params = Params {
            rows: level.rows as u32,
            nblocks: level.nblocks as u32,
            x_off: x_off as u32,
            x_ld: x_ld as u32,
            x_stride: x_stride as u32,
            r_off: r_off as u32,
            r_ld: r_ld as u32,
            q_off: level.q as u32,
            q_ld: level.rows as u32,
            tau_off: level.tau as u32,
            ..base
        };
        if let Some(t) = &v.sg {
            let t = match v.stack.filter(|_| level.stacked) {
                // A stacked block: the variant for its height, else the largest one (which
                // holds any stacked block).
                Some((_, most)) => {
                    Tall::stacked(ctx, stack_height(level.rows / b, b), b).unwrap_or(most)
                }
                // Dense blocks: qr_tall's lanes step through all of its M rows, so blocks of
                // at most half the leaf height (the upper levels' few stacked R's) take a
                // shorter variant, the height rounded up to a multiple of 32 so that only a
                // few are ever built (each is a pipeline compiled on first use: exact heights
                // made 44 qr_tall pipelines for one 4096² and one 65536×256 QR, v34).
                None => {
                    let height = level
                        .rows
                        .div_ceil(level.nblocks)
                        .next_multiple_of(SHORT_STEP);
                    Tall::new(ctx, height, b, b, b)
                        .filter(|s| 2 * s.m() <= t.m())
                        .unwrap_or(*t)
                }
            };
            t.record_blocks(
                rec,
                ctx,
                Mats::new(xbuf, x_off, x_ld, x_stride),
                level.rows,
                level.nblocks,
                Mats::new(scratch, level.q, level.rows, stride),
                Mats::new(scratch, r_off, r_ld, stride),
                batch,
                gate,
            );
            continue;
        }
        rec.dispatch(
            ctx,
            &SOURCE,
            "tsqr_factor",
            &consts,
            &params,
            &[(xbuf, Access::ReadWrite), (scratch, Access::ReadWrite)],
            [level.nblocks as u32, batch as u32, 1],
        );
    }
    // Explicit Q top-down: each level's block Qs times the level above's explicit Q (but for
    // the folded leaf level).
    for l in (usize::from(fold)..top).rev() {
        let level = &levels[l];
        let params = Params {
            rows: level.rows as u32,
            nblocks: level.nblocks as u32,
            q_off: level.q as u32,
            q_ld: level.rows as u32,
            r_off: levels[l + 1].qx as u32,
            r_ld: levels[l + 1].rows as u32,
            u_off: level.qx as u32,
            ..base
        };
        rec.dispatch(
            ctx,
            &SOURCE,
            "tsqr_apply",
            &portable,
            &params,
            &[(scratch, Access::ReadWrite), (scratch, Access::ReadWrite)],
            [
                elementwise(level.rows * b.div_ceil(4)) as u32,
                batch as u32,
                1,
            ],
        );
    }
    // Reconstruction.
    let params = Params {
        rows: rows as u32,
        nblocks: 1,
        r_off: layout.rtop as u32,
        r_ld: b as u32,
        q_off: levels[0].qx as u32,
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
    let params = if fold {
        Params {
            nblocks: levels[0].nblocks as u32,
            fold_q: levels[0].q as u32,
            fold_p: levels[1].qx as u32,
            fold_ld: levels[1].rows as u32,
            ..params
        }
    } else {
        params
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
        &SOURCE_LU,
        "tsqr_lu",
        &v.lu_constants(),
        &params,
        &buffers,
        [batch as u32, 1, 1],
    );
    rec.dispatch(
        ctx,
        &SOURCE,
        "tsqr_rows",
        &portable,
        &params,
        &buffers,
        [
            elementwise((rows - b) * b.div_ceil(4)) as u32,
            batch as u32,
            1,
        ],
    );
}

/// Whether a panel of `rows` rows of `batch` matrices fits the dispatch grid of this variant.
pub(crate) fn fits_grid(ctx: &Context, v: &Variant, rows: usize, batch: usize) -> bool {
    let max = ctx.limits().max_compute_workgroups_per_dimension as usize;
    rows >= v.b && rows.div_ceil(v.rb) <= max && batch <= max
}
