// Batched Householder QR of small matrices (M ≤ 64) with each column in registers: entry
// `qr_columns`, the same results and conventions as batched_qr.wgsl's `qr_small` (column-major
// f32, LAPACK sgeqr2 / slarfg signs, exact zeros below R's diagonal) by a different work split.
//
// One lane per column, and Q's columns are columns too: the lanes factor [A | I_M] (NC = N + M
// columns; N in mode R), so the reflectors turn the identity into Qᵀ on the way (sorg2r's
// backward accumulation and its K extra barriers disappear) and Q[i, r] = Qᵀ[r, i] is written
// transposed at the end. A lane keeps its whole column in up to four mat4x4 registers (16 rows
// each), every index a constant: no per-invocation array that a driver could put in local memory.
//
// Step c: the lane of column c publishes that column (as reflectors 0..c-1 left it) in workgroup
// memory; after one workgroupBarrier EVERY lane reads it (vec4 loads, the same addresses for all
// lanes: broadcasts) and forms reflector c itself (norm, slarfg, v): the same values in every
// lane, computed in parallel, so the control flow stays uniform — one lane computing the
// reflector while the others waited cost twice the rest of the kernel on an H100 (BENCHMARKS.md,
// v25). Each lane j > c then forms w = tau·(v·a_j) and a_j -= w·v, all in registers, and the lane
// of column c+1 publishes it for the next step into the other half of a two-part buffer (slower
// lanes may still read the current one): one barrier per reflector, no reduction, no subgroup
// operation. A step is one chain of dependent operations, and on an H100 each branch in it cost
// more than the arithmetic it would skip (v27): the step has no branch on c — rows above c are
// masked by selects, lanes j ≤ c compute the update and drop it — except the publishing store
// and the rarely taken tiny-residual path. The update leaves rows above c exactly alone (as
// LAPACK's slarf does, even when its coefficient is NaN). The steps run in phases (of 4, 8 or 16
// rows, by the column's height; see PH): from each phase on, the vec4s holding rows above it are
// neither read nor written (the same step code with those vec4s compiled out), since with the
// GPU full the steps are bound by instruction issue (BENCHMARKS.md v38, v39).
//
// UNROLL (columns of up to 32 rows): the steps are instead written out, each with its c a
// constant (`fast`), so that every row test above folds away, and without the rare paths
// (tiny residual, NaN, a non-finite update coefficient), whose code copied into every step
// doubled the kernel's size (168 KB instead of 85 for 32×32). A matrix that needs one of them
// anywhere is factored again by the loop of `step` from the staging area, which still holds it
// (BENCHMARKS.md v48).

// Scaling: each column of A is scaled once at load by a power of two 2^-e_j (exact) so that its
// largest magnitude is in [0.5, 1); Householder QR is column-scaling equivariant (R of A·D is R·D,
// Q unchanged, bit for bit when nothing under- or overflows), so R's column j is multiplied back by
// 2^e_j when written. Orthogonal updates keep every column's norm ≤ √M, so sums of squares cannot
// overflow afterwards. A residual norm² below 2^-60 (where flushed tiny squares could make the
// reflector non-orthogonal) takes a slow path that rescales x by its own largest power of two, as
// snrm2 would; a zero x gives tau = 0 (H = I, R keeps alpha), as slarfg.
//
// Memory: A is loaded coalesced into a workgroup staging area (leading dimension LDA ≡ 4 mod 8, so
// the lanes' vec4 column reads do not conflict), R and Q are written back through it coalesced.
// Per matrix: PER floats of staging, 2·16·QM floats for the published column and a redo flag;
// per workgroup one more word (see `redo_all`). MPW matrices per workgroup, WG = MPW·NC lanes. The
// defaults (32×32 with Q: 4.6 KiB, 64 lanes) fit WebGPU's default limits; the host checks each
// variant against the adapter (counting every word: llvmpipe's GL driver refused a variant
// that the count without the redo flags had put exactly at its 32 KiB limit).
//
// Measured slower on the lent H100 / H200 and kept out (BENCHMARKS.md): the reflector formed
// by its column's lane only (v47); the next matrix loaded during the steps (v50); Qᵀ's lanes a
// step late (v59); x reloaded for the update (v60); the steps of a phase as a loop (v61); Q
// formed after the factorization by lanes of Q's columns (v62); no staging area (v63). At
// 32×32, R alone takes as long as Q and R (v64): the Qᵀ lanes are not what limits the kernel.

override M: u32 = 32u;       // rows of A
override N: u32 = 32u;       // columns of A
override K: u32 = 32u;       // reflectors: min(M, N)
override QCOLS: u32 = 32u;   // columns of Q written (0: R only)
override R_ROWS: u32 = 32u;  // rows of R written (K reduced, M complete)
override NC: u32 = 64u;      // lanes per matrix: N, plus M for Qᵀ when QCOLS > 0
override QM: u32 = 2u;       // mat4x4 registers per column: ceil(M / 16), at most 4
override LDA: u32 = 36u;     // staging leading dimension: ≥ M, ≡ 4 mod 8
override PER: u32 = 1152u;   // staging floats per matrix: max(LDA·N, M·QCOLS), a multiple of 4
override MPW: u32 = 1u;      // matrices per workgroup
override WG: u32 = 64u;      // MPW · NC
override ST4: u32 = 288u;    // MPW · PER / 4
override VBN: u32 = 16u;     // 2 · MPW · 4 · QM
// Vec4s per phase of the step loops (not UNROLL; see there): one where a column is one register
// (16 rows), two where it is two, a register's four otherwise. H100, against phases of a
// register: per vec4 at 16×16 (10000 / 100000 matrices) 0.066 → 0.055 ms, 0.538 → 0.415 ms; at
// 32×32 per vec4 0.275 → 0.277 ms (eight copies of the step), per two vec4s 0.272 → 0.254 ms;
// 64×64 too noisy to tell (BENCHMARKS.md v39, v40).
override PH: u32 = select(select(4u, 2u, QM == 2u), 1u, QM == 1u);
// The steps written out, each c a constant (`fast`), instead of the phase loops of `step`.
override UNROLL: bool = true;

const F32_MAX: f32 = 3.40282347e38;
const F32_MIN_NORMAL: f32 = 1.17549435e-38;
const SLOW_SS: f32 = 8.67361738e-19; // 2^-60

struct Params {
    batch: u32,     // matrices in this dispatch
    a_offset: u32,  // element offset of matrix 0 in `a_in`
    q_offset: u32,  // of Q in `q_out`
    r_offset: u32,  // of R in `r_out`
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> r_out: array<f32>;

var<workgroup> st: array<vec4<f32>, ST4>;
var<workgroup> vb: array<vec4<f32>, VBN>;
// Unrolled pass (UNROLL): set by a lane whose matrix needs the pass redone (`redo_slot`, per
// matrix), and their OR for workgroupUniformLoad (which takes no atomic).
var<workgroup> redo_slot: array<atomic<u32>, MPW>;
var<workgroup> redo_all: u32;


// NaN test on the bits: WGSL lets a compiler assume no NaN in float comparisons.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) < 0x7f800000u;
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

fn st_get(i: u32) -> f32 {
    return st[i >> 2u][i & 3u];
}

fn st_set(i: u32, x: f32) {
    st[i >> 2u][i & 3u] = x;
}

// 2^e for e in [-126, 127], exactly.
fn pow2(e: i32) -> f32 {
    return bitcast<f32>(u32(e + 127) << 23u);
}

// Exponent e with |x|·2^-e in [0.5, 1) for a normal finite x; 0 otherwise (no scaling).
fn scale_exp(x: f32) -> i32 {
    if !(x >= F32_MIN_NORMAL && x <= F32_MAX) {
        return 0;
    }
    return i32((bitcast<u32>(x) >> 23u) & 0xffu) - 126;
}

// x·2^s, in two exact steps (|s| ≤ 254).
fn scaled(x: mat4x4<f32>, s: i32) -> mat4x4<f32> {
    let s1 = s / 2;
    return (x * pow2(s1)) * pow2(s - s1);
}

fn scaled1(x: f32, s: i32) -> f32 {
    let s1 = s / 2;
    return (x * pow2(s1)) * pow2(s - s1);
}

// Row indices of vec4 k of register q.
fn rows_of(q: u32, k: u32) -> vec4<u32> {
    return vec4<u32>(16u * q + 4u * k) + vec4<u32>(0u, 1u, 2u, 3u);
}

// Whether vec4 k of register q holds any row of the matrix (a constant once overridden).
fn vec_on(q: u32, k: u32) -> bool {
    return 16u * q + 4u * k < M;
}

fn dot4(a: vec4<f32>, b: vec4<f32>) -> f32 {
    return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, a.x * b.x)));
}

// Register q of a column from the staging area (column start `b4` in vec4s); zeros past row M.
fn read_mat(b4: u32, q: u32) -> mat4x4<f32> {
    var m = mat4x4<f32>();
    if vec_on(q, 0u) { m[0] = st[b4 + 4u * q]; }
    if vec_on(q, 1u) { m[1] = st[b4 + 4u * q + 1u]; }
    if vec_on(q, 2u) { m[2] = st[b4 + 4u * q + 2u]; }
    if vec_on(q, 3u) { m[3] = st[b4 + 4u * q + 3u]; }
    return m;
}

// Register q of column i of the identity.
fn unit_mat(i: u32, q: u32) -> mat4x4<f32> {
    let one = vec4<f32>(1.0);
    let zero = vec4<f32>(0.0);
    let iv = vec4<u32>(i);
    return mat4x4<f32>(
        select(zero, one, rows_of(q, 0u) == iv),
        select(zero, one, rows_of(q, 1u) == iv),
        select(zero, one, rows_of(q, 2u) == iv),
        select(zero, one, rows_of(q, 3u) == iv),
    );
}

fn mat_max(m: mat4x4<f32>) -> f32 {
    let t = max(max(abs(m[0]), abs(m[1])), max(abs(m[2]), abs(m[3])));
    return max(max(t.x, t.y), max(t.z, t.w));
}

// Register q of the published column in phase lo (rows past M, and vec4s above row 4·lo, zero).
fn load_v(b4: u32, q: u32, lo: u32) -> mat4x4<f32> {
    var v = mat4x4<f32>();
    if v_on(q, 0u, lo) { v[0] = vb[b4 + 4u * q]; }
    if v_on(q, 1u, lo) { v[1] = vb[b4 + 4u * q + 1u]; }
    if v_on(q, 2u, lo) { v[2] = vb[b4 + 4u * q + 2u]; }
    if v_on(q, 3u, lo) { v[3] = vb[b4 + 4u * q + 3u]; }
    return v;
}

// Σ a·b over register q in phase lo (its vec4s past row M or above row 4·lo are not touched).
fn mdot(a: mat4x4<f32>, b: mat4x4<f32>, q: u32, lo: u32) -> f32 {
    var d0 = 0.0;
    var d1 = 0.0;
    var d2 = 0.0;
    var d3 = 0.0;
    if v_on(q, 0u, lo) { d0 = dot4(a[0], b[0]); }
    if v_on(q, 1u, lo) { d1 = dot4(a[1], b[1]); }
    if v_on(q, 2u, lo) { d2 = dot4(a[2], b[2]); }
    if v_on(q, 3u, lo) { d3 = dot4(a[3], b[3]); }
    return (d0 + d1) + (d2 + d3);
}

// Whether vec4 k of register q takes part in a step of phase lo, whose reflector is zero above
// row 4·lo (`lo` is a constant at every call of `step`, so these tests fold away).
fn v_on(q: u32, k: u32, lo: u32) -> bool {
    return vec_on(q, k) && 4u * q + k >= lo;
}

fn mat_on(q: u32, lo: u32) -> bool {
    return q < QM && 4u * q + 3u >= lo;
}

fn max_from(m: mat4x4<f32>, q: u32, lo: u32) -> f32 {
    if !mat_on(q, lo) {
        return 0.0;
    }
    return mat_max(m);
}

fn axpy4(a: vec4<f32>, v: vec4<f32>, nw: vec4<f32>, q: u32, k: u32, c: u32) -> vec4<f32> {
    return select(a, fma(nw, v, a), rows_of(q, k) >= vec4<u32>(c));
}

// a - w·v at and below row c of register q; rows above c keep a exactly (v is zero there, but
// a non-finite w would turn them into NaN, where LAPACK's slarf leaves them alone).
// (Vec4s above row 4·lo, wholly above c, are left alone without a select.)
fn maxpy(a: mat4x4<f32>, v: mat4x4<f32>, w: f32, q: u32, c: u32, lo: u32) -> mat4x4<f32> {
    var r = a;
    let nw = vec4<f32>(-w);
    if v_on(q, 0u, lo) { r[0] = axpy4(a[0], v[0], nw, q, 0u, c); }
    if v_on(q, 1u, lo) { r[1] = axpy4(a[1], v[1], nw, q, 1u, c); }
    if v_on(q, 2u, lo) { r[2] = axpy4(a[2], v[2], nw, q, 2u, c); }
    if v_on(q, 3u, lo) { r[3] = axpy4(a[3], v[3], nw, q, 3u, c); }
    return r;
}

// a where m, else b, per vec4 of register q in phase lo (b above row 4·lo).
fn msel(b: mat4x4<f32>, a: mat4x4<f32>, m: bool, q: u32, lo: u32) -> mat4x4<f32> {
    var r = b;
    if v_on(q, 0u, lo) { r[0] = select(b[0], a[0], m); }
    if v_on(q, 1u, lo) { r[1] = select(b[1], a[1], m); }
    if v_on(q, 2u, lo) { r[2] = select(b[2], a[2], m); }
    if v_on(q, 3u, lo) { r[3] = select(b[3], a[3], m); }
    return r;
}

// a - w·x over register q's vec4s from lo on, unmasked (for a finite w, a row where x is zero
// keeps its value exactly).
fn mfma(a: mat4x4<f32>, x: mat4x4<f32>, w: f32, q: u32, lo: u32) -> mat4x4<f32> {
    var r = a;
    let nw = vec4<f32>(-w);
    if v_on(q, 0u, lo) { r[0] = fma(nw, x[0], a[0]); }
    if v_on(q, 1u, lo) { r[1] = fma(nw, x[1], a[1]); }
    if v_on(q, 2u, lo) { r[2] = fma(nw, x[2], a[2]); }
    if v_on(q, 3u, lo) { r[3] = fma(nw, x[3], a[3]); }
    return r;
}

// `at`, or the vec4 of register q that holds row c where one does (phase lo): over all
// registers, the vec4 whose component c % 4 is row c (a select, not a product with a unit
// vector, which would turn an infinite entry elsewhere into NaN).
fn row_pick(at: vec4<f32>, m: mat4x4<f32>, q: u32, c: u32, lo: u32) -> vec4<f32> {
    let cv = vec4<u32>(c);
    var r = at;
    if v_on(q, 0u, lo) { r = select(r, m[0], rows_of(q, 0u) == cv); }
    if v_on(q, 1u, lo) { r = select(r, m[1], rows_of(q, 1u) == cv); }
    if v_on(q, 2u, lo) { r = select(r, m[2], rows_of(q, 2u) == cv); }
    if v_on(q, 3u, lo) { r = select(r, m[3], rows_of(q, 3u) == cv); }
    return r;
}

// Register q restricted to rows > c (x of the reflector for row c); in phase lo the vec4s above
// row 4·lo are zero without a select.
fn mat_below(m: mat4x4<f32>, q: u32, c: u32, lo: u32) -> mat4x4<f32> {
    let cv = vec4<u32>(c);
    let z = vec4<f32>(0.0);
    var r = mat4x4<f32>();
    if v_on(q, 0u, lo) { r[0] = select(z, m[0], rows_of(q, 0u) > cv); }
    if v_on(q, 1u, lo) { r[1] = select(z, m[1], rows_of(q, 1u) > cv); }
    if v_on(q, 2u, lo) { r[2] = select(z, m[2], rows_of(q, 2u) > cv); }
    if v_on(q, 3u, lo) { r[3] = select(z, m[3], rows_of(q, 3u) > cv); }
    return r;
}

// The published column's rows below c (x of reflector c), per register, in phase lo.
struct Below {
    x0: mat4x4<f32>,
    x1: mat4x4<f32>,
    x2: mat4x4<f32>,
    x3: mat4x4<f32>,
}

fn load_x(b4: u32, c: u32, lo: u32) -> Below {
    var r = Below(mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>());
    if mat_on(0u, lo) { r.x0 = mat_below(load_v(b4, 0u, lo), 0u, c, lo); }
    if mat_on(1u, lo) { r.x1 = mat_below(load_v(b4, 1u, lo), 1u, c, lo); }
    if mat_on(2u, lo) { r.x2 = mat_below(load_v(b4, 2u, lo), 2u, c, lo); }
    if mat_on(3u, lo) { r.x3 = mat_below(load_v(b4, 3u, lo), 3u, c, lo); }
    return r;
}

// Row c of register q set to x (c ≥ 4·lo: the vec4s above row 4·lo are left alone).
fn put(m: mat4x4<f32>, q: u32, c: u32, x: f32, lo: u32) -> mat4x4<f32> {
    let cv = vec4<u32>(c);
    let xv = vec4<f32>(x);
    var r = m;
    if v_on(q, 0u, lo) { r[0] = select(m[0], xv, rows_of(q, 0u) == cv); }
    if v_on(q, 1u, lo) { r[1] = select(m[1], xv, rows_of(q, 1u) == cv); }
    if v_on(q, 2u, lo) { r[2] = select(m[2], xv, rows_of(q, 2u) == cv); }
    if v_on(q, 3u, lo) { r[3] = select(m[3], xv, rows_of(q, 3u) == cv); }
    return r;
}

// Reflector c as the lanes apply it: H = I - coef·g·gᵀ with g = 2^-e·(x + (alpha - beta)·e_c)
// (x: the column below row c), i.e. v = g / g_c and coef = tau·g_c², so that no lane forms v
// element by element (a product per row) and one division remains. e = 0 unless the residual is
// tiny (then x is rescaled by 2^-e before use, so g and coef stay near 1 instead of under- or
// overflowing).
struct Reflector {
    beta: f32,
    coef: f32,
    gc: f32, // g's entry at row c: 2^-e·(alpha - beta)
    e: i32,
}

// slarfg for row c of the column whose rows below c are x and whose row c is alpha, as `factor`
// in batched_qr.wgsl but on a prescaled column (see the header). tau itself is not needed (only R
// and Q are written): coef = tau / (alpha - beta)² = -1 / (beta·(alpha - beta)).
fn reflector(x0: mat4x4<f32>, x1: mat4x4<f32>, x2: mat4x4<f32>, x3: mat4x4<f32>, alpha: f32,
             c: u32, lo: u32) -> Reflector {
    let ss = (mdot(x0, x0, 0u, lo) + mdot(x1, x1, 1u, lo))
        + (mdot(x2, x2, 2u, lo) + mdot(x3, x3, 3u, lo));
    var r = Reflector(alpha, 0.0, 0.0, 0);
    let bad = is_nan(ss) || is_nan(alpha);
    if bad || ss >= SLOW_SS {
        // The column is prescaled: alpha² + ‖x‖² ≤ M cannot overflow, and ‖x‖² ≥ 2^-60 keeps
        // |beta·(alpha - beta)| ≥ 2^-60 (alpha and beta have opposite signs).
        var h = sqrt(fma(alpha, alpha, ss));
        if bad {
            h = nan();
        }
        r.beta = select(h, -h, alpha >= 0.0);
        r.gc = alpha - r.beta;
        r.coef = -1.0 / (r.beta * r.gc);
    } else {
        // Tiny or zero x: its norm from x scaled by its own largest power of two (snrm2).
        let mx = max(max(max_from(x0, 0u, lo), max_from(x1, 1u, lo)),
                     max(max_from(x2, 2u, lo), max_from(x3, 3u, lo)));
        let e = scale_exp(mx);
        let y0 = scaled(x0, -e);
        let y1 = scaled(x1, -e);
        let y2 = scaled(x2, -e);
        let y3 = scaled(x3, -e);
        let sy = (mdot(y0, y0, 0u, lo) + mdot(y1, y1, 1u, lo))
            + (mdot(y2, y2, 2u, lo) + mdot(y3, y3, 3u, lo));
        if sy != 0.0 {
            let xnorm = scaled1(sqrt(sy), e);
            let s = max(abs(alpha), xnorm);
            var h = s * sqrt((alpha / s) * (alpha / s) + (xnorm / s) * (xnorm / s));
            if s > F32_MAX {
                h = s;
            }
            r.beta = select(h, -h, alpha >= 0.0);
            // g = y + 2^-e·(alpha - beta)·e_c; |alpha - beta| ≥ xnorm ≈ 2^e·√sy, so coef =
            // tau·(2^e / (alpha - beta))² is of order one.
            let de = scaled1(alpha - r.beta, -e);
            r.gc = de;
            r.coef = ((r.beta - alpha) / r.beta) / (de * de);
            r.e = e;
        }
    }
    return r;
}

// A column's register q to workgroup memory from vec4 b4 (all its rows: the next reflector's
// column, read by every lane).
fn publish_mat(b4: u32, x: mat4x4<f32>, q: u32, lo: u32) {
    if v_on(q, 0u, lo) { vb[b4 + 4u * q] = x[0]; }
    if v_on(q, 1u, lo) { vb[b4 + 4u * q + 1u] = x[1]; }
    if v_on(q, 2u, lo) { vb[b4 + 4u * q + 2u] = x[2]; }
    if v_on(q, 3u, lo) { vb[b4 + 4u * q + 3u] = x[3]; }
}

// The registers from lo on (the rows later steps read) to workgroup memory.
fn publish(b4: u32, a0: mat4x4<f32>, a1: mat4x4<f32>, a2: mat4x4<f32>, a3: mat4x4<f32>,
           lo: u32) {
    if mat_on(0u, lo) { publish_mat(b4, a0, 0u, lo); }
    if mat_on(1u, lo) { publish_mat(b4, a1, 1u, lo); }
    if mat_on(2u, lo) { publish_mat(b4, a2, 2u, lo); }
    if mat_on(3u, lo) { publish_mat(b4, a3, 3u, lo); }
}

// Rows row0 .. row0+3 of Qᵀ's column i (Q's row i) to the staging area, Q column-major (ld M).
fn stage_q4(y: vec4<f32>, row0: u32, base: u32, i: u32) {
    if row0 < QCOLS { st_set(base + i + row0 * M, y.x); }
    if row0 + 1u < QCOLS { st_set(base + i + (row0 + 1u) * M, y.y); }
    if row0 + 2u < QCOLS { st_set(base + i + (row0 + 2u) * M, y.z); }
    if row0 + 3u < QCOLS { st_set(base + i + (row0 + 3u) * M, y.w); }
}

fn stage_q(y: mat4x4<f32>, q: u32, base: u32, i: u32) {
    if vec_on(q, 0u) { stage_q4(y[0], 16u * q, base, i); }
    if vec_on(q, 1u) { stage_q4(y[1], 16u * q + 4u, base, i); }
    if vec_on(q, 2u) { stage_q4(y[2], 16u * q + 8u, base, i); }
    if vec_on(q, 3u) { stage_q4(y[3], 16u * q + 12u, base, i); }
}

// R's column j (register q) to the staging area from vec4 b4: zeros below the diagonal.
fn stage_r(r: mat4x4<f32>, q: u32, b4: u32, j: u32) {
    let zero = vec4<f32>(0.0);
    let jv = vec4<u32>(j);
    if vec_on(q, 0u) { st[b4 + 4u * q] = select(zero, r[0], rows_of(q, 0u) <= jv); }
    if vec_on(q, 1u) { st[b4 + 4u * q + 1u] = select(zero, r[1], rows_of(q, 1u) <= jv); }
    if vec_on(q, 2u) { st[b4 + 4u * q + 2u] = select(zero, r[2], rows_of(q, 2u) <= jv); }
    if vec_on(q, 3u) { st[b4 + 4u * q + 3u] = select(zero, r[3], rows_of(q, 3u) <= jv); }
}

// Element e of the workgroup's matrices (consecutive, column-major) to the staging area, when
// e < total.
fn stage_a(e: u32, total: u32, x: f32) {
    if e < total {
        let mn = M * N;
        let t = e / mn;
        let r = e % mn;
        st_set(t * PER + (r % M) + (r / M) * LDA, x);
    }
}

// The lane's column into registers: A's column j scaled (by 2^-ex) from the staging area, or
// column j - N of the identity; the lane of column 0 publishes it for step 0.
fn start(live: bool, sb: u32, slot: u32, j: u32, a0: ptr<function, mat4x4<f32>>,
         a1: ptr<function, mat4x4<f32>>, a2: ptr<function, mat4x4<f32>>,
         a3: ptr<function, mat4x4<f32>>, ex: ptr<function, i32>) {
    if live {
        if j < N {
            let b4 = (sb + j * LDA) / 4u;
            *a0 = read_mat(b4, 0u);
            if QM > 1u { *a1 = read_mat(b4, 1u); }
            if QM > 2u { *a2 = read_mat(b4, 2u); }
            if QM > 3u { *a3 = read_mat(b4, 3u); }
            *ex = scale_exp(max(max(mat_max(*a0), mat_max(*a1)),
                                max(mat_max(*a2), mat_max(*a3))));
            *a0 = scaled(*a0, -*ex);
            if QM > 1u { *a1 = scaled(*a1, -*ex); }
            if QM > 2u { *a2 = scaled(*a2, -*ex); }
            if QM > 3u { *a3 = scaled(*a3, -*ex); }
        } else {
            *a0 = unit_mat(j - N, 0u);
            if QM > 1u { *a1 = unit_mat(j - N, 1u); }
            if QM > 2u { *a2 = unit_mat(j - N, 2u); }
            if QM > 3u { *a3 = unit_mat(j - N, 3u); }
        }
        if j == 0u {
            publish(slot * 4u * QM, *a0, *a1, *a2, *a3, 0u);
        }
    }
}

@compute @workgroup_size(WG)
fn qr_columns(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let first = (wid.x + wid.y * nwg.x) * MPW;
    let slot = lid / NC;
    let j = lid % NC;
    let live = first + slot < p.batch;
    let count = min(MPW, p.batch - min(p.batch, first));
    let sb = slot * PER;

    // Load: the workgroup's matrices are consecutive in memory, read with consecutive lanes.
    let mn = M * N;
    // Eight loads in flight per lane (unconditional, from addresses clamped into the
    // workgroup's matrices), not one memory latency per element.
    let src = p.a_offset + first * mn;
    let total = count * mn;
    let last = src + max(total, 1u) - 1u;
    for (var e = lid; e < total; e += 8u * WG) {
        let v0 = a_in[min(src + e, last)];
        let v1 = a_in[min(src + e + WG, last)];
        let v2 = a_in[min(src + e + 2u * WG, last)];
        let v3 = a_in[min(src + e + 3u * WG, last)];
        let v4 = a_in[min(src + e + 4u * WG, last)];
        let v5 = a_in[min(src + e + 5u * WG, last)];
        let v6 = a_in[min(src + e + 6u * WG, last)];
        let v7 = a_in[min(src + e + 7u * WG, last)];
        stage_a(e, total, v0);
        stage_a(e + WG, total, v1);
        stage_a(e + 2u * WG, total, v2);
        stage_a(e + 3u * WG, total, v3);
        stage_a(e + 4u * WG, total, v4);
        stage_a(e + 5u * WG, total, v5);
        stage_a(e + 6u * WG, total, v6);
        stage_a(e + 7u * WG, total, v7);
    }
    // Rows M .. (the next multiple of 4) are read as part of the last vec4: zeros.
    if live && j < N {
        for (var i = M; i < ((M + 3u) & ~3u); i++) {
            st_set(sb + j * LDA + i, 0.0);
        }
    }
    if lid < MPW {
        atomicStore(&redo_slot[lid], 0u);
    }
    workgroupBarrier();

    var a0 = mat4x4<f32>();
    var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>();
    var a3 = mat4x4<f32>();
    var ex = 0; // this column of A was scaled by 2^-ex
    start(live, sb, slot, j, &a0, &a1, &a2, &a3, &ex);
    var rdiag = 0.0; // R's diagonal entry of this lane's column (prescaled), once reflected

    if UNROLL {
        // Every step written out with its c a constant (`fast`, in `quad`s of four); the host sets
        // UNROLL only for M ≤ 32, so K ≤ 32 steps: eight quads.
        var bad = false;
        if 0u < K { quad(0u, slot, j, &a0, &a1, &a2, &a3, &rdiag, &bad); }
        if 4u < K { quad(1u, slot, j, &a0, &a1, &a2, &a3, &rdiag, &bad); }
        if 8u < K { quad(2u, slot, j, &a0, &a1, &a2, &a3, &rdiag, &bad); }
        if 12u < K { quad(3u, slot, j, &a0, &a1, &a2, &a3, &rdiag, &bad); }
        if 16u < K { quad(4u, slot, j, &a0, &a1, &a2, &a3, &rdiag, &bad); }
        if 20u < K { quad(5u, slot, j, &a0, &a1, &a2, &a3, &rdiag, &bad); }
        if 24u < K { quad(6u, slot, j, &a0, &a1, &a2, &a3, &rdiag, &bad); }
        if 28u < K { quad(7u, slot, j, &a0, &a1, &a2, &a3, &rdiag, &bad); }
        // A matrix that needed one of `step`'s rare paths anywhere is factored again from the
        // staging area (intact until R is written) with `step`, in one loop (speed no longer
        // matters there; code size does). The whole workgroup takes the loop (its barriers are
        // uniform), the lanes of the other matrices keep their registers (step's `live` false),
        // so that a matrix's results never depend on its neighbours in the batch.
        if live && bad {
            atomicOr(&redo_slot[slot], 1u);
        }
        workgroupBarrier();
        if lid == 0u {
            var any = 0u;
            for (var s = 0u; s < MPW; s++) {
                any |= atomicLoad(&redo_slot[s]);
            }
            redo_all = any;
        }
        if workgroupUniformLoad(&redo_all) != 0u {
            let again = live && atomicLoad(&redo_slot[slot]) != 0u;
            start(again, sb, slot, j, &a0, &a1, &a2, &a3, &ex);
            rdiag = select(rdiag, 0.0, again);
            for (var c = 0u; c < K; c++) {
                step(c, 0u, slot, j, again, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
    } else {
        // Step c (see `step`) in phases of PH vec4s: reflector c is zero above row c, so from step
        // 4·PH·h on the vec4s of rows above that are neither read nor changed, and phase h's steps
        // are compiled without them (fewer instructions per step: with the GPU full, the steps are
        // bound by instruction issue). Phases past the last register are compiled out.
        if PH * 0u < 4u * QM {
            for (var c = 4u * PH * 0u; c < min(K, 4u * PH * 1u); c++) {
                step(c, PH * 0u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 1u < 4u * QM {
            for (var c = 4u * PH * 1u; c < min(K, 4u * PH * 2u); c++) {
                step(c, PH * 1u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 2u < 4u * QM {
            for (var c = 4u * PH * 2u; c < min(K, 4u * PH * 3u); c++) {
                step(c, PH * 2u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 3u < 4u * QM {
            for (var c = 4u * PH * 3u; c < min(K, 4u * PH * 4u); c++) {
                step(c, PH * 3u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 4u < 4u * QM {
            for (var c = 4u * PH * 4u; c < min(K, 4u * PH * 5u); c++) {
                step(c, PH * 4u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 5u < 4u * QM {
            for (var c = 4u * PH * 5u; c < min(K, 4u * PH * 6u); c++) {
                step(c, PH * 5u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 6u < 4u * QM {
            for (var c = 4u * PH * 6u; c < min(K, 4u * PH * 7u); c++) {
                step(c, PH * 6u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 7u < 4u * QM {
            for (var c = 4u * PH * 7u; c < min(K, 4u * PH * 8u); c++) {
                step(c, PH * 7u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 8u < 4u * QM {
            for (var c = 4u * PH * 8u; c < min(K, 4u * PH * 9u); c++) {
                step(c, PH * 8u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 9u < 4u * QM {
            for (var c = 4u * PH * 9u; c < min(K, 4u * PH * 10u); c++) {
                step(c, PH * 9u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 10u < 4u * QM {
            for (var c = 4u * PH * 10u; c < min(K, 4u * PH * 11u); c++) {
                step(c, PH * 10u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 11u < 4u * QM {
            for (var c = 4u * PH * 11u; c < min(K, 4u * PH * 12u); c++) {
                step(c, PH * 11u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 12u < 4u * QM {
            for (var c = 4u * PH * 12u; c < min(K, 4u * PH * 13u); c++) {
                step(c, PH * 12u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 13u < 4u * QM {
            for (var c = 4u * PH * 13u; c < min(K, 4u * PH * 14u); c++) {
                step(c, PH * 13u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 14u < 4u * QM {
            for (var c = 4u * PH * 14u; c < min(K, 4u * PH * 15u); c++) {
                step(c, PH * 14u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
        if PH * 15u < 4u * QM {
            for (var c = 4u * PH * 15u; c < min(K, 4u * PH * 16u); c++) {
                step(c, PH * 15u, slot, j, live, &a0, &a1, &a2, &a3, &rdiag);
            }
        }
    }
    if j < K {
        a0 = put(a0, 0u, j, rdiag, 0u);
        if QM > 1u { a1 = put(a1, 1u, j, rdiag, 0u); }
        if QM > 2u { a2 = put(a2, 2u, j, rdiag, 0u); }
        if QM > 3u { a3 = put(a3, 3u, j, rdiag, 0u); }
    }

    // R: column j scaled back by 2^ex, zeros below the diagonal, through the staging area.
    if live && j < N {
        let b4 = (sb + j * LDA) / 4u;
        stage_r(scaled(a0, ex), 0u, b4, j);
        if QM > 1u { stage_r(scaled(a1, ex), 1u, b4, j); }
        if QM > 2u { stage_r(scaled(a2, ex), 2u, b4, j); }
        if QM > 3u { stage_r(scaled(a3, ex), 3u, b4, j); }
    }
    workgroupBarrier();
    let rn = R_ROWS * N;
    let rdst = p.r_offset + first * rn;
    for (var e = lid; e < count * rn; e += WG) {
        let t = e / rn;
        let r = e % rn;
        out_r(rdst + e, st_get(t * PER + (r % R_ROWS) + (r / R_ROWS) * LDA));
    }
    if QCOLS == 0u {
        return;
    }
    workgroupBarrier();

    // Q[i, r] = Qᵀ[r, i]: lane N + i holds Qᵀ's column i, i.e. Q's row i.
    if live && j >= N {
        stage_q(a0, 0u, sb, j - N);
        if QM > 1u { stage_q(a1, 1u, sb, j - N); }
        if QM > 2u { stage_q(a2, 2u, sb, j - N); }
        if QM > 3u { stage_q(a3, 3u, sb, j - N); }
    }
    workgroupBarrier();
    // max(): the constant folder must never see a division by zero (QCOLS = 0 returned above).
    let qn = max(M * QCOLS, 1u);
    let qdst = p.q_offset + first * qn;
    for (var e = lid; e < count * M * QCOLS; e += WG) {
        let t = e / qn;
        let r = e % qn;
        q_out[qdst + e] = st_get(t * PER + r);
    }
}

fn out_r(i: u32, x: f32) {
    r_out[i] = x;
}

// Step c: column c, as reflectors 0..c-1 left it, was published in half c % 2 of vb by its
// lane. Every lane reads it and forms reflector c itself (the same values in every lane:
// uniform control flow, no lane computing while the others wait), applies it to its column,
// and the lane of column c+1 publishes that column into the other half for the next step.
// Vec4s below `lo` (rows all above c: c ≥ 4·lo) are left out; `lo` is a constant at each
// call. The staging area is not read after the first barrier until R is written into it.
fn step(c: u32, lo: u32, slot: u32, j: u32, live: bool, a0: ptr<function, mat4x4<f32>>,
        a1: ptr<function, mat4x4<f32>>, a2: ptr<function, mat4x4<f32>>,
        a3: ptr<function, mat4x4<f32>>, rdiag: ptr<function, f32>) {
    workgroupBarrier();
    let half = c % 2u;
    let b4 = (half * MPW + slot) * 4u * QM;
    let xs = load_x(b4, c, lo);
    let x0 = xs.x0;
    let x1 = xs.x1;
    let x2 = xs.x2;
    let x3 = xs.x3;
    let alpha = vb[b4 + c / 4u][c % 4u];
    let rf = reflector(x0, x1, x2, x3, alpha, c, lo);
    *rdiag = select(*rdiag, rf.beta, live && j == c);
    // Lanes j ≤ c compute the update too and drop it (a select, not a branch: inside the
    // step's chain of dependent operations, branches cost more than the arithmetic).
    let upd = live && j > c;
    var g0 = x0;
    var g1 = x1;
    var g2 = x2;
    var g3 = x3;
    if rf.e != 0 {
        if mat_on(0u, lo) { g0 = scaled(x0, -rf.e); }
        if mat_on(1u, lo) { g1 = scaled(x1, -rf.e); }
        if mat_on(2u, lo) { g2 = scaled(x2, -rf.e); }
        if mat_on(3u, lo) { g3 = scaled(x3, -rf.e); }
    }
    if mat_on(0u, lo) { g0 = put(g0, 0u, c, rf.gc, lo); }
    if mat_on(1u, lo) { g1 = put(g1, 1u, c, rf.gc, lo); }
    if mat_on(2u, lo) { g2 = put(g2, 2u, c, rf.gc, lo); }
    if mat_on(3u, lo) { g3 = put(g3, 3u, c, rf.gc, lo); }
    let d = (mdot(*a0, g0, 0u, lo) + mdot(*a1, g1, 1u, lo))
        + (mdot(*a2, g2, 2u, lo) + mdot(*a3, g3, 3u, lo));
    let w = rf.coef * d;
    if mat_on(0u, lo) { *a0 = msel(*a0, maxpy(*a0, g0, w, 0u, c, lo), upd, 0u, lo); }
    if mat_on(1u, lo) { *a1 = msel(*a1, maxpy(*a1, g1, w, 1u, c, lo), upd, 1u, lo); }
    if mat_on(2u, lo) { *a2 = msel(*a2, maxpy(*a2, g2, w, 2u, c, lo), upd, 2u, lo); }
    if mat_on(3u, lo) { *a3 = msel(*a3, maxpy(*a3, g3, w, 3u, c, lo), upd, 3u, lo); }
    if j == c + 1u && j < K {
        publish(((1u - half) * MPW + slot) * 4u * QM, *a0, *a1, *a2, *a3, lo);
    }
}

// Step c of the unrolled pass (UNROLL): `step`'s work with c a constant once inlined, so every
// row test folds away (x is the loaded column with its first rows zero, row c of a column is
// one register), and without `step`'s rare paths, whose code, copied into every step, made the
// unrolled kernel twice as large. H = I − coef·g·gᵀ with g = x + gc·e_c is applied as
// d = a·x + gc·a_c (a·x formed beside ‖x‖², not after the reflector), a −= w·x, a_c −= w·gc.
// Lanes j ≤ c apply it too: their rows above c do not change (x is zero there, w finite), the
// rest of such a column is below its diagonal (never written out) or its row j (replaced by
// rdiag at the end), so the lane is not masked. Where `step` would take a rare path (a residual
// norm² below 2^-60 or NaN, a non-finite w) `bad` is set and this pass's results are not used:
// the workgroup factors its matrices again with `step` (see qr_columns).
fn fast(c: u32, lo: u32, slot: u32, j: u32, a0: ptr<function, mat4x4<f32>>,
        a1: ptr<function, mat4x4<f32>>, a2: ptr<function, mat4x4<f32>>,
        a3: ptr<function, mat4x4<f32>>, rdiag: ptr<function, f32>, bad: ptr<function, bool>) {
    workgroupBarrier();
    let half = c % 2u;
    let b4 = (half * MPW + slot) * 4u * QM;
    let alpha = vb[b4 + c / 4u][c % 4u];
    if c + 1u >= M {
        // No rows below c: H = I (tau = 0), R's diagonal entry is alpha.
        *rdiag = select(*rdiag, alpha, j == c);
        return;
    }
    let xs = load_x(b4, c, lo);
    let x0 = xs.x0;
    let x1 = xs.x1;
    let x2 = xs.x2;
    let x3 = xs.x3;
    let ss = (mdot(x0, x0, 0u, lo) + mdot(x1, x1, 1u, lo))
        + (mdot(x2, x2, 2u, lo) + mdot(x3, x3, 3u, lo));
    let dax = (mdot(*a0, x0, 0u, lo) + mdot(*a1, x1, 1u, lo))
        + (mdot(*a2, x2, 2u, lo) + mdot(*a3, x3, 3u, lo));
    var at = vec4<f32>();
    if mat_on(0u, lo) { at = row_pick(at, *a0, 0u, c, lo); }
    if mat_on(1u, lo) { at = row_pick(at, *a1, 1u, c, lo); }
    if mat_on(2u, lo) { at = row_pick(at, *a2, 2u, c, lo); }
    if mat_on(3u, lo) { at = row_pick(at, *a3, 3u, c, lo); }
    let ac = at[c & 3u];
    // `reflector`'s common path: ‖x‖² ≥ 2^-60, so |beta·gc| ≥ 2^-60 and coef is finite.
    let h = sqrt(fma(alpha, alpha, ss));
    let beta = select(h, -h, alpha >= 0.0);
    let gc = alpha - beta;
    let coef = -1.0 / (beta * gc);
    let w = coef * fma(gc, ac, dax);
    *rdiag = select(*rdiag, beta, j == c);
    *bad = *bad || is_nan(ss) || is_nan(alpha) || ss < SLOW_SS || !is_finite(w);
    let ncol = fma(-w, gc, ac);
    if mat_on(0u, lo) { *a0 = put(mfma(*a0, x0, w, 0u, lo), 0u, c, ncol, lo); }
    if mat_on(1u, lo) { *a1 = put(mfma(*a1, x1, w, 1u, lo), 1u, c, ncol, lo); }
    if mat_on(2u, lo) { *a2 = put(mfma(*a2, x2, w, 2u, lo), 2u, c, ncol, lo); }
    if mat_on(3u, lo) { *a3 = put(mfma(*a3, x3, w, 3u, lo), 3u, c, ncol, lo); }
    if j == c + 1u && j < K {
        publish(((1u - half) * MPW + slot) * 4u * QM, *a0, *a1, *a2, *a3, lo);
    }
}

// Steps 4·lo .. 4·lo + 3 of the unrolled pass (those below K), each c a constant once inlined.
fn quad(lo: u32, slot: u32, j: u32, a0: ptr<function, mat4x4<f32>>,
        a1: ptr<function, mat4x4<f32>>, a2: ptr<function, mat4x4<f32>>,
        a3: ptr<function, mat4x4<f32>>, rdiag: ptr<function, f32>, bad: ptr<function, bool>) {
    if 4u * lo < K { fast(4u * lo, lo, slot, j, a0, a1, a2, a3, rdiag, bad); }
    if 4u * lo + 1u < K { fast(4u * lo + 1u, lo, slot, j, a0, a1, a2, a3, rdiag, bad); }
    if 4u * lo + 2u < K { fast(4u * lo + 2u, lo, slot, j, a0, a1, a2, a3, rdiag, bad); }
    if 4u * lo + 3u < K { fast(4u * lo + 3u, lo, slot, j, a0, a1, a2, a3, rdiag, bad); }
}
