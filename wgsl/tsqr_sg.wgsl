// The reconstruction LU of tsqr.wgsl (same parameters, bindings and results; see its header for
// the algorithm) for adapters whose subgroups have one fixed size S: one subgroup per column, the
// workgroup B·S invocations.
//   tsqr_lu_sg      the LU of tsqr_lu with U⁻¹ and T built one row/column per step, each sum
//                   spread over a subgroup.
// On such adapters the TSQR blocks are factored by batched_qr_tall.wgsl's qr_tall (the block in
// registers); tsqr.wgsl's tsqr_apply (explicit Q level by level) and tsqr_rows (Y below the top
// block) are portable and serve both variants.
//
// Subgroups number themselves through a workgroup atomic, so nothing is assumed about how
// invocations are grouped; the host picks this file only when the adapter's subgroup size is
// fixed (min = max = S).
//
// Workgroup storage: SMEM + 4·B + 1 floats; invocations B·S.
// requires: subgroups (naga takes subgroup builtins without an `enable`; wgpu checks the feature)

override B: u32 = 8u;       // panel width
override SMEM: u32 = 216u;  // 3·B·(B+1)
override S: u32 = 32u;      // subgroup size
override WG: u32 = 256u;    // B·S

struct Params {
    rows: u32,
    nblocks: u32,
    batch: u32,
    top: u32,
    x_off: u32,
    x_ld: u32,
    x_stride: u32,
    r_off: u32,
    r_ld: u32,
    q_off: u32,
    q_ld: u32,
    tau_off: u32,
    tau_stride: u32,
    s_stride: u32,
    a_off: u32,
    a_ld: u32,
    a_stride: u32,
    v_off: u32,
    v_ld: u32,
    v_stride: u32,
    t_off: u32,
    t_ld: u32,
    t_stride: u32,
    u_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> xbuf: array<f32>;
@group(0) @binding(2) var<storage, read_write> sbuf: array<f32>;
@group(0) @binding(3) var<storage, read_write> abuf: array<f32>;
@group(0) @binding(4) var<storage, read_write> taubuf: array<f32>;
@group(0) @binding(5) var<storage, read_write> tbuf: array<f32>;
@group(0) @binding(6) var<storage, read_write> vbuf: array<f32>;

var<workgroup> blk: array<f32, SMEM>;
var<workgroup> betas: array<f32, B>;
var<workgroup> dinvs: array<f32, B>;
// tsqr_lu_sg: per column, whether any value below the diagonal was ever non-zero (written only
// by the column's own subgroup), and whether the column took LAPACK's no-reflection case (see
// tsqr_lu in tsqr.wgsl).
var<workgroup> nz: array<u32, B>;
var<workgroup> special: array<u32, B>;
var<workgroup> counter: atomic<u32>;

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

@compute @workgroup_size(WG)
fn tsqr_lu_sg(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let bm = wid.x;
    if bm >= p.batch {
        return;
    }
    let g = subgroup_number(lid, lane);
    let ld = B + 1u;
    let lu0 = 0u;
    let ui0 = B * ld;
    let t0 = 2u * B * ld;
    let qb = p.q_off + bm * p.s_stride;
    // Subgroup g owns column g of the LU (B subgroups): it loads it, eliminates in it, and
    // keeps its flag "ever non-zero below the diagonal" with one subgroupAny per step and a
    // plain store — no workgroup atomics (which every updated element used to hit).
    {
        let cc = g;
        var any = false;
        for (var r = lane; r < B; r += S) {
            let x = sbuf[qb + r + cc * p.q_ld];
            blk[lu0 + cc * ld + r] = x;
            any = any || (r > cc && x != 0.0);
        }
        let flag = subgroupAny(any);
        if lane == 0u {
            nz[cc] = select(0u, 1u, flag);
        }
    }
    workgroupBarrier();
    // LU without pivoting of Q₁ - S (see tsqr_lu).
    for (var i = 0u; i < B; i++) {
        let piv = blk[lu0 + i * ld + i];
        // S_ii = -sign(piv), so |U_ii| >= 1 — except where the column is already zero below
        // the pivot with |piv| = 1 (a column LAPACK does not reflect: tau = 0, R keeps alpha):
        // there S_ii = sign(piv), U_ii = 0, and the column of L is zero.
        let sp = nz[i] == 0u && abs(piv) == 1.0;
        var sgn = select(1.0, -1.0, piv >= 0.0);
        if sp {
            sgn = -sgn;
        }
        let u = piv - sgn;
        if lid == 0u {
            betas[i] = u;
            dinvs[i] = sgn;
            special[i] = select(0u, 1u, sp);
        }
        let cc = g;
        if cc > i {
            var any = false;
            for (var r = i + 1u + lane; r < B; r += S) {
                let l = select(blk[lu0 + i * ld + r] / u, 0.0, sp);
                let nv = blk[lu0 + cc * ld + r] - l * blk[lu0 + cc * ld + i];
                blk[lu0 + cc * ld + r] = nv;
                any = any || (r > cc && nv != 0.0);
            }
            let flag = subgroupAny(any);
            if lane == 0u && flag {
                nz[cc] = 1u;
            }
        }
        workgroupBarrier();
    }
    for (var e = lid; e < B * B; e += WG) {
        let r = e % B;
        let cc = e / B;
        if r > cc {
            blk[lu0 + cc * ld + r] = select(blk[lu0 + cc * ld + r] / betas[cc], 0.0, special[cc] != 0u);
        } else if r == cc {
            blk[lu0 + cc * ld + r] = betas[cc];
        }
    }
    workgroupBarrier();
    // Step s: subgroup g forms U⁻¹[i, g] (i = B-1-s, row by row from the bottom) and
    // T[g, s] (column by column from the left), each sum spread over the lanes.
    for (var s = 0u; s < B; s++) {
        let i = B - 1u - s;
        var acc = 0.0;
        if g >= i {
            for (var k = i + 1u + lane; k <= g; k += S) {
                acc = fma(blk[lu0 + k * ld + i], blk[ui0 + g * ld + k], acc);
            }
        }
        let su = subgroupAdd(acc);
        var acc2 = 0.0;
        if g <= s {
            for (var k = g + lane; k < s; k += S) {
                acc2 = fma(blk[t0 + k * ld + g], blk[lu0 + k * ld + s], acc2);
            }
        }
        let st = subgroupAdd(acc2);
        if lane == 0u {
            var ui = 0.0;
            if g >= i {
                ui = (select(0.0, 1.0, g == i) - su) / select(blk[lu0 + i * ld + i], 1.0, special[i] != 0u);
            }
            blk[ui0 + g * ld + i] = ui;
            var tv = 0.0;
            if g <= s {
                tv = -blk[lu0 + s * ld + g] * dinvs[s] - st;
            }
            blk[t0 + s * ld + g] = tv;
        }
        workgroupBarrier();
    }
    let ab = p.a_off + bm * p.a_stride;
    let vb = p.v_off + bm * p.v_stride;
    let rt = p.r_off + bm * p.s_stride;
    let tb = p.t_off + bm * p.t_stride;
    let ub = p.u_off + bm * p.s_stride;
    for (var e = lid; e < B * B; e += WG) {
        let r = e % B;
        let cc = e / B;
        let l = blk[lu0 + cc * ld + r];
        if r > cc {
            abuf[ab + r + cc * p.a_ld] = l;
            vbuf[vb + r + cc * p.v_ld] = l;
        } else {
            abuf[ab + r + cc * p.a_ld] = dinvs[r] * sbuf[rt + r + cc * p.r_ld];
            vbuf[vb + r + cc * p.v_ld] = select(0.0, 1.0, r == cc);
        }
        tbuf[tb + r + cc * p.t_ld] = blk[t0 + cc * ld + r];
        // U⁻¹ with 1 for a zero U_ii, and that column zeroed: Y's column below is zero there.
        sbuf[ub + r + cc * B] = select(blk[ui0 + cc * ld + r], 0.0, special[cc] != 0u);
    }
    if lid < B {
        taubuf[p.tau_off + bm * p.tau_stride + lid] = blk[t0 + lid * ld + lid];
    }
}
