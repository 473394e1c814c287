//! `wgsl/gemm.wgsl`: the tiled GEMM shared by larfb, trsm, ormqr and the batched paths.

use super::View;
use crate::context::{Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "gemm",
    source: include_str!("../../wgsl/gemm.wgsl"),
};

const BM: u32 = 64;
const BN: u32 = 64;
const LARGE: u32 = 128;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_offset: u32,
    b_offset: u32,
    c_offset: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    beta: f32,
    _pad: [u32; 2],
}

/// One (possibly strided-batched) GEMM: `C = alpha * op(A) * op(B) + beta * C` where op(A) is
/// m×k and op(B) is k×n. With `beta == 0`, C is only written.
///
/// A and B may share a buffer; C must be a different buffer from both (it is bound writable).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: View<'a>,
    pub trans_a: bool,
    pub b: View<'a>,
    pub trans_b: bool,
    pub beta: f32,
    pub c: View<'a>,
    /// Number of products, and the element strides between consecutive A, B and C.
    pub batch: usize,
    pub strides: [usize; 3],
}

impl<'a> Gemm<'a> {
    /// A single (unbatched) product.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: View<'a>,
        trans_a: bool,
        b: View<'a>,
        trans_b: bool,
        beta: f32,
        c: View<'a>,
    ) -> Self {
        Self {
            m,
            n,
            k,
            alpha,
            a,
            trans_a,
            b,
            trans_b,
            beta,
            c,
            batch: 1,
            strides: [0; 3],
        }
    }

    /// The same product over `batch` operands spaced by `strides` elements.
    pub fn batched(self, batch: usize, strides: [usize; 3]) -> Self {
        Self {
            batch,
            strides,
            ..self
        }
    }

    pub fn record(&self, rec: &mut Recorder, ctx: &Context) {
        if self.m == 0 || self.n == 0 || self.batch == 0 {
            return;
        }
        debug_assert!(self.c.buffer != self.a.buffer && self.c.buffer != self.b.buffer);
        let max_z = ctx.limits().max_compute_workgroups_per_dimension as usize;
        let constants = [
            ("TRANS_A", self.trans_a as u32 as f64),
            ("TRANS_B", self.trans_b as u32 as f64),
        ];
        // The 128×128 variant pays off once both output dimensions fill its tile.
        let large = self.m >= LARGE as usize && self.n >= LARGE as usize;
        let (entry, tile_m, tile_n) = if large {
            ("gemm_large", LARGE, LARGE)
        } else {
            ("gemm", BM, BN)
        };
        let mut done = 0;
        while done < self.batch {
            let chunk = (self.batch - done).min(max_z);
            let params = Params {
                m: self.m as u32,
                n: self.n as u32,
                k: self.k as u32,
                lda: self.a.ld,
                ldb: self.b.ld,
                ldc: self.c.ld,
                a_offset: self.a.offset + (done * self.strides[0]) as u32,
                b_offset: self.b.offset + (done * self.strides[1]) as u32,
                c_offset: self.c.offset + (done * self.strides[2]) as u32,
                stride_a: self.strides[0] as u32,
                stride_b: self.strides[1] as u32,
                stride_c: self.strides[2] as u32,
                // k == 0: the product is empty, C = beta * C.
                alpha: if self.k == 0 { 0.0 } else { self.alpha },
                beta: self.beta,
                _pad: [0; 2],
            };
            rec.dispatch(
                ctx,
                &SOURCE,
                entry,
                &constants,
                &params,
                &[
                    (self.a.buffer, Access::Read),
                    (self.b.buffer, Access::Read),
                    (self.c.buffer, Access::ReadWrite),
                ],
                [
                    (self.m as u32).div_ceil(tile_m),
                    (self.n as u32).div_ceil(tile_n),
                    chunk as u32,
                ],
            );
            done += chunk;
        }
    }
}
