// Batched Householder QR of small matrices: one workgroup factors MPW whole matrices held in
// workgroup memory, forms Q there too, and writes each result to global memory once.
// Column-major f32, LAPACK conventions (sgeqr2 / slarfg signs, sorg2r for Q).
//
// Entry points:
//   qr_small         A (M×N) → R (R_ROWS×N, exact zeros below the diagonal) and, when
//                    QCOLS > 0, Q (M×QCOLS).
//   lstsq_small      [A | B] (M×N | M×NRHS, M ≥ N) factored together, so the reflectors turn B
//                    into QᵀB on the way; then R X = (QᵀB)[0:N] by back substitution → X
//                    (N×NRHS), and info[b] = 1 + the first column whose diagonal in R is
//                    negligible, |R_ii| <= max(M, N)·ε·max|R_jj| (0 when none).
//   back_substitute  the back substitution alone on R and QᵀB in global memory, one workgroup per
//                    matrix: the batched blocked path's last step for systems too large for
//                    workgroup memory. Same X and info as lstsq_small.
//
// Work split of the small entries: the TPM lanes of a matrix own its columns, lane l owning
// columns l, l + TPM, … For reflector c every lane computes the column norm and the reflector
// itself (the same broadcast reads of column c, so no reduction and no barrier), then updates its
// own columns. One workgroupBarrier per reflector; none inside a reflector's work. Column c keeps
// x (the unscaled part below the diagonal) while reflector c is applied, so no lane writes what
// another reads in the same step: v = x / (alpha - beta) is applied on the fly, R's diagonal goes
// to a separate array.
//
// Workgroup memory per matrix (PER floats): the matrix, leading dimension LD (odd, so the lanes of
// a warp reading row i of their own columns hit distinct banks), COLS = max(N + NRHS, QCOLS)
// columns, then tau, 1/(alpha - beta) as a mantissa, R's diagonal, and that reciprocal's
// exponent (K each), then qr_small's column scale exponents (N). SM = MPW · PER floats in all.
// The defaults (a 32×32 QR with Q, two matrices per workgroup: 9 KiB, 64 invocations) fit
// WebGPU's default limits; the host sizes SM to the problem and picks MPW to fit the adapter.

override M: u32 = 32u;       // rows of A
override N: u32 = 32u;       // columns of A
override K: u32 = 32u;       // reflectors: min(M, N)
override NRHS: u32 = 0u;     // lstsq_small: right-hand sides appended to A
override QCOLS: u32 = 32u;   // columns of Q formed (0: R only)
override R_ROWS: u32 = 32u;  // rows of R written (K reduced, M complete)
override LD: u32 = 33u;      // leading dimension in workgroup memory
override COLS: u32 = 32u;    // columns held per matrix: max(N + NRHS, QCOLS)
override TPM: u32 = 32u;     // lanes (invocations) per matrix
override MPW: u32 = 2u;      // matrices per workgroup
override PER: u32 = 1216u;   // floats per matrix: LD · COLS + 4 · K + N
override SM: u32 = 2432u;    // MPW · PER
override WG: u32 = 64u;      // invocations per workgroup: TPM · MPW (back_substitute: any)
const EPS: f32 = 1.1920929e-7; // float32 machine epsilon

const F32_MAX: f32 = 3.40282347e38;
const F32_MIN_NORMAL: f32 = 1.17549435e-38;

struct Params {
    batch: u32,       // matrices in this dispatch
    a_offset: u32,    // element offset of matrix 0 in `a_in` (back_substitute: R_V)
    b_offset: u32,    // lstsq_small: B; back_substitute: QᵀB
    out_offset: u32,  // Q (qr_small) or X
    aux_offset: u32,  // R (qr_small) or info
    n: u32,           // back_substitute: order of R
    nrhs: u32,        // back_substitute: right-hand sides
    ldr: u32,         // back_substitute: leading dimension of R_V (its rows, m)
    r_stride: u32,    // back_substitute: elements between consecutive R_V
    ldc: u32,         // back_substitute: leading dimension of QᵀB (m)
    c_stride: u32,    // back_substitute: elements between consecutive QᵀB
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a_in: array<f32>;
@group(0) @binding(2) var<storage, read> b_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_main: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_aux: array<f32>;

var<workgroup> sm: array<f32, SM>;


// NaN test on the bits: WGSL lets a compiler assume no NaN in float comparisons (x != x may be
// folded to false), so NaN is detected as an exponent of all ones with a non-zero mantissa.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// Index of matrix `slot` of this workgroup in the dispatch (may be past p.batch).
fn first_matrix(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * MPW;
}

// The first column ≥ `lo` that `lane` owns.
fn first_owned(lane: u32, lo: u32) -> u32 {
    if lane >= lo {
        return lane;
    }
    return lane + ((lo - lane + TPM - 1u) / TPM) * TPM;
}

// Householder QR of the matrix at `base` in workgroup memory (sgeqr2): K reflectors, each applied
// to the columns up to `ncols`. Afterwards column c holds R above the diagonal and v_c below it
// (scaled as LAPACK's: v = x / (alpha - beta)); tau, 1/(alpha - beta) and R's diagonal are in the
// three arrays after the matrix.
fn factor(base: u32, lane: u32, live: bool, ncols: u32) {
    let scal = base + LD * COLS;
    for (var c = 0u; c < K; c++) {
        if live {
            let col = base + c * LD;
            let alpha = sm[col + c];
            // Overflow-safe norm of x = A[c+1:M, c] (snrm2): max, then scaled sum of squares.
            var scale = 0.0;
            var nan_seen = false;
            for (var i = c + 1u; i < M; i++) {
                let x = sm[col + i];
                nan_seen = nan_seen || is_nan(x);
                scale = max(scale, abs(x));
            }
            // x is scaled by 2^-es (exact): 1/scale itself is a flushed denormal above ~8.5e37.
            var es = 0;
            var unit = 0.0;
            if scale >= F32_MIN_NORMAL && scale <= F32_MAX {
                es = frexp(scale).exp;
                unit = 1.0;
            }
            // The first owned column's dot product rides along with the sum of squares.
            let j0 = first_owned(lane, c + 1u);
            let has0 = j0 < ncols;
            let cj0 = base + select(c, j0, has0) * LD;
            var ss = 0.0;
            var acc0 = 0.0;
            for (var i = c + 1u; i < M; i++) {
                let t = ldexp(sm[col + i], -es) * unit;
                ss = fma(t, t, ss);
                acc0 = fma(t, sm[cj0 + i], acc0);
            }
            var xnorm = ldexp(sqrt(ss), es);
            if scale > F32_MAX {
                xnorm = scale;
            }
            if nan_seen {
                xnorm = nan();
            }
            // slarfg: beta = -sign(alpha)·‖(alpha, x)‖, tau = (beta - alpha)/beta,
            // v = x · 1/(alpha - beta); tau = 0 (H = I) when x is already zero.
            var tau = 0.0;
            var beta = alpha;
            // 1/(alpha - beta) kept as invm · 2^-ed (invm in (1, 2]): near the top of the range
            // the plain reciprocal is a denormal a GPU flushes to zero.
            var invm = 0.0;
            var ed = 0;
            if xnorm != 0.0 {
                let s = max(abs(alpha), xnorm);
                var h = s * sqrt((alpha / s) * (alpha / s) + (xnorm / s) * (xnorm / s));
                if s > F32_MAX {
                    h = s;
                }
                if is_nan(xnorm) || is_nan(alpha) {
                    h = nan();
                }
                beta = select(h, -h, alpha >= 0.0);
                tau = (beta - alpha) / beta;
                let d = alpha - beta;
                ed = frexp(d).exp;
                invm = 1.0 / ldexp(d, -ed);
            }
            // v·a_j = (x·2^-es)·a_j · 2^es/(alpha - beta); scale ≤ |alpha - beta|.
            let dscale = ldexp(invm, es - ed);
            if (c % TPM) == lane {
                sm[scal + c] = tau;
                sm[scal + K + c] = invm;
                sm[scal + 2u * K + c] = beta;
                sm[scal + 3u * K + c] = f32(ed);
            }
            // Apply H_c = I - tau v vᵀ to the owned columns j > c.
            for (var j = j0; j < ncols; j += TPM) {
                let cj = base + j * LD;
                var acc = acc0;
                if j != j0 {
                    acc = 0.0;
                    for (var i = c + 1u; i < M; i++) {
                        acc = fma(ldexp(sm[col + i], -es) * unit, sm[cj + i], acc);
                    }
                }
                let w = tau * (sm[cj + c] + acc * dscale);
                sm[cj + c] = sm[cj + c] - w;
                for (var i = c + 1u; i < M; i++) {
                    sm[cj + i] = fma(-w, ldexp(sm[col + i] * invm, -ed), sm[cj + i]);
                }
            }
        }
        workgroupBarrier();
    }
    // x → v in place, each lane its own reflector columns (strictly below the diagonal: nothing
    // else reads there until the caller's next barrier).
    if live {
        for (var j = lane; j < K; j += TPM) {
            let invm = sm[scal + K + j];
            let ed = i32(sm[scal + 3u * K + j]);
            for (var i = j + 1u; i < M; i++) {
                sm[base + j * LD + i] = ldexp(sm[base + j * LD + i] * invm, -ed);
            }
        }
    }
}

// Column j of Q at the start of the backward accumulation (sorg2r): -tau_j v_j below the
// diagonal, 1 - tau_j on it, zeros above.
fn start_q_column(base: u32, j: u32) {
    let tau = sm[base + LD * COLS + j];
    let cj = base + j * LD;
    for (var i = 0u; i < j; i++) {
        sm[cj + i] = 0.0;
    }
    sm[cj + j] = 1.0 - tau;
    for (var i = j + 1u; i < M; i++) {
        sm[cj + i] = -tau * sm[cj + i];
    }
}

// Q = H_0 … H_{K-1} applied to the first QCOLS columns of the identity, in place over the
// reflectors (sorg2r): reflector i is applied, last to first, to columns i+1 .. QCOLS; column
// i+1 turns from reflector to Q column just before, when no lane reads its v any more.
fn form_q(base: u32, lane: u32, live: bool) {
    if live {
        for (var j = first_owned(lane, K); j < QCOLS; j += TPM) {
            for (var i = 0u; i < M; i++) {
                sm[base + j * LD + i] = select(0.0, 1.0, i == j);
            }
        }
    }
    for (var rev = K; rev > 0u; rev--) {
        let i = rev - 1u;
        if live {
            let tau = sm[base + LD * COLS + i];
            let ci = base + i * LD;
            for (var j = first_owned(lane, i + 1u); j < QCOLS; j += TPM) {
                if j == i + 1u && j < K {
                    start_q_column(base, j);
                }
                let cj = base + j * LD;
                var acc = sm[cj + i];
                for (var r = i + 1u; r < M; r++) {
                    acc = fma(sm[ci + r], sm[cj + r], acc);
                }
                let w = tau * acc;
                sm[cj + i] = sm[cj + i] - w;
                for (var r = i + 1u; r < M; r++) {
                    sm[cj + r] = fma(-w, sm[ci + r], sm[cj + r]);
                }
            }
        }
        workgroupBarrier();
    }
    if live && lane == 0u && K > 0u {
        start_q_column(base, 0u);
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn qr_small(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let first = first_matrix(wid, nwg);
    let slot = lid / TPM;
    let lane = lid % TPM;
    let live = first + slot < p.batch;
    let base = slot * PER;
    let count = min(MPW, p.batch - min(p.batch, first));

    // Load: the workgroup's matrices are consecutive in memory, read with consecutive lanes.
    let mn = M * N;
    let src = p.a_offset + first * mn;
    for (var e = lid; e < count * mn; e += WG) {
        let s = e / mn;
        let r = e % mn;
        sm[s * PER + (r % M) + (r / M) * LD] = a_in[src + e];
    }
    workgroupBarrier();

    // Each column scaled by a power of two to a largest magnitude in [0.5, 1) (exact; QR
    // commutes with column scaling, R's columns are scaled back when written), so no update
    // of a matrix near either end of the range passes through a denormal, which a GPU flushes.
    let ex = base + LD * COLS + 4u * K;
    if live {
        for (var j = lane; j < N; j += TPM) {
            var mx = 0.0;
            for (var i = 0u; i < M; i++) {
                mx = max(mx, abs(sm[base + i + j * LD]));
            }
            var e = 0;
            if mx > 0.0 && mx <= F32_MAX {
                e = frexp(mx).exp;
            }
            sm[ex + j] = f32(e);
            for (var i = 0u; i < M; i++) {
                sm[base + i + j * LD] = ldexp(sm[base + i + j * LD], -e);
            }
        }
    }
    workgroupBarrier();

    factor(base, lane, live, N);

    // R, written once: upper triangle, diagonal from its own array, exact zeros below.
    let rn = R_ROWS * N;
    let rdst = p.aux_offset + first * rn;
    for (var e = lid; e < count * rn; e += WG) {
        let s = e / rn;
        let r = e % rn;
        let i = r % R_ROWS;
        let j = r / R_ROWS;
        let sb = s * PER;
        var v = 0.0;
        if i < j {
            v = sm[sb + i + j * LD];
        } else if i == j {
            v = sm[sb + LD * COLS + 2u * K + i];
        }
        out_aux[rdst + e] = ldexp(v, i32(sm[sb + LD * COLS + 4u * K + j]));
    }
    if QCOLS == 0u {
        return;
    }
    workgroupBarrier();

    form_q(base, lane, live);

    // max(): the constant folder must never see a division by zero (QCOLS = 0 returned above).
    let qn = max(M * QCOLS, 1u);
    let qdst = p.out_offset + first * qn;
    for (var e = lid; e < count * M * QCOLS; e += WG) {
        let s = e / qn;
        let r = e % qn;
        out_main[qdst + e] = sm[s * PER + (r % M) + (r / M) * LD];
    }
}

@compute @workgroup_size(WG)
fn lstsq_small(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let first = first_matrix(wid, nwg);
    let slot = lid / TPM;
    let lane = lid % TPM;
    let live = first + slot < p.batch;
    let base = slot * PER;
    let count = min(MPW, p.batch - min(p.batch, first));

    let mn = M * N;
    let src = p.a_offset + first * mn;
    for (var e = lid; e < count * mn; e += WG) {
        let s = e / mn;
        let r = e % mn;
        sm[s * PER + (r % M) + (r / M) * LD] = a_in[src + e];
    }
    let mb = max(M * NRHS, 1u);
    let bsrc = p.b_offset + first * mb;
    for (var e = lid; e < count * M * NRHS; e += WG) {
        let s = e / mb;
        let r = e % mb;
        sm[s * PER + (r % M) + (N + r / M) * LD] = b_in[bsrc + e];
    }
    workgroupBarrier();

    // The reflectors reach the right-hand sides too: columns N.. become QᵀB.
    factor(base, lane, live, N + NRHS);

    // R X = (QᵀB)[0:N], each lane solving its own right-hand sides in place, column-oriented.
    let rdiag = base + LD * COLS + 2u * K;
    if live {
        for (var j = first_owned(lane, N); j < N + NRHS; j += TPM) {
            let cj = base + j * LD;
            for (var rev = N; rev > 0u; rev--) {
                let i = rev - 1u;
                let x = sm[cj + i] / sm[rdiag + i];
                sm[cj + i] = x;
                for (var r = 0u; r < i; r++) {
                    sm[cj + r] = fma(-sm[base + r + i * LD], x, sm[cj + r]);
                }
            }
        }
        if lane == 0u {
            // Rank check: |R_ii| <= max(M, N)·ε·max_j |R_jj| (or NaN) marks column i.
            var dmax = 0.0;
            for (var i = 0u; i < N; i++) {
                dmax = max(dmax, abs(sm[rdiag + i]));
            }
            let tol = dmax * f32(max(M, N)) * EPS;
            var info = 0u;
            for (var i = N; i > 0u; i--) {
                let d = sm[rdiag + i - 1u];
                if abs(d) <= tol || is_nan(d) {
                    info = i;
                }
            }
            out_aux[p.aux_offset + first + slot] = f32(info);
        }
    }
    workgroupBarrier();

    let xn = max(N * NRHS, 1u);
    let xdst = p.out_offset + first * xn;
    for (var e = lid; e < count * N * NRHS; e += WG) {
        let s = e / xn;
        let r = e % xn;
        out_main[xdst + e] = sm[s * PER + (r % N) + (N + r / N) * LD];
    }
}

// Back substitution R X = C[0:n] for one matrix per workgroup, in global memory: R is the upper
// triangle of R_V (a_in, ld p.ldr), C = QᵀB (b_in, ld p.ldc), X (out_main, n×nrhs), info in
// out_aux. Row by row from the bottom: X[i] /= R[i,i], then X[0:i] -= R[0:i, i] X[i].
@compute @workgroup_size(WG)
fn back_substitute(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = wid.x + wid.y * nwg.x;
    if b >= p.batch {
        return;
    }
    let n = p.n;
    let rb = p.a_offset + b * p.r_stride;
    let cb = p.b_offset + b * p.c_stride;
    let xb = p.out_offset + b * n * p.nrhs;
    for (var e = lid; e < n * p.nrhs; e += WG) {
        let i = e % n;
        let j = e / n;
        out_main[xb + e] = b_in[cb + i + j * p.ldc];
    }
    storageBarrier();
    workgroupBarrier();
    for (var rev = n; rev > 0u; rev--) {
        let i = rev - 1u;
        let d = a_in[rb + i + i * p.ldr];
        for (var j = lid; j < p.nrhs; j += WG) {
            out_main[xb + i + j * n] = out_main[xb + i + j * n] / d;
        }
        storageBarrier();
        workgroupBarrier();
        for (var e = lid; e < i * p.nrhs; e += WG) {
            let r = e % i;
            let j = e / i;
            out_main[xb + r + j * n] = fma(
                -a_in[rb + r + i * p.ldr],
                out_main[xb + i + j * n],
                out_main[xb + r + j * n],
            );
        }
        storageBarrier();
        workgroupBarrier();
    }
    if lid == 0u {
        // Rank check as in lstsq_small (m = rows of the factored matrix).
        var dmax = 0.0;
        for (var i = 0u; i < n; i++) {
            dmax = max(dmax, abs(a_in[rb + i + i * p.ldr]));
        }
        let tol = dmax * f32(max(p.ldr, n)) * EPS;
        var info = 0u;
        for (var i = n; i > 0u; i--) {
            let d = a_in[rb + (i - 1u) + (i - 1u) * p.ldr];
            if abs(d) <= tol || is_nan(d) {
                info = i;
            }
        }
        out_aux[p.aux_offset + b] = f32(info);
    }
}
