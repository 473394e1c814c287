//! `wgsl/gemm_coop.wgsl`: the large GEMM on cooperative matrices (tensor cores), where the
//! context has them ([`Context::coop_gemm`]). Same products and 128×128 tiles as
//! `gemm_large`, so [`Gemm`]'s choices (split-K, which kernel) do not change.

use super::gemm::{Gemm, Params};
use crate::context::{Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "gemm_coop",
    source: include_str!("../../wgsl/gemm_coop.wgsl"),
};

/// Output tile (rows and columns) of `gemm_coop`.
const TILE: u32 = 128;
/// Workgroup storage `gemm_coop` declares (bytes): the hi and lo halves of A's 128×32 and B's
/// 32×128 tiles (padded), a 16×16 f32 block per subgroup, the tile's 256 scale exponents.
pub(crate) const STORAGE_BYTES: u32 = 4 * 4352 * 2 + 2048 * 4 + 256 * 4;

/// `line_max`'s LONG_LINE: from this K on, a line stored contiguously takes a workgroup.
const LONG_LINE: usize = 1024;

/// Workgroups of `line_max` for `lines` lines of length `k`, stored along (contiguous: a
/// workgroup each from [`LONG_LINE`] on, else a subgroup each, 8 per workgroup) or across
/// (32 per workgroup).
fn line_groups(lines: usize, k: usize, along: bool) -> u32 {
    let per = match (along, k >= LONG_LINE) {
        (true, true) => 1,
        (true, false) => 8,
        (false, _) => 32,
    };
    lines.div_ceil(per) as u32
}

/// Shallowest product (K) that `gemm_coop` takes: below it `line_max`'s launch and reads and
/// the tile's scaled staging cost more than the tensor cores save (the QR's K = 256 updates ran
/// at 31.9 TF/s against the f32 kernel's 31.0, its 65536×256 QR slower). H200 span, f32 kernel
/// / cooperative matrices from K = 0 / 512 / 1024 / 2048 (BENCHMARKS.md, v93, call 3, second
/// round): QR with Q 8192² 84.4 / 78.5 / 79.0 / 84.0 / 84.2 ms, 4096² 22.3 / 21.6 / 21.7 / 22.2 /
/// 22.2, 65536×256 3.90 / 4.12 / 3.92 / 3.90 / 3.90, 8192×256 1.378 / 1.425 / 1.385 / 1.382 /
/// 1.375; trsm 4096²×4096 in place 3.61 / 3.20 / 3.19 / 3.29 / 3.36; apply_qt 0.701 / 0.715 /
/// 0.685 / 0.699 / 0.700; matmul 8192² 29.3 / 18.6 (every threshold).
const COOP_MIN_K: usize = 512;

/// Whether `g` runs on `gemm_coop` where the context has it: K at least [`COOP_MIN_K`], and
/// `line_max`'s workgroups within one grid dimension.
pub(crate) fn fits(g: &Gemm, ctx: &Context) -> bool {
    let max_x = u64::from(ctx.limits().max_compute_workgroups_per_dimension);
    let groups =
        u64::from(line_groups(g.m, g.k, g.trans_a)) + u64::from(line_groups(g.n, g.k, !g.trans_b));
    ctx.coop_gemm() && g.k >= COOP_MIN_K && groups <= max_x
}

/// Records `g` (not split, no Gram) as `line_max` over its operands (the scale exponents of
/// op(A)'s rows and op(B)'s columns), then `gemm_coop`, per chunk of at most the device's
/// z-dimension of products.
pub(crate) fn record(g: &Gemm, rec: &mut Recorder, ctx: &Context) {
    let max_z = ctx.limits().max_compute_workgroups_per_dimension as usize;
    let constants = [
        ("TRANS_A", g.trans_a as u32 as f64),
        ("TRANS_B", g.trans_b as u32 as f64),
    ];
    let a_groups = line_groups(g.m, g.k, g.trans_a);
    let b_groups = line_groups(g.n, g.k, !g.trans_b);
    let mut done = 0;
    while done < g.batch {
        let chunk = (g.batch - done).min(max_z);
        // The exponents: one buffer for every product of a submission (wgpu orders each
        // line_max after the gemm_coop before it that reads the same buffer).
        let scales = ctx.scratch_buffer("metalcore gemm scales", ((g.m + g.n) * chunk) as u64);
        // line_max's a_groups in the gram_off slot (gemm_coop.wgsl's Params).
        let params = Params {
            gram_off: a_groups,
            ..g.params_from(done)
        };
        rec.dispatch(
            ctx,
            &SOURCE,
            "line_max",
            &constants,
            &params,
            &[
                (g.a.buffer, Access::Read),
                (g.b.buffer, Access::Read),
                (&scales, Access::ReadWrite),
            ],
            [a_groups + b_groups, 1, chunk as u32],
        );
        rec.dispatch(
            ctx,
            &SOURCE,
            "gemm_coop",
            &constants,
            &params,
            &[
                (g.a.buffer, Access::Read),
                (g.b.buffer, Access::Read),
                (g.c.buffer, Access::ReadWrite),
                (&scales, Access::Read),
            ],
            [
                (g.m as u32).div_ceil(TILE),
                (g.n as u32).div_ceil(TILE),
                chunk as u32,
            ],
        );
        done += chunk;
    }
}
