// Microbenchmarks for examples/wgsl_probe (scripts/probe/micro.sh): each entry point runs a
// loop of ITERS iterations of one primitive with a dependency from one iteration to the next;
// `sink` keeps the result alive. bar: a workgroupBarrier; chain: eight dependent FMAs; sgadd: a
// subgroupAdd; div, divsqrt: 1/x, 1/sqrt(x); lds: a dependent shared-memory load; publish: one
// invocation stores, a barrier, every invocation loads.
override ITERS: u32 = 1000u;
struct Params { batch: u32, a: u32, b: u32, c: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> r_out: array<f32>;
var<workgroup> sh: array<f32, 64>;

fn sink(lid: u32, x: f32) {
    if x == 12345.678 || p.batch == 0u { q_out[lid] = x; r_out[lid] = x; }
}

@compute @workgroup_size(64)
fn bar(@builtin(local_invocation_index) lid: u32) {
    var x = a_in[lid];
    for (var i = 0u; i < ITERS; i++) { workgroupBarrier(); x = fma(x, 1.0001, 0.5); }
    sink(lid, x);
}

@compute @workgroup_size(64)
fn chain(@builtin(local_invocation_index) lid: u32) {
    var x = a_in[lid];
    for (var i = 0u; i < ITERS; i++) {
        x = fma(x, 1.0001, 0.5); x = fma(x, 1.0001, 0.5); x = fma(x, 1.0001, 0.5); x = fma(x, 1.0001, 0.5);
        x = fma(x, 1.0001, 0.5); x = fma(x, 1.0001, 0.5); x = fma(x, 1.0001, 0.5); x = fma(x, 1.0001, 0.5);
    }
    sink(lid, x);
}

@compute @workgroup_size(64)
fn sgadd(@builtin(local_invocation_index) lid: u32) {
    var x = a_in[lid];
    for (var i = 0u; i < ITERS; i++) { x = subgroupAdd(x) * 0.01; }
    sink(lid, x);
}

@compute @workgroup_size(64)
fn divsqrt(@builtin(local_invocation_index) lid: u32) {
    var x = a_in[lid];
    for (var i = 0u; i < ITERS; i++) { x = 1.0 / sqrt(x + 2.0); }
    sink(lid, x);
}

@compute @workgroup_size(64)
fn div(@builtin(local_invocation_index) lid: u32) {
    var x = a_in[lid];
    for (var i = 0u; i < ITERS; i++) { x = 1.0 / (x + 2.0); }
    sink(lid, x);
}

@compute @workgroup_size(64)
fn lds(@builtin(local_invocation_index) lid: u32) {
    var x = a_in[lid];
    sh[lid] = x;
    workgroupBarrier();
    var k = lid;
    for (var i = 0u; i < ITERS; i++) { k = u32(sh[k & 63u]) & 63u; }
    sink(lid, f32(k));
}

@compute @workgroup_size(64)
fn publish(@builtin(local_invocation_index) lid: u32) {
    var x = a_in[lid];
    for (var i = 0u; i < ITERS; i++) {
        if lid == (i & 63u) { sh[i & 1u] = x; }
        workgroupBarrier();
        x = fma(sh[i & 1u], 0.5, x);
    }
    sink(lid, x);
}
