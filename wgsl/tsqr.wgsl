// TSQR panel factorization with Householder reconstruction (Ballard, Demmel, Grigori,
// Jacquelin, Knight, Nguyen, "Reconstructing Householder vectors from Tall-Skinny QR", 2015).
//
// A tall panel (rows × B, rows ≫ B) is cut into blocks of at most RB rows. Each block is factored
// by Householder QR in workgroup memory, all blocks at once, and forms its own Q (rows × B,
// H_0 … H_{B-1} [I; 0]); the B×B R factors are stacked and factored again, level by level,
// until one block is left (`tsqr_factor`, once per level). The explicit Q of the panel is then
// built top-down, each level's rows being its block Q times the block's B×B piece of the level
// above's explicit Q (`tsqr_apply`, a parallel product, once per level below the top, but for
// the leaf level behind CholeskyQR2: see fold_on). Finally the Householder form LAPACK's
// blocked QR needs is reconstructed from Q (tsqr_lu.wgsl's `tsqr_lu`, then `tsqr_rows` here):
//   Q - S = L U   (LU without pivoting; S = diag(-sign) chosen on the way so |U_ii| >= 1),
//   Y = L (unit lower trapezoidal: the reflectors), T = -U S L₁⁻ᵀ, R_H = S R,
// so that I - Y T Yᵀ is the panel's block reflector and A = (I - Y T Yᵀ)[:, :B] R_H. That is
// exactly what geqr2 + larft would give (same sign rule as slarfg), computed with O(log rows)
// dependent launches instead of a sequential column loop over all rows of the panel.
//
// Blocks: a level of `rows` rows has `nblocks` blocks; block g has rows/nblocks rows, one more
// for the first rows % nblocks blocks, so every block has at least B rows when rows >= B and
// RB >= 2B (the host guarantees both). Each column of a block is scaled by a power of two at
// load (exact, and QR commutes with column scaling: QR(A D) = Q (R D)), so no norm can overflow
// or underflow for scaled input; R is unscaled when written.
//
// Work split in `tsqr_factor`: TPC = WG / B invocations per column; for a step j, invocation
// (c, part) handles rows part, part + TPC, … of column c. One reduction buffer, two barriers
// per step: partial dot products, then every invocation of column c sums the TPC partials
// itself (no third barrier) and updates its rows. Where the adapter's subgroups have one fixed
// size, the blocks are factored instead by batched_qr_tall.wgsl's qr_tall (the block in the
// registers of a workgroup of subgroups, same outputs: R stacked into the level above, the
// block's explicit Q).
//
// Workgroup memory (floats): SMEM + SMQ + WG + 5·B + 1 (the gate flag; tsqr_rows' fold flag
// instead), each entry point's arrays sized by the host for that dispatch (see the override
// comments) to the adapter's limit.

override B: u32 = 16u;      // panel width
override RB: u32 = 64u;     // most rows in a block
override LDS: u32 = 65u;    // leading dimension of a block in workgroup memory (RB + 1)
override SMEM: u32 = 1040u; // factor: LDS·B; rows: B·B
override SMQ: u32 = 1040u;  // factor: LDS·B for the block's Q (1 elsewhere)
override TPC: u32 = 8u;     // invocations per column (WG / B)
override WG: u32 = 256u;

const F32_MAX: f32 = 3.40282347e38;

struct Params {
    rows: u32,       // rows of this level's tall matrix (lu/rows: the panel's rows)
    nblocks: u32,    // blocks of this level
    batch: u32,
    top: u32,        // expand: 1 when C is the identity (top level)
    x_off: u32,      // the level's matrix: factored in place by factor, V read by expand
    x_ld: u32,
    x_stride: u32,
    r_off: u32,      // factor: R out; expand: the parent's Q (C); lu: the top R
    r_ld: u32,
    q_off: u32,      // expand: Q out; lu/rows: the panel's explicit Q
    q_ld: u32,
    tau_off: u32,    // factor/expand: the level's tau (in scratch); lu: the panel's tau out
    tau_stride: u32,
    s_stride: u32,   // elements between batch members in the scratch buffer
    a_off: u32,      // lu/rows: the panel in A (Y below the diagonal, R_H on and above)
    a_ld: u32,
    a_stride: u32,
    v_off: u32,      // lu/rows: explicit V (unit diagonal, zeros above)
    v_ld: u32,
    v_stride: u32,
    t_off: u32,      // lu: T out
    t_ld: u32,
    t_stride: u32,
    u_off: u32,      // lu: U⁻¹ out; rows: U⁻¹ in (scratch)
    gate: u32,       // factor/apply: NO_GATE, or the element of sbuf (per matrix, s_stride
                     // apart) whose 0.0 means return at once (cholqr.wgsl factored the panel)
    fold_q: u32,     // lu/rows: NO_FOLD, or the leaf level's block Q (ld q_ld), whose product
                     // with fold_p (ld fold_ld) is the panel's explicit Q where the gate is
                     // set (the leaf level's tsqr_apply folded into lu and rows; see fold_on)
    fold_p: u32,
    fold_ld: u32,
}

const NO_GATE: u32 = 0xffffffffu;
const NO_FOLD: u32 = 0xffffffffu;
var<workgroup> gate_run: u32;
var<workgroup> fold_run: u32; // tsqr_rows: fold_on, read once per workgroup

// Whether this workgroup, of matrix bm, returns at once because cholqr.wgsl factored that
// matrix's panel (uniform).
fn gated_off(lid: u32, bm: u32) -> bool {
    if lid == 0u {
        gate_run = select(0u, 1u, p.gate != NO_GATE && sbuf[p.gate + bm * p.s_stride] == 0.0);
    }
    return workgroupUniformLoad(&gate_run) != 0u;
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> xbuf: array<f32>;
@group(0) @binding(2) var<storage, read_write> sbuf: array<f32>;
@group(0) @binding(3) var<storage, read_write> abuf: array<f32>;
@group(0) @binding(4) var<storage, read_write> taubuf: array<f32>;
@group(0) @binding(5) var<storage, read_write> tbuf: array<f32>;
@group(0) @binding(6) var<storage, read_write> vbuf: array<f32>;

var<workgroup> blk: array<f32, SMEM>;
var<workgroup> red: array<f32, WG>;
var<workgroup> arow: array<f32, B>;
var<workgroup> betas: array<f32, B>;
var<workgroup> dinvs: array<f32, B>;
var<workgroup> taus: array<f32, B>;
var<workgroup> expo: array<i32, B>;
var<workgroup> qx: array<f32, SMQ>;

// The block of a level that holds row r.
fn leaf_block(r: u32) -> u32 {
    let base = p.rows / p.nblocks;
    let rem = p.rows % p.nblocks;
    let big = rem * (base + 1u);
    if r < big {
        return r / (base + 1u);
    }
    return rem + (r - big) / base;
}

// First row and row count of block g of a level.
fn block_rows(g: u32) -> vec2<u32> {
    let base = p.rows / p.nblocks;
    let rem = p.rows % p.nblocks;
    return vec2<u32>(g * base + min(g, rem), base + select(0u, 1u, g < rem));
}

@compute @workgroup_size(WG)
fn tsqr_factor(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let g = wid.x;
    let bm = wid.y;
    if g >= p.nblocks || bm >= p.batch {
        return;
    }
    if gated_off(lid, bm) {
        return;
    }
    let br = block_rows(g);
    let nr = br.y;
    let xb = p.x_off + bm * p.x_stride + br.x;
    for (var e = lid; e < nr * B; e += WG) {
        let i = e % nr;
        let c = e / nr;
        blk[c * LDS + i] = xbuf[xb + i + c * p.x_ld];
    }
    workgroupBarrier();

    let c = lid / TPC;
    let part = lid % TPC;
    let owns = c < B;

    // Column scales: a power of two near each column's largest magnitude.
    var mx = 0.0;
    if owns {
        for (var i = part; i < nr; i += TPC) {
            mx = max(mx, abs(blk[c * LDS + i]));
        }
    }
    red[lid] = mx;
    workgroupBarrier();
    if lid < B {
        var m2 = 0.0;
        for (var q = 0u; q < TPC; q++) {
            m2 = max(m2, red[lid * TPC + q]);
        }
        var e = 0;
        if m2 > 0.0 && m2 <= F32_MAX {
            e = frexp(m2).exp;
        }
        expo[lid] = e;
    }
    workgroupBarrier();
    if owns {
        let e = expo[c];
        for (var i = part; i < nr; i += TPC) {
            blk[c * LDS + i] = ldexp(blk[c * LDS + i], -e);
        }
    }
    workgroupBarrier();

    // Householder steps. Column j keeps x (its part below the diagonal) unscaled until the end;
    // v = x · dinv is applied on the fly, so no invocation writes what another reads.
    for (var j = 0u; j < B; j++) {
        var s = 0.0;
        if owns && c >= j {
            for (var i = j + 1u + part; i < nr; i += TPC) {
                s = fma(blk[j * LDS + i], blk[c * LDS + i], s);
            }
            if part == 0u {
                arow[c] = blk[c * LDS + j];
            }
        }
        red[lid] = s;
        workgroupBarrier();
        if owns && c >= j {
            var dj = 0.0;
            var dc = 0.0;
            for (var q = 0u; q < TPC; q++) {
                dj += red[j * TPC + q];
                dc += red[c * TPC + q];
            }
            let alpha = arow[j];
            // slarfg: beta = -sign(alpha)·‖(alpha, x)‖, tau = (beta - alpha)/beta,
            // v = x/(alpha - beta); H = I (tau = 0) when x is already zero.
            var tau = 0.0;
            var beta = alpha;
            var dinv = 0.0;
            if dj != 0.0 {
                let h = sqrt(fma(alpha, alpha, dj));
                beta = select(h, -h, alpha >= 0.0);
                tau = (beta - alpha) / beta;
                dinv = 1.0 / (alpha - beta);
            }
            if c == j {
                if part == 0u {
                    taus[j] = tau;
                    betas[j] = beta;
                    dinvs[j] = dinv;
                }
            } else {
                let w = tau * fma(dc, dinv, arow[c]);
                if part == 0u {
                    blk[c * LDS + j] = arow[c] - w;
                }
                let wd = -w * dinv;
                for (var i = j + 1u + part; i < nr; i += TPC) {
                    blk[c * LDS + i] = fma(wd, blk[j * LDS + i], blk[c * LDS + i]);
                }
            }
        }
        workgroupBarrier();
    }

    // V (strictly below the diagonal) back in place; R, unscaled, to the R output; tau.
    for (var e = lid; e < nr * B; e += WG) {
        let i = e % nr;
        let cc = e / nr;
        if i > cc {
            xbuf[xb + i + cc * p.x_ld] = blk[cc * LDS + i] * dinvs[cc];
        }
    }
    let rb = p.r_off + bm * p.s_stride + g * B;
    for (var e = lid; e < B * B; e += WG) {
        let i = e % B;
        let cc = e / B;
        var v = 0.0;
        if i < cc {
            v = ldexp(blk[cc * LDS + i], expo[cc]);
        } else if i == cc {
            v = ldexp(betas[cc], expo[cc]);
        }
        sbuf[rb + i + cc * p.r_ld] = v;
    }
    if lid < B {
        sbuf[p.tau_off + bm * p.s_stride + g * B + lid] = taus[lid];
    }

    // The block's own Q (nr × B) = H_0 … H_{B-1} [I; 0], H_{B-1} first, into qx, then to
    // q_off (ld q_ld) at the block's rows. Column c is e_c until H_c reaches it.
    for (var e = lid; e < nr * B; e += WG) {
        let i = e % nr;
        let cc = e / nr;
        qx[cc * LDS + i] = select(0.0, 1.0, i == cc);
    }
    workgroupBarrier();
    for (var jj = 0u; jj < B; jj++) {
        let j = B - 1u - jj;
        var s = 0.0;
        if owns && c >= j {
            for (var i = j + part; i < nr; i += TPC) {
                let v = select(blk[j * LDS + i] * dinvs[j], 1.0, i == j);
                s = fma(v, qx[c * LDS + i], s);
            }
        }
        red[lid] = s;
        workgroupBarrier();
        if owns && c >= j {
            var w = 0.0;
            for (var q = 0u; q < TPC; q++) {
                w += red[c * TPC + q];
            }
            w = -w * taus[j];
            for (var i = j + part; i < nr; i += TPC) {
                let v = select(blk[j * LDS + i] * dinvs[j], 1.0, i == j);
                qx[c * LDS + i] = fma(w, v, qx[c * LDS + i]);
            }
        }
        workgroupBarrier();
    }
    let qb = p.q_off + bm * p.s_stride + br.x;
    for (var e = lid; e < nr * B; e += WG) {
        let i = e % nr;
        let cc = e / nr;
        sbuf[qb + i + cc * p.q_ld] = qx[cc * LDS + i];
    }
}

// Explicit Q of a level below the top: Q[r, :] = Qloc[r, :] · P[g·B .. g·B + B, :], where Qloc
// is the level's blockwise Q (from tsqr_factor), g the block of row r and P the explicit Q of
// the level above (its rows g·B .. g·B + B belong to block g's R). Q goes to u_off, ld q_ld.
@compute @workgroup_size(WG)
fn tsqr_apply(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let bm = wid.y;
    if bm >= p.batch {
        return;
    }
    if gated_off(lid, bm) {
        return;
    }
    // Four columns of Q per invocation: the row of Qloc is read once per four outputs, not
    // once per output (the leaf level of a 65536-row panel re-read it 32 times: 73 µs).
    let total = p.rows * ((B + 3u) / 4u);
    let qb = p.q_off + bm * p.s_stride;
    let pb = p.r_off + bm * p.s_stride;
    let ob = p.u_off + bm * p.s_stride;
    for (var e = wid.x * WG + lid; e < total; e += nwg.x * WG) {
        let r = e % p.rows;
        let c0 = 4u * (e / p.rows);
        let g = leaf_block(r);
        // Columns past B read column B - 1 (a valid address); their sums are not stored.
        let pc = pb + g * B + min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(B - 1u)) * p.r_ld;
        var acc = vec4<f32>(0.0);
        for (var k = 0u; k < B; k++) {
            let pv = vec4<f32>(sbuf[pc.x + k], sbuf[pc.y + k], sbuf[pc.z + k], sbuf[pc.w + k]);
            acc = fma(vec4<f32>(sbuf[qb + r + k * p.q_ld]), pv, acc);
        }
        for (var j = 0u; j < 4u; j++) {
            if c0 + j < B {
                sbuf[ob + r + (c0 + j) * p.q_ld] = acc[j];
            }
        }
    }
}

// Whether the panel's explicit Q is to be formed on the fly (`leaf_q`) instead of read at q_off:
// where CholeskyQR2 runs first, its Q is there; where its check failed, the tree's leaf-level
// expansion is not launched (it would be one more launch per panel, almost always gated off)
// and lu and rows form the rows of Q they need from the leaf blocks' Q and the level above's
// explicit Q themselves, exactly as tsqr_apply would (same fma chain, so bit for bit).
fn fold_on(bm: u32) -> bool {
    return p.fold_q != NO_FOLD && sbuf[p.gate + bm * p.s_stride] != 0.0;
}

// Entry (r, c) of the panel's explicit Q from the leaf level (see fold_on): row r of its block
// g's Q times that block's B rows of the level above's explicit Q.
fn leaf_q(bm: u32, r: u32, g: u32, c: u32) -> f32 {
    let qb = p.fold_q + bm * p.s_stride + r;
    let pb = p.fold_p + bm * p.s_stride + g * B + c * p.fold_ld;
    var acc = 0.0;
    for (var k = 0u; k < B; k++) {
        acc = fma(sbuf[qb + k * p.q_ld], sbuf[pb + k], acc);
    }
    return acc;
}

// Rows B.. of the reflectors: Y₂ = Q₂ U⁻¹, into the panel and into explicit V.
@compute @workgroup_size(WG)
fn tsqr_rows(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let bm = wid.y;
    if bm >= p.batch {
        return;
    }
    let ub = p.u_off + bm * p.s_stride;
    // The fold flag, read with U⁻¹.
    if lid == 0u {
        fold_run = select(0u, 1u, fold_on(bm));
    }
    for (var e = lid; e < B * B; e += WG) {
        blk[e] = sbuf[ub + e];
    }
    workgroupBarrier();
    let below = p.rows - B;
    // Four columns per invocation (the Q row read once per four outputs, as in tsqr_apply);
    // column c sums k ≤ c only, exactly as one column per invocation did.
    let total = below * ((B + 3u) / 4u);
    let qb = p.q_off + bm * p.s_stride;
    // Two loops, not one with a branch inside: with the branch inside, this launch took as long
    // as the launch that the fold saves (H100 profile 10.6 → 13.2 µs; BENCHMARKS.md, v74).
    if fold_run != 0u {
        // Q's rows formed from the leaf level (fold_on): the same sums, each Q entry computed.
        for (var e = wid.x * WG + lid; e < total; e += nwg.x * WG) {
            let r = B + e % below;
            let c0 = 4u * (e / below);
            let cs = vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u);
            let uc = min(cs, vec4<u32>(B - 1u)) * B;
            let g = leaf_block(r);
            var acc = vec4<f32>(0.0);
            for (var k = 0u; k <= min(c0 + 3u, B - 1u); k++) {
                let u = vec4<f32>(blk[k + uc.x], blk[k + uc.y], blk[k + uc.z], blk[k + uc.w]);
                let next = fma(vec4<f32>(leaf_q(bm, r, g, k)), u, acc);
                acc = select(acc, next, vec4<u32>(k) <= cs);
            }
            store_rows(bm, r, c0, acc);
        }
        return;
    }
    for (var e = wid.x * WG + lid; e < total; e += nwg.x * WG) {
        let r = B + e % below;
        let c0 = 4u * (e / below);
        let cs = vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u);
        let uc = min(cs, vec4<u32>(B - 1u)) * B;
        var acc = vec4<f32>(0.0);
        for (var k = 0u; k <= min(c0 + 3u, B - 1u); k++) {
            let u = vec4<f32>(blk[k + uc.x], blk[k + uc.y], blk[k + uc.z], blk[k + uc.w]);
            let next = fma(vec4<f32>(sbuf[qb + r + k * p.q_ld]), u, acc);
            acc = select(acc, next, vec4<u32>(k) <= cs);
        }
        store_rows(bm, r, c0, acc);
    }
}

// Columns c0 … c0 + 3 (those < B) of row r of Y₂, into the panel and into explicit V.
fn store_rows(bm: u32, r: u32, c0: u32, acc: vec4<f32>) {
    let ab = p.a_off + bm * p.a_stride;
    let vb = p.v_off + bm * p.v_stride;
    for (var j = 0u; j < 4u; j++) {
        if c0 + j < B {
            abuf[ab + r + (c0 + j) * p.a_ld] = acc[j];
            vbuf[vb + r + (c0 + j) * p.v_ld] = acc[j];
        }
    }
}
