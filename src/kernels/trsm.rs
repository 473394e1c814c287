//! `wgsl/trsm.wgsl`: the in-workgroup solve of one triangular block against a tile of
//! right-hand sides (the diagonal-block solve of the blocked trsm, and the whole solve of a
//! batched trsm with n ≤ NB), and diagonal extraction for the checked trsm.

use super::householder::Mats;
use crate::context::{grid, Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "trsm",
    source: include_str!("../../wgsl/trsm.wgsl"),
};

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    w: u32,
    k: u32,
    lda: u32,
    a_offset: u32,
    a_stride: u32,
    x_offset: u32,
    x_rs: u32,
    x_cs: u32,
    x_stride: u32,
    s_offset: u32,
    s_rs: u32,
    s_cs: u32,
    s_stride: u32,
    write_scratch: u32,
    batch: u32,
    _pad: u32,
}

/// The workgroup tile sizes of one `solve_block` pipeline: T is at most `nb`×`nb`, `rc`
/// right-hand sides per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    pub nb: usize,
    pub rc: usize,
}

impl Variant {
    /// Workgroup storage the variant declares, in bytes.
    pub fn storage_bytes(self) -> u32 {
        ((self.nb * self.nb + (self.nb + 3) * self.rc) * 4) as u32
    }

    /// The largest block order this adapter runs: 64 where its workgroup storage allows
    /// (20.2 KiB), else 32 (6.2 KiB, within WebGPU's default 16 KiB).
    pub fn max_block(ctx: &Context) -> usize {
        if ctx.fits_workgroup(Self::for_block(64, usize::MAX).storage_bytes(), WG) {
            64
        } else {
            32
        }
    }

    /// The variant for blocks of order up to `w` (rounded up to a power of two, at least 8) and
    /// `k` right-hand sides: tiles of 4 for k ≤ 4, else 16 (on an H100, 64-row blocks with
    /// 4096 right-hand sides: 24 µs per block with tiles of 16, 33 µs with tiles of 8, 53 µs
    /// with tiles of 4; 32 per workgroup needs 512 invocations for 64 rows and gained nothing).
    pub fn for_block(w: usize, k: usize) -> Self {
        let nb = w.next_power_of_two().clamp(8, 64);
        let rc = if k <= 4 { 4 } else { 16 };
        Self { nb, rc }
    }
}

/// A w×k tile of right-hand sides for each batch member: element (i, c) of member b is at
/// `offset + b * stride + i * rs + c * cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tile<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
    pub stride: usize,
}

/// One `solve_block` launch: T·Y = Z in place in `x` for each batch member, where T is the w×w
/// block of A at `a` (read transposed when `trans_a`), lower when `forward`, upper otherwise,
/// with a unit diagonal (unread) when `unit`. With `scratch`, Y is also written there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SolveBlock<'a> {
    pub variant: Variant,
    pub w: usize,
    pub k: usize,
    pub batch: usize,
    pub a: Mats<'a>,
    pub trans_a: bool,
    pub forward: bool,
    pub unit: bool,
    pub x: Tile<'a>,
    pub scratch: Option<Tile<'a>>,
}

impl SolveBlock<'_> {
    pub fn record(&self, rec: &mut Recorder, ctx: &Context) {
        if self.w == 0 || self.k == 0 || self.batch == 0 {
            return;
        }
        debug_assert!(self.w <= self.variant.nb);
        let constants = [
            ("NB", self.variant.nb as f64),
            ("RC", self.variant.rc as f64),
            ("FORWARD", self.forward as u32 as f64),
            ("TRANS_A", self.trans_a as u32 as f64),
            ("UNIT", self.unit as u32 as f64),
        ];
        let max = ctx.limits().max_compute_workgroups_per_dimension.max(1) as usize;
        let rc = self.variant.rc;
        // Columns per launch: a whole number of tiles within the x-dimension limit.
        let cols_per = max * rc;
        let scratch = self.scratch.unwrap_or(self.x);
        let mut b0 = 0;
        while b0 < self.batch {
            let nbatch = (self.batch - b0).min(max);
            let mut c0 = 0;
            while c0 < self.k {
                let kc = (self.k - c0).min(cols_per);
                let params = Params {
                    w: self.w as u32,
                    k: kc as u32,
                    lda: self.a.ld as u32,
                    a_offset: (self.a.offset + b0 * self.a.stride) as u32,
                    a_stride: self.a.stride as u32,
                    x_offset: (self.x.offset + b0 * self.x.stride + c0 * self.x.cs) as u32,
                    x_rs: self.x.rs as u32,
                    x_cs: self.x.cs as u32,
                    x_stride: self.x.stride as u32,
                    s_offset: (scratch.offset + b0 * scratch.stride + c0 * scratch.cs) as u32,
                    s_rs: scratch.rs as u32,
                    s_cs: scratch.cs as u32,
                    s_stride: scratch.stride as u32,
                    write_scratch: self.scratch.is_some() as u32,
                    batch: nbatch as u32,
                    _pad: 0,
                };
                rec.dispatch(
                    ctx,
                    &SOURCE,
                    "solve_block",
                    &constants,
                    &params,
                    &[
                        (self.a.buffer, Access::Read),
                        (self.x.buffer, Access::ReadWrite),
                        (scratch.buffer, Access::ReadWrite),
                    ],
                    [kc.div_ceil(rc) as u32, nbatch as u32, 1],
                );
                c0 += kc;
            }
            b0 += nbatch;
        }
    }
}

/// Writes the diagonal of each n×n matrix of `a` to `out[out_offset + b * n + i]`.
pub(crate) fn extract_diagonal(
    rec: &mut Recorder,
    ctx: &Context,
    n: usize,
    batch: usize,
    a: Mats,
    out: &wgpu::Buffer,
    out_offset: usize,
) {
    let params = Params {
        w: n as u32,
        lda: a.ld as u32,
        a_offset: a.offset as u32,
        a_stride: a.stride as u32,
        s_offset: out_offset as u32,
        batch: batch as u32,
        ..Default::default()
    };
    rec.dispatch(
        ctx,
        &SOURCE,
        "extract_diagonal",
        &[],
        &params,
        &[
            (a.buffer, Access::Read),
            (out, Access::ReadWrite),
            (out, Access::ReadWrite),
        ],
        grid(ctx, ((n * batch) as u32).div_ceil(WG)),
    );
}
