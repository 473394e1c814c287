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
// Workgroup storage: about 2 KiB (t_merge: 13 KiB); invocations: WG (default 256). Fits WebGPU's
// default limits.

override WG: u32 = 256u;
// Threads per column in the panel's multi-column update (WG / GS columns at a time).
const GS: u32 = 32u;
const MAX_GROUPS: u32 = 32u; // WG / GS for WG up to 1024
const F32_MAX: f32 = 3.40282347e38;

struct Params {
    m: u32,          // rows of each matrix
    j0: u32,         // panel start (column, and row of its first diagonal element)
    k: u32,          // reflectors in the panel
    ncols: u32,      // columns updated from j0 (>= k); geqr2 on a whole matrix passes n - j0
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

// T from S = VᵀV (in aux, k×k, ld aux_ld) and tau[tau_offset ..] (LAPACK slarft, forward, columnwise):
// T[i,i] = tau_i, T[0:i, i] = -tau_i · T[0:i, 0:i] · S[0:i, i]. T is written to `a` (bound to
// the T buffer), zeros below the diagonal. One workgroup per matrix.
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

// T of an outer panel (k = p.k columns) from the T blocks of its inner panels (ib = p.ncols
// wide, already on T's diagonal) and S = VᵀV of the outer panel's explicit V (aux):
//   T[0:p0, p0:p0+w] = -T[0:p0, 0:p0] · S[0:p0, p0:p0+w] · T[p0:p0+w, p0:p0+w]
// for the column blocks in order (the compact-WY product rule), and zeros below the diagonal
// blocks. One workgroup per matrix; k - ib ≤ 96 and ib ≤ 32 (X fits XMAX).
const XMAX: u32 = 3072u;
var<workgroup> xm: array<f32, XMAX>;

@compute @workgroup_size(WG)
fn t_merge(
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
    let k = p.k;
    let ib = p.ncols;
    for (var e = lid; e < k * k; e += WG) {
        let i = e % k;
        let c = e / k;
        if i / ib > c / ib {
            a[tb + i + c * p.t_ld] = 0.0;
        }
    }
    storageBarrier();
    workgroupBarrier();
    for (var p0 = ib; p0 < k; p0 += ib) {
        let w = min(ib, k - p0);
        for (var e = lid; e < p0 * w; e += WG) {
            let i = e % p0;
            let c = e / p0;
            // Four partial sums: four pairs of loads in flight instead of one dependent chain
            // of global loads (the whole merge was 159 µs for one 128-wide T on an H100).
            var a0 = 0.0;
            var a1 = 0.0;
            var a2 = 0.0;
            var a3 = 0.0;
            let tcol = tb + p0 + (p0 + c) * p.t_ld;
            let srow = sb + i + p0 * p.aux_ld;
            var l = 0u;
            for (; l + 4u <= c + 1u; l += 4u) {
                a0 = fma(aux[srow + l * p.aux_ld], a[tcol + l], a0);
                a1 = fma(aux[srow + (l + 1u) * p.aux_ld], a[tcol + l + 1u], a1);
                a2 = fma(aux[srow + (l + 2u) * p.aux_ld], a[tcol + l + 2u], a2);
                a3 = fma(aux[srow + (l + 3u) * p.aux_ld], a[tcol + l + 3u], a3);
            }
            for (; l <= c; l++) {
                a0 = fma(aux[srow + l * p.aux_ld], a[tcol + l], a0);
            }
            xm[i + c * p0] = (a0 + a1) + (a2 + a3);
        }
        workgroupBarrier();
        for (var e = lid; e < p0 * w; e += WG) {
            let i = e % p0;
            let c = e / p0;
            var a0 = 0.0;
            var a1 = 0.0;
            var a2 = 0.0;
            var a3 = 0.0;
            let trow = tb + i;
            let xcol = c * p0;
            var l = i;
            for (; l + 4u <= p0; l += 4u) {
                a0 = fma(a[trow + l * p.t_ld], xm[l + xcol], a0);
                a1 = fma(a[trow + (l + 1u) * p.t_ld], xm[l + 1u + xcol], a1);
                a2 = fma(a[trow + (l + 2u) * p.t_ld], xm[l + 2u + xcol], a2);
                a3 = fma(a[trow + (l + 3u) * p.t_ld], xm[l + 3u + xcol], a3);
            }
            for (; l < p0; l++) {
                a0 = fma(a[trow + l * p.t_ld], xm[l + xcol], a0);
            }
            a[tb + i + (p0 + c) * p.t_ld] = -((a0 + a1) + (a2 + a3));
        }
        storageBarrier();
        workgroupBarrier();
    }
}
