//! What the Vulkan driver made of metalcore's kernels: registers, spills, local memory and
//! whatever else it reports through `VK_KHR_pipeline_executable_properties`.
//!
//! Runs the operations named on the command line (default: the shapes of the performance
//! issue) through a metalcore [`Context`], takes every kernel specialization the context
//! compiled ([`Context::compiled_kernels`]), translates each with naga to SPIR-V the way wgpu's
//! Vulkan backend does, builds it again as a Vulkan compute pipeline with statistics capture
//! on, and prints the driver's statistics for each.
//!
//! ```text
//! cargo run --release --example kernel_stats                     # the default operations
//! cargo run --release --example kernel_stats -- batched:1000x16x16 qr:256x256 gemm:256 trsm:256x64
//! cargo run --release --example kernel_stats -- batched-r:10000x32x32     # batched QR, R only
//! cargo run --release --example kernel_stats -- --ir out/ qr:256x256   # + internal representations
//! ```
//!
//! Drivers need not support the extension (the example says so and exits); Mesa's lavapipe and
//! NVIDIA's driver do (Mesa 22's lavapipe does not). Statistics describe the driver's compile of
//! naga's SPIR-V with the runtime checks metalcore's pipelines get (index clamping, no loop
//! bounding).

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use ash::vk;
use metalcore::{
    gemm, qr, qr_batched, trsm, CompiledKernel, Context, ContextOptions, GpuBatch, GpuMatrix,
    QrMode, TrsmOptions,
};

type Res<T> = std::result::Result<T, String>;

const DEFAULT_OPS: &[&str] = &[
    "batched:500x8x8",
    "batched:10000x32x32",
    "batched:1000x64x64",
    "batched:10000x256x32",
    "qr:4096x4096",
    "qr:65536x256",
    "gemm:4096",
    "trsm:4096x4096",
];

fn dims(spec: &str, n: usize) -> Res<Vec<usize>> {
    let d: Vec<usize> = spec
        .split('x')
        .map(|s| s.parse().map_err(|_| format!("bad size {spec:?}")))
        .collect::<Res<_>>()?;
    if d.len() != n {
        return Err(format!("{spec:?}: expected {n} sizes separated by 'x'"));
    }
    Ok(d)
}

/// Records one operation (the inputs' values do not matter: only the pipelines are wanted).
fn run_op(ctx: &Context, op: &str) -> Res<()> {
    let (kind, spec) = op
        .split_once(':')
        .ok_or_else(|| format!("{op:?}: expected kind:size"))?;
    let e = |e: metalcore::Error| format!("{op}: {e}");
    match kind {
        "batched" | "batched-r" => {
            let d = dims(spec, 3)?;
            let a = GpuBatch::zeros(ctx, d[0], d[1], d[2]).map_err(e)?;
            let mode = if kind == "batched" {
                QrMode::Reduced
            } else {
                QrMode::R
            };
            qr_batched(ctx, &a, mode).map_err(e)?;
        }
        "qr" => {
            let d = dims(spec, 2)?;
            let a = GpuMatrix::filled(ctx, d[0], d[1], 1.0).map_err(e)?;
            qr(ctx, &a, QrMode::Reduced).map_err(e)?;
        }
        "gemm" => {
            let n = dims(spec, 1)?[0];
            let a = GpuMatrix::filled(ctx, n, n, 1.0).map_err(e)?;
            let mut c = GpuMatrix::zeros(ctx, n, n).map_err(e)?;
            gemm(ctx, 1.0, &a, false, &a, true, 1.0, &mut c).map_err(e)?;
        }
        "trsm" => {
            let d = dims(spec, 2)?;
            let l = GpuMatrix::filled(ctx, d[0], d[0], 1.0).map_err(e)?;
            let b = GpuMatrix::filled(ctx, d[0], d[1], 1.0).map_err(e)?;
            trsm(ctx, &l, &b, &TrsmOptions::default()).map_err(e)?;
        }
        _ => {
            return Err(format!(
                "{op:?}: kinds are batched, batched-r, qr, gemm, trsm"
            ))
        }
    }
    ctx.synchronize().map_err(e)
}

/// naga: WGSL → module with the overrides applied → SPIR-V, with wgpu's Vulkan checks.
fn spirv(k: &CompiledKernel, lang: (u8, u8)) -> Res<Vec<u32>> {
    let module =
        naga::front::wgsl::parse_str(k.source).map_err(|e| format!("{}: {e}", k.kernel))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| format!("{}: {e:?}", k.kernel))?;
    let mut constants = naga::back::PipelineConstants::default();
    for &(name, v) in &k.constants {
        constants.insert(name.to_string(), v);
    }
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, k.entry)),
        &constants,
    )
    .map_err(|e| format!("{}::{}: {e}", k.kernel, k.entry))?;
    let options = naga::back::spv::Options {
        lang_version: lang,
        flags: naga::back::spv::WriterFlags::empty(),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::Restrict,
            buffer: naga::proc::BoundsCheckPolicy::Unchecked,
            image_load: naga::proc::BoundsCheckPolicy::Unchecked,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
        // Group g, binding b → descriptor set g, binding b (what wgpu's binding map gives).
        fake_missing_bindings: true,
        // As the Context builds its modules (src/context.rs): no loop bounding.
        force_loop_bounding: false,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: k.entry.to_string(),
    };
    naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
        .map_err(|e| format!("{}::{}: {e}", k.kernel, k.entry))
}

struct Vulkan {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    exec: ash::khr::pipeline_executable_properties::Device,
    lang: (u8, u8),
    name: String,
}

impl Vulkan {
    /// The first physical device whose name contains `want` (any, if empty), with the
    /// statistics extension enabled.
    fn new(want: &str) -> Res<Self> {
        unsafe {
            let entry = ash::Entry::load().map_err(|e| format!("Vulkan loader: {e}"))?;
            let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
            let instance = entry
                .create_instance(
                    &vk::InstanceCreateInfo::default().application_info(&app),
                    None,
                )
                .map_err(|e| format!("vkCreateInstance: {e}"))?;
            let ext = ash::khr::pipeline_executable_properties::NAME;
            for pd in instance
                .enumerate_physical_devices()
                .map_err(|e| format!("{e}"))?
            {
                let props = instance.get_physical_device_properties(pd);
                let name = CStr::from_ptr(props.device_name.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                if !name.contains(want) {
                    continue;
                }
                let exts = instance
                    .enumerate_device_extension_properties(pd)
                    .map_err(|e| format!("{e}"))?;
                if !exts
                    .iter()
                    .any(|e| CStr::from_ptr(e.extension_name.as_ptr()) == ext)
                {
                    return Err(format!("{name}: no VK_KHR_pipeline_executable_properties"));
                }
                let v = props.api_version;
                let lang = match (vk::api_version_major(v), vk::api_version_minor(v)) {
                    (1, 0) => (1, 0),
                    (1, 1) => (1, 3),
                    (1, 2) => (1, 5),
                    _ => (1, 6),
                };
                let family = instance
                    .get_physical_device_queue_family_properties(pd)
                    .iter()
                    .position(|q| q.queue_flags.contains(vk::QueueFlags::COMPUTE))
                    .ok_or("no compute queue")? as u32;
                let prio = [1.0f32];
                let queues = [vk::DeviceQueueCreateInfo::default()
                    .queue_family_index(family)
                    .queue_priorities(&prio)];
                let mut exec_features =
                    vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
                        .pipeline_executable_info(true);
                let names = [ext.as_ptr()];
                let info = vk::DeviceCreateInfo::default()
                    .queue_create_infos(&queues)
                    .enabled_extension_names(&names)
                    .push_next(&mut exec_features);
                let device = instance
                    .create_device(pd, &info, None)
                    .map_err(|e| format!("vkCreateDevice: {e}"))?;
                let exec =
                    ash::khr::pipeline_executable_properties::Device::new(&instance, &device);
                return Ok(Self {
                    _entry: entry,
                    instance,
                    device,
                    exec,
                    lang,
                    name,
                });
            }
            Err(format!("no Vulkan device named like {want:?}"))
        }
    }

    /// Builds `k` and returns, per executable, its name and its statistics as text; with
    /// `ir`, also writes its internal representations there.
    fn stats(&self, k: &CompiledKernel, ir: Option<&Path>, index: usize) -> Res<Vec<String>> {
        let code = spirv(k, self.lang)?;
        let d = &self.device;
        unsafe {
            let module = d
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&code), None)
                .map_err(|e| format!("vkCreateShaderModule: {e}"))?;
            let mut bindings = vec![vk::DescriptorSetLayoutBinding::default()
                .binding(0)
                .descriptor_type(vk::DescriptorType::UNIFORM_BUFFER_DYNAMIC)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)];
            for i in 0..k.storage_read_only.len() {
                bindings.push(
                    vk::DescriptorSetLayoutBinding::default()
                        .binding(i as u32 + 1)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .descriptor_count(1)
                        .stage_flags(vk::ShaderStageFlags::COMPUTE),
                );
            }
            let set = d
                .create_descriptor_set_layout(
                    &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
                    None,
                )
                .map_err(|e| format!("{e}"))?;
            let sets = [set];
            let layout = d
                .create_pipeline_layout(
                    &vk::PipelineLayoutCreateInfo::default().set_layouts(&sets),
                    None,
                )
                .map_err(|e| format!("{e}"))?;
            let entry = std::ffi::CString::new(k.entry).map_err(|e| format!("{e}"))?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(&entry);
            let mut flags = vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR;
            if ir.is_some() {
                flags |= vk::PipelineCreateFlags::CAPTURE_INTERNAL_REPRESENTATIONS_KHR;
            }
            let info = vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(layout)
                .flags(flags);
            let pipeline = d
                .create_compute_pipelines(vk::PipelineCache::null(), &[info], None)
                .map_err(|(_, e)| {
                    format!("vkCreateComputePipelines {}::{}: {e}", k.kernel, k.entry)
                })?[0];
            let mut out = Vec::new();
            let execs = self
                .exec
                .get_pipeline_executable_properties(
                    &vk::PipelineInfoKHR::default().pipeline(pipeline),
                )
                .map_err(|e| format!("{e}"))?;
            for (ei, _) in execs.iter().enumerate() {
                let einfo = vk::PipelineExecutableInfoKHR::default()
                    .pipeline(pipeline)
                    .executable_index(ei as u32);
                let mut line = String::new();
                for s in self
                    .exec
                    .get_pipeline_executable_statistics(&einfo)
                    .map_err(|e| format!("{e}"))?
                {
                    let name = CStr::from_ptr(s.name.as_ptr()).to_string_lossy();
                    let v = match s.format {
                        vk::PipelineExecutableStatisticFormatKHR::BOOL32 => {
                            format!("{}", s.value.b32 != 0)
                        }
                        vk::PipelineExecutableStatisticFormatKHR::INT64 => {
                            format!("{}", s.value.i64)
                        }
                        vk::PipelineExecutableStatisticFormatKHR::UINT64 => {
                            format!("{}", s.value.u64)
                        }
                        _ => format!("{:.3}", s.value.f64),
                    };
                    line.push_str(&format!("{name}={v}; "));
                }
                out.push(line);
                if let Some(dir) = ir {
                    self.write_ir(&einfo, dir, &format!("{index:03}-{}-{ei}", k.entry))?;
                }
            }
            d.destroy_pipeline(pipeline, None);
            d.destroy_pipeline_layout(layout, None);
            d.destroy_descriptor_set_layout(set, None);
            d.destroy_shader_module(module, None);
            Ok(out)
        }
    }

    /// The two-call query of internal representations (ash's wrapper does not allocate their
    /// data), each written to `dir/<stem>-<name>.txt`.
    unsafe fn write_ir(
        &self,
        einfo: &vk::PipelineExecutableInfoKHR,
        dir: &Path,
        stem: &str,
    ) -> Res<()> {
        let f = self
            .exec
            .fp()
            .get_pipeline_executable_internal_representations_khr;
        let mut count = 0u32;
        f(
            self.device.handle(),
            einfo,
            &mut count,
            std::ptr::null_mut(),
        )
        .result()
        .map_err(|e| format!("internal representations: {e}"))?;
        let mut reps =
            vec![vk::PipelineExecutableInternalRepresentationKHR::default(); count as usize];
        f(self.device.handle(), einfo, &mut count, reps.as_mut_ptr())
            .result()
            .map_err(|e| format!("internal representations: {e}"))?;
        let mut bufs: Vec<Vec<u8>> = reps.iter().map(|r| vec![0u8; r.data_size]).collect();
        for (r, b) in reps.iter_mut().zip(bufs.iter_mut()) {
            r.p_data = b.as_mut_ptr().cast();
        }
        f(self.device.handle(), einfo, &mut count, reps.as_mut_ptr())
            .result()
            .map_err(|e| format!("internal representations: {e}"))?;
        for (r, b) in reps.iter().zip(&bufs) {
            let name = CStr::from_ptr(r.name.as_ptr())
                .to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
            let text = if r.is_text != 0 {
                String::from_utf8_lossy(b.split(|&c| c == 0).next().unwrap_or(&[])).into_owned()
            } else {
                format!("({} bytes of binary data)", b.len())
            };
            std::fs::write(dir.join(format!("{stem}-{name}.txt")), text)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for Vulkan {
    fn drop(&mut self) {
        unsafe {
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("kernel_stats: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let mut ops = Vec::new();
    let mut ir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ir" => {
                let dir = PathBuf::from(args.next().ok_or("--ir takes a folder")?);
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                ir = Some(dir);
            }
            "-h" | "--help" => {
                println!(
                    "kernel_stats [--ir DIR] [batched:BxMxN | batched-r:BxMxN | qr:MxN | gemm:N | trsm:NxK]..."
                );
                return Ok(());
            }
            _ => ops.push(a),
        }
    }
    if ops.is_empty() {
        ops = DEFAULT_OPS.iter().map(|s| s.to_string()).collect();
    }
    let ctx = Context::with_options(ContextOptions::default()).map_err(|e| format!("{e}"))?;
    println!("metalcore context: {}", ctx.describe());
    for op in &ops {
        run_op(&ctx, op)?;
    }
    let kernels = ctx.compiled_kernels();
    // Translate everything first: a naga failure shows on any machine.
    for k in &kernels {
        spirv(k, (1, 3))?;
    }
    // The same adapter, opened again through ash.
    let want = ctx.adapter_info().name.clone();
    let vk = Vulkan::new(&want)?;
    println!(
        "Vulkan device: {} (SPIR-V {}.{})",
        vk.name, vk.lang.0, vk.lang.1
    );
    println!(
        "{} kernel specializations from {}",
        kernels.len(),
        ops.join(" ")
    );
    for (i, k) in kernels.iter().enumerate() {
        let consts: Vec<String> = k
            .constants
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        println!("\n[{i:03}] {}::{} {}", k.kernel, k.entry, consts.join(" "));
        match vk.stats(k, ir.as_deref(), i) {
            Ok(lines) => {
                for l in lines {
                    println!("      {l}");
                }
            }
            Err(e) => println!("      error: {e}"),
        }
    }
    Ok(())
}
