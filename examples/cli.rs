//! metalcore on `.npy` files, for cross-checking with numpy.
//!
//! ```text
//! cargo run --release --example cli -- --help
//! cargo run --release --example cli -- info
//! cargo run --release --example cli -- qr A.npy --q Q.npy --r R.npy
//! ```
//!
//! Inputs are float32 or float64 `.npy` files in C or Fortran order; shapes mean what they mean
//! in numpy (a `(m, n)` array is an m×n matrix whatever its storage order). Outputs are float32,
//! C order, shaped as numpy would shape them. A bad file, dtype, rank or shape is one line
//! `error: …` on stderr and a non-zero exit status (1; 2 for a usage error or an operation not in
//! this build).

use std::ffi::OsString;
use std::time::Instant;

use metalcore::npy::{self, Array, Data};
use metalcore::{Context, GpuBatch, GpuMatrix, QrMode, QrOptions};

const USAGE: &str = "\
metalcore cli: GPU linear algebra on .npy files (float32/float64, C or Fortran order in;
float32, C order out).

usage: cli <command> [arguments] [options]

commands:
  info                                   adapters found on every backend, the one metalcore
                                         picks, its limits and features [--verbose: all limits]
  qr A.npy --q Q.npy --r R.npy [--mode reduced|complete|r] [--block-size NB]
                                         A = QR. reduced: Q (m,k), R (k,n), k = min(m,n);
                                         complete: Q (m,m), R (m,n); r: R only (needs only --r)
  geqr2 A.npy --rv RV.npy --tau TAU.npy  LAPACK sgeqr2: RV (m,n) holds R on and above the
                                         diagonal and the Householder vectors below it; TAU (k,)
  trsm A.npy B.npy --out X.npy [--upper] [--trans] [--unit-diagonal]
                                         solves op(A) X = B; A (n,n) lower triangular unless
                                         --upper (the other triangle is not read); op(A) = A^T
                                         with --trans; B (n,) or (n,k) -> X of B's shape
  qr-batched A.npy --q Q.npy --r R.npy [--mode reduced|complete|r]
                                         QR of every matrix of A (batch,m,n): Q (batch,m,k),
                                         R (batch,k,n); mode r needs only --r
  lstsq A.npy B.npy --out X.npy          least squares min ||AX - B||: A (m,n) with B (m,) or
                                         (m,k) -> X (n,) or (n,k); A (batch,m,n) with B
                                         (batch,m) or (batch,m,k) -> X (batch,n) or (batch,n,k)

options of every computing command:
  --check        verify the result on the CPU in float64 (residuals printed; exit 1 if one
                 is beyond a tolerance of a small multiple of float32 epsilon)
  -h, --help     this text

Environment: WGPU_BACKEND=vulkan|gl|metal|dx12 restricts the backends, WGPU_ADAPTER_NAME=text
picks an adapter by name, WGPU_POWER_PREF=low prefers an integrated GPU.
Exit status: 0 success; 1 bad input file, failed operation or failed --check; 2 usage error
or an operation not available in this build.

Test helper (used by CI):
  gen-random OUT.npy [D0 [D1 [D2]]] [--fortran] [--f64] [--seed S] [--diag X]
                 uniform random values in [-1, 1) of shape (D0, D1, D2); --diag adds X to the
                 diagonal of every matrix (the last two dimensions).
";

/// Why a command failed; each is printed as one `error: …` line.
#[derive(Debug)]
enum Fail {
    /// Bad command line (exit 2).
    Usage(String),
    /// The operation's library function is not in this build (exit 2).
    /// Bad input, a failed operation or a failed check (exit 1).
    Failed(String),
}

impl Fail {
    fn exit_code(&self) -> i32 {
        match self {
            Fail::Failed(_) => 1,
            Fail::Usage(_) => 2,
        }
    }

    fn message(&self) -> String {
        match self {
            Fail::Usage(m) => format!("{m} (see `cli --help`)"),
            Fail::Failed(m) => m.clone(),
        }
    }
}

impl From<metalcore::Error> for Fail {
    fn from(e: metalcore::Error) -> Self {
        Fail::Failed(e.to_string())
    }
}

impl From<npy::NpyError> for Fail {
    fn from(e: npy::NpyError) -> Self {
        Fail::Failed(e.to_string())
    }
}

type Res<T> = Result<T, Fail>;

/// Collapses whitespace runs (newlines included) so that a message is one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() {
    // A bug must still be one line on stderr; "panicked" stays in it so CI catches it.
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "error: internal error, cli panicked: {} (please report)",
            one_line(&info.to_string())
        );
    }));
    let code = match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => 0,
        Err(fail) => {
            eprintln!("error: {}", one_line(&fail.message()));
            fail.exit_code()
        }
    };
    std::process::exit(code);
}

fn run(raw: Vec<OsString>) -> Res<()> {
    let mut args = Vec::with_capacity(raw.len());
    for a in raw {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => return Err(Fail::Usage(format!("argument {a:?} is not valid UTF-8"))),
        }
    }
    let Some((command, rest)) = args.split_first() else {
        return Err(Fail::Usage("no command given".into()));
    };
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        print!("{USAGE}");
        return Ok(());
    }
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return Ok(());
    }
    match command.as_str() {
        "info" => info(rest),
        "qr" => qr(rest),
        "geqr2" => geqr2(rest),
        "trsm" => trsm(rest),
        "qr-batched" => qr_batched(rest),
        "lstsq" => lstsq(rest),
        "gen-random" => gen_random(rest),
        other => Err(Fail::Usage(format!("unknown command {other:?}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Argument parsing.

/// What a command accepts: its positional arguments (names, for messages), options that take a
/// value, and flags.
struct Spec {
    command: &'static str,
    positional: &'static [&'static str],
    /// How many of the positional arguments are required (the rest are optional).
    required: usize,
    values: &'static [&'static str],
    flags: &'static [&'static str],
}

struct Parsed {
    positional: Vec<String>,
    values: Vec<(&'static str, String)>,
    flags: Vec<&'static str>,
}

impl Parsed {
    fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }
}

fn parse(spec: &Spec, args: &[String]) -> Res<Parsed> {
    let cmd = spec.command;
    let mut out = Parsed {
        positional: Vec::new(),
        values: Vec::new(),
        flags: Vec::new(),
    };
    let mut it = args.iter();
    let mut options_done = false;
    while let Some(arg) = it.next() {
        if options_done || !arg.starts_with("--") {
            if !options_done && arg.starts_with('-') && arg.len() > 1 {
                return Err(Fail::Usage(format!("{cmd}: unknown option {arg:?}")));
            }
            out.positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        if let Some(&v) = spec.values.iter().find(|v| **v == name) {
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| Fail::Usage(format!("{cmd}: {name} needs a value")))?,
            };
            if out.value(v).is_some() {
                return Err(Fail::Usage(format!("{cmd}: {name} given twice")));
            }
            out.values.push((v, value));
        } else if let Some(&f) = spec.flags.iter().find(|f| **f == name) {
            if inline.is_some() {
                return Err(Fail::Usage(format!("{cmd}: {name} takes no value")));
            }
            if !out.flags.contains(&f) {
                out.flags.push(f);
            }
        } else {
            let mut known: Vec<&str> = spec.values.to_vec();
            known.extend_from_slice(spec.flags);
            return Err(Fail::Usage(format!(
                "{cmd}: unknown option {name:?}{}",
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" (options: {})", known.join(", "))
                }
            )));
        }
    }
    let n = out.positional.len();
    if n < spec.required {
        let missing = spec.positional[n..spec.required].join(", ");
        return Err(Fail::Usage(format!("{cmd}: missing {missing}")));
    }
    if n > spec.positional.len() {
        return Err(Fail::Usage(format!(
            "{cmd}: unexpected argument {:?} (expected {})",
            out.positional[spec.positional.len()],
            if spec.positional.is_empty() {
                "none".to_string()
            } else {
                spec.positional.join(" ")
            }
        )));
    }
    Ok(out)
}

/// Parses `--mode`; `allowed` lists the modes the command takes.
fn parse_mode(cmd: &str, p: &Parsed, allowed: &[&str]) -> Res<QrMode> {
    let mode = p.value("--mode").unwrap_or("reduced");
    if !allowed.contains(&mode) {
        return Err(Fail::Usage(format!(
            "{cmd}: --mode must be one of {}, not {mode:?}",
            allowed.join(", ")
        )));
    }
    Ok(match mode {
        "complete" => QrMode::Complete,
        "r" => QrMode::R,
        _ => QrMode::Reduced,
    })
}

/// Checks the outputs a QR mode needs: Q and R, or R alone.
fn qr_outputs<'a>(cmd: &str, p: &'a Parsed, mode: QrMode) -> Res<(Option<&'a str>, &'a str)> {
    let (q, r) = (p.value("--q"), p.value("--r"));
    match (mode, q, r) {
        (QrMode::R, Some(_), _) => Err(Fail::Usage(format!(
            "{cmd}: --mode r computes no Q; drop --q or pick --mode reduced"
        ))),
        (QrMode::R, None, Some(r)) => Ok((None, r)),
        (QrMode::R, None, None) => Err(Fail::Usage(format!("{cmd}: --mode r needs --r R.npy"))),
        (_, Some(q), Some(r)) => Ok((Some(q), r)),
        (_, None, Some(_)) => Err(Fail::Usage(format!(
            "{cmd}: missing --q Q.npy (or use --mode r for R alone)"
        ))),
        (_, Some(_), None) => Err(Fail::Usage(format!("{cmd}: missing --r R.npy"))),
        (_, None, None) => Err(Fail::Usage(format!(
            "{cmd}: missing --q Q.npy and --r R.npy"
        ))),
    }
}

fn mode_name(mode: QrMode) -> &'static str {
    match mode {
        QrMode::Reduced => "reduced",
        QrMode::Complete => "complete",
        QrMode::R => "r",
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs and outputs.

/// A loaded `.npy` input and the name the command gives it (`A`, `B`).
struct Input {
    path: String,
    name: &'static str,
    array: Array,
}

impl Input {
    fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    fn describe(&self) -> String {
        format!(
            "{} {} {} {}",
            self.name,
            npy::shape_string(self.shape()),
            self.array.dtype(),
            if self.array.fortran_order() && self.array.ndim() > 1 {
                "F-order"
            } else {
                "C-order"
            }
        )
    }

    /// An error about this input, naming its file.
    fn fail(&self, what: impl std::fmt::Display) -> Fail {
        Fail::Failed(format!("{}: {what}", self.path))
    }

    fn ranks(&self, allowed: &[usize], expected: &str) -> Res<()> {
        if allowed.contains(&self.array.ndim()) {
            return Ok(());
        }
        Err(self.fail(format!(
            "{} must be {expected}, got a {}-D array of shape {}",
            self.name,
            self.array.ndim(),
            npy::shape_string(self.shape())
        )))
    }

    /// The elements as f32 in `fortran` or C order (the element type and order converted).
    fn to_f32(&self, fortran: bool) -> Vec<f32> {
        if fortran {
            self.array.to_f32_fortran_order()
        } else {
            self.array.to_f32_c_order()
        }
    }

    /// The elements as f64 in C order (for checks).
    fn to_f64_c_order(&self) -> Vec<f64> {
        self.array.to_f64_c_order()
    }
}

/// Reads an input file and checks what every command needs: no empty dimension, values that fit
/// float32.
fn load(path: &str, name: &'static str) -> Res<Input> {
    let array = npy::read(path)?;
    let input = Input {
        path: path.to_string(),
        name,
        array,
    };
    if input.array.is_empty() {
        return Err(input.fail(format!(
            "{name} is empty (shape {}); every dimension must be at least 1",
            npy::shape_string(input.shape())
        )));
    }
    if let Data::F64(v) = input.array.data() {
        if let Some(i) = v
            .iter()
            .position(|x| x.is_finite() && x.abs() > f32::MAX as f64)
        {
            return Err(input.fail(format!(
                "{name} holds {:e} (element {i} in storage order), beyond float32's range",
                v[i]
            )));
        }
    }
    Ok(input)
}

/// A 2-D input as an m×n GPU matrix (column-major: Fortran order needs no reordering).
fn upload_matrix(ctx: &Context, input: &Input) -> Res<GpuMatrix> {
    let (m, n) = (input.shape()[0], input.shape()[1]);
    Ok(GpuMatrix::from_col_major(ctx, m, n, &input.to_f32(true))?)
}

/// A 1-D input (n,) as an n×1 matrix, a 2-D one as a matrix.
fn upload_rhs(ctx: &Context, input: &Input) -> Res<GpuMatrix> {
    match input.shape() {
        &[n] => Ok(GpuMatrix::from_col_major(ctx, n, 1, &input.to_f32(true))?),
        _ => upload_matrix(ctx, input),
    }
}

/// A 3-D input (batch, m, n) as a GPU batch; a 2-D (batch, m) one as batch m×1 matrices.
fn upload_batch(ctx: &Context, input: &Input) -> Res<GpuBatch> {
    match *input.shape() {
        [b, m] => Ok(GpuBatch::from_row_major(
            ctx,
            b,
            m,
            1,
            &input.to_f32(false),
        )?),
        [b, m, n] => Ok(GpuBatch::from_row_major(
            ctx,
            b,
            m,
            n,
            &input.to_f32(false),
        )?),
        _ => unreachable!("ranks checked before upload"),
    }
}

/// Reads a matrix back as a float32 C-order array; `vector` writes an n×1 result as `(n,)`.
fn download_matrix(ctx: &Context, m: &GpuMatrix, vector: bool) -> Res<(Vec<usize>, Vec<f32>)> {
    let shape = if vector {
        vec![m.rows()]
    } else {
        vec![m.rows(), m.cols()]
    };
    Ok((shape, m.to_row_major(ctx)?))
}

/// Reads a batch back as `(batch, rows, cols)`, or `(batch, rows)` when `vector`.
fn download_batch(ctx: &Context, b: &GpuBatch, vector: bool) -> Res<(Vec<usize>, Vec<f32>)> {
    let shape = if vector {
        vec![b.batch(), b.rows()]
    } else {
        vec![b.batch(), b.rows(), b.cols()]
    };
    Ok((shape, b.to_row_major(ctx)?))
}

fn save(path: &str, shape: &[usize], data: &[f32]) -> Res<String> {
    npy::write_f32(path, shape, data)?;
    Ok(format!("{} → {path}", npy::shape_string(shape)))
}

fn context() -> Res<Context> {
    Ok(Context::new()?)
}

fn ms(t: Instant) -> String {
    format!("{:.2} ms", t.elapsed().as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------------------------
// Checks, in f64 on the CPU. Matrices here are row-major `Vec<f64>` with their shape.

struct Mat {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Mat {
    fn new(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Self { rows, cols, data }
    }

    fn from_f32(rows: usize, cols: usize, data: &[f32]) -> Self {
        Self::new(rows, cols, data.iter().map(|&x| x as f64).collect())
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    fn norm(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum::<f64>().sqrt()
    }

    /// `op(self) · other`, with op = transpose when `trans`.
    fn mul(&self, trans: bool, other: &Mat) -> Mat {
        let (m, k) = if trans {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        };
        assert_eq!(k, other.rows);
        let n = other.cols;
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for p in 0..k {
                let a = if trans { self.at(p, i) } else { self.at(i, p) };
                if a == 0.0 {
                    continue;
                }
                let row = &other.data[p * n..(p + 1) * n];
                for (o, b) in out[i * n..(i + 1) * n].iter_mut().zip(row) {
                    *o += a * b;
                }
            }
        }
        Mat::new(m, n, out)
    }

    fn minus(&self, other: &Mat) -> Mat {
        Mat::new(
            self.rows,
            self.cols,
            self.data
                .iter()
                .zip(&other.data)
                .map(|(a, b)| a - b)
                .collect(),
        )
    }
}

/// `num / den`, or `num` when `den` is zero (an all-zero input).
fn relative(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// `max` that keeps a NaN (`f64::max` drops it), so a NaN in a result fails its check.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// A float32 tolerance for an operation on matrices of dimension up to `dim`.
fn tolerance(dim: usize) -> f64 {
    16.0 * dim.max(8) as f64 * f32::EPSILON as f64
}

/// Collects named residuals, keeping the worst of each name (a batch adds one per matrix);
/// fails when one is beyond the tolerance (NaN included).
struct Check {
    tol: f64,
    values: Vec<(String, f64)>,
}

impl Check {
    fn new(dim: usize) -> Self {
        Self {
            tol: tolerance(dim),
            values: Vec::new(),
        }
    }

    fn add(&mut self, what: &str, value: f64) {
        match self.values.iter_mut().find(|(n, _)| n == what) {
            Some((_, worst)) if worst.is_nan() => {}
            Some((_, worst)) => {
                *worst = if value.is_nan() {
                    value
                } else {
                    worst.max(value)
                }
            }
            None => self.values.push((what.to_string(), value)),
        }
    }

    fn finish(self, cmd: &str, prefix: &str) -> Res<()> {
        let failed = self.values.iter().any(|(_, v)| v.is_nan() || *v > self.tol);
        let parts: Vec<String> = self
            .values
            .iter()
            .map(|(n, v)| format!("{n} = {v:.2e}"))
            .collect();
        let line = format!("{prefix}{} (tolerance {:.1e})", parts.join(", "), self.tol);
        if failed {
            return Err(Fail::Failed(format!("{cmd}: check failed: {line}")));
        }
        println!("check: {line}");
        Ok(())
    }
}

/// Residuals of A = QR (or of AᵀA = RᵀR when there is no Q) for one matrix.
fn check_qr(check: &mut Check, a: &Mat, q: Option<&Mat>, r: &Mat) {
    let below = (0..r.rows)
        .flat_map(|i| (0..r.cols.min(i)).map(move |j| (i, j)))
        .map(|(i, j)| r.at(i, j).abs())
        .fold(0.0, nan_max);
    let an = a.norm();
    match q {
        Some(q) => {
            check.add("‖QR−A‖/‖A‖", relative(q.mul(false, r).minus(a).norm(), an));
            let qtq = q.mul(true, q);
            let orth = (0..qtq.rows)
                .flat_map(|i| (0..qtq.cols).map(move |j| (i, j)))
                .map(|(i, j)| (qtq.at(i, j) - if i == j { 1.0 } else { 0.0 }).abs())
                .fold(0.0, nan_max);
            check.add("max|QᵀQ−I|", orth);
        }
        None => check.add(
            "‖RᵀR−AᵀA‖/‖A‖²",
            relative(r.mul(true, r).minus(&a.mul(true, a)).norm(), an * an),
        ),
    }
    check.add("max|R below diagonal|", below);
}

// ---------------------------------------------------------------------------------------------
// Commands.

fn info(args: &[String]) -> Res<()> {
    let p = parse(
        &Spec {
            command: "info",
            positional: &[],
            required: 0,
            values: &[],
            flags: &["--verbose"],
        },
        args,
    )?;
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::all();
    let instance = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    println!("adapters found on every backend ({}):", adapters.len());
    for a in &adapters {
        let i = a.get_info();
        println!(
            "  {} ({:?}, {:?}, driver {} {})",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        );
    }
    if let Ok(b) = std::env::var("WGPU_BACKEND") {
        println!("WGPU_BACKEND={b} restricts what metalcore picks from");
    }
    let ctx = context()?;
    println!("metalcore picks: {}", ctx.describe());
    let l = ctx.limits();
    let mib = |b: u64| format!("{b} ({:.0} MiB)", b as f64 / (1u64 << 20) as f64);
    println!("limits:");
    let rows: [(&str, String); 10] = [
        (
            "max_storage_buffer_binding_size",
            mib(l.max_storage_buffer_binding_size),
        ),
        ("max_buffer_size", mib(l.max_buffer_size)),
        (
            "largest matrix (f32 elements)",
            ctx.max_elements().to_string(),
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size.to_string(),
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup.to_string(),
        ),
        (
            "max_compute_workgroup_size (x, y, z)",
            format!(
                "{}, {}, {}",
                l.max_compute_workgroup_size_x,
                l.max_compute_workgroup_size_y,
                l.max_compute_workgroup_size_z
            ),
        ),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension.to_string(),
        ),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage.to_string(),
        ),
        (
            "min_uniform_buffer_offset_alignment",
            l.min_uniform_buffer_offset_alignment.to_string(),
        ),
        (
            "subgroup size (min, max)",
            format!(
                "{}, {}",
                ctx.adapter_info().subgroup_min_size,
                ctx.adapter_info().subgroup_max_size
            ),
        ),
    ];
    for (name, value) in rows {
        println!("  {name:<40} {value}");
    }
    if p.flag("--verbose") {
        println!("all limits: {l:#?}");
    }
    let names: Vec<&str> = ctx.features().iter_names().map(|(n, _)| n).collect();
    println!(
        "optional features metalcore enabled: {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    Ok(())
}

fn qr(args: &[String]) -> Res<()> {
    const CMD: &str = "qr";
    let p = parse(
        &Spec {
            command: CMD,
            positional: &["A.npy"],
            required: 1,
            values: &["--q", "--r", "--mode", "--block-size"],
            flags: &["--check"],
        },
        args,
    )?;
    let mode = parse_mode(CMD, &p, &["reduced", "complete", "r"])?;
    let (q_path, r_path) = qr_outputs(CMD, &p, mode)?;
    let block_size = match p.value("--block-size") {
        None => None,
        Some(s) => match s.parse::<usize>() {
            Ok(nb) if nb > 0 => Some(nb),
            _ => {
                return Err(Fail::Usage(format!(
                    "{CMD}: --block-size must be a positive integer, not {s:?}"
                )))
            }
        },
    };
    let a = load(&p.positional[0], "A")?;
    a.ranks(&[2], "a matrix: a 2-D array (m, n)")?;
    let (m, n) = (a.shape()[0], a.shape()[1]);

    let ctx = context()?;
    let ga = upload_matrix(&ctx, &a)?;
    let t = Instant::now();
    let res = metalcore::qr_with(
        &ctx,
        &ga,
        mode,
        &QrOptions {
            block_size,
            ..Default::default()
        },
    )?;
    let q = res
        .q
        .as_ref()
        .map(|q| download_matrix(&ctx, q, false))
        .transpose()?;
    let r = download_matrix(&ctx, &res.r, false)?;
    let time = ms(t);

    let mut written = Vec::new();
    if let (Some(path), Some((shape, data))) = (q_path, &q) {
        written.push(format!("Q {}", save(path, shape, data)?));
    }
    written.push(format!("R {}", save(r_path, &r.0, &r.1)?));
    println!(
        "qr ({} mode) of {}: {}; {time} wall (with read-back) on {}",
        mode_name(mode),
        a.describe(),
        written.join(", "),
        ctx.adapter_info().name
    );
    if p.flag("--check") {
        let am = Mat::new(m, n, a.to_f64_c_order());
        let qm = q.map(|(s, d)| Mat::from_f32(s[0], s[1], &d));
        let rm = Mat::from_f32(r.0[0], r.0[1], &r.1);
        let mut check = Check::new(m.max(n));
        check_qr(&mut check, &am, qm.as_ref(), &rm);
        check.finish(CMD, "")?;
    }
    Ok(())
}

fn geqr2(args: &[String]) -> Res<()> {
    const CMD: &str = "geqr2";
    let p = parse(
        &Spec {
            command: CMD,
            positional: &["A.npy"],
            required: 1,
            values: &["--rv", "--tau"],
            flags: &["--check"],
        },
        args,
    )?;
    let (rv_path, tau_path) = match (p.value("--rv"), p.value("--tau")) {
        (Some(rv), Some(tau)) => (rv, tau),
        (None, Some(_)) => return Err(Fail::Usage(format!("{CMD}: missing --rv RV.npy"))),
        (Some(_), None) => return Err(Fail::Usage(format!("{CMD}: missing --tau TAU.npy"))),
        (None, None) => {
            return Err(Fail::Usage(format!(
                "{CMD}: missing --rv RV.npy and --tau TAU.npy"
            )))
        }
    };
    let a = load(&p.positional[0], "A")?;
    a.ranks(&[2], "a matrix: a 2-D array (m, n)")?;
    let (m, n) = (a.shape()[0], a.shape()[1]);

    let ctx = context()?;
    let ga = upload_matrix(&ctx, &a)?;
    let t = Instant::now();
    let (rv, tau) = metalcore::geqr2(&ctx, &ga)?;
    let rv = download_matrix(&ctx, &rv, false)?;
    let tau = download_matrix(&ctx, &tau, true)?;
    let time = ms(t);
    let w_rv = save(rv_path, &rv.0, &rv.1)?;
    let w_tau = save(tau_path, &tau.0, &tau.1)?;
    println!(
        "geqr2 of {}: RV {w_rv}, TAU {w_tau}; {time} wall (with read-back) on {}",
        a.describe(),
        ctx.adapter_info().name
    );
    if p.flag("--check") {
        // Q R = H_0 H_1 … H_{k-1} [R; 0]: apply the reflectors, last first, to R.
        let k = m.min(n);
        let rvm = Mat::from_f32(m, n, &rv.1);
        let mut x = Mat::new(
            m,
            n,
            (0..m * n)
                .map(|idx| {
                    let (i, j) = (idx / n, idx % n);
                    if i <= j {
                        rvm.at(i, j)
                    } else {
                        0.0
                    }
                })
                .collect(),
        );
        for c in (0..k).rev() {
            let tau_c = tau.1[c] as f64;
            let v = |i: usize| -> f64 {
                match i.cmp(&c) {
                    std::cmp::Ordering::Less => 0.0,
                    std::cmp::Ordering::Equal => 1.0,
                    std::cmp::Ordering::Greater => rvm.at(i, c),
                }
            };
            for j in 0..n {
                let dot: f64 = (c..m).map(|i| v(i) * x.at(i, j)).sum();
                for i in c..m {
                    x.data[i * n + j] -= tau_c * v(i) * dot;
                }
            }
        }
        let am = Mat::new(m, n, a.to_f64_c_order());
        let mut check = Check::new(m.max(n));
        check.add(
            "‖H₀…H_{k−1}R − A‖/‖A‖",
            relative(x.minus(&am).norm(), am.norm()),
        );
        // LAPACK: tau is 0 or in [1, 2].
        let bad_tau = tau
            .1
            .iter()
            .map(|&t| t as f64)
            .filter(|&t| !(t == 0.0 || (1.0 - 1e-6..=2.0 + 1e-6).contains(&t)))
            .count();
        check.add("tau outside {0} ∪ [1, 2] (count)", bad_tau as f64);
        check.finish(CMD, "")?;
    }
    Ok(())
}

/// The flags of `cli trsm`: which triangle of A, whether op(A) = Aᵀ, unit diagonal.
#[derive(Clone, Copy, Debug)]
struct TrsmFlags {
    upper: bool,
    trans: bool,
    unit_diagonal: bool,
}

/// X with op(A) X = B, on the GPU (left side).
fn gpu_trsm(ctx: &Context, a: &GpuMatrix, b: &GpuMatrix, flags: TrsmFlags) -> Res<GpuMatrix> {
    use metalcore::{Side, TrsmOptions, Uplo};
    let opts = TrsmOptions {
        side: Side::Left,
        uplo: if flags.upper {
            Uplo::Upper
        } else {
            Uplo::Lower
        },
        trans: flags.trans,
        unit_diagonal: flags.unit_diagonal,
    };
    Ok(metalcore::trsm(ctx, a, b, &opts)?)
}

fn trsm(args: &[String]) -> Res<()> {
    const CMD: &str = "trsm";
    let p = parse(
        &Spec {
            command: CMD,
            positional: &["A.npy", "B.npy"],
            required: 2,
            values: &["--out"],
            flags: &["--upper", "--trans", "--unit-diagonal", "--check"],
        },
        args,
    )?;
    let out = p
        .value("--out")
        .ok_or_else(|| Fail::Usage(format!("{CMD}: missing --out X.npy")))?;
    let flags = TrsmFlags {
        upper: p.flag("--upper"),
        trans: p.flag("--trans"),
        unit_diagonal: p.flag("--unit-diagonal"),
    };
    let a = load(&p.positional[0], "A")?;
    a.ranks(&[2], "a square matrix: a 2-D array (n, n)")?;
    let n = a.shape()[0];
    if a.shape()[1] != n {
        return Err(a.fail(format!(
            "A must be square, got shape {}",
            npy::shape_string(a.shape())
        )));
    }
    let b = load(&p.positional[1], "B")?;
    b.ranks(&[1, 2], "a vector (n,) or a matrix (n, k)")?;
    if b.shape()[0] != n {
        return Err(b.fail(format!(
            "B has {} rows but A is {n}×{n}: B must be ({n},) or ({n}, k)",
            b.shape()[0]
        )));
    }
    let vector = b.array.ndim() == 1;

    let ctx = context()?;
    let ga = upload_matrix(&ctx, &a)?;
    let gb = upload_rhs(&ctx, &b)?;
    let t = Instant::now();
    let x = gpu_trsm(&ctx, &ga, &gb, flags)?;
    let x = download_matrix(&ctx, &x, vector)?;
    let time = ms(t);
    let written = save(out, &x.0, &x.1)?;
    println!(
        "trsm ({} {}{}) of {}, {}: X {written}; {time} wall (with read-back) on {}",
        if flags.upper { "upper" } else { "lower" },
        if flags.trans {
            "transposed"
        } else {
            "not transposed"
        },
        if flags.unit_diagonal {
            ", unit diagonal"
        } else {
            ""
        },
        a.describe(),
        b.describe(),
        ctx.adapter_info().name
    );
    if p.flag("--check") {
        // The triangle that is read, with the unit diagonal if asked.
        let a64 = a.to_f64_c_order();
        let tri = Mat::new(
            n,
            n,
            (0..n * n)
                .map(|idx| {
                    let (i, j) = (idx / n, idx % n);
                    if i == j && flags.unit_diagonal {
                        1.0
                    } else if (flags.upper && j >= i) || (!flags.upper && j <= i) {
                        a64[idx]
                    } else {
                        0.0
                    }
                })
                .collect(),
        );
        let k = if vector { 1 } else { b.shape()[1] };
        let bm = Mat::new(n, k, b.to_f64_c_order());
        let xm = Mat::from_f32(n, k, &x.1);
        let resid = tri.mul(flags.trans, &xm).minus(&bm).norm();
        let mut check = Check::new(n);
        check.add(
            "‖op(A)X−B‖/(‖A‖‖X‖+‖B‖)",
            relative(resid, tri.norm() * xm.norm() + bm.norm()),
        );
        check.finish(CMD, "")?;
    }
    Ok(())
}

/// Q (absent in mode r) and R of every matrix of a batch, on the GPU.
fn gpu_qr_batched(ctx: &Context, a: &GpuBatch, mode: QrMode) -> Res<(Option<GpuBatch>, GpuBatch)> {
    let res = metalcore::qr_batched(ctx, a, mode)?;
    Ok((res.q, res.r))
}

fn qr_batched(args: &[String]) -> Res<()> {
    const CMD: &str = "qr-batched";
    let p = parse(
        &Spec {
            command: CMD,
            positional: &["A.npy"],
            required: 1,
            values: &["--q", "--r", "--mode"],
            flags: &["--check"],
        },
        args,
    )?;
    let mode = parse_mode(CMD, &p, &["reduced", "complete", "r"])?;
    let (q_path, r_path) = qr_outputs(CMD, &p, mode)?;
    let a = load(&p.positional[0], "A")?;
    a.ranks(&[3], "a batch of matrices: a 3-D array (batch, m, n)")?;
    let (batch, m, n) = (a.shape()[0], a.shape()[1], a.shape()[2]);

    let ctx = context()?;
    let ga = upload_batch(&ctx, &a)?;
    let t = Instant::now();
    let (q, r) = gpu_qr_batched(&ctx, &ga, mode)?;
    let q = q
        .as_ref()
        .map(|q| download_batch(&ctx, q, false))
        .transpose()?;
    let r = download_batch(&ctx, &r, false)?;
    let time = ms(t);
    let mut written = Vec::new();
    if let (Some(path), Some((shape, data))) = (q_path, &q) {
        written.push(format!("Q {}", save(path, shape, data)?));
    }
    written.push(format!("R {}", save(r_path, &r.0, &r.1)?));
    println!(
        "qr-batched ({} mode) of {}: {}; {time} wall (with read-back) on {}",
        mode_name(mode),
        a.describe(),
        written.join(", "),
        ctx.adapter_info().name
    );
    if p.flag("--check") {
        let a64 = a.to_f64_c_order();
        let mut check = Check::new(m.max(n));
        for i in 0..batch {
            let am = Mat::new(m, n, a64[i * m * n..(i + 1) * m * n].to_vec());
            let qm = q.as_ref().map(|(s, d)| {
                let len = s[1] * s[2];
                Mat::from_f32(s[1], s[2], &d[i * len..(i + 1) * len])
            });
            let len = r.0[1] * r.0[2];
            let rm = Mat::from_f32(r.0[1], r.0[2], &r.1[i * len..(i + 1) * len]);
            check_qr(&mut check, &am, qm.as_ref(), &rm);
        }
        check.finish(CMD, "worst over the batch: ")?;
    }
    Ok(())
}

/// Least-squares X of one system, on the GPU.
fn gpu_lstsq(ctx: &Context, a: &GpuMatrix, b: &GpuMatrix) -> Res<GpuMatrix> {
    Ok(metalcore::lstsq(ctx, a, b)?)
}

/// Least-squares X of every system of a batch, on the GPU.
fn gpu_lstsq_batched(ctx: &Context, a: &GpuBatch, b: &GpuBatch) -> Res<GpuBatch> {
    Ok(metalcore::lstsq_batched(ctx, a, b)?)
}

fn lstsq(args: &[String]) -> Res<()> {
    const CMD: &str = "lstsq";
    let p = parse(
        &Spec {
            command: CMD,
            positional: &["A.npy", "B.npy"],
            required: 2,
            values: &["--out"],
            flags: &["--check"],
        },
        args,
    )?;
    let out = p
        .value("--out")
        .ok_or_else(|| Fail::Usage(format!("{CMD}: missing --out X.npy")))?;
    let a = load(&p.positional[0], "A")?;
    a.ranks(
        &[2, 3],
        "a matrix (m, n) or a batch of matrices (batch, m, n)",
    )?;
    let b = load(&p.positional[1], "B")?;
    let batched = a.array.ndim() == 3;
    let (batch, m, n) = if batched {
        (a.shape()[0], a.shape()[1], a.shape()[2])
    } else {
        (1, a.shape()[0], a.shape()[1])
    };
    // B's shape must match A's: (m,) / (m, k) for a matrix, (batch, m) / (batch, m, k) for a batch.
    let (vector, k) = if batched {
        b.ranks(&[2, 3], "(batch, m) or (batch, m, k) for a batch A")?;
        if b.shape()[0] != batch || b.shape()[1] != m {
            return Err(b.fail(format!(
                "B has shape {} but A is {}: B must be ({batch}, {m}) or ({batch}, {m}, k)",
                npy::shape_string(b.shape()),
                npy::shape_string(a.shape())
            )));
        }
        (b.array.ndim() == 2, b.shape().get(2).copied().unwrap_or(1))
    } else {
        b.ranks(&[1, 2], "(m,) or (m, k) for a matrix A")?;
        if b.shape()[0] != m {
            return Err(b.fail(format!(
                "B has shape {} but A is {}: B must be ({m},) or ({m}, k)",
                npy::shape_string(b.shape()),
                npy::shape_string(a.shape())
            )));
        }
        (b.array.ndim() == 1, b.shape().get(1).copied().unwrap_or(1))
    };

    let ctx = context()?;
    let t = Instant::now();
    let x = if batched {
        let ga = upload_batch(&ctx, &a)?;
        let gb = upload_batch(&ctx, &b)?;
        let x = gpu_lstsq_batched(&ctx, &ga, &gb)?;
        download_batch(&ctx, &x, vector)?
    } else {
        let ga = upload_matrix(&ctx, &a)?;
        let gb = upload_rhs(&ctx, &b)?;
        let x = gpu_lstsq(&ctx, &ga, &gb)?;
        download_matrix(&ctx, &x, vector)?
    };
    let time = ms(t);
    let written = save(out, &x.0, &x.1)?;
    println!(
        "lstsq of {}, {}: X {written}; {time} wall (with read-back) on {}",
        a.describe(),
        b.describe(),
        ctx.adapter_info().name
    );
    if p.flag("--check") {
        // Normal equations: Aᵀ(AX − B) ≈ 0 relative to ‖A‖(‖A‖‖X‖ + ‖B‖); worst matrix.
        let (a64, b64) = (a.to_f64_c_order(), b.to_f64_c_order());
        let mut check = Check::new(m.max(n));
        for i in 0..batch {
            let am = Mat::new(m, n, a64[i * m * n..(i + 1) * m * n].to_vec());
            let bm = Mat::new(m, k, b64[i * m * k..(i + 1) * m * k].to_vec());
            let xm = Mat::from_f32(n, k, &x.1[i * n * k..(i + 1) * n * k]);
            let r = am.mul(false, &xm).minus(&bm);
            let v = relative(
                am.mul(true, &r).norm(),
                am.norm() * (am.norm() * xm.norm() + bm.norm()),
            );
            check.add("‖Aᵀ(AX−B)‖/(‖A‖(‖A‖‖X‖+‖B‖))", v);
        }
        check.finish(
            CMD,
            if batched {
                "worst over the batch: "
            } else {
                ""
            },
        )?;
    }
    Ok(())
}

/// `cli gen-random`: a test helper writing uniform random values in [-1, 1).
fn gen_random(args: &[String]) -> Res<()> {
    const CMD: &str = "gen-random";
    let p = parse(
        &Spec {
            command: CMD,
            positional: &["OUT.npy", "D0", "D1", "D2"],
            required: 1,
            values: &["--seed", "--diag"],
            flags: &["--fortran", "--f64"],
        },
        args,
    )?;
    let shape = p.positional[1..]
        .iter()
        .map(|d| {
            d.parse::<usize>().map_err(|_| {
                Fail::Usage(format!(
                    "{CMD}: dimensions must be non-negative integers, not {d:?}"
                ))
            })
        })
        .collect::<Res<Vec<usize>>>()?;
    let seed = match p.value("--seed") {
        None => 1,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| Fail::Usage(format!("{CMD}: --seed must be an integer, not {s:?}")))?,
    };
    let diag = match p.value("--diag") {
        None => None,
        Some(s) => Some(
            s.parse::<f64>()
                .map_err(|_| Fail::Usage(format!("{CMD}: --diag must be a number, not {s:?}")))?,
        ),
    };
    if diag.is_some() && shape.len() < 2 {
        return Err(Fail::Usage(format!(
            "{CMD}: --diag needs at least 2 dimensions"
        )));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&c| c <= 1 << 30)
        .ok_or_else(|| Fail::Usage(format!("{CMD}: more than 2^30 elements")))?;
    let mut state = seed;
    let mut values: Vec<f64> = (0..count)
        .map(|_| {
            // SplitMix64 → uniform in [-1, 1).
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    if let Some(d) = diag {
        // C order: matrices of the last two dimensions, one after another.
        let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let per = rows * cols;
        if per > 0 {
            for mat in values.chunks_mut(per) {
                for i in 0..rows.min(cols) {
                    mat[i * cols + i] += d;
                }
            }
        }
    }
    let f64 = p.flag("--f64");
    let data = if f64 {
        Data::F64(values)
    } else {
        Data::F32(values.iter().map(|&x| x as f32).collect())
    };
    // The values are in C order; store them in Fortran order if asked (same logical array).
    let fortran = p.flag("--fortran");
    let array = Array::new(shape.clone(), false, data)?.with_order(fortran);
    let out = &p.positional[0];
    array.write(out)?;
    println!(
        "wrote {out}: shape {}, {}, {} order",
        npy::shape_string(&shape),
        if f64 { "float64" } else { "float32" },
        if fortran { "Fortran" } else { "C" }
    );
    Ok(())
}
