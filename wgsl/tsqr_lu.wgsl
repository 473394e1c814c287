// The reconstruction step of the TSQR panel (tsqr.wgsl's header gives the algorithm): from the
// top B×B block Q₁ of the panel's explicit Q (formed here from the leaf level where tsqr.wgsl's
// fold_on says so) and the top R, the LU without pivoting of Q₁ − S, then U⁻¹, T = −U S L₁⁻ᵀ,
// the reflectors Y (= L) and R_H = S R — entry `tsqr_lu`.
//
// One invocation per entry of the B×B block (entries e, e + WG, … where the adapter allows fewer
// than B² invocations), everything in workgroup memory, and every step in axpy form: step i of
// the LU updates each entry below and right of the pivot from the pivot's row and column, and
// the same step takes U⁻¹ (X U = I, by columns) and T (by columns of L) one column further, as
// pivot i makes row i of U and column i of L final: B steps in all, one workgroupBarrier each,
// a few loads per entry, no dot product, so no reduction and no subgroup operation (a
// subgroupAdd was ~200 cycles per step on an H100, BENCHMARKS.md, session 5; the kernel that
// reduced with them took 40 µs for B = 32; U⁻¹ and T in a second loop of B steps, until
// session 12, took 24 µs in the profile).
//
// LAPACK's no-reflection case (tau = 0, R keeps alpha) is the one exact test: pivot column i
// with |pivot| = 1 and nothing below the diagonal ever non-zero takes S_ii = sign(piv), U_ii = 0
// and a zero column of L; U⁻¹ is formed with 1 in place of that zero and its column zeroed.
// "Ever non-zero" is one workgroup flag per column, set by an atomicOr when an entry below the
// diagonal is non-zero at load or turns non-zero from zero (rare after the load), and read only
// at a pivot of magnitude exactly 1.
//
// Workgroup memory: 3·BB floats + 32 vec4 + 32 u32 (B = 32: 12.6 KiB, within WebGPU's default
// 16 KiB).

override B: u32 = 32u;    // panel width, 1 ≤ B ≤ 32
override BB: u32 = 1024u; // B·B
override WG: u32 = 256u;  // invocations (any count; B·B where the adapter allows)

struct Params {
    rows: u32,
    nblocks: u32,
    batch: u32,
    top: u32,
    x_off: u32,
    x_ld: u32,
    x_stride: u32,
    r_off: u32,      // the top R
    r_ld: u32,
    q_off: u32,      // the panel's explicit Q (its top B×B block is Q₁)
    q_ld: u32,
    tau_off: u32,    // the panel's tau out
    tau_stride: u32,
    s_stride: u32,   // elements between batch members in the scratch buffer
    a_off: u32,      // the panel in A: L below the diagonal, R_H on and above
    a_ld: u32,
    a_stride: u32,
    v_off: u32,      // explicit V (unit diagonal, zeros above)
    v_ld: u32,
    v_stride: u32,
    t_off: u32,      // T out
    t_ld: u32,
    t_stride: u32,
    u_off: u32,      // U⁻¹ out (scratch, B×B, leading dimension B)
    gate: u32,       // the element of sbuf (per matrix) whose 0.0 says CholeskyQR2 factored
    fold_q: u32,     // NO_FOLD, or where the gate is not 0.0, Q₁ is the leaf block's Q at
    fold_p: u32,     // fold_q (ld q_ld) times the level above's explicit Q at fold_p (ld
    fold_ld: u32,    // fold_ld): tsqr.wgsl's fold_on
}

const NO_FOLD: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> xbuf: array<f32>;
@group(0) @binding(2) var<storage, read_write> sbuf: array<f32>;
@group(0) @binding(3) var<storage, read_write> abuf: array<f32>;
@group(0) @binding(4) var<storage, read_write> taubuf: array<f32>;
@group(0) @binding(5) var<storage, read_write> tbuf: array<f32>;
@group(0) @binding(6) var<storage, read_write> vbuf: array<f32>;

// The LU, column-major (entry (r, c) at c·B + r): Q₁ − S as it is eliminated, then L (scaled;
// zero for a no-reflection column) below the diagonal, U on and above it.
var<workgroup> lu: array<f32, BB>;
// U⁻¹ as it is solved: entry (r, g) at g·B + r, divided by U_rr at the end.
var<workgroup> xu: array<f32, BB>;
// T: entry (g, s) at s·B + g.
var<workgroup> ty: array<f32, BB>;
// Per column: (U_jj, S_jj, 1 if no-reflection else 0, 0).
var<workgroup> info: array<vec4<f32>, 32>;
// Per column: whether an entry below the diagonal was ever non-zero.
var<workgroup> nz: array<atomic<u32>, 32>;

@compute @workgroup_size(WG)
fn tsqr_lu(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let bm = wid.x;
    if bm >= p.batch {
        return;
    }
    let qb = p.q_off + bm * p.s_stride;
    if lid < B {
        atomicStore(&nz[lid], 0u);
    }
    workgroupBarrier();
    let fold = p.fold_q != NO_FOLD && sbuf[p.gate + bm * p.s_stride] != 0.0;
    let fq = p.fold_q + bm * p.s_stride;
    let fp = p.fold_p + bm * p.s_stride;
    for (var e = lid; e < BB; e += WG) {
        let r = e % B;
        let c = e / B;
        // Read before the flag is known, so that the two loads overlap.
        var x = sbuf[qb + r + c * p.q_ld];
        if fold {
            // Row r of the leaf level's block 0 times the level above's explicit Q (its rows
            // 0 … B − 1 are block 0's), as tsqr.wgsl's leaf_q.
            x = 0.0;
            for (var k = 0u; k < B; k++) {
                x = fma(sbuf[fq + r + k * p.q_ld], sbuf[fp + k + c * p.fold_ld], x);
            }
        }
        lu[e] = x;
        xu[e] = 0.0;
        ty[e] = 0.0;
        if r > c && x != 0.0 {
            atomicOr(&nz[c], 1u);
        }
    }
    workgroupBarrier();
    // One loop of B steps, one barrier each. Step i: the pivot i of the LU without pivoting of
    // Q₁ − S (S_ii chosen there), and with it column i of L and row i of U are final, so the
    // same step also takes U⁻¹ and T one column further, both in axpy form:
    //   U⁻¹ = X, X U = I:  x[r, c] = (δ_rc − xa[r, c]) / U_cc,  xa[r, c] = Σ_{l<c} x[r, l] U[l, c];
    //   T = −U S L₁⁻ᵀ:     t[g, c] = −U[g, c] S_c − ta[g, c],  ta[g, c] = Σ_{s<c} t[g, s] L[c, s].
    // Step i adds the terms of x[·, i] and t[·, i] to the sums of the columns right of i; both
    // are formed on the spot from their sums, final since step i − 1 and written by nobody in
    // step i. Column i of the LU keeps its unscaled values until the end (L = column · (1/U_ii)).
    // (Until session 12 U⁻¹ and T took a second loop of B steps after the LU.)
    // The last column this invocation holds an entry of: from step cmax on it has nothing to
    // update, and (but for invocation 0, which records each pivot) only meets the barriers.
    let cmax = (lid + ((BB - 1u - lid) / WG) * WG) / B;
    for (var i = 0u; i < B; i++) {
        if i < cmax || lid == 0u {
            let piv = lu[i * B + i];
            // S_ii = −sign(piv), so |U_ii| ≥ 1 — except LAPACK's no-reflection column (header).
            var sp = false;
            if abs(piv) == 1.0 {
                sp = atomicLoad(&nz[i]) == 0u;
            }
            var sgn = select(1.0, -1.0, piv >= 0.0);
            sgn = select(sgn, -sgn, sp);
            let u = piv - sgn;
            // One division per step: the step's entries of L are multiples of 1/u, its terms
            // of U⁻¹ of 1/U_ii (1 for a no-reflection column).
            let ru = 1.0 / u;
            let rud = select(ru, 1.0, sp);
            if lid == 0u {
                info[i] = vec4<f32>(u, sgn, select(0.0, 1.0, sp), 0.0);
            }
            for (var e = lid; e < BB; e += WG) {
                let r = e % B;
                let c = e / B;
                if c > i {
                    if r > i {
                        let old = lu[e];
                        let l = select(lu[i * B + r] * ru, 0.0, sp);
                        let nv = old - l * lu[c * B + i];
                        lu[e] = nv;
                        if r > c && old == 0.0 && nv != 0.0 {
                            atomicOr(&nz[c], 1u);
                        }
                    } else {
                        // r ≤ i < c: U[i, c] is row i of the LU, final.
                        let uic = lu[c * B + i];
                        let x = (select(0.0, 1.0, r == i) - xu[i * B + r]) * rud;
                        xu[e] = xu[e] + x * uic;
                        // g = r ≤ i = s < c: t[g, i] from its sum and U[g, i] (U_ii where g = i).
                        let ugi = select(lu[i * B + r], u, r == i);
                        let t = -ugi * sgn - ty[i * B + r];
                        let lci = select(lu[i * B + c] * ru, 0.0, sp);
                        ty[e] = ty[e] + t * lci;
                    }
                }
            }
        }
        workgroupBarrier();
    }
    // L below the diagonal, U⁻¹ and T from their sums on and above it (U above the diagonal
    // is read before L overwrites anything: only entries below the diagonal change).
    for (var e = lid; e < BB; e += WG) {
        let r = e % B;
        let c = e / B;
        let ic = info[c];
        if r <= c {
            // Times the reciprocals, as in the steps, so that U⁻¹ and L are the values T was
            // formed with.
            let rud = select(1.0 / ic.x, 1.0, ic.z != 0.0);
            xu[e] = (select(0.0, 1.0, r == c) - xu[e]) * rud;
            let ugc = select(lu[e], ic.x, r == c);
            ty[e] = -ugc * ic.y - ty[e];
        } else {
            lu[e] = select(lu[e] * (1.0 / ic.x), 0.0, ic.z != 0.0);
            xu[e] = 0.0;
            ty[e] = 0.0;
        }
    }
    workgroupBarrier();
    let ab = p.a_off + bm * p.a_stride;
    let vb = p.v_off + bm * p.v_stride;
    let rt = p.r_off + bm * p.s_stride;
    let tb = p.t_off + bm * p.t_stride;
    let ub = p.u_off + bm * p.s_stride;
    for (var e = lid; e < BB; e += WG) {
        let r = e % B;
        let c = e / B;
        let l = lu[e];
        if r > c {
            abuf[ab + r + c * p.a_ld] = l;
            vbuf[vb + r + c * p.v_ld] = l;
        } else {
            abuf[ab + r + c * p.a_ld] = info[r].y * sbuf[rt + r + c * p.r_ld];
            vbuf[vb + r + c * p.v_ld] = select(0.0, 1.0, r == c);
        }
        tbuf[tb + r + c * p.t_ld] = ty[e];
        // U⁻¹ (with 1 for a zero U_rr), zero below the diagonal and in no-reflection columns.
        sbuf[ub + e] = select(xu[e], 0.0, r > c || info[c].z != 0.0);
    }
    if lid < B {
        taubuf[p.tau_off + bm * p.tau_stride + lid] = ty[lid * B + lid];
    }
}
