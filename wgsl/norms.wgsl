// Column 2-norms, safe against overflow and underflow as LAPACK's snrm2 is: each column is
// scaled by its largest magnitude before squaring, so inputs near 1e30 or 1e-30 give the right
// norm instead of inf or 0. A NaN anywhere in a column gives NaN.
//
// One workgroup per column. Fits WebGPU's default limits (WG <= 256 invocations, 2 KiB of
// workgroup storage).

override WG: u32 = 256u;

struct Params {
    rows: u32,
    cols: u32,
    ld: u32,
    a_offset: u32,
    out_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> nan_seen: atomic<u32>;


// NaN test on the bits: WGSL lets a compiler assume no NaN in float comparisons (x != x may be
// folded to false), so NaN is detected as an exponent of all ones with a non-zero mantissa.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn reduce_max(lid: u32) -> f32 {
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    return red[0];
}

fn reduce_sum(lid: u32) -> f32 {
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if lid < s {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

@compute @workgroup_size(WG)
fn column_norms(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let col = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early return keeps barriers uniform.
    if col >= p.cols {
        return;
    }
    if lid == 0u {
        atomicStore(&nan_seen, 0u);
    }
    let base = p.a_offset + col * p.ld;
    var m = 0.0;
    for (var i = lid; i < p.rows; i += WG) {
        let x = a[base + i];
        if is_nan(x) {
            atomicStore(&nan_seen, 1u);
        }
        m = max(m, abs(x));
    }
    red[lid] = m;
    workgroupBarrier();
    let scale = reduce_max(lid);
    workgroupBarrier();
    // Scale by a power of two (exact, and no reciprocal of a huge scale that a GPU would flush
    // to zero as a denormal): x / 2^e with scale = f · 2^e, f in [0.5, 1).
    let e = frexp(scale).exp;
    var s = 0.0;
    if scale > 0.0 && scale <= 3.40282347e38 {
        for (var i = lid; i < p.rows; i += WG) {
            let x = ldexp(a[base + i], -e);
            s = fma(x, x, s);
        }
    }
    red[lid] = s;
    workgroupBarrier();
    let total = reduce_sum(lid);
    let nan = atomicLoad(&nan_seen);
    if lid == 0u {
        var r = ldexp(sqrt(total), e);
        if scale == 0.0 {
            r = 0.0;
        }
        if scale > 3.40282347e38 {
            r = scale;
        }
        if nan != 0u {
            r = bitcast<f32>(0x7fc00000u);
        }
        out[p.out_offset + col] = r;
    }
}
