//! `wgsl/gemm.wgsl`: the tiled GEMM shared by larfb, trsm, ormqr and the batched paths.

use super::View;
use crate::context::{grid, Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "gemm",
    source: include_str!("../../wgsl/gemm.wgsl"),
};

const BM: u32 = 64;
const BN: u32 = 64;
const LARGE: u32 = 128;
/// Whole 128×128 tiles from which the large variant is used: about one per SM of a large GPU
/// (an H100 has 132). H100, trsm 4096²×4096, whose updates are 2^l GEMMs of
/// (2048/2^l)×4096×(2048/2^l): kernel time 5.28 ms with the large variant for every M ≥ 128
/// (32 workgroups at M = 128), 4.99 ms from 128 tiles, 5.17 ms from 256; the 4096² QR 75.4,
/// 71.8 and 72.0 ms.
const LARGE_MIN_TILES: usize = 128;
/// Split-K aims for about this many workgroups.
const SPLIT_TARGET_TILES: usize = 512;
/// Shallowest K slice worth its partial product's write and read: four K steps of the 64×64
/// kernel. The QR's VᵀC products (32 × ≤ n × m) are the typical split; H100 GPU time with
/// slices of at least 512/256/128/64: QR 4096² 64.2/58.2/55.0/54.0 ms, 1024² 10.2/9.2/8.5/8.1
/// ms, 65536×256 unchanged (8.9-9.0 ms, its splits capped by SPLIT_TARGET_TILES); a target of
/// 1024 or 2048 workgroups instead of 512 gained nothing. (Those VᵀC products, fused with T,
/// now split by [`LEFT_SPLIT_MIN_K`].)
const SPLIT_MIN_K: usize = 64;
/// Slices of a product split for the large kernel (see [`Gemm::splits`]) are halved again
/// while they stay at least this deep and the workgroups at most
/// [`SPLIT_MAX_LARGE_WORKGROUPS`]: about two per SM is enough to fill an H100 but not to
/// keep it busy on a few very deep slices. The 8192² QR's trailing and sorgqr VᵀC products
/// (256 × n × K) of its first 17 panels went from 2 slices of 2176–4096 to 8 of 512–1024
/// (4096²: the first panel's, 4 of 1024 to 8 of 512). H100 span, QR
/// with Q 8192² 90.8–90.9 / 86.7 ms, geqrf 8192² 60.6 / 58.4; 1024², 2048², 4096², 8192×256,
/// 65536×256, lstsq 4096×256 and trsm 4096² unchanged (±0.05 ms). Slices of 256 / 768 /
/// 1024 / 2048: 86.6 / 87.2 / 87.9 / 90.6 ms; at most 512 workgroups: 88.0 (BENCHMARKS.md,
/// v84).
const DEEP_SLICE_K: usize = 512;
/// At most this many workgroups for the split of [`DEEP_SLICE_K`] (v84: 2048 gave the same
/// times, with twice the scratch).
const SPLIT_MAX_LARGE_WORKGROUPS: usize = 1024;
/// K from which `gemm_large` runs with its K loop written out (`UNROLL`): faster for deep
/// products, slower for the QR's K = 128/256 updates. H100, span, loop / written out from K ≥
/// 512 / 1024 / 2048: C += A·Bᵀ 4096² 3.739 / 3.563 / 3.562 / 3.569 ms, 8192² 29.5 / 27.9 /
/// 27.9 / 27.9; A·B 4096² 3.95 / 3.75; trsm 4096²×4096 3.90 / 3.80 / 3.87 / 3.87; QR 4096²
/// 29.2 / 29.4 / 29.2 / 29.1, 8192² 104.0-104.2 / 104.7 / 104.4-104.5 / 104.4 (BENCHMARKS.md,
/// v57). Session 16 (v86): from K ≥ 512 for every product but Aᵀ·B, which keeps 2048: trsm
/// 4096²×4096 in place 3.850–3.876 → 3.777–3.779 ms, the QR (its K = 256 updates below
/// either), the 4096² GEMMs and lstsq 4096×256 unchanged.
const DEEP_MIN_K: usize = 512;
/// [`DEEP_MIN_K`] for Aᵀ·B, the QR's split VᵀC slices (512–1024 deep at 8192²): written out
/// from K ≥ 512 (or 1024, 256, 64) they made the QR slower, 8192² 86.4 → 88.0 ms and 4096² 22.8
/// → 23.0–23.1 (v85), although a probe of the kernel alone had timed the written-out TN
/// product 10% faster at K = 512.
const DEEP_MIN_K_TN: usize = 2048;
/// The largest power of two ≤ x (x ≥ 1).
fn prev_power_of_two(x: usize) -> usize {
    1 << (usize::BITS - 1 - x.leading_zeros())
}

/// Largest m of [`Gemm::record_split_left`] (its T in workgroup memory, a column per m
/// invocations).
pub(crate) const LEFT_MAX: usize = 32;
/// Shallowest K slice of [`Gemm::record_split_left`]'s products (larfb's T·VᵀC at inner-panel
/// widths, 32 × ≤ 224 × rows): two K steps, and split from K = 64 on, since there the split's
/// reduction also applies T, a launch that the unsplit product needs anyway. H100 span, slices
/// of at least 64 (from K = 512, as [`Gemm::splits`]) / 32 (from K = 64): QR 4096² 23.2–23.3 /
/// 22.6–22.8 ms, 2048² 8.58–8.61 / 8.19–8.22, 1024² 3.80–3.82 / 3.55–3.58; 16 was no better
/// (BENCHMARKS.md, v83).
const LEFT_SPLIT_MIN_K: usize = 32;
/// Shallowest K split at all: below it the product's own launch is short, and a split adds a
/// reduction launch (trsm's 128×4096×128 updates were 0.2 ms slower split in two).
const SPLIT_MIN_TOTAL_K: usize = 512;

/// The parameter block of gemm.wgsl (and of gemm_coop.wgsl, whose `a_groups` sits in
/// `gram_off`'s place).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k: u32,
    pub(crate) lda: u32,
    pub(crate) ldb: u32,
    pub(crate) ldc: u32,
    pub(crate) a_offset: u32,
    pub(crate) b_offset: u32,
    pub(crate) c_offset: u32,
    pub(crate) stride_a: u32,
    pub(crate) stride_b: u32,
    pub(crate) stride_c: u32,
    pub(crate) alpha: f32,
    pub(crate) beta: f32,
    pub(crate) gram_off: u32,
    pub(crate) gram_stride: u32,
    pub(crate) gram_skip: u32,
    pub(crate) gram_b: u32,
    pub(crate) _pad: [u32; 2],
}

/// Where the 64×64 kernel also writes the partial Grams of C's first `b` columns (the WGSL's
/// `GRAM`): one 32×32 block per 64-row tile of C, rows before `skip` left out, the tiles'
/// blocks consecutive from `offset` and `stride` elements apart between batch members.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GramOut<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub stride: usize,
    pub skip: usize,
    pub b: usize,
}

/// Rows per partial Gram of [`GramOut`] (the 64×64 kernel's tile height).
pub(crate) const GRAM_TILE_ROWS: usize = BM as usize;

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
        let splits = self.splits(ctx);
        if splits > 1 {
            self.record_split(rec, ctx, splits);
            return;
        }
        self.record_direct(rec, ctx);
    }

    /// How many slices of K to compute in parallel: more than one only for a single product
    /// whose output tiles cannot fill the GPU (a skinny VᵀC with K in the tens of thousands
    /// runs on a handful of workgroups otherwise), with every slice at least [`SPLIT_MIN_K`]
    /// deep and the partial products within one storage binding.
    fn splits(&self, ctx: &Context) -> usize {
        self.splits_by(ctx, SPLIT_MIN_K, SPLIT_MIN_TOTAL_K)
    }

    /// How many slices of K [`Self::record_split_left`] computes in parallel: as
    /// [`Self::splits`], with slices down to [`LEFT_SPLIT_MIN_K`] deep and from K =
    /// 2·[`LEFT_SPLIT_MIN_K`] on.
    fn splits_left(&self, ctx: &Context) -> usize {
        self.splits_by(ctx, LEFT_SPLIT_MIN_K, 2 * LEFT_SPLIT_MIN_K)
    }

    /// [`Self::splits`] with slices at least `min_k` deep, and no split below K = `min_total`.
    fn splits_by(&self, ctx: &Context, min_k: usize, min_total: usize) -> usize {
        if self.batch != 1 || self.k < min_total {
            return 1;
        }
        let tiles = (self.m.div_ceil(BM as usize)) * (self.n.div_ceil(BN as usize));
        if tiles >= SPLIT_TARGET_TILES {
            return 1;
        }
        let by_binding = (ctx.max_elements() as usize / (self.m * self.n)).max(1);
        // A product with whole 128×128 tiles is split so that its slices run on the large
        // kernel, about two workgroups per SM of a large GPU: the largest power of two of slices
        // with tiles × slices ≤ 2·LARGE_MIN_TILES (which keeps tiles × slices ≥
        // LARGE_MIN_TILES, where the large kernel is chosen; powers of two so that slices of
        // power-of-two-ish K come out equal). The QR's VᵀC products (128 × n × m) ran on the
        // 64×64 kernel at 15–22 TF/s in 4–6 slices before. H100 GPU time, QR 4096² / 8192² /
        // 65536×256: 37.1 / 130.8 / 4.74 ms before, 35.3 / 118.7 / 4.73 with the smallest power
        // of two reaching LARGE_MIN_TILES, 36.1 / 118.5 / 4.64 with the smallest reaching twice
        // that, 35.5 / 119.4 / 4.65 with this rule (BENCHMARKS.md v36, v37). Slices then
        // halve again while they stay DEEP_SLICE_K deep (v84).
        let large_tiles = (self.m / LARGE as usize) * (self.n / LARGE as usize);
        if large_tiles > 0 && large_tiles <= LARGE_MIN_TILES {
            let mut s = prev_power_of_two(2 * LARGE_MIN_TILES / large_tiles);
            let max_z = ctx.limits().max_compute_workgroups_per_dimension as usize;
            while self.k / (2 * s) >= DEEP_SLICE_K
                && 2 * s * large_tiles <= SPLIT_MAX_LARGE_WORKGROUPS
                && 2 * s <= by_binding.min(max_z)
            {
                s *= 2;
            }
            if s > 1 && self.k / s >= min_k && s <= by_binding && s <= max_z {
                return s;
            }
        }
        SPLIT_TARGET_TILES
            .div_ceil(tiles)
            .min(self.k / min_k)
            .min(by_binding)
            .min(ctx.limits().max_compute_workgroups_per_dimension as usize)
    }

    /// Split-K: the slices' products into scratch (slice s at `s * m * n`, ld m), then one pass
    /// C = alpha Σ_s P_s + beta C.
    fn record_split(&self, rec: &mut Recorder, ctx: &Context, splits: usize) {
        let (scratch, slices) = self.record_partials(rec, ctx, splits);
        let params = self.reduce_params(slices, 0, 0);
        rec.dispatch(
            ctx,
            &SOURCE,
            "reduce_splits",
            &[],
            &params,
            &[
                (&scratch, Access::Read),
                (&scratch, Access::Read),
                (self.c.buffer, Access::ReadWrite),
            ],
            grid(ctx, ((self.m * self.n) as u32).div_ceil(256)),
        );
    }

    /// `C = alpha · op(T) · op(A) op(B)` for a small m×m `t` when this product is split along
    /// K: the split's reduction applies T as well, one launch instead of a reduction and a GEMM
    /// (larfb's `T·(VᵀC)` at its panel widths). Returns false, recording nothing, when the
    /// product is not split or the fusion does not apply (m > [`LEFT_MAX`], beta ≠ 0, a
    /// batch); the caller then forms the two products itself.
    pub fn record_split_left(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        t: View,
        trans_t: bool,
    ) -> bool {
        if self.m == 0 || self.n == 0 || self.m > LEFT_MAX || self.beta != 0.0 || self.batch != 1 {
            return false;
        }
        let splits = self.splits_left(ctx);
        if splits < 2 {
            return false;
        }
        let (scratch, slices) = self.record_partials(rec, ctx, splits);
        let params = self.reduce_params(slices, t.offset, t.ld);
        let columns = 256 / self.m;
        rec.dispatch(
            ctx,
            &SOURCE,
            "reduce_splits_left",
            &[("TRANS_B", trans_t as u32 as f64)],
            &params,
            &[
                (&scratch, Access::Read),
                (t.buffer, Access::Read),
                (self.c.buffer, Access::ReadWrite),
            ],
            grid(ctx, self.n.div_ceil(columns) as u32),
        );
        true
    }

    /// The slices' products of a split along K into scratch (slice s at `s * m * n`, ld m);
    /// returns the scratch and the number of slices.
    fn record_partials(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        splits: usize,
    ) -> (wgpu::Buffer, usize) {
        let (m, n, k) = (self.m, self.n, self.k);
        // Slices a multiple of the K step deep, the last one holding the remainder.
        let chunk = k.div_ceil(splits).next_multiple_of(16);
        let full = k / chunk;
        let rem = k % chunk;
        let slices = full + usize::from(rem > 0);
        let scratch = ctx.scratch_buffer("metalcore split-k", (slices * m * n) as u64);
        // Element steps of one slice along K in A and B.
        let step_a = if self.trans_a {
            chunk
        } else {
            chunk * self.a.ld as usize
        };
        let step_b = if self.trans_b {
            chunk * self.b.ld as usize
        } else {
            chunk
        };
        let part = |kk: usize, s: usize| Gemm {
            m,
            n,
            k: kk,
            alpha: 1.0,
            a: View::new(
                self.a.buffer,
                self.a.offset as usize + s * step_a,
                self.a.ld as usize,
            ),
            trans_a: self.trans_a,
            b: View::new(
                self.b.buffer,
                self.b.offset as usize + s * step_b,
                self.b.ld as usize,
            ),
            trans_b: self.trans_b,
            beta: 0.0,
            c: View::new(&scratch, s * m * n, m),
            batch: 1,
            strides: [0; 3],
        };
        part(chunk, 0)
            .batched(full, [step_a, step_b, m * n])
            .record_direct(rec, ctx);
        if rem > 0 {
            part(rem, full).record_direct(rec, ctx);
        }
        (scratch, slices)
    }

    /// The product's parameters for the batch members from `done` on (no Gram).
    pub(crate) fn params_from(&self, done: usize) -> Params {
        Params {
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
            ..bytemuck::Zeroable::zeroed()
        }
    }

    /// Parameters of a reduction over `slices` partial products into C (`b_offset` and `ldb`:
    /// the T of [`Self::record_split_left`]).
    fn reduce_params(&self, slices: usize, b_offset: u32, ldb: u32) -> Params {
        Params {
            m: self.m as u32,
            n: self.n as u32,
            k: slices as u32,
            ldb,
            ldc: self.c.ld,
            b_offset,
            c_offset: self.c.offset,
            alpha: self.alpha,
            beta: self.beta,
            ..bytemuck::Zeroable::zeroed()
        }
    }

    /// Records the product as [`Self::record`] would, with the partial Grams of `gram`, where
    /// it runs on the 64×64 kernel in one piece (not split along K, not on the 128×128 kernel);
    /// returns false, recording nothing, otherwise.
    pub fn record_with_gram(&self, rec: &mut Recorder, ctx: &Context, gram: &GramOut) -> bool {
        let max_z = ctx.limits().max_compute_workgroups_per_dimension as usize;
        if self.m == 0
            || self.n < gram.b
            || gram.b > 32
            || self.batch == 0
            || self.batch > max_z
            || self.splits(ctx) > 1
            || self.large()
        {
            return false;
        }
        self.record_direct_with(rec, ctx, Some(gram));
        true
    }

    /// Whether [`Self::record_direct`] takes the 128×128 kernel: once its tiles fill a large
    /// GPU, counting every product of the batch (a split-K's slices are one); below that the
    /// 64×64 one runs 4× the workgroups. (Counting the slices: H100 QR 8192² 183.1 -> 178.6 ms
    /// of GPU time.)
    fn large(&self) -> bool {
        let large_tiles = (self.m / LARGE as usize) * (self.n / LARGE as usize);
        large_tiles * self.batch >= LARGE_MIN_TILES
    }

    /// K from which the large kernel runs its K loop written out.
    fn deep_min_k(&self) -> usize {
        if self.trans_a && !self.trans_b {
            DEEP_MIN_K_TN
        } else {
            DEEP_MIN_K
        }
    }

    fn record_direct(&self, rec: &mut Recorder, ctx: &Context) {
        self.record_direct_with(rec, ctx, None);
    }

    fn record_direct_with(&self, rec: &mut Recorder, ctx: &Context, gram: Option<&GramOut>) {
        let max_z = ctx.limits().max_compute_workgroups_per_dimension as usize;
        let large = self.large();
        debug_assert!(gram.is_none() || !large);
        if large && super::gemm_coop::fits(self, ctx) {
            super::gemm_coop::record(self, rec, ctx);
            return;
        }
        let mut constants = vec![
            ("TRANS_A", self.trans_a as u32 as f64),
            ("TRANS_B", self.trans_b as u32 as f64),
            (
                "UNROLL",
                (large && self.k >= self.deep_min_k()) as u32 as f64,
            ),
        ];
        if gram.is_some() {
            constants.push(("GRAM", 1.0));
        }
        let (entry, tile_m, tile_n) = if large {
            ("gemm_large", LARGE, LARGE)
        } else {
            ("gemm", BM, BN)
        };
        let mut done = 0;
        while done < self.batch {
            let chunk = (self.batch - done).min(max_z);
            let params = Params {
                gram_off: gram.map_or(0, |g| g.offset + done * g.stride) as u32,
                gram_stride: gram.map_or(0, |g| g.stride) as u32,
                gram_skip: gram.map_or(0, |g| g.skip) as u32,
                gram_b: gram.map_or(0, |g| g.b) as u32,
                ..self.params_from(done)
            };
            let operands = [
                (self.a.buffer, Access::Read),
                (self.b.buffer, Access::Read),
                (self.c.buffer, Access::ReadWrite),
                // The 64×64 kernel's binding of GRAM's output (C again without it).
                (gram.map_or(self.c.buffer, |g| g.buffer), Access::ReadWrite),
            ];
            rec.dispatch(
                ctx,
                &SOURCE,
                entry,
                &constants,
                &params,
                &operands[..if large { 3 } else { 4 }],
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
