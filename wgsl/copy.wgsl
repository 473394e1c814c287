// Sub-matrix copies between buffers, batched: out = A or out = Aᵀ for a rows×cols block.
//
//   copy_block  out[i, j] = a[i, j]          (rows × cols)
//   transpose   out[j, i] = a[i, j]          (a is rows × cols, out is cols × rows)
//
// Matrix b of a batch starts at offset + b * stride in each buffer. One invocation per element.
// No workgroup storage; WG (default 256) invocations.

override WG: u32 = 256u;

struct Params {
    rows: u32,
    cols: u32,
    batch: u32,
    _pad0: u32,
    a_ld: u32,
    a_offset: u32,
    a_stride: u32,
    _pad1: u32,
    out_ld: u32,
    out_offset: u32,
    out_stride: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn element(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    let per = p.rows * p.cols;
    return vec3<u32>(idx % per % p.rows, idx % per / p.rows, idx / per);
}

@compute @workgroup_size(WG)
fn copy_block(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = element(lid, wid, nwg);
    if e.z >= p.batch {
        return;
    }
    out[p.out_offset + e.z * p.out_stride + e.x + e.y * p.out_ld] =
        a[p.a_offset + e.z * p.a_stride + e.x + e.y * p.a_ld];
}

@compute @workgroup_size(WG)
fn transpose(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = element(lid, wid, nwg);
    if e.z >= p.batch {
        return;
    }
    out[p.out_offset + e.z * p.out_stride + e.y + e.x * p.out_ld] =
        a[p.a_offset + e.z * p.a_stride + e.x + e.y * p.a_ld];
}
