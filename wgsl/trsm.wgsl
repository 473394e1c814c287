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
// Substitution: with at least COLUMN_WISE right-hand sides, one invocation per right-hand side
// holds its column in registers and runs down (or up) it with no barrier: y_kk = z_kk/T_kk, then
// z_i -= T[i][kk]·y_kk for every row still to solve; with fewer, the same column-oriented order
// spread over the workgroup (every element below row kk subtracts T[i][kk]·Y[kk][c]), one
// barrier per row. Substitution in any order is backward stable ((T + ΔT)·y = z with
// |ΔT| ≤ γ_w |T|, Higham, Accuracy and Stability, Thm 8.5); a zero diagonal gives IEEE inf/NaN,
// a NaN stays in its own system.
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
// column-wise (then from workgroup memory, 4 partial sums) 56 µs per 64-row block with 32
// columns; row-parallel 71 µs, but with one right-hand side row-parallel is several times faster.
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
var<workgroup> t_blk: array<vec4<f32>, NB * NB / 4u>;
var<workgroup> tile: array<f32, TS * RC>;

// Element e of a w×kc tile, ordered along the contiguous direction of X.
fn tile_coord(e: u32, kc: u32) -> vec2<u32> {
    if p.x_rs == 1u {
        return vec2<u32>(e % p.w, e / p.w);
    }
    return vec2<u32>(e / kc, e % kc);
}

fn t_get(e: u32) -> f32 {
    return t_blk[e >> 2u][e & 3u];
}

// Rows 4r..4r+3 of the tile's column starting at `col`, zero from row w on.
fn load4(col: u32, r: u32, w: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    let r0 = 4u * r;
    if r0 < w { v.x = tile[r0 + col]; }
    if r0 + 1u < w { v.y = tile[r0 + 1u + col]; }
    if r0 + 2u < w { v.z = tile[r0 + 2u + col]; }
    if r0 + 3u < w { v.w = tile[r0 + 3u + col]; }
    return v;
}

// The rows below w of `v` back to rows 4r..4r+3 of the tile's column at `col`.
fn store4(col: u32, r: u32, w: u32, v: vec4<f32>) {
    let r0 = 4u * r;
    if r0 < w { tile[r0 + col] = v.x; }
    if r0 + 1u < w { tile[r0 + 1u + col] = v.y; }
    if r0 + 2u < w { tile[r0 + 2u + col] = v.z; }
    if r0 + 3u < w { tile[r0 + 3u + col] = v.w; }
}

// One substitution step on rows 4r..4r+3 of a register column: row kk becomes y (solved), the
// rows still to solve (after kk going forward, before it going backward) lose T[i][kk]·y, the
// solved ones are kept. Blocks wholly among the solved rows return at once (kk is uniform).
fn eliminate(zr: vec4<f32>, r: u32, kk: u32, y: f32) -> vec4<f32> {
    let r0 = 4u * r;
    if (FORWARD && r0 + 3u < kk) || (!FORWARD && r0 > kk) {
        return zr;
    }
    let rows = vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u);
    let kv = vec4<u32>(kk);
    let live = select((rows < kv), (rows > kv), FORWARD);
    let upd = fma(vec4<f32>(-y), t_blk[r + kk * (NB / 4u)], zr);
    return select(select(zr, upd, live), vec4<f32>(y), rows == kv);
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

    // All of T's NB×NB storage is written (zeros outside the w×w block), so the column-wise
    // solve's vec4 reads of rows past w see zeros, never stale workgroup memory.
    for (var e = tid; e < NB * NB; e += WG) {
        let i = e % NB;
        let j = e / NB;
        var v = 0.0;
        let inside = select((j > i), (j < i), FORWARD);
        if i < w && j < w {
            if inside || (i == j && !UNIT) {
                if TRANS_A {
                    v = a[a_base + j + i * p.lda];
                } else {
                    v = a[a_base + i + j * p.lda];
                }
            } else if i == j {
                v = 1.0;
            }
        }
        t_blk[e >> 2u][e & 3u] = v;
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
        // One invocation per right-hand side, its column held in registers (z[r] = rows
        // 4r..4r+3; every index below is a constant, so no driver puts z in local memory), the
        // column-oriented order: y_kk = z_kk / T_kk, then z_i -= T[i][kk]·y_kk for the rows
        // still to solve, those updates independent of each other. T's column kk is read as
        // vec4 broadcasts (every invocation reads the same address). No barrier until write-back.
        for (var c = tid; c < kc; c += WG) {
            let col = c * TS;
            var z: array<vec4<f32>, 16>;
            z[0] = load4(col, 0u, w);
            if NB > 4u { z[1] = load4(col, 1u, w); }
            if NB > 8u { z[2] = load4(col, 2u, w); z[3] = load4(col, 3u, w); }
            if NB > 16u {
                z[4] = load4(col, 4u, w); z[5] = load4(col, 5u, w);
                z[6] = load4(col, 6u, w); z[7] = load4(col, 7u, w);
            }
            if NB > 32u {
                z[8] = load4(col, 8u, w); z[9] = load4(col, 9u, w);
                z[10] = load4(col, 10u, w); z[11] = load4(col, 11u, w);
                z[12] = load4(col, 12u, w); z[13] = load4(col, 13u, w);
                z[14] = load4(col, 14u, w); z[15] = load4(col, 15u, w);
            }
            for (var step = 0u; step < w; step++) {
                let kk = select(w - 1u - step, step, FORWARD);
                // z's vec4 holding row kk, by uniform selects (a dynamic index into z would
                // send it to local memory), then the row itself (dynamic index into a value).
                let kb = kk >> 2u;
                var zk = z[0];
                if NB > 4u { zk = select(zk, z[1], kb == 1u); }
                if NB > 8u { zk = select(select(zk, z[2], kb == 2u), z[3], kb == 3u); }
                if NB > 16u {
                    zk = select(select(zk, z[4], kb == 4u), z[5], kb == 5u);
                    zk = select(select(zk, z[6], kb == 6u), z[7], kb == 7u);
                }
                if NB > 32u {
                    zk = select(select(zk, z[8], kb == 8u), z[9], kb == 9u);
                    zk = select(select(zk, z[10], kb == 10u), z[11], kb == 11u);
                    zk = select(select(zk, z[12], kb == 12u), z[13], kb == 13u);
                    zk = select(select(zk, z[14], kb == 14u), z[15], kb == 15u);
                }
                var y = zk[kk & 3u];
                if !UNIT {
                    y = y / t_get(kk + kk * NB);
                }
                z[0] = eliminate(z[0], 0u, kk, y);
                if NB > 4u { z[1] = eliminate(z[1], 1u, kk, y); }
                if NB > 8u { z[2] = eliminate(z[2], 2u, kk, y); z[3] = eliminate(z[3], 3u, kk, y); }
                if NB > 16u {
                    z[4] = eliminate(z[4], 4u, kk, y); z[5] = eliminate(z[5], 5u, kk, y);
                    z[6] = eliminate(z[6], 6u, kk, y); z[7] = eliminate(z[7], 7u, kk, y);
                }
                if NB > 32u {
                    z[8] = eliminate(z[8], 8u, kk, y); z[9] = eliminate(z[9], 9u, kk, y);
                    z[10] = eliminate(z[10], 10u, kk, y); z[11] = eliminate(z[11], 11u, kk, y);
                    z[12] = eliminate(z[12], 12u, kk, y); z[13] = eliminate(z[13], 13u, kk, y);
                    z[14] = eliminate(z[14], 14u, kk, y); z[15] = eliminate(z[15], 15u, kk, y);
                }
            }
            store4(col, 0u, w, z[0]);
            if NB > 4u { store4(col, 1u, w, z[1]); }
            if NB > 8u { store4(col, 2u, w, z[2]); store4(col, 3u, w, z[3]); }
            if NB > 16u {
                store4(col, 4u, w, z[4]); store4(col, 5u, w, z[5]);
                store4(col, 6u, w, z[6]); store4(col, 7u, w, z[7]);
            }
            if NB > 32u {
                store4(col, 8u, w, z[8]); store4(col, 9u, w, z[9]);
                store4(col, 10u, w, z[10]); store4(col, 11u, w, z[11]);
                store4(col, 12u, w, z[12]); store4(col, 13u, w, z[13]);
                store4(col, 14u, w, z[14]); store4(col, 15u, w, z[15]);
            }
        }
        workgroupBarrier();
    } else {
        // Few right-hand sides: one invocation per column would leave the workgroup idle, so
        // every step updates all rows below the solved one in parallel, one barrier per row.
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
