//! One Rust file per WGSL kernel family (`wgsl/<name>.wgsl` ↔ `src/kernels/<name>.rs`): the
//! kernel's source, its parameter block (a `bytemuck::Pod` struct laid out as the WGSL `Params`),
//! and `record` functions that add its dispatches to a [`Recorder`](crate::context::Recorder).
//!
//! Nothing here validates: the public operations in `linalg` check shapes and limits first.

pub(crate) mod batched_qr;
pub(crate) mod cholqr;
pub(crate) mod copy;
pub(crate) mod gemm;
pub(crate) mod gemm_coop;
pub(crate) mod householder;
pub(crate) mod norms;
pub(crate) mod trsm;
pub(crate) mod tsqr;

use crate::context::KernelSource;

/// Every kernel family compiled into the crate (the portability test checks the `wgsl/` folder
/// against this list).
pub(crate) const ALL: &[&KernelSource] = &[
    &batched_qr::SOURCE,
    &batched_qr::SOURCE_COLUMNS,
    &batched_qr::SOURCE_TALL,
    &cholqr::SOURCE,
    &copy::SOURCE,
    &gemm::SOURCE,
    &gemm_coop::SOURCE,
    &householder::SOURCE,
    &householder::SOURCE_SUBGROUP,
    &norms::SOURCE,
    &trsm::SOURCE,
    &tsqr::SOURCE,
    &tsqr::SOURCE_LU,
];

/// A sub-matrix of a buffer: element (i, j) is at `offset + i + j * ld`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u32,
    pub ld: u32,
}

impl<'a> View<'a> {
    pub fn new(buffer: &'a wgpu::Buffer, offset: usize, ld: usize) -> Self {
        Self {
            buffer,
            offset: offset as u32,
            ld: ld as u32,
        }
    }
}
