// Batched Householder QR of matrices too tall for one lane per column (M > 64) but small enough
// to live in the registers of one workgroup: entry `qr_tall`, the same results and conventions
// as batched_qr_cols.wgsl's `qr_columns` (column-major f32, LAPACK sgeqr2 / slarfg signs, exact
// zeros below R's diagonal, per-column power-of-two prescaling; tiny residuals, whose squares
// would flush, have their norm from the residual scaled by 2^64, exactly).
//
// One workgroup per matrix, NSG subgroups of S lanes. Subgroup s owns columns s, s + NSG, …
// (CPS ≤ 4 column slots) and lane l holds rows l, l + S, … (RPL ≤ 16 register rows) of each: the
// whole matrix is in registers, one mat4x4 per column slot (register row r in vec4 r / 4,
// component r % 4), every vec4 index a constant — no per-invocation array that a driver could
// put in local memory (an array version ran 4-5× slower on an H100). Dot products over a column
// are a lane's products and one subgroupAdd.
//
// Factorization: reflector j is computed once, by the subgroup owning column j, right after it
// applied reflector j-1 to that column (alpha by a shuffle, ‖x‖² by a subgroupAdd, slarfg), and
// published in workgroup memory: v_j (1 at row j, zeros above) in its own column of `vs` (of
// `vss` for stacked blocks, see stacked_at), tau_j in `taus`. Nothing is overwritten, so one
// workgroupBarrier per reflector suffices; then every subgroup applies v_j to its columns right
// of j, the dot products of its column slots reduced together (one subgroupAdd of up to a vec4,
// not one dependent reduction per slot). The update has no branch on j: rows above a
// reflector's first row are kept by selects (only where a row can be above one: see `deep`),
// and column slots the reflector does not touch compute it and drop it.
//
// Q = H_0 … H_{K-1} [I; 0] (QCOLS columns) is formed as sorg2r does, backwards, each subgroup its
// own columns (NSG·CPS at a time) from the reflectors in `vs`: no barrier at all. Column c of the
// identity is unchanged by H_i for i > c, so those are skipped.
//
// Workgroup storage: 4·VN + VNS + K floats, one atomic and the GATED flag (dense 256×32:
// 32.9 KiB, stacked 512×32: 33.9 KiB; the defaults below, 128×24, fit WebGPU's default 16 KiB);
// the host checks it and the invocation count against the adapter and takes another kernel
// where they do not fit.
// requires: subgroups of the fixed size S (naga takes subgroup builtins without an `enable`;
// wgpu checks the feature)

override M: u32 = 128u;      // most rows of a block (≤ RPL·S)
override N: u32 = 24u;       // columns of A (≤ NSG·CPS)
override K: u32 = 24u;       // reflectors: min(M, N)
override QCOLS: u32 = 24u;   // columns of Q written (0: R only)
override R_ROWS: u32 = 24u;  // rows of R written (K reduced, M complete)
override S: u32 = 32u;       // subgroup size
override NSG: u32 = 8u;      // subgroups per workgroup
override RPL: u32 = 4u;      // register rows per lane: ceil(M / S), at most 16
override CPS: u32 = 3u;      // column slots per subgroup: ceil(N / NSG), at most 4
override LDV: u32 = 128u;    // rows of a reflector in `vs`: S·(RPL rounded up to 4)
override STACK: u32 = 0u;    // 0: dense blocks; else rows of each stacked triangle (stacked_at)
override NBLK: u32 = 1u;     // STACK > 0: triangles the rows a lane may hold span, LDV / STACK
                             // rounded up
override VN: u32 = 768u;     // vec4s of `vs` (dense blocks: K·LDV / 4; 1 for stacked ones)
override VNS: u32 = 1u;      // floats of `vss` (stacked blocks: NBLK·K·(K + 1) / 2; 1 for dense)
override WG: u32 = 256u;     // NSG·S
override GATED: bool = false; // TSQR levels after cholqr.wgsl: return where its gate is 0.0

const F32_MAX: f32 = 3.40282347e38;
const F32_MIN_NORMAL: f32 = 1.17549435e-38;
const SLOW_SS: f32 = 8.67361738e-19; // 2^-60
const TWO64: f32 = 18446744073709551616.0; // 2^64
const TWO_M64: f32 = 5.42101086e-20; // 2^-64

// A dispatch factors `count` = matrices × nblocks blocks: each matrix of `rows` rows is cut
// into `nblocks` blocks of consecutive rows (as tsqr.wgsl's block_rows: the first rows % nblocks
// blocks one row longer), each block is factored alone. The batched QR has one block per matrix;
// the TSQR panel factorization (tsqr.rs) runs this kernel on each level of its tree, every
// block's R stacked into the level above (block g's rows g·R_ROWS …) and its explicit Q written
// in place of its rows.
struct Params {
    count: u32,     // blocks in this dispatch
    nblocks: u32,   // blocks per matrix
    rows: u32,      // rows per matrix (each block has at most M, at least K)
    a_offset: u32,  // A: element (i, c) of matrix b at a_offset + b·a_stride + i + c·a_ld
    a_ld: u32,
    a_stride: u32,
    q_offset: u32,  // Q, likewise (row i of a block at its row in the matrix)
    q_ld: u32,
    q_stride: u32,
    r_offset: u32,  // R of block g: rows g·R_ROWS … of matrix b's R
    r_ld: u32,
    r_stride: u32,
    gate: u32,      // GATED: element of q_out (per matrix, q_stride apart); 0.0 there means
                    // return at once (cholqr.wgsl factored that matrix's panel)
}

@group(0) @binding(0) var<uniform> p: Params;
// A is bound read_write only because the TSQR levels above the first read it from the buffer
// they write Q and R to; nothing writes it.
@group(0) @binding(1) var<storage, read_write> a_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> r_out: array<f32>;

var<workgroup> vs: array<vec4<f32>, VN>; // dense blocks
var<workgroup> vss: array<f32, VNS>;    // stacked blocks
var<workgroup> taus: array<f32, K>;
var<workgroup> counter: atomic<u32>;
var<workgroup> gate_run: u32;
// This workgroup's block: its rows, and where its A, Q and R start.
var<private> nr: u32;
var<private> a_base: u32;
var<private> q_base: u32;
var<private> r_base: u32;

// NaN test on the bits: WGSL lets a compiler assume no NaN in float comparisons.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
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

// (beta, tau, 1/(alpha - beta)) of slarfg for alpha and ‖x‖ = xnorm > 0, overflow-safe.
fn from_norm(alpha: f32, xnorm: f32) -> vec3<f32> {
    let s = max(abs(alpha), xnorm);
    var h = s * sqrt((alpha / s) * (alpha / s) + (xnorm / s) * (xnorm / s));
    if s > F32_MAX {
        h = s;
    }
    let beta = select(h, -h, alpha >= 0.0);
    return vec3<f32>(beta, (beta - alpha) / beta, 1.0 / (alpha - beta));
}

// This subgroup's number 0, 1, … (claimed by its first lane; every lane gets it).
fn subgroup_number(lid: u32, lane: u32) -> u32 {
    if lid == 0u {
        atomicStore(&counter, 0u);
    }
    workgroupBarrier();
    var id = 0u;
    if lane == 0u {
        id = atomicAdd(&counter, 1u);
    }
    return subgroupBroadcastFirst(id);
}

// Whether vec4 k of a column slot holds register rows (a constant once overridden).
fn vec_on(k: u32) -> bool {
    return 4u * k < RPL;
}


// The matrix rows this lane holds in vec4 k.
fn rows4(lane: u32, k: u32) -> vec4<u32> {
    return vec4<u32>(lane) + S * (vec4<u32>(4u * k) + vec4<u32>(0u, 1u, 2u, 3u));
}

// Components of vec4 k whose rows (for any lane) are at or below row K: never above a
// reflector's row, so the row tests below fold to constants there (with K ≤ S, every register
// row but a lane's first; a select per register row was a third of a step's instructions, v45).
fn deep(k: u32) -> vec4<bool> {
    return S * (vec4<u32>(4u * k) + vec4<u32>(0u, 1u, 2u, 3u)) >= vec4<u32>(K);
}

fn dot4(a: vec4<f32>, b: vec4<f32>) -> f32 {
    return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, a.x * b.x)));
}

// This lane's part of Σ a·b over the vec4s reaching row j.
fn mdot(a: mat4x4<f32>, b: mat4x4<f32>, j: u32) -> f32 {
    var d0 = 0.0;
    var d1 = 0.0;
    var d2 = 0.0;
    var d3 = 0.0;
    if vec_on(0u) { d0 = dot4(a[0], b[0]); }
    if vec_on(1u) { d1 = dot4(a[1], b[1]); }
    if vec_on(2u) { d2 = dot4(a[2], b[2]); }
    if vec_on(3u) { d3 = dot4(a[3], b[3]); }
    return (d0 + d1) + (d2 + d3);
}

// a + w·v on rows ≥ j; the rows above keep a exactly even where w is NaN, as LAPACK leaves
// them. Selects, not branches: a step is a chain of dependent operations, and on an H100 its
// branches cost more than the arithmetic they skip (BENCHMARKS.md, v28).
fn maxpy4(a: vec4<f32>, v: vec4<f32>, w: vec4<f32>, lane: u32, k: u32, j: u32) -> vec4<f32> {
    return select(a, fma(w, v, a), (rows4(lane, k) >= vec4<u32>(j)) | deep(k));
}

fn maxpy(a: mat4x4<f32>, v: mat4x4<f32>, w: f32, j: u32, lane: u32) -> mat4x4<f32> {
    var r = a;
    let wv = vec4<f32>(w);
    if vec_on(0u) { r[0] = maxpy4(a[0], v[0], wv, lane, 0u, j); }
    if vec_on(1u) { r[1] = maxpy4(a[1], v[1], wv, lane, 1u, j); }
    if vec_on(2u) { r[2] = maxpy4(a[2], v[2], wv, lane, 2u, j); }
    if vec_on(3u) { r[3] = maxpy4(a[3], v[3], wv, lane, 3u, j); }
    return r;
}

// a where m, else b.
fn msel(b: mat4x4<f32>, a: mat4x4<f32>, m: bool) -> mat4x4<f32> {
    return mat4x4<f32>(select(b[0], a[0], m), select(b[1], a[1], m), select(b[2], a[2], m),
                       select(b[3], a[3], m));
}

fn mat_max(m: mat4x4<f32>) -> f32 {
    let t = max(max(abs(m[0]), abs(m[1])), max(abs(m[2]), abs(m[3])));
    return max(max(t.x, t.y), max(t.z, t.w));
}

// m·2^s, in two exact steps (|s| ≤ 254).
fn mat_scaled(m: mat4x4<f32>, s: i32) -> mat4x4<f32> {
    let s1 = s / 2;
    return (m * pow2(s1)) * pow2(s - s1);
}

// The rows of m below row j (others zero).
fn mat_below(m: mat4x4<f32>, j: u32, lane: u32) -> mat4x4<f32> {
    let z = vec4<f32>(0.0);
    let jv = vec4<u32>(j);
    return mat4x4<f32>(select(z, m[0], (rows4(lane, 0u) > jv) | deep(0u)),
                       select(z, m[1], (rows4(lane, 1u) > jv) | deep(1u)),
                       select(z, m[2], (rows4(lane, 2u) > jv) | deep(2u)),
                       select(z, m[3], (rows4(lane, 3u) > jv) | deep(3u)));
}

// Row j of m where this lane holds it, else 0.
fn pick(m: mat4x4<f32>, j: u32, lane: u32) -> f32 {
    let jv = vec4<u32>(j);
    let z = vec4<f32>(0.0);
    let s = select(z, m[0], (rows4(lane, 0u) == jv) & !deep(0u))
        + select(z, m[1], (rows4(lane, 1u) == jv) & !deep(1u))
        + select(z, m[2], (rows4(lane, 2u) == jv) & !deep(2u))
        + select(z, m[3], (rows4(lane, 3u) == jv) & !deep(3u));
    return (s.x + s.y) + (s.z + s.w);
}

// m with row j set to x where this lane holds it.
fn put(m: mat4x4<f32>, j: u32, lane: u32, x: f32) -> mat4x4<f32> {
    let jv = vec4<u32>(j);
    let xv = vec4<f32>(x);
    return mat4x4<f32>(select(m[0], xv, (rows4(lane, 0u) == jv) & !deep(0u)),
                       select(m[1], xv, (rows4(lane, 1u) == jv) & !deep(1u)),
                       select(m[2], xv, (rows4(lane, 2u) == jv) & !deep(2u)),
                       select(m[3], xv, (rows4(lane, 3u) == jv) & !deep(3u)));
}

// Column i of the identity (this lane's rows).
fn unit(i: u32, lane: u32) -> mat4x4<f32> {
    let iv = vec4<u32>(i);
    let o = vec4<f32>(1.0);
    let z = vec4<f32>(0.0);
    return mat4x4<f32>(select(z, o, rows4(lane, 0u) == iv), select(z, o, rows4(lane, 1u) == iv),
                       select(z, o, rows4(lane, 2u) == iv), select(z, o, rows4(lane, 3u) == iv));
}

fn load1(src: u32, c: u32, i: u32) -> f32 {
    if c < N && i < nr {
        return a_in[src + c * p.a_ld + i];
    }
    return 0.0;
}

fn load4(src: u32, c: u32, lane: u32, k: u32) -> vec4<f32> {
    let r = rows4(lane, k);
    return vec4<f32>(load1(src, c, r.x), load1(src, c, r.y), load1(src, c, r.z), load1(src, c, r.w));
}

// Column c of the matrix at `src` (this lane's rows; zeros past M and N).
fn load_col(src: u32, c: u32, lane: u32) -> mat4x4<f32> {
    var m = mat4x4<f32>();
    if vec_on(0u) { m[0] = load4(src, c, lane, 0u); }
    if vec_on(1u) { m[1] = load4(src, c, lane, 1u); }
    if vec_on(2u) { m[2] = load4(src, c, lane, 2u); }
    if vec_on(3u) { m[3] = load4(src, c, lane, 3u); }
    return m;
}

// Dense blocks: reflector j is j's own LDV / 4 vec4s of `vs`, lane l's vec4 k (rows
// l + S·(4k + t), t = 0 … 3, as in its registers) at k·S + l: one workgroup-memory access per
// vec4 (four scalar ones and their addresses were a tenth of a step's instructions, v46).
fn dense_at(j: u32, lane: u32, k: u32) -> u32 {
    return j * (LDV / 4u) + k * S + lane;
}

// Stacked blocks (STACK > 0: a TSQR level above the leaves, the block STACK×STACK upper
// triangles stacked): reflector j is structurally zero in rows whose place t = r % STACK in
// their triangle is below j (QR of stacked triangles makes no fill-in there), so only rows with
// t ≤ j are kept, reflector after reflector, in `vss`: NBLK·(j + 1) entries for j (NBLK
// triangles), row r at (r / STACK)·(j + 1) + t; and whether row r is kept at all. That is what
// lets blocks of 16 such triangles (512 rows) fit the workgroup memory that 256 dense rows fill.
fn stacked_at(j: u32, r: u32) -> vec2<u32> {
    // (max: a divisor of a literal 0 would be rejected even where this is not reached)
    let st = max(STACK, 1u);
    let t = r % st;
    let at = NBLK * (j * (j + 1u) / 2u) + (r / st) * (j + 1u) + t;
    return vec2<u32>(min(at, VNS - 1u), select(0u, 1u, t <= j));
}

fn vs1(j: u32, r: u32) -> f32 {
    let at = stacked_at(j, r);
    return select(0.0, vss[at.x], at.y == 1u);
}

fn vs4(j: u32, lane: u32, k: u32) -> vec4<f32> {
    if STACK == 0u {
        return vs[dense_at(j, lane, k)];
    }
    let r = rows4(lane, k);
    return vec4<f32>(vs1(j, r.x), vs1(j, r.y), vs1(j, r.z), vs1(j, r.w));
}

// v_j's rows of this lane (zero above row j).
fn load_v(j: u32, lane: u32) -> mat4x4<f32> {
    var v = mat4x4<f32>();
    if vec_on(0u) { v[0] = vs4(j, lane, 0u); }
    if vec_on(1u) { v[1] = vs4(j, lane, 1u); }
    if vec_on(2u) { v[2] = vs4(j, lane, 2u); }
    if vec_on(3u) { v[3] = vs4(j, lane, 3u); }
    return v;
}

fn publish1(j: u32, r: u32, x: f32) {
    let at = stacked_at(j, r);
    if at.y == 1u {
        vss[at.x] = x;
    }
}

fn publish4(j: u32, lane: u32, k: u32, x: vec4<f32>) {
    if STACK == 0u {
        vs[dense_at(j, lane, k)] = x;
        return;
    }
    let r = rows4(lane, k);
    publish1(j, r.x, x.x);
    publish1(j, r.y, x.y);
    publish1(j, r.z, x.z);
    publish1(j, r.w, x.w);
}

// Rows `r` of reflector j's v from x (rows > j of the column): x·inv_d below row j, 1 at it,
// 0 above.
fn vrows(x: vec4<f32>, lane: u32, k: u32, j: u32, inv_d: f32) -> vec4<f32> {
    let jv = vec4<u32>(j);
    let r = rows4(lane, k);
    return select(select(vec4<f32>(0.0), x * inv_d, (r > jv) | deep(k)), vec4<f32>(1.0),
                  (r == jv) & !deep(k));
}

// Reflector j (slarfg) from the column held in `a` (prescaled, see batched_qr_cols.wgsl): v_j
// and tau_j published; returns the column with row j set to beta.
fn reflect(a: mat4x4<f32>, j: u32, lane: u32) -> mat4x4<f32> {
    let x = mat_below(a, j, lane);
    let alpha = subgroupShuffle(pick(a, j, lane), j % S);
    // ‖x‖² and ‖2^64·x‖² in one reduction: the second (exact scaling) serves tiny x, whose
    // squares would flush — no second pass, and no branch around subgroup operations (such a
    // branch, never taken, cost a fifth of the factorization's time on an H100).
    let xs = x * TWO64;
    let sums = subgroupAdd(vec2<f32>(mdot(x, x, 0u), mdot(xs, xs, 0u)));
    let ss = sums.x;
    var tau = 0.0;
    var beta = alpha;
    var inv_d = 0.0;
    let bad = is_nan(ss) || is_nan(alpha);
    if bad || ss >= SLOW_SS {
        // alpha² + ‖x‖² ≤ M cannot overflow, and ‖x‖² ≥ 2^-60 loses nothing that matters to
        // flushed tiny squares.
        var h = sqrt(fma(alpha, alpha, ss));
        if bad {
            h = nan();
        }
        beta = select(h, -h, alpha >= 0.0);
        tau = (beta - alpha) / beta;
        inv_d = 1.0 / (alpha - beta);
    } else if sums.y != 0.0 {
        // Tiny x (‖x‖² < 2^-60, so ‖2^64·x‖² < M·2^68 cannot overflow); zero x: tau = 0, R
        // keeps alpha.
        let h = from_norm(alpha, sqrt(sums.y) * TWO_M64);
        beta = h.x;
        tau = h.y;
        inv_d = h.z;
    }
    // v: exactly zero above row j (even where inv_d is NaN: those rows of the other columns
    // must not see it), 1 at row j.
    if vec_on(0u) { publish4(j, lane, 0u, vrows(x[0], lane, 0u, j, inv_d)); }
    if vec_on(1u) { publish4(j, lane, 1u, vrows(x[1], lane, 1u, j, inv_d)); }
    if vec_on(2u) { publish4(j, lane, 2u, vrows(x[2], lane, 2u, j, inv_d)); }
    if vec_on(3u) { publish4(j, lane, 3u, vrows(x[3], lane, 3u, j, inv_d)); }
    if lane == 0u {
        taus[j] = tau;
    }
    return put(a, j, lane, beta);
}

// This lane's parts of v·a for the four column slots (absent slots: 0), over the vec4s
// reaching row j: reduced together by reduce_dots.
fn dots(v: mat4x4<f32>, a0: mat4x4<f32>, a1: mat4x4<f32>, a2: mat4x4<f32>, a3: mat4x4<f32>,
        j: u32) -> vec4<f32> {
    var d = vec4<f32>(mdot(v, a0, j), 0.0, 0.0, 0.0);
    if CPS > 1u { d.y = mdot(v, a1, j); }
    if CPS > 2u { d.z = mdot(v, a2, j); }
    if CPS > 3u { d.w = mdot(v, a3, j); }
    return d;
}

// The subgroup sums of the column slots' dot products, over the slots there are (CPS is a
// constant: two slots reduce a vec2, not a vec4 of which half is zeros).
fn reduce_dots(d: vec4<f32>) -> vec4<f32> {
    if CPS == 1u {
        return vec4<f32>(subgroupAdd(d.x), 0.0, 0.0, 0.0);
    }
    if CPS == 2u {
        return vec4<f32>(subgroupAdd(d.xy), 0.0, 0.0);
    }
    if CPS == 3u {
        return vec4<f32>(subgroupAdd(d.xyz), 0.0);
    }
    return subgroupAdd(d);
}

fn store_r1(dst: u32, c: u32, i: u32, x: f32) {
    if i < R_ROWS {
        r_out[dst + c * p.r_ld + i] = select(0.0, x, i <= c);
    }
}

fn store_r4(dst: u32, c: u32, lane: u32, k: u32, x: vec4<f32>) {
    let r = rows4(lane, k);
    store_r1(dst, c, r.x, x.x);
    store_r1(dst, c, r.y, x.y);
    store_r1(dst, c, r.z, x.z);
    store_r1(dst, c, r.w, x.w);
}

// Column c of R (this lane's rows, scaled back by 2^e; zeros below the diagonal).
fn store_r(dst: u32, c: u32, lane: u32, a: mat4x4<f32>, e: i32) {
    if c >= N {
        return;
    }
    let m = mat_scaled(a, e);
    if vec_on(0u) { store_r4(dst, c, lane, 0u, m[0]); }
    if vec_on(1u) { store_r4(dst, c, lane, 1u, m[1]); }
    if vec_on(2u) { store_r4(dst, c, lane, 2u, m[2]); }
    if vec_on(3u) { store_r4(dst, c, lane, 3u, m[3]); }
}

fn store_q1(dst: u32, c: u32, i: u32, x: f32) {
    if i < nr {
        q_out[dst + c * p.q_ld + i] = x;
    }
}

fn store_q4(dst: u32, c: u32, lane: u32, k: u32, x: vec4<f32>) {
    let r = rows4(lane, k);
    store_q1(dst, c, r.x, x.x);
    store_q1(dst, c, r.y, x.y);
    store_q1(dst, c, r.z, x.z);
    store_q1(dst, c, r.w, x.w);
}

// Column c of Q (this lane's rows).
fn store_q(dst: u32, c: u32, lane: u32, a: mat4x4<f32>) {
    if c >= QCOLS {
        return;
    }
    if vec_on(0u) { store_q4(dst, c, lane, 0u, a[0]); }
    if vec_on(1u) { store_q4(dst, c, lane, 1u, a[1]); }
    if vec_on(2u) { store_q4(dst, c, lane, 2u, a[2]); }
    if vec_on(3u) { store_q4(dst, c, lane, 3u, a[3]); }
}

@compute @workgroup_size(WG)
fn qr_tall(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let flat = wid.x + wid.y * nwg.x;
    if flat >= p.count {
        return;
    }
    let mat = flat / p.nblocks;
    if GATED {
        if lid == 0u {
            gate_run = select(0u, 1u, q_out[p.gate + mat * p.q_stride] != 0.0);
        }
        if workgroupUniformLoad(&gate_run) == 0u {
            return;
        }
    }
    let g = flat % p.nblocks;
    let base = p.rows / p.nblocks;
    let rem = p.rows % p.nblocks;
    let first = g * base + min(g, rem);
    nr = base + select(0u, 1u, g < rem);
    a_base = p.a_offset + mat * p.a_stride + first;
    q_base = p.q_offset + mat * p.q_stride + first;
    r_base = p.r_offset + mat * p.r_stride + g * R_ROWS;
    let sg = subgroup_number(lid, lane);
    // Column slot t holds column sg + t·NSG, scaled by 2^-e_t.
    let src = a_base;
    var a0 = load_col(src, sg, lane);
    var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>();
    var a3 = mat4x4<f32>();
    if CPS > 1u { a1 = load_col(src, sg + NSG, lane); }
    if CPS > 2u { a2 = load_col(src, sg + 2u * NSG, lane); }
    if CPS > 3u { a3 = load_col(src, sg + 3u * NSG, lane); }
    let mx = subgroupMax(vec4<f32>(mat_max(a0), mat_max(a1), mat_max(a2), mat_max(a3)));
    let e0 = scale_exp(mx.x);
    let e1 = scale_exp(mx.y);
    let e2 = scale_exp(mx.z);
    let e3 = scale_exp(mx.w);
    a0 = mat_scaled(a0, -e0);
    a1 = mat_scaled(a1, -e1);
    a2 = mat_scaled(a2, -e2);
    a3 = mat_scaled(a3, -e3);

    // Step j applies reflector j-1 (published before the barrier) to the columns right of it,
    // then the owner of column j, which has just updated it, forms reflector j.
    for (var j = 0u; j <= K; j++) {
        if j > 0u {
            workgroupBarrier();
            let i = j - 1u;
            let v = load_v(i, lane);
            let w = -taus[i] * reduce_dots(dots(v, a0, a1, a2, a3, i));
            a0 = msel(a0, maxpy(a0, v, w.x, i, lane), sg >= j && sg < N);
            if CPS > 1u { a1 = msel(a1, maxpy(a1, v, w.y, i, lane), sg + NSG >= j && sg + NSG < N); }
            if CPS > 2u { a2 = msel(a2, maxpy(a2, v, w.z, i, lane), sg + 2u * NSG >= j && sg + 2u * NSG < N); }
            if CPS > 3u { a3 = msel(a3, maxpy(a3, v, w.w, i, lane), sg + 3u * NSG >= j && sg + 3u * NSG < N); }
        }
        if j < K && j % NSG == sg {
            let t = j / NSG;
            if t == 0u { a0 = reflect(a0, j, lane); }
            if t == 1u { a1 = reflect(a1, j, lane); }
            if t == 2u { a2 = reflect(a2, j, lane); }
            if t == 3u { a3 = reflect(a3, j, lane); }
        }
    }

    let rdst = r_base;
    store_r(rdst, sg, lane, a0, e0);
    if CPS > 1u { store_r(rdst, sg + NSG, lane, a1, e1); }
    if CPS > 2u { store_r(rdst, sg + 2u * NSG, lane, a2, e2); }
    if CPS > 3u { store_r(rdst, sg + 3u * NSG, lane, a3, e3); }
    if QCOLS == 0u {
        return;
    }

    // Q, NSG·CPS columns at a time; every reflector was published before the last barrier.
    let qdst = q_base;
    for (var q0 = 0u; q0 < QCOLS; q0 += NSG * CPS) {
        let c0 = q0 + sg;
        a0 = unit(c0, lane);
        a1 = unit(c0 + NSG, lane);
        a2 = unit(c0 + 2u * NSG, lane);
        a3 = unit(c0 + 3u * NSG, lane);
        let top = c0 + (CPS - 1u) * NSG; // this subgroup's last column of the chunk
        for (var jj = 0u; jj < K; jj++) {
            let i = K - 1u - jj;
            if i > top {
                continue;
            }
            let v = load_v(i, lane);
            let w = -taus[i] * reduce_dots(dots(v, a0, a1, a2, a3, i));
            a0 = msel(a0, maxpy(a0, v, w.x, i, lane), c0 >= i);
            if CPS > 1u { a1 = msel(a1, maxpy(a1, v, w.y, i, lane), c0 + NSG >= i); }
            if CPS > 2u { a2 = msel(a2, maxpy(a2, v, w.z, i, lane), c0 + 2u * NSG >= i); }
            if CPS > 3u { a3 = msel(a3, maxpy(a3, v, w.w, i, lane), c0 + 3u * NSG >= i); }
        }
        store_q(qdst, c0, lane, a0);
        if CPS > 1u { store_q(qdst, c0 + NSG, lane, a1); }
        if CPS > 2u { store_q(qdst, c0 + 2u * NSG, lane, a2); }
        if CPS > 3u { store_q(qdst, c0 + 3u * NSG, lane, a3); }
    }
}
