// Triangular solve building blocks, column-major f32, batched over workgroup y.
//
// Entry points:
//   solve_block       solves T·Y = Z in place for one w×w triangular block T (w ≤ NB) of A and
//                     the w×k tile Z, holding T and RC right-hand sides at a time in workgroup
//                     memory. One workgroup per (chunk of RC right-hand sides, batch member).
//                     This is both the diagonal-block solve of the blocked trsm and, for n ≤ NB,
//                     the whole solve of the batched trsm (one workgroup per small system).
//   extract_diagonal  copies the diagonal of each n×n matrix to a dense vector (for the checked
//                     trsm, which reads it back to report an exact zero like LAPACK strtrs).
//
// T is read from A's block at a_offset: T[i][j] = A[j, i] when TRANS_A, A[i, j] otherwise. Only
// T's own triangle is read (lower when FORWARD, upper otherwise) and, unless UNIT, its diagonal;
// the other triangle may hold anything, NaN included. UNIT takes the diagonal as 1 unread.
//
// The tile: element (i, c) of Z (row i of T's order, right-hand side c) is at
// x_offset + i * x_rs + c * x_cs, so one kernel serves the left side (Z a block of rows of X,
// x_rs = 1) and the right side (X·op(A) = B read as op(A)ᵀ·Xᵀ = Bᵀ: x_cs = 1). When
// write_scratch is set, the solved tile is also written to the scratch tile (same addressing
// with s_*), the GEMM operand of the blocked trsm's update (a GEMM may not write the buffer it
// reads).
//
// Substitution, column-oriented and spread over the workgroup: after row kk is final, every
// element still to solve subtracts T[i][kk]·Y[kk][c], one barrier per row. Substitution in any
// order is backward stable ((T + ΔT)·y = z with |ΔT| ≤ γ_w |T|, Higham, Accuracy and Stability,
// Thm 8.5); a zero diagonal gives IEEE inf/NaN, a NaN stays in its own system. Measured on an
// H100 (n = 4096, k = 4096, 64-row blocks, loads four at a time): this order with 16 right-hand
// sides per workgroup 44 µs per block; one invocation per right-hand side down its own column
// 50 µs (16 per workgroup) and 51 µs (32); with the column in registers, slower still (73 µs).
//
// Workgroup storage: (NB·NB + (NB + 1)·RC)·4 bytes: 6.1 KiB at the defaults (NB = 32, RC = 16),
// within WebGPU's 16 KiB; NB = 64 (20.1 KiB) only where the adapter allows it.

override NB: u32 = 32u;
override RC: u32 = 16u;
override FORWARD: bool = true;
override TRANS_A: bool = false;
override UNIT: bool = false;

const WG: u32 = 256u;
// Column stride of the tile in workgroup memory, padded by one so that the right side's loads
// and stores (consecutive invocations on consecutive columns) do not hit one bank.
override TS: u32 = NB + 1u;

struct Params {
    w: u32,             // order of T
    k: u32,             // right-hand sides
    lda: u32,
    a_offset: u32,      // element (0, 0) of the block of A
    a_stride: u32,      // elements between batch members
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
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> s: array<f32>;

// T column-major (i + j·NB), the tile column-major (i + c·TS).
var<workgroup> t_blk: array<f32, NB * NB>;
var<workgroup> tile: array<f32, TS * RC>;

// Element e of a w×kc tile, ordered along the contiguous direction of X.
fn tile_coord(e: u32, kc: u32) -> vec2<u32> {
    if p.x_rs == 1u {
        return vec2<u32>(e % p.w, e / p.w);
    }
    return vec2<u32>(e / kc, e % kc);
}

fn t_get(e: u32) -> f32 {
    return t_blk[e];
}

// Element e (column-major, NB rows) of T's workgroup copy: A's entry inside T's triangle (and
// its diagonal unless UNIT), 1 on a unit diagonal, 0 elsewhere and outside the w×w block. The
// load itself is unconditional, from an address clamped into the block.
fn t_element(e: u32, w: u32, a_base: u32) -> f32 {
    let i = e % NB;
    let j = e / NB;
    let ic = min(i, w - 1u);
    let jc = min(j, w - 1u);
    var raw: f32;
    if TRANS_A {
        raw = a[a_base + jc + ic * p.lda];
    } else {
        raw = a[a_base + ic + jc * p.lda];
    }
    let inside = select((j > i), (j < i), FORWARD);
    let in_block = i < w && j < w;
    let keep = in_block && (inside || (i == j && !UNIT));
    let one = in_block && i == j && UNIT;
    return select(select(0.0, raw, keep), 1.0, one);
}

// Element e (< tn, clamped) of the tile in X, unconditionally loaded.
fn x_element(e: u32, tn: u32, kc: u32, x_base: u32) -> f32 {
    let ic = tile_coord(min(e, tn - 1u), kc);
    return x[x_base + ic.x * p.x_rs + ic.y * p.x_cs];
}

fn tile_set(e: u32, kc: u32, v: f32) {
    let ic = tile_coord(e, kc);
    tile[ic.x + ic.y * TS] = v;
}

@compute @workgroup_size(WG)
fn solve_block(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let b = wid.y;
    let w = p.w;
    let c0 = wid.x * RC;
    let kc = min(RC, p.k - c0);
    let a_base = p.a_offset + b * p.a_stride;
    let x_base = p.x_offset + b * p.x_stride + c0 * p.x_cs;

    // T's NB×NB storage is written whole (zeros outside the w×w block), then the tile, four
    // elements per invocation at a time: the four loads are unconditional (addresses clamped
    // into A's block and X's tile, values selected after), so they are in flight together
    // instead of one memory latency per element.
    let tt = NB * NB;
    for (var e = tid; e < tt; e += 4u * WG) {
        let v0 = t_element(e, w, a_base);
        let v1 = t_element(e + WG, w, a_base);
        let v2 = t_element(e + 2u * WG, w, a_base);
        let v3 = t_element(e + 3u * WG, w, a_base);
        t_blk[e] = v0;
        if e + WG < tt { t_blk[e + WG] = v1; }
        if e + 2u * WG < tt { t_blk[e + 2u * WG] = v2; }
        if e + 3u * WG < tt { t_blk[e + 3u * WG] = v3; }
    }
    let tn = w * kc;
    for (var e = tid; e < tn; e += 4u * WG) {
        let v0 = x_element(e, tn, kc, x_base);
        let v1 = x_element(e + WG, tn, kc, x_base);
        let v2 = x_element(e + 2u * WG, tn, kc, x_base);
        let v3 = x_element(e + 3u * WG, tn, kc, x_base);
        tile_set(e, kc, v0);
        if e + WG < tn { tile_set(e + WG, kc, v1); }
        if e + 2u * WG < tn { tile_set(e + 2u * WG, kc, v2); }
        if e + 3u * WG < tn { tile_set(e + 3u * WG, kc, v3); }
    }
    workgroupBarrier();

    // Column-oriented substitution across the workgroup: after row kk is final, every element
    // still to solve subtracts T[i][kk]·Y[kk][c], all in parallel, one barrier per row.
    let first = select(w - 1u, 0u, FORWARD);
    if !UNIT {
        for (var c = tid; c < kc; c += WG) {
            tile[first + c * TS] = tile[first + c * TS] / t_get(first + first * NB);
        }
    }
    workgroupBarrier();
    for (var step = 0u; step + 1u < w; step++) {
        let kk = select(w - 1u - step, step, FORWARD);
        let next = select(kk - 1u, kk + 1u, FORWARD);
        for (var e = tid; e < NB * RC; e += WG) {
            let i = e % NB;
            let c = e / NB;
            let live = i < w && c < kc && select((i < kk), (i > kk), FORWARD);
            if live {
                var v = fma(-t_get(i + kk * NB), tile[kk + c * TS], tile[i + c * TS]);
                if !UNIT && i == next {
                    v = v / t_get(i + i * NB);
                }
                tile[i + c * TS] = v;
            }
        }
        workgroupBarrier();
    }

    let s_base = p.s_offset + b * p.s_stride + c0 * p.s_cs;
    for (var e = tid; e < w * kc; e += WG) {
        let ic = tile_coord(e, kc);
        let v = tile[ic.x + ic.y * TS];
        x[x_base + ic.x * p.x_rs + ic.y * p.x_cs] = v;
        if p.write_scratch != 0u {
            s[s_base + ic.x * p.s_rs + ic.y * p.s_cs] = v;
        }
    }
}

// out[s_offset + b·w + i] = A_b[i, i] for i < w, over w·batch invocations (2-D grid of
// workgroups as `grid` in the Rust side lays out).
@compute @workgroup_size(WG)
fn extract_diagonal(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * WG + tid;
    if idx >= p.w * p.batch {
        return;
    }
    let b = idx / p.w;
    let i = idx % p.w;
    s[p.s_offset + idx] = a[p.a_offset + b * p.a_stride + i * (p.lda + 1u)];
}
