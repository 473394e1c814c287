// Householder QR building blocks, LAPACK semantics, column-major f32, batched over workgroups.
//
// Storage convention (LAPACK sgeqrf): after factoring, R is on and above the diagonal of the
// m×n matrix; reflector c (c = 0, 1, …) has an implicit 1 at row c and its vector v below it, in
// column c. H_c = I - tau_c v vᵀ; Q = H_0 H_1 … H_{k-1}.
//
// Entry points:
//   geqr2_panel  one workgroup factors one panel (columns j0 .. j0+k) of one matrix: norms,
//                reflectors (slarfg) and the update of the panel's other columns, in one launch.
//   extract_v    writes a panel's reflectors as an explicit (m-j0)×k matrix V (unit diagonal,
//                zeros above) for the GEMM-based larft/larfb.
//   larft        T (k×k upper triangular) of the compact-WY form H_0…H_{k-1} = I - V T Vᵀ,
//                from S = VᵀV and tau.
//   extract_r    copies the upper triangle (R) into a separate matrix, zeros below.
//   identity     sets a matrix to the first columns of the identity.
//   t_merge      the T of an outer panel from its inner panels' T blocks and S = VᵀV.
//
// Workgroup storage: about 2 KiB (t_merge: 16 KiB); invocations: WG (default 256; t_merge 256).
// Fits WebGPU's default limits.

override WG: u32 = 256u;
// Threads per column in the panel's multi-column update (WG / GS columns at a time).
const GS: u32 = 32u;
const MAX_GROUPS: u32 = 32u; // WG / GS for WG up to 1024
const F32_MAX: f32 = 3.40282347e38;

struct Params {
    m: u32,          // rows of each matrix
    j0: u32,         // panel start (column, and row of its first diagonal element); t_merge:
                     // the width of the blocks it merges
    k: u32,          // reflectors in the panel
    ncols: u32,      // columns updated from j0 (>= k); geqr2 on a whole matrix passes n - j0;
                     // t_merge: the pairs of blocks it merges
    ld: u32,         // leading dimension of the matrix
    offset: u32,     // element offset of matrix 0
    stride: u32,     // elements between matrices of a batch
    batch: u32,
    aux_ld: u32,     // leading dimension of the auxiliary operand (V, S, T or the output)
    aux_offset: u32,
    aux_stride: u32,
    tau_offset: u32,
    tau_stride: u32,
    rows_out: u32,   // extract_r / identity: rows of the output
    cols_out: u32,   // extract_r / identity: columns of the output
    t_ld: u32,       // larft: leading dimension of T
    t_offset: u32,
    t_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> tau: array<f32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> flag: atomic<u32>;
var<workgroup> wshare: array<f32, MAX_GROUPS>;
var<workgroup> scalar: f32;
var<workgroup> flag_copy: u32;


// NaN test on the bits: WGSL lets a compiler assume no NaN in float comparisons (x != x may be
// folded to false), so NaN is detected as an exponent of all ones with a non-zero mantissa.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

fn tree(lid: u32, is_max: bool) {
    for (var s = 128u; s > 0u; s = s / 2u) {
        if lid < s && lid + s < WG {
            if is_max {
                red[lid] = max(red[lid], red[lid + s]);
            } else {
                red[lid] = red[lid] + red[lid + s];
            }
        }
        workgroupBarrier();
    }
}

fn matrix_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(WG)
fn geqr2_panel(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = matrix_index(wid, nwg);
    if b >= p.batch {
        return;
    }
    let base = p.offset + b * p.stride;
    let tbase = p.tau_offset + b * p.tau_stride;
    let groups = WG / GS;
    let g = lid / GS;
    let l = lid % GS;

    for (var c = 0u; c < p.k; c++) {
        let col = p.j0 + c;
        let r0 = col; // diagonal row
        let cbase = base + col * p.ld;

        // 1. scale = max |x| over x = A[r0+1.., col], NaN seen?
        if lid == 0u {
            atomicStore(&flag, 0u);
        }
        workgroupBarrier();
        var mx = 0.0;
        for (var i = r0 + 1u + lid; i < p.m; i += WG) {
            let x = a[cbase + i];
            if is_nan(x) {
                atomicStore(&flag, 1u);
            }
            mx = max(mx, abs(x));
        }
        red[lid] = mx;
        workgroupBarrier();
        tree(lid, true);
        let scale = workgroupUniformLoad(&red[0]);
        // 2. scaled sum of squares, scaled by a power of two (exact; no reciprocal of a huge
        //    scale, which a GPU would flush to zero as a denormal).
        let e = frexp(scale).exp;
        var ss = 0.0;
        if scale > 0.0 && scale <= F32_MAX {
            for (var i = r0 + 1u + lid; i < p.m; i += WG) {
                let x = ldexp(a[cbase + i], -e);
                ss = fma(x, x, ss);
            }
        }
        workgroupBarrier();
        red[lid] = ss;
        workgroupBarrier();
        tree(lid, false);
        let total = workgroupUniformLoad(&red[0]);
        if lid == 0u {
            flag_copy = atomicLoad(&flag);
        }
        let nan_seen = workgroupUniformLoad(&flag_copy);
        var xnorm = ldexp(sqrt(total), e);
        if scale == 0.0 {
            xnorm = 0.0;
        }
        if scale > F32_MAX {
            xnorm = scale;
        }
        if nan_seen != 0u {
            xnorm = nan();
        }
        let alpha = a[cbase + r0];

        // 3. slarfg: beta = -sign(alpha)·‖(alpha, x)‖, tau = (beta - alpha)/beta,
        //    v = x / (alpha - beta). tau = 0 (H = I) when x is already zero.
        var t = 0.0;
        if xnorm != 0.0 {
            let s = max(abs(alpha), xnorm);
            let es = frexp(s).exp;
            let sa = ldexp(alpha, -es);
            let sx = ldexp(xnorm, -es);
            var h = ldexp(sqrt(sa * sa + sx * sx), es);
            if s > F32_MAX {
                h = s;
            }
            if is_nan(xnorm) || is_nan(alpha) {
                h = nan();
            }
            let beta = select(h, -h, alpha >= 0.0);
            // Quotients with both sides scaled by a power of two of the divisor, so a divisor
            // near the top of the range never turns into a flushed-to-zero reciprocal.
            let eb = frexp(beta).exp;
            t = ldexp(beta - alpha, -eb) / ldexp(beta, -eb);
            let d = alpha - beta;
            let ed = frexp(d).exp;
            let dd = ldexp(d, -ed);
            for (var i = r0 + 1u + lid; i < p.m; i += WG) {
                a[cbase + i] = ldexp(a[cbase + i], -ed) / dd;
            }
            storageBarrier();
            workgroupBarrier();
            if lid == 0u {
                a[cbase + r0] = beta;
            }
        }
        if lid == 0u {
            tau[tbase + col] = t;
            scalar = t;
        }
        storageBarrier();
        workgroupBarrier();
        let tc = workgroupUniformLoad(&scalar);

        // 4. Apply H_c = I - tau v vᵀ to columns col+1 .. j0+ncols, GS threads per column.
        let first = col + 1u;
        let end = p.j0 + p.ncols;
        for (var c0 = first; c0 < end; c0 += groups) {
            let c2 = c0 + g;
            let live = c2 < end && tc != 0.0;
            var part = 0.0;
            if live {
                let b2 = base + c2 * p.ld;
                for (var i = r0 + 1u + l; i < p.m; i += GS) {
                    part = fma(a[cbase + i], a[b2 + i], part);
                }
            }
            red[lid] = part;
            workgroupBarrier();
            for (var s = GS / 2u; s > 0u; s = s / 2u) {
                if l < s {
                    red[lid] = red[lid] + red[lid + s];
                }
                workgroupBarrier();
            }
            if live && l == 0u {
                let b2 = base + c2 * p.ld;
                let w = tc * (a[b2 + r0] + red[lid]);
                wshare[g] = w;
                a[b2 + r0] = a[b2 + r0] - w;
            }
            workgroupBarrier();
            if live {
                let w = wshare[g];
                let b2 = base + c2 * p.ld;
                for (var i = r0 + 1u + l; i < p.m; i += GS) {
                    a[b2 + i] = fma(-w, a[cbase + i], a[b2 + i]);
                }
            }
            storageBarrier();
            workgroupBarrier();
        }
    }
}

// One invocation per element of V ((m - j0) × k per matrix), batched.
@compute @workgroup_size(WG)
fn extract_v(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    let rows = p.m - p.j0;
    let per = rows * p.k;
    if idx >= per * p.batch {
        return;
    }
    let b = idx / per;
    let e = idx % per;
    let i = e % rows;
    let c = e / rows;
    var v = 0.0;
    if i == c {
        v = 1.0;
    } else if i > c {
        v = a[p.offset + b * p.stride + (p.j0 + i) + (p.j0 + c) * p.ld];
    }
    aux[p.aux_offset + b * p.aux_stride + i + c * p.aux_ld] = v;
}

// Vᵀ (k × (m-j0) per matrix, ld aux_ld): the transpose of extract_v's V, so that larfb's VᵀC
// is a product without a transposed operand. One workgroup per 32×32 tile, staged through
// workgroup memory so that both the reads (down a column of A) and the writes (down a column
// of Vᵀ) are contiguous.
const VT_TILE: u32 = 32u;
var<workgroup> vt_tile: array<f32, 1056>; // 32 × 33: a padded row per column of V

@compute @workgroup_size(WG)
fn extract_vt(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let g = wid.x + wid.y * nwg.x;
    let rows = p.m - p.j0;
    let row_tiles = (rows + VT_TILE - 1u) / VT_TILE;
    let per = row_tiles * ((p.k + VT_TILE - 1u) / VT_TILE);
    if g >= per * p.batch {
        return;
    }
    let b = g / per;
    let t = g % per;
    let i0 = (t % row_tiles) * VT_TILE;
    let c0 = (t / row_tiles) * VT_TILE;
    for (var e = lid; e < VT_TILE * VT_TILE; e += WG) {
        let i = i0 + e % VT_TILE;
        let c = c0 + e / VT_TILE;
        var v = 0.0;
        if i == c {
            v = 1.0;
        } else if i > c && i < rows && c < p.k {
            v = a[p.offset + b * p.stride + (p.j0 + i) + (p.j0 + c) * p.ld];
        }
        vt_tile[(e / VT_TILE) * (VT_TILE + 1u) + e % VT_TILE] = v;
    }
    workgroupBarrier();
    for (var e = lid; e < VT_TILE * VT_TILE; e += WG) {
        let c = c0 + e % VT_TILE;
        let i = i0 + e / VT_TILE;
        if i < rows && c < p.k {
            aux[p.aux_offset + b * p.aux_stride + c + i * p.aux_ld] =
                vt_tile[(e % VT_TILE) * (VT_TILE + 1u) + e / VT_TILE];
        }
    }
}

// T from S = VᵀV (in aux, k×k, ld aux_ld) and tau[tau_offset ..] (LAPACK slarft, forward,
// columnwise): T[i,i] = tau_i, T[0:i, i] = -tau_i · T[0:i, 0:i] · S[0:i, i]. T is written to `a`
// (bound to the T buffer), zeros below the diagonal. One workgroup per matrix.
@compute @workgroup_size(WG)
fn larft(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = matrix_index(wid, nwg);
    if b >= p.batch {
        return;
    }
    let sb = p.aux_offset + b * p.aux_stride;
    let tb = p.t_offset + b * p.t_stride;
    let taub = p.tau_offset + b * p.tau_stride;
    let k = p.k;
    for (var e = lid; e < k * k; e += WG) {
        a[tb + (e % k) + (e / k) * p.t_ld] = 0.0;
    }
    storageBarrier();
    workgroupBarrier();
    for (var i = 0u; i < k; i++) {
        let ti = tau[taub + i];
        // Rows r < i of column i; each depends only on columns < i, finished before.
        for (var r = lid; r < i; r += WG) {
            var acc = 0.0;
            for (var q = r; q < i; q++) {
                acc = fma(a[tb + r + q * p.t_ld], aux[sb + q + i * p.aux_ld], acc);
            }
            a[tb + r + i * p.t_ld] = -ti * acc;
        }
        if lid == 0u {
            a[tb + i + i * p.t_ld] = ti;
        }
        storageBarrier();
        workgroupBarrier();
    }
}

// out (rows_out × cols_out, ld aux_ld) = upper triangle of the first rows of A, zeros below.
@compute @workgroup_size(WG)
fn extract_r(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    let per = p.rows_out * p.cols_out;
    if idx >= per * p.batch {
        return;
    }
    let b = idx / per;
    let e = idx % per;
    let i = e % p.rows_out;
    let j = e / p.rows_out;
    var v = 0.0;
    if i <= j && i < p.m {
        v = a[p.offset + b * p.stride + i + j * p.ld];
    }
    aux[p.aux_offset + b * p.aux_stride + i + j * p.aux_ld] = v;
}

// aux (rows_out × cols_out, ld aux_ld) = the first columns of the identity.
@compute @workgroup_size(WG)
fn identity(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    let per = p.rows_out * p.cols_out;
    if idx >= per * p.batch {
        return;
    }
    let b = idx / per;
    let e = idx % per;
    let i = e % p.rows_out;
    let j = e / p.rows_out;
    aux[p.aux_offset + b * p.aux_stride + i + j * p.aux_ld] = select(0.0, 1.0, i == j);
}

// T of an outer panel (k = p.k columns) from the T blocks of its inner panels (32 wide, on
// T's diagonal) and S = VᵀV of the outer panel's explicit V (aux), by recursive doubling: the
// launch for a level merges pairs of diagonal blocks of bs = p.j0 columns (32, 64, 128: the
// blocks the launch before made), the pair at h0 (second half from h1 = h0 + bs, w2 ≤ bs wide):
//   T₁₂ = -T₁₁ · S₁₂ · T₂₂,  T₂₁ = 0
// (the compact-WY product rule, T₁₁ and T₂₂ upper triangular). Workgroup (matrix, pair, ti, tj)
// computes the 32×32 tile (ti, tj) of T₁₂:
//   T₁₂[ti, tj] = -Σ_{l ≥ ti} T₁₁[ti, l] · Y_l,  Y_l = Σ_{m ≤ tj} S₁₂[l, m] · T₂₂[m, tj],
// every operand tile staged in workgroup memory (four 32×32 tiles: 16 KiB), each invocation
// holding four outputs, and zeroes the tile (tj, ti) of T₂₁. Y is formed again by each of the
// tiles of a tile column: the work is small, the launches are what cost. Until session 14 there
// was one launch per block column, each reading the blocks the one before wrote: 7 launches of
// ~12 µs for a 256-wide T on an H100, now 3 (BENCHMARKS.md, v75). A single workgroup walking all
// block columns took 60 µs per 128-wide T (v55), issue-bound on one SM.
const TB: u32 = 32u;
// Left operands: a tile of S₁₂ at 0, of T₁₁ at TT; right operands: a tile of T₂₂ at 0, Y_l
// at TT.
const TT: u32 = 1024u;
var<workgroup> tm_left: array<f32, 2048>;
var<workgroup> tm_right: array<f32, 2048>;

// Row r, columns c0 + 8s (s = 0..3) of the 32×32 product of tm_left's tile at `lo` and
// tm_right's tile at `ro` (both row index fastest).
fn tile_product(lo: u32, ro: u32, r: u32, c0: u32) -> vec4<f32> {
    var y = vec4<f32>();
    for (var q = 0u; q < TB; q++) {
        let b = vec4(tm_right[ro + q + c0 * TB], tm_right[ro + q + (c0 + 8u) * TB],
                     tm_right[ro + q + (c0 + 16u) * TB], tm_right[ro + q + (c0 + 24u) * TB]);
        y = fma(vec4(tm_left[lo + r + q * TB]), b, y);
    }
    return y;
}

// Entry (r, c) of the 32×32 tile of T at rows r0, columns c0 (column-major, ld t_ld), where
// the tile is inside T (rows < rmax, columns < cmax) and, with `upper`, r ≤ c; else 0.
fn t_tile(tb: u32, r0: u32, c0: u32, r: u32, c: u32, rmax: u32, cmax: u32, upper: bool) -> f32 {
    if r0 + r < rmax && c0 + c < cmax && (!upper || r <= c) {
        return a[tb + r0 + r + (c0 + c) * p.t_ld];
    }
    return 0.0;
}

fn t_tile4(tb: u32, r0: u32, c0: u32, r: u32, c: u32, rmax: u32, cmax: u32,
           upper: bool) -> vec4<f32> {
    return vec4(t_tile(tb, r0, c0, r, c, rmax, cmax, upper),
                t_tile(tb, r0, c0, r, c + 8u, rmax, cmax, upper),
                t_tile(tb, r0, c0, r, c + 16u, rmax, cmax, upper),
                t_tile(tb, r0, c0, r, c + 24u, rmax, cmax, upper));
}

// The same for S (aux, ld aux_ld; every row inside S): entries of columns < cmax.
fn s_entry(sb: u32, r0: u32, c0: u32, r: u32, c: u32, cmax: u32) -> f32 {
    if c0 + c < cmax {
        return aux[sb + r0 + r + (c0 + c) * p.aux_ld];
    }
    return 0.0;
}

fn s_tile4(sb: u32, r0: u32, c0: u32, r: u32, c: u32, cmax: u32) -> vec4<f32> {
    return vec4(s_entry(sb, r0, c0, r, c, cmax), s_entry(sb, r0, c0, r, c + 8u, cmax),
                s_entry(sb, r0, c0, r, c + 16u, cmax), s_entry(sb, r0, c0, r, c + 24u, cmax));
}

fn left_put4(off: u32, r: u32, c0: u32, v: vec4<f32>) {
    tm_left[off + r + c0 * TB] = v.x;
    tm_left[off + r + (c0 + 8u) * TB] = v.y;
    tm_left[off + r + (c0 + 16u) * TB] = v.z;
    tm_left[off + r + (c0 + 24u) * TB] = v.w;
}

fn right_put4(off: u32, r: u32, c0: u32, v: vec4<f32>) {
    tm_right[off + r + c0 * TB] = v.x;
    tm_right[off + r + (c0 + 8u) * TB] = v.y;
    tm_right[off + r + (c0 + 16u) * TB] = v.z;
    tm_right[off + r + (c0 + 24u) * TB] = v.w;
}

@compute @workgroup_size(256)
fn t_merge(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let bs = p.j0;
    let tiles = bs / TB;
    let per = p.ncols * tiles * tiles; // workgroups per matrix: pairs × tiles²
    let g = matrix_index(wid, nwg);
    let b = g / per;
    if b >= p.batch {
        return;
    }
    let e = g % per;
    let h0 = (e / (tiles * tiles)) * 2u * bs;
    let h1 = h0 + bs;
    let ti = (e / tiles) % tiles;
    let tj = e % tiles;
    let k = p.k;
    if h1 + tj * TB >= k {
        return; // a tile column past a narrow second half
    }
    let sb = p.aux_offset + b * p.aux_stride;
    let tb = p.t_offset + b * p.t_stride;
    // Invocation lid: row r of the tiles, columns c0 + 8s for s = 0..3.
    let r = lid % TB;
    let c0 = lid / TB;
    let rows = h0 + ti * TB;
    let cols = h1 + tj * TB;
    var acc = vec4<f32>();
    for (var l = ti; l < tiles; l++) {
        var y = vec4<f32>();
        for (var m = 0u; m <= tj; m++) {
            left_put4(0u, r, c0, s_tile4(sb, h0 + l * TB, h1 + m * TB, r, c0, k));
            right_put4(0u, r, c0, t_tile4(tb, h1 + m * TB, cols, r, c0, k, k, m == tj));
            workgroupBarrier();
            y += tile_product(0u, 0u, r, c0);
            workgroupBarrier();
        }
        left_put4(TT, r, c0, t_tile4(tb, rows, h0 + l * TB, r, c0, k, k, l == ti));
        right_put4(TT, r, c0, y);
        workgroupBarrier();
        acc += tile_product(TT, TT, r, c0);
        workgroupBarrier();
    }
    for (var s = 0u; s < 4u; s++) {
        let c = c0 + 8u * s;
        if cols + c < k {
            a[tb + rows + r + (cols + c) * p.t_ld] = -acc[s];
            // T₂₁'s tile (tj, ti): row c of this tile's column range, column r of its row range.
            a[tb + cols + c + (rows + r) * p.t_ld] = 0.0;
        }
    }
}
