//! `wgsl/copy.wgsl`: batched sub-matrix copies and transposes between buffers.

use super::householder::Mats;
use crate::context::{grid, Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "copy",
    source: include_str!("../../wgsl/copy.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    batch: u32,
    _pad0: u32,
    a_ld: u32,
    a_offset: u32,
    a_stride: u32,
    _pad1: u32,
    out_ld: u32,
    out_offset: u32,
    out_stride: u32,
    _pad2: u32,
}

/// Copies the rows×cols block of each matrix of `a` into `out` (`transpose`: as its transpose,
/// cols×rows). `out` must be a different buffer from `a`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder,
    ctx: &Context,
    rows: usize,
    cols: usize,
    batch: usize,
    a: Mats,
    out: Mats,
    transpose: bool,
) {
    let elements = rows * cols * batch;
    if elements == 0 {
        return;
    }
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        batch: batch as u32,
        _pad0: 0,
        a_ld: a.ld as u32,
        a_offset: a.offset as u32,
        a_stride: a.stride as u32,
        _pad1: 0,
        out_ld: out.ld as u32,
        out_offset: out.offset as u32,
        out_stride: out.stride as u32,
        _pad2: 0,
    };
    let wg = ctx.workgroup_1d();
    rec.dispatch(
        ctx,
        &SOURCE,
        if transpose { "transpose" } else { "copy_block" },
        &[("WG", wg as f64)],
        &params,
        &[(a.buffer, Access::Read), (out.buffer, Access::ReadWrite)],
        grid(ctx, (elements as u32).div_ceil(wg)),
    );
}
