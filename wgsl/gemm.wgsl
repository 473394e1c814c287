// Tiled GEMM: C = alpha * op(A) * op(B) + beta * C, column-major, f32, strided-batched.
//
// op(A) is m×k, op(B) is k×n, C is m×n. Each operand is addressed by an element offset and a
// leading dimension, so blocked algorithms pass sub-matrices of larger buffers; workgroup z
// walks the batch with per-operand strides. TRANS_A / TRANS_B select op = transpose.
// When beta == 0, C is not read (it may hold garbage or NaN).
//
// Two entry points, same parameters:
//   gemm        64×64 outputs per workgroup of 16×16 invocations, 4×4 register tile each,
//               K step 16; 8 KiB of workgroup storage. For small or thin products.
//   gemm_large  128×128 outputs per workgroup of 256 invocations, 8×8 register tile each
//               (two 4×4 quadrants, read from workgroup memory as vec4), K step 16, the next
//               K tile prefetched into registers while the current one is used; 16 KiB.
// Both fit WebGPU's default limits (16 KiB workgroup storage, 256 invocations).

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

// ---------------------------------------------------------------------------------------------
// gemm_large

const LBM: u32 = 128u;
const LBK: u32 = 16u;

// [kk][i / 4] as vec4: the 4 consecutive rows (or columns) a thread needs in one read.
var<workgroup> ltile_a: array<vec4<f32>, 512>; // LBK * LBM / 4
var<workgroup> ltile_b: array<vec4<f32>, 512>;

fn store_lane(is_a: bool, kk: u32, i: u32, v: f32) {
    let idx = kk * (LBM / 4u) + i / 4u;
    if is_a {
        ltile_a[idx][i % 4u] = v;
    } else {
        ltile_b[idx][i % 4u] = v;
    }
}

@compute @workgroup_size(256, 1, 1)
fn gemm_large(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.x * LBM;
    let col0 = wid.y * LBM;
    let z = wid.z;
    let a_base = p.a_offset + z * p.stride_a;
    let b_base = p.b_offset + z * p.stride_b;
    let c_base = p.c_offset + z * p.stride_c;
    let tx = tid % 16u;
    let ty = tid / 16u;

    var acc: array<vec4<f32>, 16>; // acc[4 * s + r]: rows quadrant r/2.., see the write-out
    for (var q = 0u; q < 16u; q++) {
        acc[q] = vec4<f32>(0.0);
    }

    // Each thread moves 8 elements of each tile per K step.
    var pa: array<f32, 8>;
    var pb: array<f32, 8>;
    for (var r = 0u; r < 8u; r++) {
        if TRANS_A {
            pa[r] = load_a(a_base, row0 + tid / 16u + 16u * r, tid % 16u);
        } else {
            pa[r] = load_a(a_base, row0 + tid % 128u, tid / 128u + 2u * r);
        }
        if TRANS_B {
            pb[r] = load_b(b_base, tid / 128u + 2u * r, col0 + tid % 128u);
        } else {
            pb[r] = load_b(b_base, tid % 16u, col0 + tid / 16u + 16u * r);
        }
    }

    for (var k0 = 0u; k0 < p.k; k0 += LBK) {
        for (var r = 0u; r < 8u; r++) {
            if TRANS_A {
                store_lane(true, tid % 16u, tid / 16u + 16u * r, pa[r]);
            } else {
                store_lane(true, tid / 128u + 2u * r, tid % 128u, pa[r]);
            }
            if TRANS_B {
                store_lane(false, tid / 128u + 2u * r, tid % 128u, pb[r]);
            } else {
                store_lane(false, tid % 16u, tid / 16u + 16u * r, pb[r]);
            }
        }
        workgroupBarrier();
        // Prefetch the next K tile while this one is multiplied.
        let k1 = k0 + LBK;
        if k1 < p.k {
            for (var r = 0u; r < 8u; r++) {
                if TRANS_A {
                    pa[r] = load_a(a_base, row0 + tid / 16u + 16u * r, k1 + tid % 16u);
                } else {
                    pa[r] = load_a(a_base, row0 + tid % 128u, k1 + tid / 128u + 2u * r);
                }
                if TRANS_B {
                    pb[r] = load_b(b_base, k1 + tid / 128u + 2u * r, col0 + tid % 128u);
                } else {
                    pb[r] = load_b(b_base, k1 + tid % 16u, col0 + tid / 16u + 16u * r);
                }
            }
        }
        for (var kk = 0u; kk < LBK; kk++) {
            let base = kk * (LBM / 4u);
            let a0 = ltile_a[base + tx];
            let a1 = ltile_a[base + 16u + tx];
            let b0 = ltile_b[base + ty];
            let b1 = ltile_b[base + 16u + ty];
            // acc[c] holds column c's rows: c = 0..3 -> b0, c = 4..7 -> b1; each column has
            // two vec4s (rows tx*4.. from a0 at index c, rows 64+tx*4.. from a1 at c + 8).
            acc[0] = fma(a0, vec4<f32>(b0.x), acc[0]);
            acc[1] = fma(a0, vec4<f32>(b0.y), acc[1]);
            acc[2] = fma(a0, vec4<f32>(b0.z), acc[2]);
            acc[3] = fma(a0, vec4<f32>(b0.w), acc[3]);
            acc[4] = fma(a0, vec4<f32>(b1.x), acc[4]);
            acc[5] = fma(a0, vec4<f32>(b1.y), acc[5]);
            acc[6] = fma(a0, vec4<f32>(b1.z), acc[6]);
            acc[7] = fma(a0, vec4<f32>(b1.w), acc[7]);
            acc[8] = fma(a1, vec4<f32>(b0.x), acc[8]);
            acc[9] = fma(a1, vec4<f32>(b0.y), acc[9]);
            acc[10] = fma(a1, vec4<f32>(b0.z), acc[10]);
            acc[11] = fma(a1, vec4<f32>(b0.w), acc[11]);
            acc[12] = fma(a1, vec4<f32>(b1.x), acc[12]);
            acc[13] = fma(a1, vec4<f32>(b1.y), acc[13]);
            acc[14] = fma(a1, vec4<f32>(b1.z), acc[14]);
            acc[15] = fma(a1, vec4<f32>(b1.w), acc[15]);
        }
        workgroupBarrier();
    }

    for (var cc = 0u; cc < 8u; cc++) {
        var j = col0 + ty * 4u + cc;
        if cc >= 4u {
            j = col0 + 64u + ty * 4u + (cc - 4u);
        }
        if j >= p.n {
            continue;
        }
        for (var half = 0u; half < 2u; half++) {
            let v = acc[cc + 8u * half];
            let i0 = row0 + 64u * half + tx * 4u;
            for (var r = 0u; r < 4u; r++) {
                let i = i0 + r;
                if i >= p.m {
                    continue;
                }
                let idx = c_base + i + j * p.ldc;
                var out = p.alpha * v[r];
                if p.beta != 0.0 {
                    out = fma(p.beta, c[idx], out);
                }
                c[idx] = out;
            }
        }
    }
}
