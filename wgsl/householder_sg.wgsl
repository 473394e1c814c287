// The panel factorization of householder.wgsl (geqr2_panel: same parameters, bindings and
// results), for adapters with subgroup operations. Reductions use subgroupMax/subgroupAdd, and
// the update of the panel's other columns gives each subgroup whole columns, so a column step
// needs 4 workgroup barriers instead of about 50. Chosen at run time only when the adapter has
// `Features::SUBGROUP`; householder.wgsl stays the portable path.
//
// Each subgroup numbers itself through a workgroup atomic, so nothing is assumed about how
// invocations are grouped into subgroups; the workgroup size must be a multiple of the
// subgroup size (the Rust side checks the adapter's subgroup size range).
//
// Workgroup storage under 1 KiB; WG (default 256) invocations.
// requires: subgroups (naga takes subgroup builtins without an `enable`; wgpu checks the feature)

override WG: u32 = 256u;
const F32_MAX: f32 = 3.40282347e38;
const MAX_SUBGROUPS: u32 = 64u; // WG / smallest subgroup size (4)

struct Params {
    m: u32,
    j0: u32,
    k: u32,
    ncols: u32,
    ld: u32,
    offset: u32,
    stride: u32,
    batch: u32,
    aux_ld: u32,
    aux_offset: u32,
    aux_stride: u32,
    tau_offset: u32,
    tau_stride: u32,
    rows_out: u32,
    cols_out: u32,
    t_ld: u32,
    t_offset: u32,
    t_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> tau: array<f32>;

// Two banks, used alternately, so one reduction's partials are not overwritten while another
// invocation still reads the previous one's.
var<workgroup> part_a: array<vec2<f32>, MAX_SUBGROUPS>;
var<workgroup> part_b: array<vec2<f32>, MAX_SUBGROUPS>;
var<workgroup> subgroup_counter: atomic<u32>;


// NaN test on the bits: WGSL lets a compiler assume no NaN in float comparisons (x != x may be
// folded to false), so NaN is detected as an exponent of all ones with a non-zero mantissa.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

@compute @workgroup_size(WG)
fn geqr2_panel_sg(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let b = wid.x + wid.y * nwg.x;
    if b >= p.batch {
        return;
    }
    let base = p.offset + b * p.stride;
    let tbase = p.tau_offset + b * p.tau_stride;
    let groups = WG / sg_size;
    // A unique index per subgroup, the same for all of its invocations.
    if lid == 0u {
        atomicStore(&subgroup_counter, 0u);
    }
    workgroupBarrier();
    var ticket = 0u;
    if lane == 0u {
        ticket = atomicAdd(&subgroup_counter, 1u);
    }
    let col_group = subgroupBroadcastFirst(ticket);

    for (var c = 0u; c < p.k; c++) {
        let col = p.j0 + c;
        let r0 = col;
        let cbase = base + col * p.ld;

        // 1. max |x| and a NaN flag over x = A[r0+1.., col]: one workgroup reduction.
        var mx = vec2<f32>(0.0);
        for (var i = r0 + 1u + lid; i < p.m; i += WG) {
            let x = a[cbase + i];
            mx = max(mx, vec2<f32>(abs(x), select(0.0, 1.0, is_nan(x))));
        }
        mx = subgroupMax(mx);
        if lane == 0u {
            part_a[col_group] = mx;
        }
        workgroupBarrier();
        var red = vec2<f32>(0.0);
        for (var s = 0u; s < groups; s++) {
            red = max(red, part_a[s]);
        }
        let scale = red.x;
        let nan_seen = red.y != 0.0;

        // 2. Sum of squares scaled by a power of two (exact; see householder.wgsl).
        let e = frexp(scale).exp;
        var ss = 0.0;
        if scale > 0.0 && scale <= F32_MAX {
            for (var i = r0 + 1u + lid; i < p.m; i += WG) {
                let x = ldexp(a[cbase + i], -e);
                ss = fma(x, x, ss);
            }
        }
        ss = subgroupAdd(ss);
        if lane == 0u {
            part_b[col_group] = vec2<f32>(ss, 0.0);
        }
        workgroupBarrier();
        var total = 0.0;
        for (var s = 0u; s < groups; s++) {
            total += part_b[s].x;
        }
        var xnorm = ldexp(sqrt(total), e);
        if scale == 0.0 {
            xnorm = 0.0;
        }
        if scale > F32_MAX {
            xnorm = scale;
        }
        if nan_seen {
            xnorm = nan();
        }
        let alpha = a[cbase + r0];

        // 3. slarfg, as in householder.wgsl; every invocation computes the same scalars.
        var t = 0.0;
        var beta = alpha;
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
            beta = select(h, -h, alpha >= 0.0);
            let eb = frexp(beta).exp;
            t = ldexp(beta - alpha, -eb) / ldexp(beta, -eb);
            let d = alpha - beta;
            let ed = frexp(d).exp;
            let dd = ldexp(d, -ed);
            for (var i = r0 + 1u + lid; i < p.m; i += WG) {
                a[cbase + i] = ldexp(a[cbase + i], -ed) / dd;
            }
        }
        storageBarrier();
        workgroupBarrier();
        if lid == 0u {
            a[cbase + r0] = beta;
            tau[tbase + col] = t;
        }

        // 4. H_c = I - tau v vᵀ on columns col+1 .. j0+ncols; subgroup g takes columns
        //    col+1+g, col+1+g+groups, …, reduces with subgroupAdd and updates them alone.
        let end = p.j0 + p.ncols;
        {
            for (var c0 = col + 1u; c0 < end; c0 += groups) {
                let c2 = c0 + col_group;
                let live = c2 < end;
                let b2 = base + c2 * p.ld;
                var part = 0.0;
                if live {
                    if lane == 0u {
                        part = a[b2 + r0]; // v's implicit 1 at row r0
                    }
                    // Four rows per lane per trip with independent sums, so the loads of a
                    // trip are in flight together (a single dependent chain was latency-bound).
                    let step = 4u * sg_size;
                    var p1 = 0.0;
                    var p2 = 0.0;
                    var p3 = 0.0;
                    var i = r0 + 1u + lane;
                    for (; i + 3u * sg_size < p.m; i += step) {
                        part = fma(a[cbase + i], a[b2 + i], part);
                        p1 = fma(a[cbase + i + sg_size], a[b2 + i + sg_size], p1);
                        p2 = fma(a[cbase + i + 2u * sg_size], a[b2 + i + 2u * sg_size], p2);
                        p3 = fma(a[cbase + i + 3u * sg_size], a[b2 + i + 3u * sg_size], p3);
                    }
                    for (; i < p.m; i += sg_size) {
                        part = fma(a[cbase + i], a[b2 + i], part);
                    }
                    part += (p1 + p2) + p3;
                }
                let w = t * subgroupAdd(part);
                if live {
                    if lane == 0u {
                        a[b2 + r0] -= w;
                    }
                    let step = 4u * sg_size;
                    var i = r0 + 1u + lane;
                    for (; i + 3u * sg_size < p.m; i += step) {
                        let i1 = i + sg_size;
                        let i2 = i + 2u * sg_size;
                        let i3 = i + 3u * sg_size;
                        let v0 = a[cbase + i];
                        let v1 = a[cbase + i1];
                        let v2 = a[cbase + i2];
                        let v3 = a[cbase + i3];
                        let c0 = a[b2 + i];
                        let c1 = a[b2 + i1];
                        let c2v = a[b2 + i2];
                        let c3 = a[b2 + i3];
                        a[b2 + i] = fma(-w, v0, c0);
                        a[b2 + i1] = fma(-w, v1, c1);
                        a[b2 + i2] = fma(-w, v2, c2v);
                        a[b2 + i3] = fma(-w, v3, c3);
                    }
                    for (; i < p.m; i += sg_size) {
                        a[b2 + i] = fma(-w, a[cbase + i], a[b2 + i]);
                    }
                }
            }
        }
        storageBarrier();
        workgroupBarrier();
    }
}
