//! Portability without a Mac: every `wgsl/*.wgsl` is parsed and validated by naga, then
//! translated to MSL (Metal), HLSL (DX12), SPIR-V (Vulkan) and GLSL ES 3.1 (GL) for each of its
//! entry points. Each kernel must also fit WebGPU's default limits (16 KiB of workgroup storage,
//! 256 invocations per workgroup) with its override constants at their defaults; larger variants
//! are chosen at run time only when the Context reports the limits for them.
//!
//! Kernels on cooperative matrices (marked `requires: … cooperative matrices`: `gemm_coop`)
//! run only where the adapter has them, which wgpu offers on Vulkan and Metal: naga translates
//! them to SPIR-V and MSL (its HLSL and GLSL writers have no cooperative matrices), and they may
//! take up to 48 KiB of workgroup storage (NVIDIA's Vulkan limit; the Context checks the
//! adapter's, and Apple GPUs, with 32 KiB, offer only 8×8 matrices, which `gemm_coop` is not).

use std::path::PathBuf;

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

const DEFAULT_WORKGROUP_STORAGE: u32 = 16 * 1024;
const DEFAULT_INVOCATIONS: u32 = 256;
/// Workgroup storage a cooperative-matrix kernel may take: NVIDIA's 48 KiB under Vulkan.
const COOP_WORKGROUP_STORAGE: u32 = 48 * 1024;

fn wgsl_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wgsl");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("wgsl/ folder")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    files
}

/// (file name, text) of every `wgsl/*.wgsl`.
fn wgsl_sources() -> Vec<(String, String)> {
    wgsl_files()
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(p).unwrap())
        })
        .collect()
}

#[test]
fn every_wgsl_file_is_compiled_into_the_crate() {
    let compiled: Vec<&str> = metalcore::kernel_sources().iter().map(|k| k.0).collect();
    let on_disk: Vec<String> = wgsl_files()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in &on_disk {
        assert!(
            compiled.contains(&name.as_str()),
            "wgsl/{name}.wgsl is not in kernels::ALL"
        );
    }
    for name in &compiled {
        assert!(
            on_disk.iter().any(|n| n == name),
            "kernel {name} has no wgsl/{name}.wgsl"
        );
    }
    assert!(!on_disk.is_empty());
}

/// The Context builds its shader modules without naga's loop bounding (src/context.rs says
/// why), which is sound only if no kernel loops forever: every loop must be a counted `for`.
/// `loop` and `while` (whose exit is any condition at all) and a `for` without a condition (which
/// loops until a `break`) are refused here.
#[test]
fn every_loop_is_a_counted_for() {
    let mut found = Vec::new();
    for (name, source) in wgsl_sources() {
        for (i, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let words = code.split(|c: char| !(c.is_alphanumeric() || c == '_'));
            if let Some(w) = words.into_iter().find(|w| *w == "loop" || *w == "while") {
                found.push(format!("{name}:{}: `{w}`: {}", i + 1, line.trim()));
            }
            if let Some(rest) = code.split("for (").nth(1) {
                let parts: Vec<&str> = rest.split(';').collect();
                assert!(parts.len() >= 3, "{name}:{}: unparsed for: {line}", i + 1);
                if parts[1].trim().is_empty() {
                    found.push(format!("{name}:{}: `for` without a condition", i + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn every_kernel_translates_to_msl_hlsl_spirv_glsl_and_fits_default_limits() {
    let mut failures = Vec::new();
    for (name, source) in wgsl_sources() {
        if let Err(e) = check_file(&name, &source) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn check_file(name: &str, source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{name}: WGSL parse: {}", e.emit_to_string(source)))?;
    // Subgroup kernels (a line of their header starting `// requires: subgroups`) are chosen
    // only on adapters that have them, likewise cooperative-matrix kernels (`cooperative
    // matrices` on that line). Only the marker line counts: a comment elsewhere that mentions
    // either does not change how a file is checked.
    let requires = source
        .lines()
        .find(|l| l.starts_with("// requires: "))
        .unwrap_or("");
    let subgroups = requires.starts_with("// requires: subgroups");
    let coop = subgroups && requires.contains("cooperative matrices");
    let caps = if coop {
        Capabilities::SUBGROUP | Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16
    } else if subgroups {
        Capabilities::SUBGROUP
    } else {
        Capabilities::default()
    };
    let storage_limit = if coop {
        COOP_WORKGROUP_STORAGE
    } else {
        DEFAULT_WORKGROUP_STORAGE
    };
    let info = Validator::new(ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .map_err(|e| format!("{name}: validation: {}", e.emit_to_string(source)))?;
    let constants = Default::default();
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
            .map_err(|e| format!("{name}: overrides at their defaults: {e}"))?;
    let (module, info) = (module.into_owned(), info.into_owned());

    if module.entry_points.is_empty() {
        return Err(format!("{name}: no entry point"));
    }
    for (index, ep) in module.entry_points.iter().enumerate() {
        // Workgroup storage this entry point touches (directly or through the functions it calls).
        let uses = info.get_entry_point(index);
        let storage: u32 = module
            .global_variables
            .iter()
            .filter(|(h, g)| g.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
            .map(|(_, g)| module.types[g.ty].inner.size(module.to_ctx()))
            .sum();
        if storage > storage_limit {
            return Err(format!(
                "{name}: entry {} uses {storage} bytes of workgroup storage at default overrides (limit {storage_limit})",
                ep.name
            ));
        }
        let inv: u32 = ep.workgroup_size.iter().product();
        if inv > DEFAULT_INVOCATIONS {
            return Err(format!(
                "{name}: entry {} uses {inv} invocations per workgroup (WebGPU default limit {DEFAULT_INVOCATIONS})",
                ep.name
            ));
        }
    }

    // Metal
    let msl_options = msl::Options {
        lang_version: (2, 4),
        ..Default::default()
    };
    msl::write_string(
        &module,
        &info,
        &msl_options,
        &msl::PipelineOptions::default(),
    )
    .map_err(|e| format!("{name} -> MSL: {e}"))?;

    // Vulkan
    spv::write_vec(&module, &info, &spv::Options::default(), None)
        .map_err(|e| format!("{name} -> SPIR-V: {e}"))?;
    if coop {
        return Ok(());
    }

    // DX12
    let mut hlsl_out = String::new();
    let hlsl_options = hlsl::Options {
        shader_model: hlsl::ShaderModel::V6_0,
        ..Default::default()
    };
    hlsl::Writer::new(
        &mut hlsl_out,
        &hlsl_options,
        &hlsl::PipelineOptions::default(),
    )
    .write(&module, &info, None)
    .map_err(|e| format!("{name} -> HLSL: {e}"))?;

    // GL: one entry point per translation.
    for ep in &module.entry_points {
        let mut glsl_out = String::new();
        let options = glsl::Options {
            version: glsl::Version::Embedded {
                version: 310,
                is_webgl: false,
            },
            ..Default::default()
        };
        let pipeline = glsl::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: ep.name.clone(),
            multiview: None,
        };
        glsl::Writer::new(
            &mut glsl_out,
            &module,
            &info,
            &options,
            &pipeline,
            naga::proc::BoundsCheckPolicies::default(),
        )
        .and_then(|mut w| w.write())
        .map_err(|e| format!("{name} -> GLSL ES 3.1 (entry {}): {e}", ep.name))?;
    }
    Ok(())
}
