//! `wgsl/cholqr.wgsl`: CholeskyQR2 for the tall inner panels of the blocked QR, in front of
//! TSQR (`kernels::tsqr`), which runs only where its check fails (see the WGSL header).
//!
//! [`Layout`] places its partial Grams, R₁ and the gate in the TSQR scratch buffer, after
//! TSQR's own tree; [`record`] records its three launches (two where a GEMM left the first
//! Gram).

use super::householder::Mats;
use crate::context::{Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "cholqr",
    source: include_str!("../../wgsl/cholqr.wgsl"),
};

/// Rows per tile of `cq_solve`, one partial Gram each (the WGSL's `TR`).
const TILE_ROWS: usize = 64;

/// Invocations per workgroup (the WGSL's `WG`).
const WG: u32 = 256;

/// Workgroup memory of `cq_solve` in bytes: the tile (32 columns of 17 vec4s), a 32×32 matrix
/// with leading dimension 33, 96 floats of pivot rows and roots, and an atomic.
const STORAGE_BYTES: u32 = 32 * 17 * 16 + 33 * 32 * 4 + 96 * 4 + 4;

/// Widest panel the kernels take.
pub(crate) const MAX_WIDTH: usize = 32;

/// Floats per partial Gram (32×32 whatever the width; the WGSL's `PART`).
const PART: usize = 1024;

/// Tallest panel given to CholeskyQR2: every `cq_solve` workgroup sums one partial Gram per 64
/// rows, so the launch's time grows with the square of the height, where TSQR's tree grows with
/// its logarithm.
pub(crate) const MAX_ROWS: usize = 8192;

/// Whether the adapter runs the kernels (WebGPU's default limits do).
pub(crate) fn fits(ctx: &Context) -> bool {
    ctx.fits_workgroup(STORAGE_BYTES, WG) && ctx.limits().max_compute_workgroup_size_x >= WG
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    ntiles: u32,
    batch: u32,
    step: u32,
    x_off: u32,
    x_ld: u32,
    x_stride: u32,
    s_stride: u32,
    part_off: u32,
    part_in: u32,
    r_in: u32,
    r_out: u32,
    q_off: u32,
    q_ld: u32,
    rtop: u32,
    gate: u32,
    ngram: u32,
    _pad: [u32; 3],
}

/// Where one panel's CholeskyQR2 keeps its intermediates in the scratch buffer (element offsets
/// per batch member, from `base`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// The partial Grams of X (room for one per 64 rows, and one more: a GEMM that hands them
    /// over tiles from the previous panel's first row, up to 32 rows above X's).
    pub parts: usize,
    parts2: usize,
    r1: usize,
    /// The gate of each member: 1.0 where TSQR must factor its panel.
    pub gate: usize,
    /// Elements one batch member needs.
    pub total: usize,
}

impl Layout {
    /// The intermediates of a `rows` × `b` panel, placed from element `base` (the partial Grams
    /// from the next multiple of 4: `cq_solve` reads them as vec4s).
    pub fn new(b: usize, rows: usize, base: usize) -> Self {
        let parts = base.next_multiple_of(4);
        let ntiles = rows.div_ceil(TILE_ROWS);
        let parts2 = parts + (ntiles + 1) * PART;
        let r1 = parts2 + ntiles * PART;
        let gate = r1 + b * b;
        Self {
            parts,
            parts2,
            r1,
            gate,
            total: gate + 1 - base,
        }
    }
}

/// Where the panel's Q and R go (scratch offsets per batch member): Q `rows` × b with leading
/// dimension `q_ld`, R b×b with leading dimension b.
pub(crate) struct Out {
    pub q: usize,
    pub q_ld: usize,
    pub r: usize,
}

/// Records CholeskyQR2 of the `rows` × `b` panel `x` of each of `batch` matrices: Q and R to
/// `out` in `scratch` (`stride` elements per member), and each member's gate of `layout` set to
/// 1.0 where its panel fails the check (0.0 otherwise). `x` is only read. `grams`: the number of
/// partial Grams of X already at the layout's `parts` (see `gemm::GramOut`), else the first
/// launch forms them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder,
    ctx: &Context,
    b: usize,
    rows: usize,
    x: Mats,
    layout: &Layout,
    out: &Out,
    scratch: &wgpu::Buffer,
    stride: usize,
    batch: usize,
    grams: Option<usize>,
) {
    debug_assert!(b <= MAX_WIDTH && rows >= b);
    // The partial Grams are read as vec4s: every matrix's must start at a multiple of 4.
    debug_assert!(stride.is_multiple_of(4) && layout.parts.is_multiple_of(4));
    let ntiles = rows.div_ceil(TILE_ROWS);
    debug_assert!(grams.is_none_or(|g| g <= ntiles + 1));
    let base = Params {
        rows: rows as u32,
        ntiles: ntiles as u32,
        ngram: ntiles as u32,
        batch: batch as u32,
        s_stride: stride as u32,
        part_off: layout.parts as u32,
        q_off: out.q as u32,
        q_ld: out.q_ld as u32,
        rtop: out.r as u32,
        gate: layout.gate as u32,
        ..Default::default()
    };
    let solve = |rec: &mut Recorder, solve: bool, gram: bool, params: Params, xbuf| {
        let constants = [
            ("B", b as f64),
            ("SOLVE", f64::from(u8::from(solve))),
            ("GRAM", f64::from(u8::from(gram))),
        ];
        rec.dispatch(
            ctx,
            &SOURCE,
            "cq_solve",
            &constants,
            &params,
            &[
                (xbuf, Access::ReadWrite),
                (scratch, Access::ReadWrite),
                (scratch, Access::ReadWrite),
            ],
            [ntiles as u32, batch as u32, 1],
        );
    };
    let from_x = Params {
        x_off: x.offset as u32,
        x_ld: x.ld as u32,
        x_stride: x.stride as u32,
        ..base
    };
    // Pass 1: G = XᵀX (partials in `parts`, unless the GEMM that formed X left `grams` of them
    // there); R₁ (to r1) and Q₁ = X R₁⁻¹ (into Q's place) with Q₁ᵀQ₁'s partials in `parts2`.
    if grams.is_none() {
        solve(rec, false, true, from_x, x.buffer);
    }
    let step1 = Params {
        step: 1,
        ngram: grams.unwrap_or(ntiles) as u32,
        part_in: layout.parts as u32,
        part_off: layout.parts2 as u32,
        r_out: layout.r1 as u32,
        ..from_x
    };
    solve(rec, true, true, step1, x.buffer);
    // Pass 2: R₂ (with the check), R = R₂R₁, Q = Q₁R₂⁻¹ in place.
    let step2 = Params {
        step: 2,
        x_off: out.q as u32,
        x_ld: out.q_ld as u32,
        x_stride: stride as u32,
        part_in: layout.parts2 as u32,
        r_in: layout.r1 as u32,
        ..base
    };
    solve(rec, true, false, step2, scratch);
}
