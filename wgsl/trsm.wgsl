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
// Substitution: with at least COLUMN_WISE right-hand sides, one invocation per right-hand side,
// y_i = (z_i - Σ T[i][k]·y_k)/T_ii down (or up) its own column with no barrier; with fewer,
// column-oriented: after row kk is final every element below it subtracts T[i][kk]·Y[kk][c],
// one barrier per row. Substitution in either order is backward stable ((T + ΔT)·y = z with |ΔT| ≤ γ_w |T|, Higham, Accuracy and Stability, Thm 8.5);
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
// Right-hand sides in a workgroup from which each invocation substitutes its own column
// (below: all rows of a step in parallel, a barrier per row). Measured on an H100, n = 4096:
// column-wise 56 µs per 64-row block with 32 columns; row-parallel 71 µs, but with one
// right-hand side row-parallel is several times faster.
const COLUMN_WISE: u32 = 16u;
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
    if kc >= COLUMN_WISE {
        for (var c = tid; c < kc; c += WG) {
            let col = c * TS;
            for (var step = 0u; step < w; step++) {
                let i = select(w - 1u - step, step, FORWARD);
                // The solved rows are [lo, hi): before i going forward, after it going backward.
                // Four partial sums, so four products are in flight instead of one dependent chain.
                let lo = select(i + 1u, 0u, FORWARD);
                let hi = select(w, i, FORWARD);
                var a0 = tile[i + col];
                var a1 = 0.0;
                var a2 = 0.0;
                var a3 = 0.0;
                var kk = lo;
                for (; kk + 4u <= hi; kk += 4u) {
                    a0 = fma(-t_blk[i + kk * NB], tile[kk + col], a0);
                    a1 = fma(-t_blk[i + (kk + 1u) * NB], tile[kk + 1u + col], a1);
                    a2 = fma(-t_blk[i + (kk + 2u) * NB], tile[kk + 2u + col], a2);
                    a3 = fma(-t_blk[i + (kk + 3u) * NB], tile[kk + 3u + col], a3);
                }
                for (; kk < hi; kk++) {
                    a0 = fma(-t_blk[i + kk * NB], tile[kk + col], a0);
                }
                var acc = (a0 + a1) + (a2 + a3);
                if !UNIT {
                    acc = acc / t_blk[i + i * NB];
                }
                tile[i + col] = acc;
            }
        }
        workgroupBarrier();
    } else {
        // Few right-hand sides: one invocation per column would leave the workgroup idle, so
        // every step updates all rows below the solved one in parallel, one barrier per row.
        let first = select(w - 1u, 0u, FORWARD);
        if !UNIT {
            for (var c = tid; c < kc; c += WG) {
                tile[first + c * TS] = tile[first + c * TS] / t_blk[first + first * NB];
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
                    var v = fma(-t_blk[i + kk * NB], tile[kk + c * TS], tile[i + c * TS]);
                    if !UNIT && i == next {
                        v = v / t_blk[i + i * NB];
                    }
                    tile[i + c * TS] = v;
                }
            }
            workgroupBarrier();
        }
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
