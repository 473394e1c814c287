// gemm.wgsl's `gemm_large` on cooperative matrices (tensor cores): C = alpha·op(A)·op(B) +
// beta·C, column-major f32, strided-batched, the same parameters and 128×128 output tiles, with
// the products formed by 16×16×16 f16 matrix multiply-adds accumulating in f32.
//
// Only where the adapter offers those (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX with a 16×16×16
// f16·f16 + f32 configuration, SHADER_F16, subgroups of 32): Vulkan on NVIDIA GPUs. naga
// translates this file to SPIR-V and MSL only; tests/portability.rs says so.
//
// f32 accuracy from f16 operands (BENCHMARKS.md, v93): every row i of op(A) is scaled by a power
// of two 2^σ_i and every column j of op(B) by 2^τ_j (from the line's largest finite magnitude,
// so that it lands in [2^14, 2^15): `line_max`), and each scaled element y is split into hi + lo,
// hi = y rounded to 11 significant bits, lo = y − hi rounded to f16 (11 more): y to about 2^-23
// relative. Per 16 of K a tile takes lo·hi + hi·lo + hi·hi, each product of f16s exact in the f32
// accumulation; lo·lo (2^-22 relative) is left out. The scales do not change along K, so the
// accumulator holds 2^(σ_i+τ_j)·C_ij and the epilogue multiplies it back. Elements more than 2^17
// below their line's largest have a subnormal lo, an absolute error of about 2^-39 of that
// largest: nothing normwise. Each 16 of K's products are summed from zero and added to the
// accumulators in f32 (`mma3` says why); the result is then more accurate than gemm_large's
// (16-term blocks added in f32 instead of one chain of K FMAs).
//
// requires: subgroups of 32, cooperative matrices and f16 (translated to SPIR-V and MSL only, and
// up to 48 KiB of workgroup storage: tests/portability.rs).
//
// Entry points:
//   line_max   the scale exponents σ_i of op(A)'s rows and τ_j of op(B)'s columns, as f32, to
//              `c` (the scales buffer there) at z·(m + n) + i and z·(m + n) + m + j, plus
//              NONFINITE for a line holding an Inf or NaN (gemm_coop stages those as 0 and sets
//              the line's row or column of C to NaN: what f32 gives, but for Infs where f32
//              would keep ±Inf); run before gemm_coop on the same operands. A line stored
//              contiguously is a row of op(A) when TRANS_A, a column of op(B) unless TRANS_B.
//   gemm_coop  the product. 256 invocations in eight subgroups of 32, each subgroup a 64×32
//              block of the tile (4×2 cooperative 16×16 accumulators); K step 32, the next
//              step's elements prefetched into registers while the current one is multiplied.
//              About 43 KiB of workgroup storage.

enable f16;
enable wgpu_cooperative_matrix;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// Exponent values at or above this mark a line with an Inf or NaN (the exponent + NONFINITE).
const NONFINITE: i32 = 1024;

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
    // line_max: workgroups for op(A)'s rows (the rest are op(B)'s columns'); gemm.wgsl's
    // gram_off in the same place (one Rust struct for both, src/kernels/gemm.rs).
    a_groups: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// gemm_coop: the exponents line_max wrote (its `c`).
@group(0) @binding(4) var<storage, read> scales: array<f32>;

// A K step of 32 is staged as two halves of 16, HALF f16s apart: A's 16 columns of 128 rows
// (column-major), B's 16 rows of 128 columns (row-major, read by coopLoadT), each line padded
// by 8 (leading dimensions LA, LB). B stored by columns (16 + 8 apart) would not fit twice.
const LA: u32 = 136u;
const LB: u32 = 136u;
const HALF: u32 = 2176u; // 16 · LA = 16 · LB
var<workgroup> a_hi: array<f16, 4352>; // 2 · HALF
var<workgroup> a_lo: array<f16, 4352>;
var<workgroup> b_hi: array<f16, 4352>;
var<workgroup> b_lo: array<f16, 4352>;
// Each subgroup's 16×16 block on its way out (epilogue).
var<workgroup> out_tile: array<f32, 2048>;
// The tile's scale exponents: σ of its 128 rows, then τ of its 128 columns.
var<workgroup> tile_exp: array<i32, 256>;

// Bits of |x| where x is finite, else 0 (so an Inf or NaN never sets the scale).
fn finite_abs_bits(x: f32) -> u32 {
    let u = bitcast<u32>(x) & 0x7fffffffu;
    return select(0u, u, u < 0x7f800000u);
}

// Bits of |x|, any x; above 0x7f7fffff for an Inf or NaN.
fn abs_bits(x: f32) -> u32 {
    return bitcast<u32>(x) & 0x7fffffffu;
}

// The exponent σ of the scale 2^σ for a line whose largest finite magnitude has bits `bits`:
// 2^σ·max in [2^14, 2^15), kept within ±126 so that 2^σ and 2^-σ are normal.
fn scale_exp(bits: u32) -> i32 {
    let e = i32(bits >> 23u) - 127;
    return clamp(14 - e, -126, 126);
}

// 2^e for e in [-126, 127] (clamped there).
fn pow2(e: i32) -> f32 {
    return bitcast<f32>(u32(clamp(e, -126, 127) + 127) << 23u);
}

// x (scaled) to 11 significant bits, rounded half away from zero on the bits; exact in f16 for
// magnitudes in f16's normal range (only finite values reach it: `put_a`, `put_b`).
fn hi_part(y: f32) -> f32 {
    return bitcast<f32>((bitcast<u32>(y) + 0x1000u) & 0xffffe000u);
}

// The split of the scaled y into the two staged halves at index i. (A and B have a function
// each, as below for loads, fetches, scales and staging: one set with an of_b flag, folded at
// each call in principle, made the kernel 45% slower on an H200 — matmul 8192² 18.6 → 27.0 ms;
// BENCHMARKS.md, "Noticed (session 18)".) An Inf or NaN is staged as 0:
// its row or column of C is set to NaN at the end (see `line_max`), and no other entry may see
// it (drivers need not keep NaNs through f16 conversions and matrix products).
fn put_a(i: u32, y: f32) {
    let x = select(0.0, y, is_finite(y));
    let h = hi_part(x);
    a_hi[i] = f16(h);
    a_lo[i] = f16(x - h);
}

fn put_b(i: u32, y: f32) {
    let x = select(0.0, y, is_finite(y));
    let h = hi_part(x);
    b_hi[i] = f16(h);
    b_lo[i] = f16(x - h);
}

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) < 0x7f800000u;
}

// op(A)[i, kk] (0 outside).
fn load_a(a_base: u32, i: u32, kk: u32) -> f32 {
    if i >= p.m || kk >= p.k {
        return 0.0;
    }
    if TRANS_A {
        return a[a_base + kk + i * p.lda];
    }
    return a[a_base + i + kk * p.lda];
}

// op(B)[kk, j] (0 outside).
fn load_b(b_base: u32, kk: u32, j: u32) -> f32 {
    if kk >= p.k || j >= p.n {
        return 0.0;
    }
    if TRANS_B {
        return b[b_base + j + kk * p.ldb];
    }
    return b[b_base + kk + j * p.ldb];
}

// Element e (0..2048) of a half step's A tile (16 of K): (row, kk) along the operand's
// contiguous direction.
fn a_row(e: u32) -> u32 {
    return select(e % 128u, e / 16u, TRANS_A);
}

fn a_kk(e: u32) -> u32 {
    return select(e / 128u, e % 16u, TRANS_A);
}

fn b_kk(e: u32) -> u32 {
    return select(e % 16u, e / 128u, TRANS_B);
}

fn b_col(e: u32) -> u32 {
    return select(e / 16u, e % 128u, TRANS_B);
}

// The eight elements an invocation stages per half step, for A or B.
struct Eight {
    x0: f32,
    x1: f32,
    x2: f32,
    x3: f32,
    x4: f32,
    x5: f32,
    x6: f32,
    x7: f32,
}

fn fetch_a(a_base: u32, row0: u32, k0: u32, t: u32) -> Eight {
    return Eight(
        load_a(a_base, row0 + a_row(t), k0 + a_kk(t)),
        load_a(a_base, row0 + a_row(t + 256u), k0 + a_kk(t + 256u)),
        load_a(a_base, row0 + a_row(t + 512u), k0 + a_kk(t + 512u)),
        load_a(a_base, row0 + a_row(t + 768u), k0 + a_kk(t + 768u)),
        load_a(a_base, row0 + a_row(t + 1024u), k0 + a_kk(t + 1024u)),
        load_a(a_base, row0 + a_row(t + 1280u), k0 + a_kk(t + 1280u)),
        load_a(a_base, row0 + a_row(t + 1536u), k0 + a_kk(t + 1536u)),
        load_a(a_base, row0 + a_row(t + 1792u), k0 + a_kk(t + 1792u)),
    );
}

fn fetch_b(b_base: u32, col0: u32, k0: u32, t: u32) -> Eight {
    return Eight(
        load_b(b_base, k0 + b_kk(t), col0 + b_col(t)),
        load_b(b_base, k0 + b_kk(t + 256u), col0 + b_col(t + 256u)),
        load_b(b_base, k0 + b_kk(t + 512u), col0 + b_col(t + 512u)),
        load_b(b_base, k0 + b_kk(t + 768u), col0 + b_col(t + 768u)),
        load_b(b_base, k0 + b_kk(t + 1024u), col0 + b_col(t + 1024u)),
        load_b(b_base, k0 + b_kk(t + 1280u), col0 + b_col(t + 1280u)),
        load_b(b_base, k0 + b_kk(t + 1536u), col0 + b_col(t + 1536u)),
        load_b(b_base, k0 + b_kk(t + 1792u), col0 + b_col(t + 1792u)),
    );
}

fn a_at(e: u32) -> u32 {
    return a_kk(e) * LA + a_row(e);
}

fn b_at(e: u32) -> u32 {
    return b_kk(e) * LB + b_col(e);
}

// Exponent of tile line l (rows 0..127, then columns) without the NONFINITE mark.
fn exp_of(l: u32) -> i32 {
    let e = tile_exp[l];
    return select(e, e - NONFINITE, e >= NONFINITE / 2);
}

// The scales 2^σ of the rows of this invocation's eight A elements (the same row eight times
// unless TRANS_A), and 2^τ of the columns of its B elements.
fn scales_a(t: u32) -> Eight {
    return Eight(
        pow2(exp_of(a_row(t))),
        pow2(exp_of(a_row(t + 256u))),
        pow2(exp_of(a_row(t + 512u))),
        pow2(exp_of(a_row(t + 768u))),
        pow2(exp_of(a_row(t + 1024u))),
        pow2(exp_of(a_row(t + 1280u))),
        pow2(exp_of(a_row(t + 1536u))),
        pow2(exp_of(a_row(t + 1792u))),
    );
}

fn scales_b(t: u32) -> Eight {
    return Eight(
        pow2(exp_of(128u + b_col(t))),
        pow2(exp_of(128u + b_col(t + 256u))),
        pow2(exp_of(128u + b_col(t + 512u))),
        pow2(exp_of(128u + b_col(t + 768u))),
        pow2(exp_of(128u + b_col(t + 1024u))),
        pow2(exp_of(128u + b_col(t + 1280u))),
        pow2(exp_of(128u + b_col(t + 1536u))),
        pow2(exp_of(128u + b_col(t + 1792u))),
    );
}

fn stage_a(v: Eight, s: Eight, t: u32, o: u32) {
    put_a(o + a_at(t), v.x0 * s.x0);
    put_a(o + a_at(t + 256u), v.x1 * s.x1);
    put_a(o + a_at(t + 512u), v.x2 * s.x2);
    put_a(o + a_at(t + 768u), v.x3 * s.x3);
    put_a(o + a_at(t + 1024u), v.x4 * s.x4);
    put_a(o + a_at(t + 1280u), v.x5 * s.x5);
    put_a(o + a_at(t + 1536u), v.x6 * s.x6);
    put_a(o + a_at(t + 1792u), v.x7 * s.x7);
}

fn stage_b(v: Eight, s: Eight, t: u32, o: u32) {
    put_b(o + b_at(t), v.x0 * s.x0);
    put_b(o + b_at(t + 256u), v.x1 * s.x1);
    put_b(o + b_at(t + 512u), v.x2 * s.x2);
    put_b(o + b_at(t + 768u), v.x3 * s.x3);
    put_b(o + b_at(t + 1024u), v.x4 * s.x4);
    put_b(o + b_at(t + 1280u), v.x5 * s.x5);
    put_b(o + b_at(t + 1536u), v.x6 * s.x6);
    put_b(o + b_at(t + 1792u), v.x7 * s.x7);
}

// acc + (lo·hi + hi·lo + hi·hi), the small terms first: the step's three products summed from
// zero in the multiply-adds, then added to acc by an f32 addition. Chained through acc instead,
// the multiply-adds' own accumulation lost accuracy with K (H200: ‖C − AB‖/‖C‖ 1.4e-5 for a
// 4096² product, 2.9e-5 at 8192², against 2.9e-7 and 4.1e-7 this way and 1.1e-6 and 1.6e-6 for
// gemm_large; BENCHMARKS.md, v93), 4–5% faster.
fn mma3(acc: coop_mat16x16<f32, C>, ah: coop_mat16x16<f16, A>, al: coop_mat16x16<f16, A>,
        bh: coop_mat16x16<f16, B>, bl: coop_mat16x16<f16, B>) -> coop_mat16x16<f32, C> {
    let z = coop_mat16x16<f32, C>();
    return acc + coopMultiplyAdd(ah, bh, coopMultiplyAdd(ah, bl, coopMultiplyAdd(al, bh, z)));
}

// (largest finite |x| bits, |x| bits) of one element, for the two maxima of a line.
fn bits2(x: f32) -> vec2<u32> {
    return vec2<u32>(finite_abs_bits(x), abs_bits(x));
}

fn read_op(at: u32, of_b: bool) -> f32 {
    if of_b {
        return b[at];
    }
    return a[at];
}

// The two maxima over positions start, start + step, … (< len) of a line whose position q is at
// at + q·stride: eight loads in flight (clamped to the last position, which changes no maximum).
fn line_part(at: u32, stride: u32, start: u32, step: u32, len: u32, of_b: bool) -> vec2<u32> {
    var mx = vec2<u32>(0u);
    for (var q = start; q < len; q += 8u * step) {
        let last = len - 1u;
        let x0 = read_op(at + q * stride, of_b);
        let x1 = read_op(at + min(q + step, last) * stride, of_b);
        let x2 = read_op(at + min(q + 2u * step, last) * stride, of_b);
        let x3 = read_op(at + min(q + 3u * step, last) * stride, of_b);
        let x4 = read_op(at + min(q + 4u * step, last) * stride, of_b);
        let x5 = read_op(at + min(q + 5u * step, last) * stride, of_b);
        let x6 = read_op(at + min(q + 6u * step, last) * stride, of_b);
        let x7 = read_op(at + min(q + 7u * step, last) * stride, of_b);
        mx = max(mx, max(max(max(bits2(x0), bits2(x1)), max(bits2(x2), bits2(x3))),
                         max(max(bits2(x4), bits2(x5)), max(bits2(x6), bits2(x7)))));
    }
    return mx;
}

// A line's exponent from its two maxima, NONFINITE added where it holds an Inf or NaN.
fn line_exp(mx: vec2<u32>) -> f32 {
    return f32(scale_exp(mx.x) + select(0, NONFINITE, mx.y >= 0x7f800000u));
}

// line_max's partial maxima, folded across the workgroup.
var<workgroup> part_max: array<vec2<u32>, 256>;

// Lines stored along (contiguous): a workgroup per line from k = LONG_LINE on, else a subgroup
// per line, eight per workgroup. Lines across (adjacent, `ld` apart along them): 32 per
// workgroup, each read by eight invocations (a subgroup per eighth of the positions, 32
// adjacent lines per load). Grid: see gemm_coop.rs.
const LONG_LINE: u32 = 1024u;

@compute @workgroup_size(256)
fn line_max(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let of_b = wid.x >= p.a_groups;
    let g = select(wid.x, wid.x - p.a_groups, of_b);
    // Lines: rows of op(A) or columns of op(B), each k long.
    let lines = select(p.m, p.n, of_b);
    let along = select(TRANS_A, !TRANS_B, of_b);
    let ld = select(p.lda, p.ldb, of_b);
    let base = select(p.a_offset + wid.z * p.stride_a, p.b_offset + wid.z * p.stride_b, of_b);
    let out = wid.z * (p.m + p.n) + select(0u, p.m, of_b);
    if along && p.k < LONG_LINE {
        let l = g * 8u + t / 32u;
        let mx = subgroupMax(line_part(base + min(l, lines - 1u) * ld, 1u, t % 32u, 32u, p.k,
                                       of_b));
        if t % 32u == 0u && l < lines {
            c[out + l] = line_exp(mx);
        }
        return;
    }
    var l = g;
    var mx = vec2<u32>(0u);
    if along {
        mx = line_part(base + g * ld, 1u, t, 256u, p.k, of_b);
    } else {
        l = g * 32u + t % 32u;
        mx = line_part(base + min(l, lines - 1u), ld, t / 32u, 8u, p.k, of_b);
    }
    part_max[t] = mx;
    workgroupBarrier();
    if along && t == 0u {
        var m = vec2<u32>(0u);
        for (var i = 0u; i < 256u; i++) {
            m = max(m, part_max[i]);
        }
        c[out + l] = line_exp(m);
    }
    if !along && t < 32u && l < lines {
        var m = vec2<u32>(0u);
        for (var i = 0u; i < 8u; i++) {
            m = max(m, part_max[t + 32u * i]);
        }
        c[out + l] = line_exp(m);
    }
}

@compute @workgroup_size(256)
fn gemm_coop(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.x * 128u;
    let col0 = wid.y * 128u;
    let a_base = p.a_offset + wid.z * p.stride_a;
    let b_base = p.b_offset + wid.z * p.stride_b;
    let c_base = p.c_offset + wid.z * p.stride_c;
    // Subgroup w (invocations 32w … 32w + 31) computes rows wr … wr + 63, columns wc … wc + 31.
    let w = t / 32u;
    let wr = (w % 2u) * 64u;
    let wc = (w / 2u) * 32u;

    // The first K step's elements, in flight while the exponents are read.
    var va = fetch_a(a_base, row0, 0u, t);
    var vb = fetch_b(b_base, col0, 0u, t);
    // Exponents of the tile's rows (invocations 0..127) and columns (128..255); lines past the
    // matrix are never stored.
    let sbase = wid.z * (p.m + p.n);
    if t < 128u {
        tile_exp[t] = i32(scales[sbase + min(row0 + t, p.m - 1u)]);
    } else {
        tile_exp[t] = i32(scales[sbase + p.m + min(col0 + t - 128u, p.n - 1u)]);
    }
    workgroupBarrier();
    let sa = scales_a(t);
    let sb = scales_b(t);

    var c00 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c21 = coop_mat16x16<f32, C>();
    var c31 = coop_mat16x16<f32, C>();
    // K steps of 32, two barriers each (steps of 16 were 2–18% slower), the halves written out
    // (a loop over them made the QR 8192² 2% slower and Aᵀ·B products up to 4×: BENCHMARKS.md,
    // v96). The second half's first elements are fetched here, the first's above.
    var va1 = fetch_a(a_base, row0, 16u, t);
    var vb1 = fetch_b(b_base, col0, 16u, t);
    for (var k0 = 0u; k0 < p.k; k0 += 32u) {
        stage_a(va, sa, t, 0u);
        stage_b(vb, sb, t, 0u);
        stage_a(va1, sa, t, HALF);
        stage_b(vb1, sb, t, HALF);
        workgroupBarrier();
        let k1 = k0 + 32u;
        if k1 < p.k {
            va = fetch_a(a_base, row0, k1, t);
            vb = fetch_b(b_base, col0, k1, t);
            va1 = fetch_a(a_base, row0, k1 + 16u, t);
            vb1 = fetch_b(b_base, col0, k1 + 16u, t);
        }
        {
            let b0h = coopLoadT<coop_mat16x16<f16, B>>(&b_hi[wc], LB);
            let b0l = coopLoadT<coop_mat16x16<f16, B>>(&b_lo[wc], LB);
            let b1h = coopLoadT<coop_mat16x16<f16, B>>(&b_hi[wc + 16u], LB);
            let b1l = coopLoadT<coop_mat16x16<f16, B>>(&b_lo[wc + 16u], LB);
            let a0h = coopLoad<coop_mat16x16<f16, A>>(&a_hi[wr], LA);
            let a0l = coopLoad<coop_mat16x16<f16, A>>(&a_lo[wr], LA);
            c00 = mma3(c00, a0h, a0l, b0h, b0l);
            c01 = mma3(c01, a0h, a0l, b1h, b1l);
            let a1h = coopLoad<coop_mat16x16<f16, A>>(&a_hi[wr + 16u], LA);
            let a1l = coopLoad<coop_mat16x16<f16, A>>(&a_lo[wr + 16u], LA);
            c10 = mma3(c10, a1h, a1l, b0h, b0l);
            c11 = mma3(c11, a1h, a1l, b1h, b1l);
            let a2h = coopLoad<coop_mat16x16<f16, A>>(&a_hi[wr + 32u], LA);
            let a2l = coopLoad<coop_mat16x16<f16, A>>(&a_lo[wr + 32u], LA);
            c20 = mma3(c20, a2h, a2l, b0h, b0l);
            c21 = mma3(c21, a2h, a2l, b1h, b1l);
            let a3h = coopLoad<coop_mat16x16<f16, A>>(&a_hi[wr + 48u], LA);
            let a3l = coopLoad<coop_mat16x16<f16, A>>(&a_lo[wr + 48u], LA);
            c30 = mma3(c30, a3h, a3l, b0h, b0l);
            c31 = mma3(c31, a3h, a3l, b1h, b1l);
        }
        {
            let b0h = coopLoadT<coop_mat16x16<f16, B>>(&b_hi[HALF + wc], LB);
            let b0l = coopLoadT<coop_mat16x16<f16, B>>(&b_lo[HALF + wc], LB);
            let b1h = coopLoadT<coop_mat16x16<f16, B>>(&b_hi[HALF + wc + 16u], LB);
            let b1l = coopLoadT<coop_mat16x16<f16, B>>(&b_lo[HALF + wc + 16u], LB);
            let a0h = coopLoad<coop_mat16x16<f16, A>>(&a_hi[HALF + wr], LA);
            let a0l = coopLoad<coop_mat16x16<f16, A>>(&a_lo[HALF + wr], LA);
            c00 = mma3(c00, a0h, a0l, b0h, b0l);
            c01 = mma3(c01, a0h, a0l, b1h, b1l);
            let a1h = coopLoad<coop_mat16x16<f16, A>>(&a_hi[HALF + wr + 16u], LA);
            let a1l = coopLoad<coop_mat16x16<f16, A>>(&a_lo[HALF + wr + 16u], LA);
            c10 = mma3(c10, a1h, a1l, b0h, b0l);
            c11 = mma3(c11, a1h, a1l, b1h, b1l);
            let a2h = coopLoad<coop_mat16x16<f16, A>>(&a_hi[HALF + wr + 32u], LA);
            let a2l = coopLoad<coop_mat16x16<f16, A>>(&a_lo[HALF + wr + 32u], LA);
            c20 = mma3(c20, a2h, a2l, b0h, b0l);
            c21 = mma3(c21, a2h, a2l, b1h, b1l);
            let a3h = coopLoad<coop_mat16x16<f16, A>>(&a_hi[HALF + wr + 48u], LA);
            let a3l = coopLoad<coop_mat16x16<f16, A>>(&a_lo[HALF + wr + 48u], LA);
            c30 = mma3(c30, a3h, a3l, b0h, b0l);
            c31 = mma3(c31, a3h, a3l, b1h, b1l);
        }
        workgroupBarrier();
    }
    let lane = t % 32u;
    let ob = w * 256u;
    let i0 = row0 + wr + lane % 16u;
    let j0 = col0 + wc + lane / 16u;
    let o00 = olds(c_base, i0, j0);
    let o10 = olds(c_base, i0 + 16u, j0);
    let o20 = olds(c_base, i0 + 32u, j0);
    let o30 = olds(c_base, i0 + 48u, j0);
    let o01 = olds(c_base, i0, j0 + 16u);
    let o11 = olds(c_base, i0 + 16u, j0 + 16u);
    let o21 = olds(c_base, i0 + 32u, j0 + 16u);
    let o31 = olds(c_base, i0 + 48u, j0 + 16u);
    finish(c00, o00, ob, lane, c_base, row0, col0, wr, wc);
    finish(c10, o10, ob, lane, c_base, row0, col0, wr + 16u, wc);
    finish(c20, o20, ob, lane, c_base, row0, col0, wr + 32u, wc);
    finish(c30, o30, ob, lane, c_base, row0, col0, wr + 48u, wc);
    finish(c01, o01, ob, lane, c_base, row0, col0, wr, wc + 16u);
    finish(c11, o11, ob, lane, c_base, row0, col0, wr + 16u, wc + 16u);
    finish(c21, o21, ob, lane, c_base, row0, col0, wr + 32u, wc + 16u);
    finish(c31, o31, ob, lane, c_base, row0, col0, wr + 48u, wc + 16u);
}

// The old C a lane's `finish` of one block takes: row i, columns j, j + 2, …, j + 14.
fn olds(c_base: u32, i: u32, j: u32) -> Eight {
    return Eight(old_c(c_base, i, j), old_c(c_base, i, j + 2u), old_c(c_base, i, j + 4u),
                 old_c(c_base, i, j + 6u), old_c(c_base, i, j + 8u), old_c(c_base, i, j + 10u),
                 old_c(c_base, i, j + 12u), old_c(c_base, i, j + 14u));
}

// C = alpha·2^-(σ_i+τ_j)·acc + beta·C for the 16×16 block at tile rows r, columns j of the
// tile at (row0, col0), through the subgroup's part of `out_tile` (from `ob`): lane l takes
// elements l + 32q, q = 0..7 (row r + l % 16, columns j + l / 16 + 2q), whose old values are
// `o`. gemm_coop reads the old values of all eight blocks before the first store: C is
// read_write and, for all the compiler knows, a store may alias a later load (gemm.wgsl's v41
// note), so loads issued block by block waited out a memory latency each (BENCHMARKS.md, v95).
fn finish(acc: coop_mat16x16<f32, C>, o: Eight, ob: u32, lane: u32, c_base: u32, row0: u32,
          col0: u32, r: u32, j: u32) {
    coopStore(acc, &out_tile[ob], 16u);
    workgroupBarrier();
    let ti = r + lane % 16u;
    let tj = j + lane / 16u;
    let i = row0 + ti;
    // The row's exponent, NONFINITE mark included (put_c tests it).
    let sigma = tile_exp[ti];
    put_c(c_base, i, col0, tj, out_tile[ob + lane], o.x0, sigma);
    put_c(c_base, i, col0, tj + 2u, out_tile[ob + lane + 32u], o.x1, sigma);
    put_c(c_base, i, col0, tj + 4u, out_tile[ob + lane + 64u], o.x2, sigma);
    put_c(c_base, i, col0, tj + 6u, out_tile[ob + lane + 96u], o.x3, sigma);
    put_c(c_base, i, col0, tj + 8u, out_tile[ob + lane + 128u], o.x4, sigma);
    put_c(c_base, i, col0, tj + 10u, out_tile[ob + lane + 160u], o.x5, sigma);
    put_c(c_base, i, col0, tj + 12u, out_tile[ob + lane + 192u], o.x6, sigma);
    put_c(c_base, i, col0, tj + 14u, out_tile[ob + lane + 224u], o.x7, sigma);
    workgroupBarrier();
}

// C[i, j] before the update (0 outside C, and when beta == 0: C is then not read).
fn old_c(c_base: u32, i: u32, j: u32) -> f32 {
    if p.beta == 0.0 || i >= p.m || j >= p.n {
        return 0.0;
    }
    return c[c_base + i + j * p.ldc];
}

// C[i, col0 + tj] = alpha·2^-(σ+τ)·v + beta·old, σ the row's exponent and τ that of tile column
// tj. 2^-(σ+τ) may leave f32's range where the result does not: two halves, each exact, the
// first landing between v and the result.
fn put_c(c_base: u32, i: u32, col0: u32, tj: u32, v: f32, old: f32, sigma: i32) {
    let j = col0 + tj;
    if i < p.m && j < p.n {
        let tau = tile_exp[128u + tj];
        let e = sigma + tau;
        let h = e / 2;
        var x = (v * pow2(-h)) * pow2(h - e);
        if sigma >= NONFINITE / 2 || tau >= NONFINITE / 2 {
            x = bitcast<f32>(0x7fc00000u);
        }
        c[c_base + i + j * p.ldc] = fma(p.beta, old, p.alpha * x);
    }
}
