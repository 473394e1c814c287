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
// Substitution, column-oriented, one barrier per row: invocation (c, g) holds rows g, g + RG, …
// of right-hand side c in registers; after row kk is solved (by the invocation holding it, which
// publishes y_kk in workgroup memory), every row still to solve subtracts T[i][kk]·y_kk.
// Substitution in any order is backward stable ((T + ΔT)·y = z with |ΔT| ≤ γ_w |T|, Higham,
// Accuracy and Stability, Thm 8.5); a zero diagonal gives IEEE inf/NaN, a NaN stays in its own
// system. Measured on an H100 (n = 4096, k = 4096, 64-row blocks): 24 µs per block with the
// rows in registers and 16 right-hand sides per workgroup (8 per workgroup: 33 µs); the same
// order through workgroup memory, one element per invocation and step, 44 µs; one invocation
// per right-hand side down its own column 50 µs; that column in registers 73 µs.
//
// Workgroup storage: (NB·NB + (NB + 3)·RC)·4 bytes: 6.2 KiB at the defaults (NB = 32, RC = 16),
// within WebGPU's 16 KiB; NB = 64 (20.2 KiB) only where the adapter allows it.

override NB: u32 = 32u;
override RC: u32 = 16u;
override FORWARD: bool = true;
override TRANS_A: bool = false;
override UNIT: bool = false;

const WG: u32 = 256u;
// Column stride of the tile in workgroup memory, padded by one so that the right side's loads
// and stores (consecutive invocations on consecutive columns) do not hit one bank.
override TS: u32 = NB + 1u;
// Row groups: invocations per right-hand side.
override RG: u32 = WG / RC;

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
// The last solved row of each right-hand side, double-buffered.
var<workgroup> ys: array<f32, 2u * RC>;

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

// Row i of the tile's column c (0 past row w).
fn tile_row(i: u32, c: u32, w: u32) -> f32 {
    if i < w {
        return tile[i + c * TS];
    }
    return 0.0;
}

fn tile_put(i: u32, c: u32, w: u32, v: f32) {
    if i < w {
        tile[i + c * TS] = v;
    }
}

// Row i once everything before it (in substitution order) is subtracted: divided by T_ii.
fn solve_row(z: f32, i: u32) -> f32 {
    if UNIT {
        return z;
    }
    return z / t_get(i + i * NB);
}

// Solves row i, held by this invocation as z_u (u = i / RG, chosen by uniform selects: a
// dynamic index into the four registers could send them to local memory), in place; returns y_i.
fn solve_owned(z0: ptr<function, f32>, z1: ptr<function, f32>, z2: ptr<function, f32>,
               z3: ptr<function, f32>, i: u32) -> f32 {
    let u = i / RG;
    let y = solve_row(select(select(select(*z0, *z1, u == 1u), *z2, u == 2u), *z3, u == 3u), i);
    *z0 = select(*z0, y, u == 0u);
    *z1 = select(*z1, y, u == 1u);
    *z2 = select(*z2, y, u == 2u);
    *z3 = select(*z3, y, u == 3u);
    return y;
}

// Row i of a right-hand side after step kk: minus T[i][kk]·y when row i is still to solve
// (after kk going forward, before it going backward, and inside the block).
fn eliminate(z: f32, i: u32, kk: u32, y: f32, w: u32) -> f32 {
    let todo = i < w && select((i < kk), (i > kk), FORWARD);
    if todo {
        return fma(-t_get(i + kk * NB), y, z);
    }
    return z;
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

    // Column-oriented substitution with the tile in registers: invocation (c, g) = (tid % RC,
    // tid / RC) holds rows g, g + RG, g + 2·RG, g + 3·RG of right-hand side c (RG = WG / RC row
    // groups, NB ≤ 4·RG). Step kk: every invocation reads y_kk of its column (published in
    // workgroup memory by the owner of row kk) and subtracts T[i][kk]·y_kk from its rows still
    // to solve; the owner of the next row then divides it by the diagonal and publishes it.
    // One barrier per row, and on its critical path one shared load, one FMA, one division and
    // one shared store (y double-buffered, so nobody overwrites a value still being read).
    let c = tid % RC;
    let g = tid / RC;
    var z0 = 0.0;
    var z1 = 0.0;
    var z2 = 0.0;
    var z3 = 0.0;
    if c < kc {
        z0 = tile_row(g, c, w);
        if NB > RG { z1 = tile_row(g + RG, c, w); }
        if NB > 2u * RG { z2 = tile_row(g + 2u * RG, c, w); }
        if NB > 3u * RG { z3 = tile_row(g + 3u * RG, c, w); }
    }
    let first = select(w - 1u, 0u, FORWARD);
    if g == first % RG {
        ys[c] = solve_owned(&z0, &z1, &z2, &z3, first);
    }
    workgroupBarrier();
    for (var step = 0u; step + 1u < w; step++) {
        let kk = select(w - 1u - step, step, FORWARD);
        let next = select(kk - 1u, kk + 1u, FORWARD);
        let y = ys[(step % 2u) * RC + c];
        z0 = eliminate(z0, g, kk, y, w);
        if NB > RG { z1 = eliminate(z1, g + RG, kk, y, w); }
        if NB > 2u * RG { z2 = eliminate(z2, g + 2u * RG, kk, y, w); }
        if NB > 3u * RG { z3 = eliminate(z3, g + 3u * RG, kk, y, w); }
        if g == next % RG {
            ys[((step + 1u) % 2u) * RC + c] = solve_owned(&z0, &z1, &z2, &z3, next);
        }
        workgroupBarrier();
    }
    if c < kc {
        tile_put(g, c, w, z0);
        if NB > RG { tile_put(g + RG, c, w, z1); }
        if NB > 2u * RG { tile_put(g + 2u * RG, c, w, z2); }
        if NB > 3u * RG { tile_put(g + 3u * RG, c, w, z3); }
    }
    workgroupBarrier();

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
