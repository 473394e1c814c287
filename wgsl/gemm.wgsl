// Tiled GEMM: C = alpha * op(A) * op(B) + beta * C, column-major, f32, strided-batched.
//
// op(A) is m×k, op(B) is k×n, C is m×n. Each operand is addressed by an element offset and a
// leading dimension, so blocked algorithms pass sub-matrices of larger buffers; workgroup z
// walks the batch with per-operand strides. TRANS_A / TRANS_B select op = transpose.
// When beta == 0, C is not read (it may hold garbage or NaN).
//
// Entry points, same parameters:
//   gemm        64×64 outputs per workgroup of 16×16 invocations, 4×4 register tile each,
//               K step 16, the next K tile prefetched into registers; 8.3 KiB of workgroup
//               storage. For products whose 128×128 tiles would not fill the GPU.
//   gemm_large  128×128 outputs per workgroup of 256 invocations, 8×8 register tile each
//               (two 4×4 quadrants, read from workgroup memory as vec4), K step 16, the next
//               K tile prefetched into registers while the current one is used; 16 KiB.
//               UNROLL writes each K tile's 16 steps out (the host sets it for deep K).
//   reduce_splits  sums split-K partial products into C (see Gemm::record_split).
//   reduce_splits_left  the same sum times a small op(T) on the left (Gemm::record_split_left).
// All fit WebGPU's default limits (16 KiB workgroup storage, 256 invocations).
//
// The register tiles are written out element by element, without loops or dynamic indices:
// a per-invocation array indexed by a loop counter may be placed in (slow) local memory by
// the driver's compiler, which cost 20× on an H100. Keep it that way when editing.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// gemm_large only: each K tile's 16 steps written out with constant kk, for deep products (the
// host's DEEP_MIN_K; the loop is faster where K is a few tiles, BENCHMARKS.md v57).
override UNROLL: bool = false;
// gemm only: the workgroups of the first 64 columns also write the partial Gram XᵀX of their
// tile's first gram_b columns (rows before gram_skip and past m left out) to `gram`, 32×32 at
// gram_off + wid.z·gram_stride + wid.x·1024: the blocked QR's inner-panel update hands the next
// panel's CholeskyQR2 (cholqr.wgsl) its first Gram, a launch fewer.
override GRAM: bool = false;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

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
    gram_off: u32,
    gram_stride: u32,
    gram_skip: u32,
    gram_b: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// gemm: GRAM's partial Grams (another binding of c when GRAM is off).
@group(0) @binding(4) var<storage, read_write> gram: array<f32>;

// The 64×64 kernel's K tiles: row kk holds 16 vec4s, vec4 q holding rows (of A's tile) or
// columns (of B's) q, q + 16, q + 32, q + 48: the four that invocation (q, ·) or (·, q) uses, so
// that a K step is two vec4 reads for 16 FMAs (it was eight scalar reads) while the register tile
// keeps its rows and columns 16 apart (C's loads and stores stay coalesced; four consecutive
// rows per invocation made the QR's short-K updates slower, BENCHMARKS.md v92). The tile of an
// operand stored down K (A when TRANS_A, B unless TRANS_B: 16 consecutive kk per row or column
// in one subgroup's stores) has its vec4s XOR-swizzled by kk % 8, as gemm_large's, so that those
// stores spread over the banks. 264 vec4s, not 256: GRAM puts 16 columns of 64 rows in each
// with a leading dimension of 66 floats.
var<workgroup> tile_a: array<vec4<f32>, 264>;
var<workgroup> tile_b: array<vec4<f32>, 264>;

// Vec4 q of row kk of a tile whose rows hold `row` vec4s, XOR-swizzled by kk % 8 when `on`
// (the swizzle keeps each aligned group of 8 vec4s in place). Both kernels' tiles use it.
fn swizzled(row: u32, kk: u32, q: u32, on: bool) -> u32 {
    return kk * row + select(q, q ^ (kk & 7u), on);
}

fn swz64(kk: u32, q: u32, on: bool) -> u32 {
    return swizzled(16u, kk, q, on);
}

// Element i (row of op(A), or column of op(B)) at K step kk of a tile.
fn store64_a(kk: u32, i: u32, v: f32) {
    tile_a[swz64(kk, i % 16u, TRANS_A)][i / 16u] = v;
}

fn store64_b(kk: u32, j: u32, v: f32) {
    tile_b[swz64(kk, j % 16u, !TRANS_B)][j / 16u] = v;
}

fn load_a(a_base: u32, i: u32, kk: u32) -> f32 {
    if i >= p.m || kk >= p.k {
        return 0.0;
    }
    if TRANS_A {
        return a[a_base + kk + i * p.lda];
    }
    return a[a_base + i + kk * p.lda];
}

fn load_b(b_base: u32, kk: u32, j: u32) -> f32 {
    if kk >= p.k || j >= p.n {
        return 0.0;
    }
    if TRANS_B {
        return b[b_base + j + kk * p.ldb];
    }
    return b[b_base + kk + j * p.ldb];
}

// Column j of the 4×4 register tile: rows lid.x + 16i (component i) of column lid.y + 16j.
struct Acc64 {
    c0: vec4<f32>,
    c1: vec4<f32>,
    c2: vec4<f32>,
    c3: vec4<f32>,
}

@compute @workgroup_size(16, 16, 1)
fn gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.x * BM;
    let col0 = wid.y * BN;
    let a_base = p.a_offset + wid.z * p.stride_a;
    let b_base = p.b_offset + wid.z * p.stride_b;
    let c_base = p.c_offset + wid.z * p.stride_c;
    var acc = Acc64();
    // Where this invocation's 4 elements of each tile go (along the operand's contiguous
    // direction: down K for a transposed operand). The next K tile is prefetched into registers
    // while the current one is multiplied, as in gemm_large: one memory latency per launch
    // instead of one per K step (most launches of this kernel have a short K).
    let ai = select(tid % BM, tid / BK, TRANS_A);
    let ak = select(tid / BM, tid % BK, TRANS_A);
    let ai_step = select(0u, 16u, TRANS_A);
    let ak_step = select(4u, 0u, TRANS_A);
    let bj = select(tid / BK, tid % BN, TRANS_B);
    let bk = select(tid % BK, tid / BN, TRANS_B);
    let bj_step = select(16u, 0u, TRANS_B);
    let bk_step = select(0u, 4u, TRANS_B);
    var pa0 = load_a(a_base, row0 + ai, ak);
    var pa1 = load_a(a_base, row0 + ai + ai_step, ak + ak_step);
    var pa2 = load_a(a_base, row0 + ai + 2u * ai_step, ak + 2u * ak_step);
    var pa3 = load_a(a_base, row0 + ai + 3u * ai_step, ak + 3u * ak_step);
    var pb0 = load_b(b_base, bk, col0 + bj);
    var pb1 = load_b(b_base, bk + bk_step, col0 + bj + bj_step);
    var pb2 = load_b(b_base, bk + 2u * bk_step, col0 + bj + 2u * bj_step);
    var pb3 = load_b(b_base, bk + 3u * bk_step, col0 + bj + 3u * bj_step);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        store64_a(ak, ai, pa0);
        store64_a(ak + ak_step, ai + ai_step, pa1);
        store64_a(ak + 2u * ak_step, ai + 2u * ai_step, pa2);
        store64_a(ak + 3u * ak_step, ai + 3u * ai_step, pa3);
        store64_b(bk, bj, pb0);
        store64_b(bk + bk_step, bj + bj_step, pb1);
        store64_b(bk + 2u * bk_step, bj + 2u * bj_step, pb2);
        store64_b(bk + 3u * bk_step, bj + 3u * bj_step, pb3);
        workgroupBarrier();
        let k1 = k0 + BK;
        if k1 < p.k {
            pa0 = load_a(a_base, row0 + ai, k1 + ak);
            pa1 = load_a(a_base, row0 + ai + ai_step, k1 + ak + ak_step);
            pa2 = load_a(a_base, row0 + ai + 2u * ai_step, k1 + ak + 2u * ak_step);
            pa3 = load_a(a_base, row0 + ai + 3u * ai_step, k1 + ak + 3u * ak_step);
            pb0 = load_b(b_base, k1 + bk, col0 + bj);
            pb1 = load_b(b_base, k1 + bk + bk_step, col0 + bj + bj_step);
            pb2 = load_b(b_base, k1 + bk + 2u * bk_step, col0 + bj + 2u * bj_step);
            pb3 = load_b(b_base, k1 + bk + 3u * bk_step, col0 + bj + 3u * bj_step);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let av = tile_a[swz64(kk, lid.x, TRANS_A)];
            let bv = tile_b[swz64(kk, lid.y, !TRANS_B)];
            acc.c0 = fma(av, vec4<f32>(bv.x), acc.c0);
            acc.c1 = fma(av, vec4<f32>(bv.y), acc.c1);
            acc.c2 = fma(av, vec4<f32>(bv.z), acc.c2);
            acc.c3 = fma(av, vec4<f32>(bv.w), acc.c3);
        }
        workgroupBarrier();
    }
    // C's old values are all read before any store: C is read_write and, for all the compiler
    // knows (any ldc), a store may alias a later load, so alternating load-store pairs made
    // one dependent memory round trip per element (BENCHMARKS.md, v41).
    let r = row0 + lid.x;
    let o0 = old_c4(c_base, r, 16u, col0 + lid.y);
    let o1 = old_c4(c_base, r, 16u, col0 + lid.y + 16u);
    let o2 = old_c4(c_base, r, 16u, col0 + lid.y + 32u);
    let o3 = old_c4(c_base, r, 16u, col0 + lid.y + 48u);
    store_c4(c_base, r, 16u, col0 + lid.y, acc.c0, o0);
    store_c4(c_base, r, 16u, col0 + lid.y + 16u, acc.c1, o1);
    store_c4(c_base, r, 16u, col0 + lid.y + 32u, acc.c2, o2);
    store_c4(c_base, r, 16u, col0 + lid.y + 48u, acc.c3, o3);
    if GRAM && wid.y == 0u {
        // Columns lid.y and lid.y + 16 of the tile as stored, in the (free) operand tiles:
        // column j < 16 of tile_a, 16 ≤ j < 32 of tile_b, row i at word (j % 16)·66 + i.
        gram_put(lid.y, r, acc.c0, o0);
        gram_put(lid.y + 16u, r, acc.c1, o1);
        workgroupBarrier();
        let gb = p.gram_off + wid.z * p.gram_stride + wid.x * 1024u;
        for (var e = tid; e < 1024u; e += 256u) {
            let i = e % 32u;
            let j = e / 32u;
            var s = 0.0;
            for (var r = 0u; r < BM; r++) {
                s = fma(gram_col(i, r), gram_col(j, r), s);
            }
            gram[gb + e] = s;
        }
    }
}

// GRAM: rows r + 16i (tile rows r − row0 + 16i) of column jl (< 32) of the tile, as stored.
fn gram_put(jl: u32, r: u32, v: vec4<f32>, old: vec4<f32>) {
    let w = (jl % 16u) * 66u + r % BM;
    for (var u = 0u; u < 4u; u++) {
        let g = gram_x(r + 16u * u, jl, v[u], old[u]);
        let wu = w + 16u * u;
        if jl < 16u {
            tile_a[wu / 4u][wu % 4u] = g;
        } else {
            tile_b[wu / 4u][wu % 4u] = g;
        }
    }
}

// GRAM: entry (i, j) of the tile as stored (alpha·v + beta·old), zero outside the rows and
// columns of the next panel.
fn gram_x(i: u32, j: u32, v: f32, old: f32) -> f32 {
    if i < p.gram_skip || i >= p.m || j >= p.gram_b {
        return 0.0;
    }
    return fma(p.beta, old, p.alpha * v);
}

// GRAM: row r of column j of the tile (j < 32), from the operand tiles (see gram_put).
fn gram_col(j: u32, r: u32) -> f32 {
    let w = (j % 16u) * 66u + r;
    if j < 16u {
        return tile_a[w / 4u][w % 4u];
    }
    return tile_b[w / 4u][w % 4u];
}

// C[i, j] before the update (0 outside C, and when beta == 0: C is then not read).
fn old_c(c_base: u32, i: u32, j: u32) -> f32 {
    if p.beta == 0.0 || i >= p.m || j >= p.n {
        return 0.0;
    }
    return c[c_base + i + j * p.ldc];
}

// C[i, j] = alpha·v + beta·old (old from old_c).
fn store_c(c_base: u32, i: u32, j: u32, v: f32, old: f32) {
    if i >= p.m || j >= p.n {
        return;
    }
    c[c_base + i + j * p.ldc] = fma(p.beta, old, p.alpha * v);
}

// Rows i, i + step, i + 2·step, i + 3·step of column j of C before the update, as old_c
// (gemm_large: consecutive rows, step 1; gemm: rows 16 apart).
fn old_c4(c_base: u32, i: u32, step: u32, j: u32) -> vec4<f32> {
    return vec4<f32>(old_c(c_base, i, j), old_c(c_base, i + step, j),
                     old_c(c_base, i + 2u * step, j), old_c(c_base, i + 3u * step, j));
}

// The same rows of column j of C = alpha·v + beta·old.
fn store_c4(c_base: u32, i: u32, step: u32, j: u32, v: vec4<f32>, old: vec4<f32>) {
    store_c(c_base, i, j, v.x, old.x);
    store_c(c_base, i + step, j, v.y, old.y);
    store_c(c_base, i + 2u * step, j, v.z, old.z);
    store_c(c_base, i + 3u * step, j, v.w, old.w);
}

// ---------------------------------------------------------------------------------------------
// gemm_large

const LBM: u32 = 128u;
const LBK: u32 = 16u;

// [kk][i / 4] as vec4: the 4 consecutive rows (or columns) an invocation needs in one read.
var<workgroup> ltile_a: array<vec4<f32>, 512>; // LBK * LBM / 4
var<workgroup> ltile_b: array<vec4<f32>, 512>;

// Row kk of a tile holds its 32 vec4s; the tile of an operand that is stored down K (A when
// TRANS_A, B unless TRANS_B: its global loads run along K) has them XOR-swizzled by kk % 8, so
// that those stores hit 8 different banks instead of one (a 16-way conflict). The swizzle keeps
// each half (vec4s 0-15, 16-31) in place, so reads stay simple. The other operand's tile is not
// swizzled: its stores run along a row already, and dropping the XOR from its reads made the
// 4096² products 5-7% faster on an H100 (BENCHMARKS.md, v56).
fn swz_a(kk: u32, q: u32) -> u32 {
    return swizzled(LBM / 4u, kk, q, TRANS_A);
}

fn swz_b(kk: u32, q: u32) -> u32 {
    return swizzled(LBM / 4u, kk, q, !TRANS_B);
}

fn lstore_a(kk: u32, i: u32, v: f32) {
    ltile_a[swz_a(kk, i / 4u)][i % 4u] = v;
}

fn lstore_b(kk: u32, j: u32, v: f32) {
    ltile_b[swz_b(kk, j / 4u)][j % 4u] = v;
}

// gemm_large's 8×8 register tile: c{cc + 8·half} holds rows 64·half + 4·tx … + 3 of column
// (cc < 4 ? 0 : 64) + 4·ty + cc % 4 of the workgroup's 128×128 block.
struct Acc {
    c0: vec4<f32>,
    c1: vec4<f32>,
    c2: vec4<f32>,
    c3: vec4<f32>,
    c4: vec4<f32>,
    c5: vec4<f32>,
    c6: vec4<f32>,
    c7: vec4<f32>,
    c8: vec4<f32>,
    c9: vec4<f32>,
    c10: vec4<f32>,
    c11: vec4<f32>,
    c12: vec4<f32>,
    c13: vec4<f32>,
    c14: vec4<f32>,
    c15: vec4<f32>,
}

// One kk of gemm_large's tile product: two vec4s of A's tile times two of B's, 64 FMAs.
fn large_step(kk: u32, tx: u32, ty: u32, acc_in: Acc) -> Acc {
    var acc = acc_in;
    let a0 = ltile_a[swz_a(kk, tx)];
    let a1 = ltile_a[swz_a(kk, 16u + tx)];
    let b0 = ltile_b[swz_b(kk, ty)];
    let b1 = ltile_b[swz_b(kk, 16u + ty)];
    acc.c0 = fma(a0, vec4<f32>(b0.x), acc.c0);
    acc.c1 = fma(a0, vec4<f32>(b0.y), acc.c1);
    acc.c2 = fma(a0, vec4<f32>(b0.z), acc.c2);
    acc.c3 = fma(a0, vec4<f32>(b0.w), acc.c3);
    acc.c4 = fma(a0, vec4<f32>(b1.x), acc.c4);
    acc.c5 = fma(a0, vec4<f32>(b1.y), acc.c5);
    acc.c6 = fma(a0, vec4<f32>(b1.z), acc.c6);
    acc.c7 = fma(a0, vec4<f32>(b1.w), acc.c7);
    acc.c8 = fma(a1, vec4<f32>(b0.x), acc.c8);
    acc.c9 = fma(a1, vec4<f32>(b0.y), acc.c9);
    acc.c10 = fma(a1, vec4<f32>(b0.z), acc.c10);
    acc.c11 = fma(a1, vec4<f32>(b0.w), acc.c11);
    acc.c12 = fma(a1, vec4<f32>(b1.x), acc.c12);
    acc.c13 = fma(a1, vec4<f32>(b1.y), acc.c13);
    acc.c14 = fma(a1, vec4<f32>(b1.z), acc.c14);
    acc.c15 = fma(a1, vec4<f32>(b1.w), acc.c15);
    return acc;
}

@compute @workgroup_size(256, 1, 1)
fn gemm_large(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.x * LBM;
    let col0 = wid.y * LBM;
    let a_base = p.a_offset + wid.z * p.stride_a;
    let b_base = p.b_offset + wid.z * p.stride_b;
    let c_base = p.c_offset + wid.z * p.stride_c;
    let tx = tid % 16u;
    let ty = tid / 16u;
    // Where this invocation's 8 elements of each tile go (transposed operands load along K).
    let ai = select(tid % 128u, tid / 16u, TRANS_A);
    let ak = select(tid / 128u, tid % 16u, TRANS_A);
    let bk = select(tid % 16u, tid / 128u, TRANS_B);
    let bj = select(tid / 16u, tid % 128u, TRANS_B);
    let ai_step = select(0u, 16u, TRANS_A);
    let ak_step = select(2u, 0u, TRANS_A);
    let bk_step = select(0u, 2u, TRANS_B);
    let bj_step = select(16u, 0u, TRANS_B);
    var acc = Acc();
    var pa0 = load_a(a_base, row0 + ai + 0u * ai_step, ak + 0u * ak_step);
    var pb0 = load_b(b_base, bk + 0u * bk_step, col0 + bj + 0u * bj_step);
    var pa1 = load_a(a_base, row0 + ai + 1u * ai_step, ak + 1u * ak_step);
    var pb1 = load_b(b_base, bk + 1u * bk_step, col0 + bj + 1u * bj_step);
    var pa2 = load_a(a_base, row0 + ai + 2u * ai_step, ak + 2u * ak_step);
    var pb2 = load_b(b_base, bk + 2u * bk_step, col0 + bj + 2u * bj_step);
    var pa3 = load_a(a_base, row0 + ai + 3u * ai_step, ak + 3u * ak_step);
    var pb3 = load_b(b_base, bk + 3u * bk_step, col0 + bj + 3u * bj_step);
    var pa4 = load_a(a_base, row0 + ai + 4u * ai_step, ak + 4u * ak_step);
    var pb4 = load_b(b_base, bk + 4u * bk_step, col0 + bj + 4u * bj_step);
    var pa5 = load_a(a_base, row0 + ai + 5u * ai_step, ak + 5u * ak_step);
    var pb5 = load_b(b_base, bk + 5u * bk_step, col0 + bj + 5u * bj_step);
    var pa6 = load_a(a_base, row0 + ai + 6u * ai_step, ak + 6u * ak_step);
    var pb6 = load_b(b_base, bk + 6u * bk_step, col0 + bj + 6u * bj_step);
    var pa7 = load_a(a_base, row0 + ai + 7u * ai_step, ak + 7u * ak_step);
    var pb7 = load_b(b_base, bk + 7u * bk_step, col0 + bj + 7u * bj_step);
    for (var k0 = 0u; k0 < p.k; k0 += LBK) {
        lstore_a(ak + 0u * ak_step, ai + 0u * ai_step, pa0);
        lstore_b(bk + 0u * bk_step, bj + 0u * bj_step, pb0);
        lstore_a(ak + 1u * ak_step, ai + 1u * ai_step, pa1);
        lstore_b(bk + 1u * bk_step, bj + 1u * bj_step, pb1);
        lstore_a(ak + 2u * ak_step, ai + 2u * ai_step, pa2);
        lstore_b(bk + 2u * bk_step, bj + 2u * bj_step, pb2);
        lstore_a(ak + 3u * ak_step, ai + 3u * ai_step, pa3);
        lstore_b(bk + 3u * bk_step, bj + 3u * bj_step, pb3);
        lstore_a(ak + 4u * ak_step, ai + 4u * ai_step, pa4);
        lstore_b(bk + 4u * bk_step, bj + 4u * bj_step, pb4);
        lstore_a(ak + 5u * ak_step, ai + 5u * ai_step, pa5);
        lstore_b(bk + 5u * bk_step, bj + 5u * bj_step, pb5);
        lstore_a(ak + 6u * ak_step, ai + 6u * ai_step, pa6);
        lstore_b(bk + 6u * bk_step, bj + 6u * bj_step, pb6);
        lstore_a(ak + 7u * ak_step, ai + 7u * ai_step, pa7);
        lstore_b(bk + 7u * bk_step, bj + 7u * bj_step, pb7);
        workgroupBarrier();
        // Prefetch the next K tile while this one is multiplied.
        let k1 = k0 + LBK;
        if k1 < p.k {
            pa0 = load_a(a_base, row0 + ai + 0u * ai_step, k1 + ak + 0u * ak_step);
            pb0 = load_b(b_base, k1 + bk + 0u * bk_step, col0 + bj + 0u * bj_step);
            pa1 = load_a(a_base, row0 + ai + 1u * ai_step, k1 + ak + 1u * ak_step);
            pb1 = load_b(b_base, k1 + bk + 1u * bk_step, col0 + bj + 1u * bj_step);
            pa2 = load_a(a_base, row0 + ai + 2u * ai_step, k1 + ak + 2u * ak_step);
            pb2 = load_b(b_base, k1 + bk + 2u * bk_step, col0 + bj + 2u * bj_step);
            pa3 = load_a(a_base, row0 + ai + 3u * ai_step, k1 + ak + 3u * ak_step);
            pb3 = load_b(b_base, k1 + bk + 3u * bk_step, col0 + bj + 3u * bj_step);
            pa4 = load_a(a_base, row0 + ai + 4u * ai_step, k1 + ak + 4u * ak_step);
            pb4 = load_b(b_base, k1 + bk + 4u * bk_step, col0 + bj + 4u * bj_step);
            pa5 = load_a(a_base, row0 + ai + 5u * ai_step, k1 + ak + 5u * ak_step);
            pb5 = load_b(b_base, k1 + bk + 5u * bk_step, col0 + bj + 5u * bj_step);
            pa6 = load_a(a_base, row0 + ai + 6u * ai_step, k1 + ak + 6u * ak_step);
            pb6 = load_b(b_base, k1 + bk + 6u * bk_step, col0 + bj + 6u * bj_step);
            pa7 = load_a(a_base, row0 + ai + 7u * ai_step, k1 + ak + 7u * ak_step);
            pb7 = load_b(b_base, k1 + bk + 7u * bk_step, col0 + bj + 7u * bj_step);
        }
        if UNROLL {
            acc = large_step(0u, tx, ty, acc);
            acc = large_step(1u, tx, ty, acc);
            acc = large_step(2u, tx, ty, acc);
            acc = large_step(3u, tx, ty, acc);
            acc = large_step(4u, tx, ty, acc);
            acc = large_step(5u, tx, ty, acc);
            acc = large_step(6u, tx, ty, acc);
            acc = large_step(7u, tx, ty, acc);
            acc = large_step(8u, tx, ty, acc);
            acc = large_step(9u, tx, ty, acc);
            acc = large_step(10u, tx, ty, acc);
            acc = large_step(11u, tx, ty, acc);
            acc = large_step(12u, tx, ty, acc);
            acc = large_step(13u, tx, ty, acc);
            acc = large_step(14u, tx, ty, acc);
            acc = large_step(15u, tx, ty, acc);
        } else {
            for (var kk = 0u; kk < LBK; kk++) {
                acc = large_step(kk, tx, ty, acc);
            }
        }
        workgroupBarrier();
    }
    let j0 = col0 + ty * 4u;
    let j1 = j0 + 64u;
    let r0 = row0 + 0u + tx * 4u;
    let r1 = row0 + 64u + tx * 4u;
    update_half(c_base, r0, j0, j1, acc.c0, acc.c1, acc.c2, acc.c3, acc.c4, acc.c5, acc.c6,
                acc.c7);
    update_half(c_base, r1, j0, j1, acc.c8, acc.c9, acc.c10, acc.c11, acc.c12, acc.c13, acc.c14,
                acc.c15);
}

// Rows r … r + 3 of columns j0 … j0 + 3 (q0 … q3) and j1 … j1 + 3 (q4 … q7) of C: one half of
// gemm_large's register tile. Every old value is read before any store: C is read_write and,
// for all the compiler knows (any ldc), a store may alias a later load, so alternating
// load-store pairs made 64 dependent memory round trips per invocation (BENCHMARKS.md, v41).
fn update_half(c_base: u32, r: u32, j0: u32, j1: u32, q0: vec4<f32>, q1: vec4<f32>,
               q2: vec4<f32>, q3: vec4<f32>, q4: vec4<f32>, q5: vec4<f32>, q6: vec4<f32>,
               q7: vec4<f32>) {
    let o0 = old_c4(c_base, r, 1u, j0);
    let o1 = old_c4(c_base, r, 1u, j0 + 1u);
    let o2 = old_c4(c_base, r, 1u, j0 + 2u);
    let o3 = old_c4(c_base, r, 1u, j0 + 3u);
    let o4 = old_c4(c_base, r, 1u, j1);
    let o5 = old_c4(c_base, r, 1u, j1 + 1u);
    let o6 = old_c4(c_base, r, 1u, j1 + 2u);
    let o7 = old_c4(c_base, r, 1u, j1 + 3u);
    store_c4(c_base, r, 1u, j0, q0, o0);
    store_c4(c_base, r, 1u, j0 + 1u, q1, o1);
    store_c4(c_base, r, 1u, j0 + 2u, q2, o2);
    store_c4(c_base, r, 1u, j0 + 3u, q3, o3);
    store_c4(c_base, r, 1u, j1, q4, o4);
    store_c4(c_base, r, 1u, j1 + 1u, q5, o5);
    store_c4(c_base, r, 1u, j1 + 2u, q6, o6);
    store_c4(c_base, r, 1u, j1 + 3u, q7, o7);
}

// Σ_s P_s[e] over the p.k slices of `total` entries each, one after another in `a`. Eight
// slices in flight per step: one dependent memory latency per slice made a 127-slice reduction
// of a 128×128 W take 63 µs on an H100 (its 64 workgroups hide none).
fn sum_slices(e: u32, total: u32) -> f32 {
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var s = 0u;
    for (; s + 8u <= p.k; s += 8u) {
        let b = s * total + e;
        acc1 += vec4<f32>(a[b], a[b + total], a[b + 2u * total], a[b + 3u * total]);
        acc2 += vec4<f32>(a[b + 4u * total], a[b + 5u * total], a[b + 6u * total], a[b + 7u * total]);
    }
    for (; s < p.k; s++) {
        acc1.x += a[s * total + e];
    }
    let acc4 = acc1 + acc2;
    return (acc4.x + acc4.y) + (acc4.z + acc4.w);
}

// Split-K reduction: C = alpha · Σ_s P_s + beta · C, with the p.k slices P_s (m×n, ld m) one
// after another in `a`. C is not read when beta == 0.
@compute @workgroup_size(256)
fn reduce_splits(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = (wid.x + wid.y * nwg.x) * 256u + lid;
    let total = p.m * p.n;
    if e >= total {
        return;
    }
    let acc = sum_slices(e, total);
    let ci = p.c_offset + e % p.m + (e / p.m) * p.ldc;
    var v = p.alpha * acc;
    if p.beta != 0.0 {
        v = fma(p.beta, c[ci], v);
    }
    c[ci] = v;
}

// Split-K reduction followed by a small product on the left: C = alpha · op(T) · Σ_s P_s for an
// m×n sum with m ≤ 32 (T m×m at b_offset, ld ldb in `b`; op(T) = Tᵀ when TRANS_B), the p.k
// slices P_s laid out as for reduce_splits. A workgroup covers 256/m columns: each invocation
// sums one entry's slices, then forms one entry of the product from the workgroup's copies of T
// and of the sums (ltile_a and ltile_b, unused otherwise by this entry point).
@compute @workgroup_size(256)
fn reduce_splits_left(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let m = p.m;
    let per = 256u / m;
    for (var e = lid; e < m * m; e += 256u) {
        // op(T)[r, k] at e = r + k·m.
        let r = e % m;
        let k = e / m;
        var t = b[p.b_offset + r + k * p.ldb];
        if TRANS_B {
            t = b[p.b_offset + k + r * p.ldb];
        }
        ltile_a[e >> 2u][e & 3u] = t;
    }
    let total = p.m * p.n;
    let r = lid % m;
    let cl = lid / m;
    let col = (wid.x + wid.y * nwg.x) * per + cl;
    let on = cl < per && col < p.n;
    var sum = 0.0;
    if on {
        sum = sum_slices(r + col * m, total);
    }
    ltile_b[lid >> 2u][lid & 3u] = sum;
    workgroupBarrier();
    if on {
        var out = 0.0;
        for (var k = 0u; k < m; k++) {
            let ti = r + k * m;
            let wi = cl * m + k;
            out = fma(ltile_a[ti >> 2u][ti & 3u], ltile_b[wi >> 2u][wi & 3u], out);
        }
        c[p.c_offset + r + col * p.ldc] = p.alpha * out;
    }
}
