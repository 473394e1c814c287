//! Times one entry point of a WGSL file on the GPU: a harness for experiments on kernels outside
//! the crate (ablated copies of a kernel, microbenchmarks), measured as the crate's own kernels
//! are built (no loop bounding, bounds checks on; `full` or `none` as the 10th argument change
//! that). Bindings: 0, a uniform `{BATCH, 0, 0, 0}` or the u32 words of the 11th argument (for
//! kernels with other parameter blocks); 1, 2 and 3, storage buffers of A_LEN, Q_LEN and R_LEN
//! floats, all filled with values in [-1, 1) (outputs too, so that a kernel reading one as an
//! operand, as a GEMM's C or a probe's second input, never sees zero-filled memory). Each of
//! three rounds records REPS dispatches of GROUPS workgroups, each in its own pass with GPU
//! timestamps; the last round's median, minimum and maximum are printed.
//!
//! ```text
//! wgsl_probe FILE ENTRY "NAME=VALUE,..." BATCH A_LEN Q_LEN R_LEN GROUPS [REPS] [full|none|default] [U32,U32,...]
//! bash scripts/probe/micro.sh     # the microbenchmarks quoted in BENCHMARKS.md (session 5)
//! ```
use metalcore::Context;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 8 {
        eprintln!("usage: wgsl_probe FILE ENTRY \"NAME=VALUE,...\" BATCH A_LEN Q_LEN R_LEN GROUPS [REPS] [full|none|default] [U32,...]");
        std::process::exit(2);
    }
    let src = std::fs::read_to_string(&a[0]).unwrap();
    let entry = a[1].as_str();
    let consts: Vec<(String, f64)> = a[2]
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    let n = |i: usize| a[i].parse::<u64>().unwrap();
    let (batch, alen, qlen, rlen, groups) = (n(3), n(4), n(5), n(6), n(7) as u32);
    let reps = a.get(8).map(|s| s.parse().unwrap()).unwrap_or(20usize);
    let checks = a.get(9).map(|s| s.as_str()).unwrap_or("");
    let ctx = Context::new().unwrap();
    let dev = ctx.device();
    let q = ctx.queue();
    let mut rc = wgpu::ShaderRuntimeChecks::checked();
    match checks {
        "full" => {}
        "none" => rc = wgpu::ShaderRuntimeChecks::unchecked(),
        _ => rc.force_loop_bounding = false,
    }
    // SAFETY: the probe is for trusted experiment kernels; as in the crate, loop bounding is
    // off unless `full` is given, and `none` is an explicit request for no checks at all.
    let module = unsafe {
        dev.create_shader_module_trusted(
            wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(src.into()),
            },
            rc,
        )
    };
    let cref: Vec<(&str, f64)> = consts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let pipe = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &cref,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    let buf = |len: u64, usage| {
        dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: len.max(1) * 4,
            usage,
            mapped_at_creation: false,
        })
    };
    use wgpu::BufferUsages as U;
    let words: Vec<u32> = match a.get(10) {
        Some(w) => w.split(',').map(|x| x.parse().unwrap()).collect(),
        None => vec![batch as u32, 0, 0, 0],
    };
    let params = buf(words.len().max(4) as u64, U::UNIFORM | U::COPY_DST);
    q.write_buffer(&params, 0, bytemuck::cast_slice(&words));
    let filled = |len: u64| {
        let b = buf(len, U::STORAGE | U::COPY_DST);
        let data: Vec<f32> = (0..len)
            .map(|i| ((i.wrapping_mul(2654435761) % 1000) as f32) / 500.0 - 1.0)
            .collect();
        q.write_buffer(&b, 0, bytemuck::cast_slice(&data));
        b
    };
    let ab = filled(alen);
    let qb = filled(qlen);
    let rb = filled(rlen);
    let bgl = pipe.get_bind_group_layout(0);
    let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &bgl,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: ab.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: qb.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: rb.as_entire_binding(),
            },
        ],
    });
    let qs = dev.create_query_set(&wgpu::QuerySetDescriptor {
        label: None,
        ty: wgpu::QueryType::Timestamp,
        count: (2 * reps) as u32,
    });
    let resolve = buf(2 * reps as u64 * 2, U::QUERY_RESOLVE | U::COPY_SRC);
    let staging = buf(2 * reps as u64 * 2, U::MAP_READ | U::COPY_DST);
    let gx = groups.min(65535);
    let gy = groups.div_ceil(65535);
    let mut times = Vec::new();
    for round in 0..3 {
        let mut enc = dev.create_command_encoder(&Default::default());
        for r in 0..reps {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &qs,
                    beginning_of_pass_write_index: Some(2 * r as u32),
                    end_of_pass_write_index: Some(2 * r as u32 + 1),
                }),
            });
            pass.set_pipeline(&pipe);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        enc.resolve_query_set(&qs, 0..(2 * reps) as u32, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, resolve.size());
        q.submit([enc.finish()]);
        let s = staging.slice(..);
        s.map_async(wgpu::MapMode::Read, |_| {});
        dev.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        let ticks: Vec<u64> = bytemuck::cast_slice(&s.get_mapped_range().unwrap()).to_vec();
        staging.unmap();
        if round == 2 {
            let p = q.get_timestamp_period() as f64;
            for r in 0..reps {
                times.push((ticks[2 * r + 1] - ticks[2 * r]) as f64 * p / 1e3);
            }
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{} {entry} [{}] groups {groups}: median {:.1} us (min {:.1}, max {:.1})",
        a[0],
        a[2],
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
