//! `wgsl/norms.wgsl`: overflow-safe column 2-norms, one workgroup per column.

use super::View;
use crate::context::{grid, Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "norms",
    source: include_str!("../../wgsl/norms.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    ld: u32,
    a_offset: u32,
    out_offset: u32,
    _pad: [u32; 3],
}

/// Writes the 2-norm of each of the `cols` columns of `a` (each `rows` long) to
/// `out[out_offset + j]`.
pub(crate) fn record(
    rec: &mut Recorder,
    ctx: &Context,
    rows: usize,
    cols: usize,
    a: View,
    out: &wgpu::Buffer,
    out_offset: usize,
) {
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        ld: a.ld,
        a_offset: a.offset,
        out_offset: out_offset as u32,
        _pad: [0; 3],
    };
    let wg = ctx.workgroup_1d();
    rec.dispatch(
        ctx,
        &SOURCE,
        "column_norms",
        &[("WG", wg as f64)],
        &params,
        &[(a.buffer, Access::Read), (out, Access::ReadWrite)],
        grid(ctx, cols as u32),
    );
}
