// Cholesky QR, twice (CholeskyQR2: Fukaya, Nakatsukasa, Yanagisawa, Yamamoto, 2014), for the
// tall inner panels of the blocked QR: the explicit Q and R of a rows × B panel (B ≤ 32) with
// three short launches whose only sequential parts are B-step loops over a B×B matrix, where
// TSQR (tsqr.wgsl) walks B Householder steps over every block of rows, level by level.
//
//   pass 1: G = XᵀX (cq_solve with SOLVE off: one partial Gram per tile of TR rows; or, in the
//           blocked QR, the inner-panel update's GEMM that formed X, gemm.wgsl's GRAM),
//           R₁ = chol(G), Q₁ = X R₁⁻¹ (cq_solve: every workgroup sums the partial Grams and
//           factors G itself, then substitutes, row by row: backward stable, so X = Q₁R₁ to
//           rounding whatever R₁'s conditioning; and Q₁ᵀQ₁'s partial Grams);
//   pass 2: G₂ = Q₁ᵀQ₁, R₂ = chol(G₂), R = R₂R₁, Q = Q₁R₂⁻¹ (cq_solve, in place).
//
// Factoring G in every workgroup repeats a 32-step loop and a sum over every tile's partial
// Gram that one workgroup of a launch of its own could do once, but the launches are a chain,
// and two launches fewer per panel are worth more than the repeated work up to the 128 tiles
// of the tallest panel given to CholeskyQR2 (BENCHMARKS.md, v68).
//
// Q and R then go to the same Householder reconstruction as TSQR's (tsqr_lu.wgsl).
//
// CholeskyQR loses orthogonality as κ(X)², and in f32 it breaks for κ(X) beyond ~10³ (G is
// then singular to working precision), for rank-deficient panels, zero columns, and squares
// that overflow or flush. So pass 2 checks its input: every entry of G₂ = Q₁ᵀQ₁ must be finite
// and within TOL_SUM / B of the identity's, i.e. ‖Q₁ᵀQ₁ − I‖_F ≤ TOL_SUM = 1/2, so that
// κ(Q₁)² ≤ 3 and the second pass is the well-conditioned CholeskyQR whose Q is orthonormal to
// working precision. Where a matrix fails it, pass 2 sets its gate (one float per matrix in the
// scratch buffer, 1.0) and TSQR's kernels, recorded after these and reading that matrix's gate,
// factor its panel again from X (which nothing here writes), overwriting Q and R. Where the gate
// stays 0.0, they return at once. Non-finite input (NaN, Inf) fails the check too, so such panels
// keep TSQR's results exactly, and each matrix of a batch gets the same results as alone.
//
// Layout: X column-major (x_off + b·x_stride + i + c·x_ld); everything else in the scratch
// buffer `sbuf`, matrix b at b·s_stride: two areas of partial Grams (ntiles + 1 and ntiles, each
// B×B in a 32×32 column-major block: a launch sums one while it writes the other), R₁ (B×B, leading
// dimension B, zeros below the diagonal), Q (q_off, leading dimension q_ld), the top R (rtop,
// B×B) and the gate.

override B: u32 = 32u;          // panel width (at most 32)
override SOLVE: bool = true;    // factor the summed partial Grams at part_in, solve with R and
                                // write the result to Q; false: the Gram of X only
override GRAM: bool = true;     // partial Gram of the result

const TR: u32 = 64u;            // rows per tile: 8 row groups of 8 rows (two vec4s per lane)
const WG: u32 = 256u;           // 32 columns × 8 row groups
const LDX: u32 = 17u;           // vec4s per column of a tile in workgroup memory (16, padded)
const TOL_SUM: f32 = 0.5;
const PART: u32 = 1024u;        // floats per partial Gram: 32×32, leading dimension 32
const LDG: u32 = 33u;           // leading dimension of gs: columns one bank apart

struct Params {
    rows: u32,      // rows of the panel
    ntiles: u32,    // ceil(rows / TR)
    batch: u32,
    step: u32,      // the Cholesky's pass, 1 or 2
    x_off: u32,     // X (binding 1)
    x_ld: u32,
    x_stride: u32,
    s_stride: u32,  // scratch elements per matrix
    part_off: u32,  // where the partial Grams of the result go
    part_in: u32,   // the partial Grams the Cholesky sums
    r_in: u32,      // pass 2: R₁
    r_out: u32,     // pass 1: R₁
    q_off: u32,     // Q out (scratch)
    q_ld: u32,
    rtop: u32,      // pass 2: R = R₂R₁, leading dimension B
    gate: u32,      // the gate
    ngram: u32,     // the partial Grams at part_in: ntiles, or in pass 1 those of the GEMM that
                    // formed X (gemm.wgsl's GRAM), whose tiles start at the previous panel's
                    // first row, up to 32 rows above X's
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> xbuf: array<f32>;
@group(0) @binding(2) var<storage, read_write> sbuf: array<f32>;
// The same scratch buffer as vec4s, for the partial Grams (which start at multiples of 4:
// src/kernels/cholqr.rs aligns them and the per-matrix stride).
@group(0) @binding(3) var<storage, read_write> sbuf4: array<vec4<f32>>;

var<workgroup> xs: array<vec4<f32>, 544>;  // a tile, column c at c·LDX (32·LDX vec4s)
var<workgroup> gs: array<f32, 1056>;       // a B×B matrix, column-major, leading dimension LDG
var<workgroup> rowk: array<f32, 64>;       // the Cholesky's pivot rows, two buffers
var<workgroup> sd: array<f32, 32>;         // the square roots of the pivots
var<workgroup> bad: atomic<u32>;

// Four consecutive floats of a partial Gram, from `at` (a multiple of 4): one 16-byte load
// instead of four (BENCHMARKS.md, v97).
fn part(at: u32) -> vec4<f32> {
    return sbuf4[at / 4u];
}

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// G = the sum of matrix sb's ngram partial Grams at part_in, and its Cholesky factor R
// (G = RᵀR) into gs: upper triangle, zeros below, leading dimension LDG. With `check` (pass 2),
// returns whether G fails the check (an entry not finite or off the identity's by more than
// TOL_SUM / B); false otherwise. Every invocation of the workgroup must call it.
fn factor(lid: u32, sb: u32, check: bool) -> bool {
    if lid == 0u {
        atomicStore(&bad, 0u);
    }
    let tol = TOL_SUM / f32(B);
    // Invocation lid sums entries i0 … i0 + 3 of column j of every partial Gram: eight
    // independent sums over the tiles, so that loads from several tiles are in flight at once
    // (one dependent sum took 22 µs for 64 tiles on an H100).
    let j = lid / 8u;
    let i0 = 4u * (lid % 8u);
    let at = sb + p.part_in + i0 + 32u * j;
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var s3 = vec4<f32>(0.0);
    var s4 = vec4<f32>(0.0);
    var s5 = vec4<f32>(0.0);
    var s6 = vec4<f32>(0.0);
    var s7 = vec4<f32>(0.0);
    // Only quads that reach the upper triangle (i0 ≤ j): the Cholesky reads G on and above
    // the diagonal, and the check sees every off-diagonal pair there (the partial Grams are
    // symmetric). Every workgroup sums every tile's partial Gram, so these loads are the
    // launch's largest memory traffic; the quads wholly below the diagonal were 44% of it.
    var t = select(p.ngram, 0u, i0 <= j);
    for (; t + 8u <= p.ngram; t += 8u) {
        s0 += part(at + t * PART);
        s1 += part(at + (t + 1u) * PART);
        s2 += part(at + (t + 2u) * PART);
        s3 += part(at + (t + 3u) * PART);
        s4 += part(at + (t + 4u) * PART);
        s5 += part(at + (t + 5u) * PART);
        s6 += part(at + (t + 6u) * PART);
        s7 += part(at + (t + 7u) * PART);
    }
    for (; t < p.ngram; t++) {
        s0 += part(at + t * PART);
    }
    let s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
    var fails = false;
    for (var u = 0u; u < 4u; u++) {
        let i = i0 + u;
        if i < B && j < B {
            gs[i + j * LDG] = s[u];
            let dev = s[u] - select(0.0, 1.0, i == j);
            fails = fails || !finite(s[u]) || !(abs(dev) <= tol);
        }
    }
    workgroupBarrier();
    if check && fails {
        atomicOr(&bad, 1u);
    }
    // Outer-product Cholesky on the upper triangle, the entries in registers: invocation lid
    // holds (i, j_q) = (lid % 32, lid / 32 + 8q), q < 4, of the Schur complement. Step k: the
    // holders of row k (i = k, final since step k − 1) publish it (two row buffers, alternately,
    // so that the next step's row never overwrites one still being read), one barrier, and every
    // entry below row k takes its update. (One barrier per step as before, but the entries no
    // longer go through workgroup memory: 19.5 → 16.3 µs per launch in the H100 profile of the
    // 4096² QR; BENCHMARKS.md, v67.)
    let ci = lid % 32u;
    let cj = lid / 32u;
    var g = vec4<f32>(0.0);
    for (var q = 0u; q < 4u; q++) {
        let j = cj + 8u * q;
        if ci < B && j < B {
            g[q] = gs[ci + j * LDG];
        }
    }
    for (var k = 0u; k < B; k++) {
        let buf = (k % 2u) * 32u;
        if ci == k {
            for (var q = 0u; q < 4u; q++) {
                let j = cj + 8u * q;
                if j >= k && j < B {
                    rowk[buf + j] = g[q];
                }
            }
        }
        workgroupBarrier();
        let d = rowk[buf + k];
        if lid == 0u {
            sd[k] = sqrt(d);
        }
        if ci > k && ci < B {
            let f = rowk[buf + ci] / d;
            for (var q = 0u; q < 4u; q++) {
                let j = cj + 8u * q;
                if j >= ci && j < B {
                    g[q] -= f * rowk[buf + j];
                }
            }
        }
    }
    // Every invocation read gs into g before the first step's barrier; sd is complete after
    // this one. R_ij = G_ij / sqrt(G_ii) on and above the diagonal (row i of the Schur
    // complements as step i left it), zeros below.
    workgroupBarrier();
    for (var q = 0u; q < 4u; q++) {
        let j = cj + 8u * q;
        if ci < B && j < B {
            gs[ci + j * LDG] = select(0.0, g[q] / sd[ci], ci <= j);
        }
    }
    workgroupBarrier();
    return atomicLoad(&bad) != 0u;
}

// R = R₂R₁ (both upper triangular) into rtop, R₂ in gs and R₁ at r_in: entries first,
// first + step, … (the invocations of every workgroup that shares the work).
fn write_rtop(sb: u32, first: u32, step: u32) {
    for (var e = first; e < B * B; e += step) {
        let i = e % B;
        let j = e / B;
        var s = 0.0;
        for (var l = i; l <= j; l++) {
            s = fma(gs[i + l * LDG], sbuf[sb + p.r_in + l + j * B], s);
        }
        sbuf[sb + p.rtop + e] = s;
    }
}

// R (gs) to r_out.
fn write_r(sb: u32, lid: u32) {
    for (var e = lid; e < B * B; e += WG) {
        sbuf[sb + p.r_out + e] = gs[e % B + (e / B) * LDG];
    }
}

// One tile of TR rows: with SOLVE, factors the partial Grams at part_in (every workgroup the
// same R; pass 1's tile 0 writes R₁ and clears the gate, pass 2's workgroups share R = R₂R₁ and
// tile 0 sets the gate where the check fails), then solves the tile and writes it to Q; its
// partial Gram, if GRAM, to part_off.
@compute @workgroup_size(WG)
fn cq_solve(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let tile = wid.x;
    let bm = wid.y;
    if tile >= p.ntiles || bm >= p.batch {
        return;
    }
    let c = lid % 32u;
    let rg = lid / 32u;
    let sb = bm * p.s_stride;
    // Rows r0 … r0 + 7 of column c (loads in flight during the Cholesky).
    let r0 = tile * TR + rg * 8u;
    var x0 = vec4<f32>(0.0);
    var x1 = vec4<f32>(0.0);
    let owns = c < B;
    let slot = c * LDX + rg * 2u;
    if owns {
        let xb = p.x_off + bm * p.x_stride + c * p.x_ld;
        for (var u = 0u; u < 4u; u++) {
            if r0 + u < p.rows {
                x0[u] = xbuf[xb + r0 + u];
            }
            if r0 + 4u + u < p.rows {
                x1[u] = xbuf[xb + r0 + 4u + u];
            }
        }
    }
    if SOLVE {
        let fails = factor(lid, sb, p.step == 2u);
        if p.step == 1u {
            if tile == 0u {
                write_r(sb, lid);
                if lid == 0u {
                    sbuf[sb + p.gate] = 0.0;
                }
            }
        } else {
            write_rtop(sb, tile * WG + lid, p.ntiles * WG);
            if tile == 0u && lid == 0u && fails {
                sbuf[sb + p.gate] = 1.0;
            }
        }
        // Column by column: x_c = (a_c − Σ_{j<c} x_j R_jc) / R_cc; once x_j is in the tile,
        // every later column adds its term (one barrier per column, x_j written once).
        var acc0 = vec4<f32>(0.0);
        var acc1 = vec4<f32>(0.0);
        // (Times the reciprocal of R_cc, taken before the loop: the step of column c does no
        // division, which was on the chain of every step.)
        let rd = 1.0 / gs[c + c * LDG];
        for (var j = 0u; j < B; j++) {
            if c == j {
                x0 = (x0 - acc0) * rd;
                x1 = (x1 - acc1) * rd;
                xs[slot] = x0;
                xs[slot + 1u] = x1;
            }
            workgroupBarrier();
            if c > j && owns {
                let rjc = gs[j + c * LDG];
                acc0 = fma(xs[j * LDX + rg * 2u], vec4<f32>(rjc), acc0);
                acc1 = fma(xs[j * LDX + rg * 2u + 1u], vec4<f32>(rjc), acc1);
            }
        }
    } else if owns {
        xs[slot] = x0;
        xs[slot + 1u] = x1;
    }
    if SOLVE && owns {
        let qb = sb + p.q_off + c * p.q_ld;
        for (var u = 0u; u < 4u; u++) {
            if r0 + u < p.rows {
                sbuf[qb + r0 + u] = x0[u];
            }
            if r0 + 4u + u < p.rows {
                sbuf[qb + r0 + 4u + u] = x1[u];
            }
        }
    }
    if GRAM {
        workgroupBarrier();
        // Entry (i, j) of the tile's XᵀX; rows past the panel are zeros.
        let pb = sb + p.part_off + tile * PART;
        for (var e = lid; e < B * B; e += WG) {
            let i = e % B;
            let j = e / B;
            var s = 0.0;
            for (var v = 0u; v < 16u; v++) {
                s += dot(xs[i * LDX + v], xs[j * LDX + v]);
            }
            sbuf[pb + i + 32u * j] = s;
        }
    }
}
