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
// Substitution, row-oriented, one invocation per right-hand side: y_i = (z_i - Σ T[i][k]·y_k)/T_ii
// down (or up) its own column, no barriers (a barrier per row cost ~1 µs each on an H100, 70 µs
// per 64-row block). Substitution in either order is backward stable ((T + ΔT)·y = z with |ΔT| ≤ γ_w |T|, Higham, Accuracy and Stability, Thm 8.5);
// a zero diagonal gives IEEE inf/NaN, a NaN stays in its own system.
//
// Workgroup storage: (NB·NB + (NB + 1)·RC)·4 bytes: 12.3 KiB at the defaults (NB = 32, RC = 64),
// within WebGPU's 16 KiB; the Rust side picks NB = 64 only where the adapter allows it.

override NB: u32 = 32u;
override RC: u32 = 64u;
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

    for (var e = tid; e < w * w; e += WG) {
        let i = e % w;
        let j = e / w;
        var v = 0.0;
        let inside = select((j > i), (j < i), FORWARD);
        if inside || (i == j && !UNIT) {
            if TRANS_A {
                v = a[a_base + j + i * p.lda];
            } else {
                v = a[a_base + i + j * p.lda];
            }
        } else if i == j {
            v = 1.0;
        }
        t_blk[i + j * NB] = v;
    }
    for (var e = tid; e < w * kc; e += WG) {
        let ic = tile_coord(e, kc);
        tile[ic.x + ic.y * TS] = x[x_base + ic.x * p.x_rs + ic.y * p.x_cs];
    }
    workgroupBarrier();

    // Substitution, one invocation per right-hand side: each runs down (up, when backward) its
    // own column of the tile with dot products against the rows of T, so no barrier is needed
    // until the tile is written back. T is read by every invocation at the same address
    // (broadcast); the tile's column stride TS = NB + 1 keeps neighbouring columns on
    // different banks.
    for (var c = tid; c < kc; c += WG) {
        for (var step = 0u; step < w; step++) {
            let i = select(w - 1u - step, step, FORWARD);
            var acc = tile[i + c * TS];
            if FORWARD {
                for (var kk = 0u; kk < i; kk++) {
                    acc = fma(-t_blk[i + kk * NB], tile[kk + c * TS], acc);
                }
            } else {
                for (var kk = i + 1u; kk < w; kk++) {
                    acc = fma(-t_blk[i + kk * NB], tile[kk + c * TS], acc);
                }
            }
            if !UNIT {
                acc = acc / t_blk[i + i * NB];
            }
            tile[i + c * TS] = acc;
        }
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
