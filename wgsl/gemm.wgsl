// Tiled GEMM: C = alpha * op(A) * op(B) + beta * C, column-major, f32, strided-batched.
//
// op(A) is m×k, op(B) is k×n, C is m×n. Each operand is addressed by an element offset and a
// leading dimension, so blocked algorithms pass sub-matrices of larger buffers; workgroup z
// walks the batch with per-operand strides. TRANS_A / TRANS_B select op = transpose.
// When beta == 0, C is not read (it may hold garbage or NaN).
//
// Tiles: 64×64 outputs per workgroup of 16×16 invocations, 4×4 register tile each, K step 16.
// Workgroup storage 8 KiB, 256 invocations: fits WebGPU's default limits.

override TRANS_A: bool = false;
override TRANS_B: bool = false;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_offset: u32,
    b_offset: u32,
    c_offset: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    alpha: f32,
    beta: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> tile_a: array<array<f32, BM>, BK>;
var<workgroup> tile_b: array<array<f32, BN>, BK>;

fn load_a(a_base: u32, i: u32, kk: u32) -> f32 {
    if i >= p.m || kk >= p.k {
        return 0.0;
    }
    if TRANS_A {
        return a[a_base + kk + i * p.lda];
    }
    return a[a_base + i + kk * p.lda];
}

fn load_b(b_base: u32, kk: u32, j: u32) -> f32 {
    if kk >= p.k || j >= p.n {
        return 0.0;
    }
    if TRANS_B {
        return b[b_base + j + kk * p.ldb];
    }
    return b[b_base + kk + j * p.ldb];
}

@compute @workgroup_size(16, 16, 1)
fn gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.x * BM;
    let col0 = wid.y * BN;
    let z = wid.z;
    let a_base = p.a_offset + z * p.stride_a;
    let b_base = p.b_offset + z * p.stride_b;
    let c_base = p.c_offset + z * p.stride_c;

    var acc: array<array<f32, 4>, 4>;
    for (var r = 0u; r < 4u; r++) {
        for (var s = 0u; s < 4u; s++) {
            acc[r][s] = 0.0;
        }
    }

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Each of 256 invocations loads 4 elements of each tile, along the operand's
        // contiguous direction.
        for (var r = 0u; r < 4u; r++) {
            if TRANS_A {
                let kl = tid % BK;
                let il = tid / BK + 16u * r;
                tile_a[kl][il] = load_a(a_base, row0 + il, k0 + kl);
            } else {
                let il = tid % BM;
                let kl = tid / BM + 4u * r;
                tile_a[kl][il] = load_a(a_base, row0 + il, k0 + kl);
            }
            if TRANS_B {
                let jl = tid % BN;
                let kl = tid / BN + 4u * r;
                tile_b[kl][jl] = load_b(b_base, k0 + kl, col0 + jl);
            } else {
                let kl = tid % BK;
                let jl = tid / BK + 16u * r;
                tile_b[kl][jl] = load_b(b_base, k0 + kl, col0 + jl);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var r = 0u; r < 4u; r++) {
                av[r] = tile_a[kk][lid.x + 16u * r];
                bv[r] = tile_b[kk][lid.y + 16u * r];
            }
            for (var r = 0u; r < 4u; r++) {
                for (var s = 0u; s < 4u; s++) {
                    acc[r][s] = fma(av[r], bv[s], acc[r][s]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var s = 0u; s < 4u; s++) {
        let j = col0 + lid.y + 16u * s;
        if j >= p.n {
            continue;
        }
        for (var r = 0u; r < 4u; r++) {
            let i = row0 + lid.x + 16u * r;
            if i >= p.m {
                continue;
            }
            let idx = c_base + i + j * p.ldc;
            var v = p.alpha * acc[r][s];
            if p.beta != 0.0 {
                v = fma(p.beta, c[idx], v);
            }
            c[idx] = v;
        }
    }
}
