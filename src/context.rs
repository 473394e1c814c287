//! The GPU context: adapter, device, queue, limits, the pipeline cache, and the `Recorder`
//! that turns a sequence of kernel dispatches into one command submission.
//!
//! Every public operation of metalcore records its dispatches into a `Recorder` and submits it
//! once through `Context::submit`. Per-dispatch parameters are packed into one uniform buffer
//! per submission and addressed with dynamic offsets. The context counts submissions and
//! read-backs ([`Context::stats`]) so that tests can prove an operation is one submission with no
//! read-back inside it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result, Shape};

/// Submissions and read-backs made through a [`Context`] since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Command buffers submitted to the queue by metalcore operations (read-backs excluded).
    pub submissions: u64,
    /// Buffers mapped and read back to the host.
    pub readbacks: u64,
}

/// Which limits the context asks of the adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitsPolicy {
    /// Everything the adapter offers (default): larger storage bindings, more workgroup memory.
    #[default]
    Adapter,
    /// WebGPU's default limits (16 KiB workgroup storage, 256 invocations, 128 MiB storage
    /// bindings), to check that the portable kernel variants are chosen when that is all there is.
    WebGpuDefaults,
}

/// Options for [`Context::with_options`].
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Which limits to request.
    pub limits: LimitsPolicy,
    /// Use only the portable kernels even where the adapter has subgroup operations (to test
    /// or compare the portable path).
    pub disable_subgroups: bool,
    /// Keep the large GEMMs off cooperative matrices (tensor cores) even where the adapter has
    /// the configuration they use ([`Context::coop_gemm`]), to test or compare the f32 kernel.
    pub disable_cooperative_matrix: bool,
    /// Override of the blocked triangular solve's schedule: the smallest sub-problem, counted
    /// as rows × right-hand sides × batch, that [`trsm`](crate::trsm) and its variants split in
    /// half (recursive blocking, GEMM updates with a large inner dimension) rather than peel one
    /// diagonal block off (a rank-64 update). `None` takes the built-in 2²⁰. The result is
    /// correct and backward stable under any value; this only moves the balance between
    /// parallelism and launch latency (see the `trsm` module docs), for tuning and tests.
    pub trsm_split_min: Option<usize>,
    /// Write a GPU timestamp at the start and at the end of every submission (where the
    /// adapter has timestamp queries), so that [`Context::last_gpu_time`] can report how long
    /// the GPU took from the first command of the last submission to the end of its last:
    /// device time, as CUDA events measure it, without the host's recording, submission and
    /// wait. Costs two empty passes and an 16-byte read-back per submission.
    pub gpu_timing: bool,
}

/// A WGSL kernel family: one file under `wgsl/`, compiled in.
#[derive(Debug)]
pub(crate) struct KernelSource {
    /// The file's stem, e.g. `"gemm"`; also the label of its shader module.
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
}

/// How a kernel's storage binding is accessed, in binding order (binding 0 is always the
/// uniform parameter block, storage bindings start at 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    kernel: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
    bindings: Vec<Access>,
}

/// A cached pipeline and the layout its bind groups are built against.
struct CachedPipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    source: &'static str,
}

/// One kernel specialization a [`Context`] has compiled ([`Context::compiled_kernels`]): enough
/// to rebuild the same pipeline outside wgpu, e.g. to ask a driver for its register use.
#[derive(Clone, Debug)]
pub struct CompiledKernel {
    /// The kernel family: the stem of its file under `wgsl/`, e.g. `"gemm"`.
    pub kernel: &'static str,
    /// The family's WGSL text.
    pub source: &'static str,
    /// The entry point.
    pub entry: &'static str,
    /// The `override` constants it was specialized with.
    pub constants: Vec<(&'static str, f64)>,
    /// Its storage bindings in binding order from 1 (binding 0 is the uniform parameter block
    /// with a dynamic offset): `true` where read-only.
    pub storage_read_only: Vec<bool>,
}

/// The GPU context: owns the device and queue, and caches pipelines.
///
/// Create one per program (or share your own device with [`Context::from_wgpu`]) and pass it to
/// every operation. It is `Send + Sync`.
///
/// Memory: operations keep their workspaces (the blocked QR's V and TSQR trees, split-K partial
/// products, trsm's copy of X) in the context for the next call, grown to the largest problem
/// seen; [`Context::release_workspaces`] frees them.
pub struct Context {
    /// Unique in the process: matrices remember the context that created them.
    id: u64,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<CachedPipeline>>>,
    submissions: AtomicU64,
    readbacks: AtomicU64,
    /// Smallest and largest subgroup size, when subgroup kernels may be used.
    subgroups: Option<(u32, u32)>,
    /// Whether the large GEMMs run on cooperative matrices ([`Context::coop_gemm`]).
    coop_gemm: bool,
    /// [`ContextOptions::trsm_split_min`], if given.
    trsm_split_min: Option<usize>,
    /// Errors wgpu raised outside any error scope (for devices metalcore created), returned by
    /// the next [`Context::submit`] instead of wgpu's default panic.
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Workspaces for intermediate results inside one submission (split-K partial products,
    /// the blocked QR's V, T and TSQR trees, the trsm copy of X), one buffer per role, grown on
    /// demand and kept: a fresh buffer costs an allocation and wgpu's zero fill on first use
    /// (about 100 ms for the ~1.3 GB of a 10000×256×32 batched QR on an H100). Sharing is safe:
    /// submissions on one queue run in order, and no role's contents outlive a submission.
    scratch: Mutex<HashMap<&'static str, wgpu::Buffer>>,
    /// `METALCORE_PROFILE` set and timestamp queries available: every submission times each
    /// dispatch in its own pass and prints the totals per kernel entry (`=grid`: per entry and
    /// dispatch grid) to stderr.
    profile: bool,
    /// [`ContextOptions::gpu_timing`] and timestamp queries available.
    gpu_timing: bool,
    /// The last submission's two timestamps, resolved into a mappable buffer.
    last_timing: Mutex<Option<wgpu::Buffer>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Creates a context on the best adapter found (blocking).
    ///
    /// A hardware adapter is preferred (high performance unless `WGPU_POWER_PREF=low`), with a
    /// software one (lavapipe, llvmpipe, WARP) as fallback. `WGPU_BACKEND` restricts the backends
    /// (`vulkan`, `gl`, `metal`, `dx12`, comma-separated), `WGPU_ADAPTER_NAME` picks an adapter
    /// whose name contains the given text. No adapter: [`Error::NoAdapter`].
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// Async twin of [`Context::new`], for callers with their own executor.
    pub async fn new_async() -> Result<Self> {
        Self::with_options_async(ContextOptions::default()).await
    }

    /// Creates a context with explicit [`ContextOptions`] (blocking).
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        pollster::block_on(Self::with_options_async(options))
    }

    /// Async twin of [`Context::with_options`].
    pub async fn with_options_async(options: ContextOptions) -> Result<Self> {
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = pick_adapter(&instance, backends).await?;
        let info = adapter.get_info();
        let limits = match options.limits {
            LimitsPolicy::Adapter => adapter.limits(),
            LimitsPolicy::WebGpuDefaults => {
                wgpu::Limits::default().using_resolution(adapter.limits())
            }
        };
        let mut features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP);
        if options.disable_subgroups {
            features.remove(wgpu::Features::SUBGROUP);
        }
        let coop = !options.disable_cooperative_matrix
            && !options.disable_subgroups
            && coop_gemm_fits(&adapter, &limits);
        let mut experimental = wgpu::ExperimentalFeatures::disabled();
        if coop {
            features |=
                wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
            // SAFETY: wgpu marks cooperative matrices experimental (its implementation may have
            // bugs). metalcore uses them in one kernel (wgsl/gemm_coop.wgsl), only with the
            // configuration the adapter reports, and its GPU test suites check the results;
            // ContextOptions::disable_cooperative_matrix keeps them off.
            experimental = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("metalcore"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: experimental,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: format!("{} ({:?})", info.name, info.backend),
                message: e.to_string(),
            })?;
        let mut ctx = Self::assemble(device, queue, info);
        ctx.coop_gemm = coop;
        ctx.trsm_split_min = options.trsm_split_min;
        ctx.gpu_timing =
            options.gpu_timing && ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let sink = ctx.uncaptured.clone();
        ctx.device
            .on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e.to_string());
            }));
        Ok(ctx)
    }

    /// Wraps a device and queue the caller already has, so a program can share its device with
    /// metalcore. `info` describes the adapter the device came from (`adapter.get_info()`).
    /// The device's own limits and features are used as they are.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        Self::assemble(device, queue, info)
    }

    fn assemble(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let limits = device.limits();
        let features = device.features();
        let subgroups = features
            .contains(wgpu::Features::SUBGROUP)
            .then_some((info.subgroup_min_size, info.subgroup_max_size));
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            device,
            queue,
            info,
            limits,
            features,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            submissions: AtomicU64::new(0),
            readbacks: AtomicU64::new(0),
            subgroups,
            coop_gemm: false,
            trsm_split_min: None,
            uncaptured: Arc::new(Mutex::new(None)),
            scratch: Mutex::new(HashMap::new()),
            profile: std::env::var_os("METALCORE_PROFILE").is_some()
                && features.contains(wgpu::Features::TIMESTAMP_QUERY),
            gpu_timing: false,
            last_timing: Mutex::new(None),
        }
    }

    /// This context's process-unique number (what [`GpuMatrix`](crate::GpuMatrix) and
    /// [`GpuBatch`](crate::GpuBatch) record to refuse being used with another context).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter this context runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// One line naming the adapter, its backend and device type.
    pub fn describe(&self) -> String {
        let subgroups = match self.subgroups {
            Some((min, max)) => format!("subgroups {min}..{max}"),
            None => "no subgroups".to_string(),
        };
        let coop = if self.coop_gemm {
            ", large GEMMs on cooperative matrices"
        } else {
            ""
        };
        format!(
            "{} ({:?}, {:?}, driver {} {}, {subgroups}{coop})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// The limits the device was created with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The optional features metalcore enabled (timestamp queries, subgroups) where present.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// Whether the large GEMMs (128×128 output tiles: the QR's trailing updates and forming Q,
    /// trsm's updates, large products of [`gemm`](crate::gemm)) run on cooperative matrices
    /// (tensor cores) as f16 pairs with f32 accumulation, to about f32 accuracy
    /// (`wgsl/gemm_coop.wgsl` says how). True for contexts from [`Context::with_options`] on an
    /// adapter with wgpu's experimental cooperative matrices in a 16×16×16 f16·f16 + f32
    /// configuration, f16 shaders, subgroups of 32 and the workgroup storage the kernel takes
    /// (Vulkan on NVIDIA GPUs), unless [`ContextOptions::disable_cooperative_matrix`] or
    /// [`ContextOptions::disable_subgroups`]; false for [`Context::from_wgpu`].
    pub fn coop_gemm(&self) -> bool {
        self.coop_gemm
    }

    /// The adapter's subgroup sizes (min, max) when metalcore uses subgroups on it (`None`
    /// without them, or with [`ContextOptions::disable_subgroups`]). The subgroup kernels
    /// that need one fixed size run only where min = max.
    pub fn subgroup_size(&self) -> Option<(u32, u32)> {
        self.subgroups
    }

    /// Whether kernels with subgroup operations can run with `workgroup` invocations: the
    /// device has them, and every possible subgroup size is at least 4 and divides `workgroup`.
    pub(crate) fn subgroups_usable(&self, workgroup: u32) -> bool {
        match self.subgroups {
            Some((min, max)) => min >= 4 && max <= workgroup && workgroup.is_multiple_of(max),
            None => false,
        }
    }

    /// The subgroup size when subgroup kernels may be used and every subgroup has the same
    /// size (min = max, at least 4).
    pub(crate) fn fixed_subgroup_size(&self) -> Option<u32> {
        match self.subgroups {
            Some((min, max)) if min == max && min >= 4 => Some(min),
            _ => None,
        }
    }

    /// Submissions and read-backs so far.
    pub fn stats(&self) -> Stats {
        Stats {
            submissions: self.submissions.load(Ordering::Relaxed),
            readbacks: self.readbacks.load(Ordering::Relaxed),
        }
    }

    /// Largest number of f32 elements one buffer (one matrix or batch) may hold on this device.
    pub fn max_elements(&self) -> u64 {
        let bytes = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        bytes / 4
    }

    /// Checks that a buffer of `elements` f32 fits one storage binding.
    pub(crate) fn check_elements(
        &self,
        op: &'static str,
        elements: u64,
        shape: Shape,
    ) -> Result<()> {
        let limit = self.max_elements();
        if elements > limit {
            return Err(Error::TooLarge {
                op,
                what: "a storage buffer (bytes)",
                needed: elements * 4,
                limit: limit * 4,
                shape,
            });
        }
        Ok(())
    }

    /// Largest number of f32 elements one buffer may hold (a [`GpuBatch`](crate::GpuBatch) may
    /// exceed one storage binding; operations that bind it whole check [`Context::max_elements`]).
    pub fn max_buffer_elements(&self) -> u64 {
        self.limits.max_buffer_size / 4
    }

    /// Checks that a buffer of `elements` f32 can be created at all.
    pub(crate) fn check_buffer_elements(
        &self,
        op: &'static str,
        elements: u64,
        shape: Shape,
    ) -> Result<()> {
        let limit = self.max_buffer_elements();
        if elements > limit {
            return Err(Error::TooLarge {
                op,
                what: "a buffer (bytes)",
                needed: elements * 4,
                limit: limit * 4,
                shape,
            });
        }
        Ok(())
    }

    /// The workgroup size of the 1-D kernels: the largest power of two up to 256 invocations
    /// that the device allows (a power of two for their tree reductions).
    pub(crate) fn workgroup_1d(&self) -> u32 {
        let max = self
            .limits
            .max_compute_invocations_per_workgroup
            .clamp(1, 256);
        1 << (31 - max.leading_zeros())
    }

    /// [`ContextOptions::trsm_split_min`] as given (`None`: the trsm's built-in default).
    pub(crate) fn trsm_split_min(&self) -> Option<usize> {
        self.trsm_split_min
    }

    /// Whether a kernel variant needing this much workgroup memory and these many invocations fits.
    pub(crate) fn fits_workgroup(&self, storage_bytes: u32, invocations: u32) -> bool {
        storage_bytes <= self.limits.max_compute_workgroup_storage_size
            && invocations <= self.limits.max_compute_invocations_per_workgroup
    }

    /// Starts recording the dispatches of one operation.
    pub(crate) fn recorder(&self, op: &'static str) -> Recorder {
        Recorder {
            op,
            error: None,
            commands: Vec::new(),
            params: Vec::new(),
            align: self.limits.min_uniform_buffer_offset_alignment.max(16) as usize,
        }
    }

    fn module(&self, kernel: &KernelSource) -> wgpu::ShaderModule {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        modules
            .entry(kernel.name)
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.name),
                    source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
                };
                // wgpu's default checks, except loop bounding: naga would give every loop an
                // extra 64-bit counter and exit test, which also keeps drivers from unrolling or
                // reasoning about trip counts (measured on an H100: the 4096² QR 44.8 → 41.2 ms,
                // trsm 4096²×4096 4.76 → 4.39 ms; BENCHMARKS.md, v24). Bounds checks stay on.
                let checks = wgpu::ShaderRuntimeChecks {
                    force_loop_bounding: false,
                    ..wgpu::ShaderRuntimeChecks::checked()
                };
                // SAFETY: `force_loop_bounding: false` requires that no shader loops forever.
                // Every loop in wgsl/ is a `for` over a u32 counter with a positive step and a
                // bound below 2³¹ (element counts are limited by `max_buffer_elements`), and
                // tests/portability.rs rejects `loop` and `while` in those files.
                unsafe { self.device.create_shader_module_trusted(desc, checks) }
            })
            .clone()
    }

    fn pipeline(
        &self,
        kernel: &KernelSource,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        bindings: &[Access],
    ) -> Result<Arc<CachedPipeline>, String> {
        let key = PipelineKey {
            kernel: kernel.name,
            entry,
            constants: constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
            bindings: bindings.to_vec(),
        };
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        // Shader and pipeline creation errors come back as values, not as wgpu's panic.
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.module(kernel);
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, access) in bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.name),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("kernel {}::{entry}: {e}", kernel.name));
        }
        let cached = Arc::new(CachedPipeline {
            pipeline,
            layout,
            source: kernel.source,
        });
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, cached.clone());
        Ok(cached)
    }

    /// Every kernel specialization this context has compiled so far (kernel family, entry point,
    /// `override` constants, binding layout), sorted: run the operations of interest first. The
    /// `kernel_stats` example rebuilds them with the Vulkan driver to print its statistics.
    pub fn compiled_kernels(&self) -> Vec<CompiledKernel> {
        let pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        let mut keyed: Vec<(&PipelineKey, &Arc<CachedPipeline>)> = pipelines.iter().collect();
        // The keys hold the constants' bits: ordered without comparing floats.
        keyed.sort_by_key(|&(key, _)| (key.kernel, key.entry, &key.constants));
        let out = keyed
            .into_iter()
            .map(|(key, cached)| CompiledKernel {
                kernel: key.kernel,
                source: cached.source,
                entry: key.entry,
                constants: key
                    .constants
                    .iter()
                    .map(|&(k, bits)| (k, f64::from_bits(bits)))
                    .collect(),
                storage_read_only: key.bindings.iter().map(|&a| a == Access::Read).collect(),
            })
            .collect();
        out
    }

    /// Creates a storage buffer for `elements` f32 values (at least one, as wgpu binds no empty
    /// buffer).
    pub(crate) fn storage_buffer(&self, label: &str, elements: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: elements.max(1) * 4,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// The workspace buffer of `role`, at least `elements` f32 (see the field's docs); its
    /// contents are whatever the last user left. Two buffers in use at once need two roles.
    pub(crate) fn scratch_buffer(&self, role: &'static str, elements: u64) -> wgpu::Buffer {
        let mut cache = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.get(role).filter(|b| b.size() >= elements.max(1) * 4) {
            return b.clone();
        }
        // Grown by 1.5× at least, so a sequence of growing calls does not reallocate each time.
        let grown = cache.get(role).map_or(0, |b| b.size() / 4 * 3 / 2);
        let size = elements
            .max(grown)
            .min(self.max_buffer_elements().max(elements));
        let b = self.storage_buffer(role, size);
        cache.insert(role, b.clone());
        b
    }

    /// Drops the cached workspaces (see [`Context`]'s docs on memory): the next operation
    /// allocates what it needs again.
    pub fn release_workspaces(&self) {
        self.scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// GPU time of the last submission, from its first command to the end of its last (see
    /// [`ContextOptions::gpu_timing`]); waits for it to finish. `None` when timing is off, the
    /// adapter has no timestamp queries, or nothing was submitted since the last call.
    pub fn last_gpu_time(&self) -> Result<Option<std::time::Duration>> {
        let Some(staging) = self
            .last_timing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(None);
        };
        let ticks = self.read_timestamps(&staging, "gpu timestamps")?;
        let ns =
            ticks[1].saturating_sub(ticks[0]) as f64 * f64::from(self.queue.get_timestamp_period());
        Ok(Some(std::time::Duration::from_nanos(ns.round() as u64)))
    }

    /// Waits for the GPU and reads the resolved timestamps in `staging` (MAP_READ).
    fn read_timestamps(&self, staging: &wgpu::Buffer, what: &'static str) -> Result<Vec<u64>> {
        staging.map_async(wgpu::MapMode::Read, .., |_| {});
        self.synchronize()?;
        let view = staging.get_mapped_range(..).map_err(|e| Error::ReadBack {
            what,
            message: e.to_string(),
        })?;
        Ok(bytemuck::pod_collect_to_vec(&view))
    }

    /// Records the commands into one encoder and submits them once. Validation errors raised by
    /// wgpu while recording are returned as [`Error::Gpu`] naming the operation.
    pub(crate) fn submit(&self, rec: Recorder) -> Result<()> {
        let op = rec.op;
        if let Some(message) = rec.error {
            return Err(Error::Gpu { op, message });
        }
        if rec.commands.is_empty() {
            return Ok(());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let uniform = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("metalcore params"),
            size: (rec.params.len().max(256)) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !rec.params.is_empty() {
            self.queue.write_buffer(&uniform, 0, &rec.params);
        }
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
        if self.profile {
            return self.submit_profiled(op, rec, encoder, &uniform, scope);
        }
        let timing = self.gpu_timing.then(|| {
            self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("metalcore gpu timing"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            })
        });
        // Empty passes that only write the timestamps: before everything, after everything.
        let stamp = |encoder: &mut wgpu::CommandEncoder, set: &wgpu::QuerySet, end: bool| {
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("metalcore gpu timing"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: (!end).then_some(0),
                    end_of_pass_write_index: end.then_some(1),
                }),
            });
        };
        if let Some(set) = &timing {
            stamp(&mut encoder, set, false);
        }
        // wgpu::Buffer hashes and compares by identity, which its interior mutability (mapping
        // state) never changes.
        #[allow(clippy::mutable_key_type)]
        let mut groups: HashMap<(usize, Vec<wgpu::Buffer>, u64), wgpu::BindGroup> = HashMap::new();
        let mut i = 0;
        while i < rec.commands.len() {
            match &rec.commands[i] {
                Command::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    bytes,
                } => {
                    encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes);
                    i += 1;
                }
                Command::Dispatch(_) => {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(op),
                        timestamp_writes: None,
                    });
                    while let Some(Command::Dispatch(d)) = rec.commands.get(i) {
                        // One bind group per (pipeline, buffers, params size) in a submission:
                        // the parameters differ by dynamic offset only, and a blocked
                        // factorization repeats a few such combinations hundreds of times
                        // (creating a bind group per dispatch was most of the host's time).
                        let key = (
                            Arc::as_ptr(&d.pipeline) as usize,
                            d.buffers.clone(),
                            d.params_size,
                        );
                        let bind_group = groups
                            .entry(key)
                            .or_insert_with(|| self.bind_group(d, &uniform));
                        pass.set_pipeline(&d.pipeline.pipeline);
                        pass.set_bind_group(0, &*bind_group, &[d.params_offset]);
                        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                        i += 1;
                    }
                }
            }
        }
        if let Some(set) = &timing {
            stamp(&mut encoder, set, true);
            let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("metalcore gpu timing resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("metalcore gpu timing read-back"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            encoder.resolve_query_set(set, 0..2, &resolve, 0);
            encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, 16);
            *self.last_timing.lock().unwrap_or_else(|e| e.into_inner()) = Some(staging);
        }
        self.queue.submit([encoder.finish()]);
        self.submissions.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                op,
                message: e.to_string(),
            });
        }
        if let Some(message) = self
            .uncaptured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(Error::Gpu { op, message });
        }
        Ok(())
    }

    fn bind_group(&self, d: &Dispatch, uniform: &wgpu::Buffer) -> wgpu::BindGroup {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: uniform,
                offset: 0,
                size: wgpu::BufferSize::new(d.params_size),
            }),
        }];
        for (b, buffer) in d.buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: b as u32 + 1,
                resource: buffer.as_entire_binding(),
            });
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(d.entry),
            layout: &d.pipeline.layout,
            entries: &entries,
        })
    }

    /// [`Self::submit`] under `METALCORE_PROFILE`: each dispatch in its own pass between two
    /// timestamps; waits for the GPU and prints the time per entry point to stderr.
    fn submit_profiled(
        &self,
        op: &'static str,
        rec: Recorder,
        mut encoder: wgpu::CommandEncoder,
        uniform: &wgpu::Buffer,
        scope: wgpu::ErrorScopeGuard,
    ) -> Result<()> {
        const PER_SET: usize = 4096;
        let dispatches = rec
            .commands
            .iter()
            .filter(|c| matches!(c, Command::Dispatch(_)))
            .count();
        let queries = 2 * dispatches;
        let sets: Vec<wgpu::QuerySet> = (0..queries.div_ceil(PER_SET))
            .map(|s| {
                self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("metalcore profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: (queries - s * PER_SET).min(PER_SET) as u32,
                })
            })
            .collect();
        let bytes = (queries.max(1) * 8) as u64;
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("metalcore profile resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("metalcore profile read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut names = Vec::with_capacity(dispatches);
        let mut grids = Vec::with_capacity(dispatches);
        for command in &rec.commands {
            match command {
                Command::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    bytes,
                } => encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes),
                Command::Dispatch(d) => {
                    let q = 2 * names.len();
                    let bind_group = self.bind_group(d, uniform);
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(d.entry),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &sets[q / PER_SET],
                            beginning_of_pass_write_index: Some((q % PER_SET) as u32),
                            end_of_pass_write_index: Some((q % PER_SET) as u32 + 1),
                        }),
                    });
                    pass.set_pipeline(&d.pipeline.pipeline);
                    pass.set_bind_group(0, &bind_group, &[d.params_offset]);
                    pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                    names.push(d.entry);
                    grids.push(d.groups);
                }
            }
        }
        for (s, set) in sets.iter().enumerate() {
            let count = (queries - s * PER_SET).min(PER_SET) as u32;
            encoder.resolve_query_set(set, 0..count, &resolve, (s * PER_SET * 8) as u64);
        }
        encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        self.submissions.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                op,
                message: e.to_string(),
            });
        }
        let ticks = self.read_timestamps(&staging, "profile timestamps")?;
        let period = f64::from(self.queue.get_timestamp_period());
        // METALCORE_PROFILE=grid: totals per entry point and dispatch grid.
        let by_grid = std::env::var("METALCORE_PROFILE").is_ok_and(|v| v == "grid");
        let mut totals: Vec<(String, usize, f64)> = Vec::new();
        let mut each: Vec<(f64, usize)> = Vec::with_capacity(names.len());
        for (d, name) in names.iter().enumerate() {
            let ns = ticks[2 * d + 1].saturating_sub(ticks[2 * d]) as f64 * period;
            each.push((ns, d));
            let key = if by_grid {
                let g = grids[d];
                format!("{name} {}×{}×{}", g[0], g[1], g[2])
            } else {
                name.to_string()
            };
            match totals.iter_mut().find(|t| t.0 == key) {
                Some(t) => {
                    t.1 += 1;
                    t.2 += ns;
                }
                None => totals.push((key, 1, ns)),
            }
        }
        totals.sort_by(|a, b| b.2.total_cmp(&a.2));
        let all: f64 = totals.iter().map(|t| t.2).sum();
        let mut report = format!(
            "profile {op}: {dispatches} dispatches, {:.3} ms of kernel time\n",
            all * 1e-6
        );
        for (name, count, ns) in totals {
            report += &format!(
                "  {name:<20} {count:>6} × {:>9.1} µs = {:>9.3} ms\n",
                ns * 1e-3 / count as f64,
                ns * 1e-6
            );
        }
        each.sort_by(|a, b| b.0.total_cmp(&a.0));
        report += "  slowest: ";
        for &(ns, d) in each.iter().take(12) {
            let g = grids[d];
            report += &format!(
                "#{d} {} {}×{}×{} {:.1} µs; ",
                names[d],
                g[0],
                g[1],
                g[2],
                ns * 1e-3
            );
        }
        eprintln!("{report}");
        Ok(())
    }

    /// Copies `elements` f32 values starting at element `offset` of `buffer` back to the host
    /// (blocking).
    pub(crate) fn read_buffer(
        &self,
        what: &'static str,
        buffer: &wgpu::Buffer,
        offset: u64,
        elements: u64,
    ) -> Result<Vec<f32>> {
        pollster::block_on(self.read_buffer_async(what, buffer, offset, elements))
    }

    /// Async twin of [`Context::read_buffer`].
    pub(crate) async fn read_buffer_async(
        &self,
        what: &'static str,
        buffer: &wgpu::Buffer,
        offset: u64,
        elements: u64,
    ) -> Result<Vec<f32>> {
        if elements == 0 {
            return Ok(Vec::new());
        }
        let bytes = elements * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("metalcore read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
        encoder.copy_buffer_to_buffer(buffer, offset * 4, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        self.readbacks.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = futures::channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::ReadBack {
                what,
                message: e.to_string(),
            })?;
        rx.await
            .map_err(|e| Error::ReadBack {
                what,
                message: e.to_string(),
            })?
            .map_err(|e| Error::ReadBack {
                what,
                message: e.to_string(),
            })?;
        let data = {
            let view = staging.get_mapped_range(..).map_err(|e| Error::ReadBack {
                what,
                message: e.to_string(),
            })?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        Ok(data)
    }

    /// Blocks until every submitted command has finished (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu {
                op: "synchronize",
                message: e.to_string(),
            })
    }
}

async fn pick_adapter(
    instance: &wgpu::Instance,
    backends: wgpu::Backends,
) -> Result<wgpu::Adapter> {
    let adapters = instance.enumerate_adapters(backends).await;
    let wanted_name = std::env::var("WGPU_ADAPTER_NAME")
        .ok()
        .map(|s| s.to_lowercase());
    let low_power = wgpu::PowerPreference::from_env() == Some(wgpu::PowerPreference::LowPower);
    let rank = |a: &wgpu::Adapter| {
        use wgpu::DeviceType::*;
        let t = a.get_info().device_type;
        match (t, low_power) {
            (DiscreteGpu, false) | (IntegratedGpu, true) => 0,
            (IntegratedGpu, false) | (DiscreteGpu, true) => 1,
            (VirtualGpu, _) | (Other, _) => 2,
            (Cpu, _) => 3,
        }
    };
    let mut candidates: Vec<wgpu::Adapter> = adapters
        .into_iter()
        .filter(|a| {
            wanted_name
                .as_ref()
                .is_none_or(|n| a.get_info().name.to_lowercase().contains(n))
        })
        .collect();
    // Stable sort: among equals, keep wgpu's order (Vulkan before GL).
    candidates.sort_by_key(|a| rank(a));
    candidates
        .into_iter()
        .next()
        .ok_or_else(|| Error::NoAdapter {
            tried: format!(
                "backends {:?}{}{}",
                backends,
                std::env::var("WGPU_BACKEND")
                    .map(|v| format!(" (WGPU_BACKEND={v})"))
                    .unwrap_or_default(),
                wanted_name
                    .map(|n| format!(", adapter name containing {n:?} (WGPU_ADAPTER_NAME)"))
                    .unwrap_or_default()
            ),
        })
}

pub(crate) enum Command {
    Dispatch(Dispatch),
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    },
}

pub(crate) struct Dispatch {
    pipeline: Arc<CachedPipeline>,
    entry: &'static str,
    params_offset: u32,
    params_size: u64,
    buffers: Vec<wgpu::Buffer>,
    groups: [u32; 3],
}

/// Records the dispatches and copies of one operation; submitted once by [`Context::submit`].
pub(crate) struct Recorder {
    pub op: &'static str,
    /// The first pipeline-creation error; [`Context::submit`] returns it.
    error: Option<String>,
    commands: Vec<Command>,
    params: Vec<u8>,
    align: usize,
}

impl Recorder {
    /// Records one dispatch of `entry` in `kernel`, specialised by `constants`, with `params` as
    /// its uniform block (binding 0) and `buffers` as storage bindings 1, 2, ….
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        ctx: &Context,
        kernel: &KernelSource,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        params: &P,
        buffers: &[(&wgpu::Buffer, Access)],
        groups: [u32; 3],
    ) {
        if groups.contains(&0) {
            return;
        }
        let access: Vec<Access> = buffers.iter().map(|b| b.1).collect();
        let pipeline = match ctx.pipeline(kernel, entry, constants, &access) {
            Ok(p) => p,
            Err(e) => {
                self.error.get_or_insert(e);
                return;
            }
        };
        let offset = self.params.len().div_ceil(self.align) * self.align;
        self.params.resize(offset, 0);
        let bytes = bytemuck::bytes_of(params);
        self.params.extend_from_slice(bytes);
        let size = bytes.len().div_ceil(16) * 16;
        self.params.resize(offset + size, 0);
        self.commands.push(Command::Dispatch(Dispatch {
            pipeline,
            entry,
            params_offset: offset as u32,
            params_size: size as u64,
            buffers: buffers.iter().map(|b| b.0.clone()).collect(),
            groups,
        }));
    }

    /// Records a copy of `elements` f32 between buffers (element offsets).
    pub fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        elements: u64,
    ) {
        if elements == 0 {
            return;
        }
        self.commands.push(Command::Copy {
            src: src.clone(),
            src_offset: src_offset * 4,
            dst: dst.clone(),
            dst_offset: dst_offset * 4,
            bytes: elements * 4,
        });
    }
}

/// Splits `groups` workgroups into a 2-D grid within the per-dimension limit; kernels recover
/// the linear index as `wid.x + wid.y * nwg.x` and skip indices past their count.
pub(crate) fn grid(ctx: &Context, groups: u32) -> [u32; 3] {
    let max = ctx.limits().max_compute_workgroups_per_dimension.max(1);
    if groups <= max {
        [groups, 1, 1]
    } else {
        let y = groups.div_ceil(max);
        [groups.div_ceil(y), y, 1]
    }
}

/// Whether `gemm_coop` can run on `adapter` with `limits`: cooperative matrices with a
/// 16×16×16 f16·f16 + f32 configuration, f16 shaders, subgroups of exactly 32 (the kernel's
/// eight subgroups each own a block of the tile) and its workgroup storage.
fn coop_gemm_fits(adapter: &wgpu::Adapter, limits: &wgpu::Limits) -> bool {
    let needed = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP;
    let info = adapter.get_info();
    adapter.features().contains(needed)
        && info.subgroup_min_size == 32
        && info.subgroup_max_size == 32
        && limits.max_compute_workgroup_storage_size >= crate::kernels::gemm_coop::STORAGE_BYTES
        && limits.max_compute_invocations_per_workgroup >= 256
        && adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
}
