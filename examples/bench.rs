//! The benchmark table: every operation at the sizes of the issues, GPU (metalcore) against the
//! CPU (faer, f32, all cores), medians after warm-up, as markdown on stdout.
//!
//! ```text
//! cargo run --release --example bench                  # the sizes of the issues
//! cargo run --release --example bench -- --large       # plus the large sizes of issue 8
//! cargo run --release --example bench -- --quick       # tiny sizes, for CI smoke runs
//! cargo run --release --example bench -- --only "qr 1024"
//! ```
//!
//! GPU time is the wall time of the call plus `Context::synchronize()`, with inputs already on
//! the GPU and nothing read back; the span column is the GPU's own time for the call's
//! submission (timestamps before its first and after its last command), where the adapter has
//! timestamp queries. Each row is checked once against a CPU result before it is
//! timed (the `check` column), so the table never times a wrong answer. Rows whose operation is
//! not in this build show its CPU time and `not in this build`.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::SolveLstsq;
use faer::{Accum, Mat, MatRef, Par};
use metalcore::{
    Context, GpuBatch, GpuMatrix, PanelAlgorithm, QrMode, QrOptions, Side, TrsmOptions, Uplo,
};

const USAGE: &str = "\
metalcore bench: GPU (metalcore) vs CPU (faer) as a markdown table.

usage: bench [--quick | --large] [--only TEXT]... [--runs N] [--warmup N] [--no-check] [--no-cpu]

  --quick      tiny sizes, 2 runs after 1 warm-up: a smoke test that finishes in seconds on a
               software adapter (its numbers are not performance)
  --large      add the large sizes of the performance issue (qr 4096², 8192², 65536×256,
               matmul 8192²)
  --only TEXT  keep rows whose \"operation shape\" contains TEXT (repeatable: any of them)
  --runs N     timed runs per row (default 5; the median is shown)
  --warmup N   untimed runs first (default 2; more until 0.3 s has passed, so that the GPU
               clock is up)
  --no-check   skip the correctness check of each row
  --no-cpu     skip the faer timings
  --host       also print, to stderr, each row's median time until the call returns (the host
               recording and submitting its work, before synchronize)
  --no-subgroups  only the portable kernels (ContextOptions::disable_subgroups)
  --no-coop    large GEMMs on the f32 kernel even where cooperative matrices are available
               (ContextOptions::disable_cooperative_matrix)
  --list       print the rows that would run, and exit
  --panel P    QR panel algorithm: auto (default), one (one workgroup), tsqr or cholqr
               (CholeskyQR2 in front of TSQR, what auto picks)
  --tsqr-rows N  rows per TSQR block (default: the library's)
  --block N    QR outer panel width (default: the library's)
";

/// The QR options every QR row runs with (`--panel`, `--tsqr-rows`, `--block`).
static QR_OPTIONS: std::sync::OnceLock<QrOptions> = std::sync::OnceLock::new();

fn qr_options() -> QrOptions {
    QR_OPTIONS.get().copied().unwrap_or_default()
}

struct Options {
    quick: bool,
    large: bool,
    only: Vec<String>,
    runs: usize,
    warmup: usize,
    check: bool,
    cpu: bool,
    host: bool,
    no_subgroups: bool,
    no_coop: bool,
    list: bool,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut o = Options {
        quick: false,
        large: false,
        only: Vec::new(),
        runs: 5,
        warmup: 2,
        check: true,
        cpu: true,
        host: false,
        no_subgroups: false,
        no_coop: false,
        list: false,
    };
    let (mut runs, mut warmup) = (None, None);
    let mut qr_opts = QrOptions::default();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?;
        let mut value = |name: &str| -> Result<String, String> {
            args.next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let count = |name: &str, v: String| -> Result<usize, String> {
            v.parse::<usize>()
                .map_err(|_| format!("{name} must be a non-negative integer, not {v:?}"))
        };
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--quick" => o.quick = true,
            "--large" => o.large = true,
            "--no-check" => o.check = false,
            "--no-cpu" => o.cpu = false,
            "--host" => o.host = true,
            "--no-subgroups" => o.no_subgroups = true,
            "--no-coop" => o.no_coop = true,
            "--list" => o.list = true,
            "--only" => o.only.push(value("--only")?),
            "--runs" => runs = Some(count("--runs", value("--runs")?)?),
            "--warmup" => warmup = Some(count("--warmup", value("--warmup")?)?),
            "--panel" => {
                qr_opts.panel = match value("--panel")?.as_str() {
                    "auto" => PanelAlgorithm::Auto,
                    "one" => PanelAlgorithm::OneWorkgroup,
                    "tsqr" => PanelAlgorithm::Tsqr,
                    "cholqr" => PanelAlgorithm::CholeskyQr2,
                    v => {
                        return Err(format!(
                            "--panel takes auto, one, tsqr or cholqr, not {v:?}"
                        ))
                    }
                }
            }
            "--tsqr-rows" => {
                qr_opts.tsqr_block_rows = Some(count("--tsqr-rows", value("--tsqr-rows")?)?)
            }
            "--block" => qr_opts.block_size = Some(count("--block", value("--block")?)?),
            other => return Err(format!("unknown argument {other:?} (see `bench --help`)")),
        }
    }
    if o.quick && o.large {
        return Err("--quick and --large exclude each other".into());
    }
    if o.quick {
        (o.runs, o.warmup) = (2, 1);
    }
    o.runs = runs.unwrap_or(o.runs).max(1);
    o.warmup = warmup.unwrap_or(o.warmup);
    QR_OPTIONS
        .set(qr_opts)
        .map_err(|_| "options parsed twice".to_string())?;
    Ok(Some(o))
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!("error: internal error, bench panicked: {msg}");
    }));
    let options = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let selected: Vec<Case> = cases(&options)
        .into_iter()
        .filter(|c| {
            options.only.is_empty() || options.only.iter().any(|s| c.label().contains(s.as_str()))
        })
        .collect();
    if selected.is_empty() {
        eprintln!(
            "error: no row matches --only {:?} (see `bench --list`)",
            options.only
        );
        std::process::exit(2);
    }
    match run(&options, selected) {
        Ok(0) => {}
        Ok(failed) => {
            eprintln!("error: {failed} row(s) failed (see the table)");
            std::process::exit(1);
        }
        Err(e) => {
            let msg = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rows.

type GpuFn = Box<dyn FnMut(&Context) -> metalcore::Result<()>>;
type CpuFn = Box<dyn FnMut()>;
type CheckFn = Box<dyn FnOnce(&Context) -> metalcore::Result<Checked>>;

/// A correctness measure of a row's GPU result, with the tolerance it must meet.
struct Checked {
    what: &'static str,
    value: f64,
    tol: f64,
}

/// What a row runs, built only once the row is selected (inputs are made and uploaded here).
struct Prepared {
    /// `None`: the operation is not in this build (the row shows only the CPU).
    gpu: Option<GpuFn>,
    cpu: CpuFn,
    check: Option<CheckFn>,
}

type PrepareFn = Box<dyn FnOnce(&Context) -> metalcore::Result<Prepared>>;

struct Case {
    op: &'static str,
    shape: String,
    /// Floating-point operations of one call, for the GFLOP/s column.
    flops: f64,
    prepare: PrepareFn,
}

impl Case {
    fn label(&self) -> String {
        format!("{} {}", self.op, self.shape)
    }
}

/// The rows' sizes: quick (CI), the issues' (default), and the issues' plus issue 8's (large).
fn cases(o: &Options) -> Vec<Case> {
    let mut v = Vec::new();
    if o.quick {
        v.extend([qr_case(64, 64), qr_case(96, 40)]);
        v.extend([geqrf_case(64, 64), geqrf_case(96, 40)]);
        v.extend([matmul_case(64), gemm_case(64)]);
        v.extend([trsm_case(64, 1, false), trsm_case(64, 64, false)]);
        v.extend(batched_kernels().map(|k| qr_batched_case(100, 8, 8, k, QrMode::Reduced)));
        v.push(lstsq_case(128, 16, 1));
        v.push(lstsq_batched_case(100, 16, 4, 1));
        return v;
    }
    let mut qr = vec![(256, 256), (1024, 1024), (2048, 2048), (8192, 256)];
    let mut mm = vec![1024, 4096];
    if o.large {
        qr.extend([(4096, 4096), (8192, 8192), (65536, 256)]);
        mm.push(8192);
    }
    v.extend(qr.iter().map(|&(m, n)| qr_case(m, n)));
    v.extend(qr.iter().map(|&(m, n)| geqrf_case(m, n)));
    v.extend(mm.iter().map(|&n| matmul_case(n)));
    v.extend(mm.iter().map(|&n| gemm_case(n)));
    for (n, k) in [(1024, 1), (1024, 1024), (4096, 1), (4096, 4096)] {
        v.push(trsm_case(n, k, false));
    }
    v.push(trsm_case(4096, 4096, true));
    for (b, m, n) in [
        (500, 8, 8),
        (1000, 16, 16),
        (500, 32, 32),
        (10000, 16, 16),
        (10000, 32, 32),
        (100000, 16, 16),
        (1000, 64, 64),
        (10000, 256, 32),
    ] {
        v.extend(batched_kernels().map(|k| qr_batched_case(b, m, n, k, QrMode::Reduced)));
    }
    // R only (geqrfBatched's R, without its reflectors), the default kernel.
    for (b, m, n) in [(10000, 16, 16), (10000, 32, 32), (1000, 64, 64)] {
        v.push(qr_batched_case(
            b,
            m,
            n,
            metalcore::SmallKernel::Auto,
            QrMode::R,
        ));
    }
    v.push(lstsq_case(4096, 256, 1));
    v.push(lstsq_batched_case(10000, 32, 8, 1));
    v.push(apply_qt_case(4096, 256, 4096));
    v
}

// ---------------------------------------------------------------------------------------------
// Inputs, references, checks.

/// SplitMix64 → uniform in [-1, 1): fixed, reproducible inputs.
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A column-major slice as a faer matrix of another element type.
fn faer_mat<T: faer::traits::ComplexField + Copy>(
    data: &[f32],
    m: usize,
    n: usize,
    cast: impl Fn(f32) -> T,
) -> Mat<T> {
    Mat::from_fn(m, n, |i, j| cast(data[i + j * m]))
}

/// float32 tolerance for a result whose inner dimension is up to `dim`.
fn tolerance(dim: usize) -> f64 {
    16.0 * dim.max(8) as f64 * f32::EPSILON as f64
}

/// ‖Q R − A‖_F / ‖A‖_F in f64 for column-major A (m×n), Q (m×k), R (k×n).
fn qr_residual(a: &[f32], m: usize, n: usize, q: &[f32], r: &[f32]) -> f64 {
    let k = m.min(n);
    let q = faer_mat(q, m, k, f64::from);
    let r = faer_mat(r, k, n, f64::from);
    let mut qr = Mat::<f64>::zeros(m, n);
    matmul(
        qr.as_mut(),
        Accum::Replace,
        q.as_ref(),
        r.as_ref(),
        1.0,
        Par::rayon(0),
    );
    relative_diff(&qr, a)
}

/// ‖X − Y‖_F / ‖Y‖_F for an f64 matrix X and a column-major f32 Y of the same shape.
fn relative_diff(x: &Mat<f64>, y: &[f32]) -> f64 {
    let m = x.nrows();
    let (mut num, mut den) = (0.0, 0.0);
    for j in 0..x.ncols() {
        for i in 0..m {
            let yv = y[i + j * m] as f64;
            num += (x[(i, j)] - yv).powi(2);
            den += yv * yv;
        }
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

fn qr_flops(m: usize, n: usize) -> f64 {
    let (m, n) = (m as f64, n.min(m) as f64);
    2.0 * m * n * n - 2.0 * n * n * n / 3.0
}

/// Runs `f(i, matrix i)` on every column-major m×n matrix of `data`, on all cores (one faer
/// call per matrix, each single-threaded).
fn for_each_matrix(data: &[f32], m: usize, n: usize, f: &(dyn Fn(usize, MatRef<'_, f32>) + Sync)) {
    let per = m * n;
    let batch = data.len() / per;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunk = batch.div_ceil(threads).max(1);
    faer::set_global_parallelism(Par::Seq);
    std::thread::scope(|s| {
        for (c, part) in data.chunks(chunk * per).enumerate() {
            s.spawn(move || {
                for (i, mat) in part.chunks(per).enumerate() {
                    f(c * chunk + i, MatRef::from_column_major_slice(mat, m, n));
                }
            });
        }
    });
    faer::set_global_parallelism(Par::rayon(0));
}

// ---------------------------------------------------------------------------------------------
// The operations.

fn qr_case(m: usize, n: usize) -> Case {
    Case {
        op: "qr reduced (Q, R)",
        shape: format!("{m}×{n}"),
        flops: 2.0 * qr_flops(m, n),
        prepare: Box::new(move |ctx| {
            let a = random(m * n, 1);
            let ga = Rc::new(GpuMatrix::from_col_major(ctx, m, n, &a)?);
            let fa = faer_mat(&a, m, n, |x| x);
            let g = ga.clone();
            Ok(Prepared {
                gpu: Some(Box::new(move |ctx| {
                    metalcore::qr_with(ctx, &g, QrMode::Reduced, &qr_options()).map(drop)
                })),
                cpu: Box::new(move || {
                    let f = fa.as_ref().qr();
                    black_box((f.compute_thin_Q(), f.thin_R().to_owned()));
                }),
                check: Some(Box::new(move |ctx| {
                    let res = metalcore::qr_with(ctx, &ga, QrMode::Reduced, &qr_options())?;
                    let q = res.q.as_ref().map(|q| q.to_col_major(ctx)).transpose()?;
                    let r = res.r.to_col_major(ctx)?;
                    Ok(Checked {
                        what: "‖QR−A‖/‖A‖",
                        value: qr_residual(&a, m, n, &q.unwrap_or_default(), &r),
                        tol: tolerance(m.max(n)),
                    })
                })),
            })
        }),
    }
}

fn geqrf_case(m: usize, n: usize) -> Case {
    Case {
        op: "geqrf (R, reflectors)",
        shape: format!("{m}×{n}"),
        flops: qr_flops(m, n),
        prepare: Box::new(move |ctx| {
            let a = random(m * n, 2);
            let ga = Rc::new(GpuMatrix::from_col_major(ctx, m, n, &a)?);
            let fa = faer_mat(&a, m, n, |x| x);
            let g = ga.clone();
            Ok(Prepared {
                gpu: Some(Box::new(move |ctx| {
                    metalcore::geqrf(ctx, &g, &qr_options()).map(drop)
                })),
                cpu: Box::new(move || {
                    black_box(fa.as_ref().qr());
                }),
                check: Some(Box::new(move |ctx| {
                    let f = metalcore::geqrf(ctx, &ga, &qr_options())?;
                    let q = f.q(ctx, false)?.to_col_major(ctx)?;
                    let r = f.r(ctx, false)?.to_col_major(ctx)?;
                    Ok(Checked {
                        what: "‖QR−A‖/‖A‖",
                        value: qr_residual(&a, m, n, &q, &r),
                        tol: tolerance(m.max(n)),
                    })
                })),
            })
        }),
    }
}

/// C ← QᵀC with Q from a factored m×n A (`QrFactors::apply_qt`, LAPACK sormqr), C m×k; faer
/// applies its own blocked reflectors to C on the CPU. Checked by the round trip Q(QᵀC) = C.
fn apply_qt_case(m: usize, n: usize, k: usize) -> Case {
    Case {
        op: "apply_qt QᵀC",
        shape: format!("{m}×{n}, k = {k}"),
        flops: 2.0 * (k * n) as f64 * (2 * m - n) as f64,
        prepare: Box::new(move |ctx| {
            let (a, c) = (random(m * n, 13), random(m * k, 14));
            let f = Rc::new(metalcore::geqrf(
                ctx,
                &GpuMatrix::from_col_major(ctx, m, n, &a)?,
                &qr_options(),
            )?);
            let mut gc = GpuMatrix::from_col_major(ctx, m, k, &c)?;
            let fqr = faer_mat(&a, m, n, |x| x).qr();
            let mut fc = faer_mat(&c, m, k, |x| x);
            let f1 = f.clone();
            Ok(Prepared {
                gpu: Some(Box::new(move |ctx| f1.apply_qt(ctx, &mut gc))),
                cpu: Box::new(move || {
                    use faer::dyn_stack::{MemBuffer, MemStack};
                    use faer::linalg::householder as hh;
                    let (basis, coeff) = (fqr.Q_basis(), fqr.Q_coeff());
                    let scratch =
                        hh::apply_block_householder_sequence_transpose_on_the_left_in_place_scratch::<
                            f32,
                        >(m, coeff.nrows(), k);
                    hh::apply_block_householder_sequence_transpose_on_the_left_in_place_with_conj(
                        basis,
                        coeff,
                        faer::Conj::No,
                        fc.as_mut(),
                        Par::rayon(0),
                        MemStack::new(&mut MemBuffer::new(scratch)),
                    );
                    black_box(&fc);
                }),
                check: Some(Box::new(move |ctx| {
                    let mut gc = GpuMatrix::from_col_major(ctx, m, k, &c)?;
                    f.apply_qt(ctx, &mut gc)?;
                    f.apply_q(ctx, &mut gc)?;
                    Ok(Checked {
                        what: "‖Q(QᵀC)−C‖/‖C‖",
                        value: relative_diff(
                            &faer_mat(&c, m, k, f64::from),
                            &gc.to_col_major(ctx)?,
                        ),
                        tol: tolerance(m),
                    })
                })),
            })
        }),
    }
}

fn matmul_case(n: usize) -> Case {
    Case {
        op: "matmul A·B",
        shape: format!("{n}×{n}"),
        flops: 2.0 * (n as f64).powi(3),
        prepare: Box::new(move |ctx| {
            let (a, b) = (random(n * n, 3), random(n * n, 4));
            let ga = Rc::new(GpuMatrix::from_col_major(ctx, n, n, &a)?);
            let gb = Rc::new(GpuMatrix::from_col_major(ctx, n, n, &b)?);
            let (fa, fb) = (faer_mat(&a, n, n, |x| x), faer_mat(&b, n, n, |x| x));
            let mut fc = Mat::<f32>::zeros(n, n);
            let (g1, g2) = (ga.clone(), gb.clone());
            Ok(Prepared {
                gpu: Some(Box::new(move |ctx| {
                    metalcore::matmul(ctx, &g1, false, &g2, false).map(drop)
                })),
                cpu: Box::new(move || {
                    matmul(
                        fc.as_mut(),
                        Accum::Replace,
                        fa.as_ref(),
                        fb.as_ref(),
                        1.0,
                        Par::rayon(0),
                    );
                    black_box(&fc);
                }),
                check: Some(Box::new(move |ctx| {
                    let c = metalcore::matmul(ctx, &ga, false, &gb, false)?.to_col_major(ctx)?;
                    let (fa, fb) = (faer_mat(&a, n, n, f64::from), faer_mat(&b, n, n, f64::from));
                    let mut want = Mat::<f64>::zeros(n, n);
                    matmul(
                        want.as_mut(),
                        Accum::Replace,
                        fa.as_ref(),
                        fb.as_ref(),
                        1.0,
                        Par::rayon(0),
                    );
                    Ok(Checked {
                        what: "‖C−AB‖/‖C‖",
                        value: relative_diff(&want, &c),
                        tol: tolerance(n),
                    })
                })),
            })
        }),
    }
}

fn gemm_case(n: usize) -> Case {
    Case {
        op: "gemm C += A·Bᵀ",
        shape: format!("{n}×{n}"),
        flops: 2.0 * (n as f64).powi(3),
        prepare: Box::new(move |ctx| {
            let (a, b, c) = (random(n * n, 5), random(n * n, 6), random(n * n, 7));
            let ga = Rc::new(GpuMatrix::from_col_major(ctx, n, n, &a)?);
            let gb = Rc::new(GpuMatrix::from_col_major(ctx, n, n, &b)?);
            let mut gc = GpuMatrix::from_col_major(ctx, n, n, &c)?;
            let (fa, fb) = (faer_mat(&a, n, n, |x| x), faer_mat(&b, n, n, |x| x));
            let mut fc = faer_mat(&c, n, n, |x| x);
            let (g1, g2) = (ga.clone(), gb.clone());
            Ok(Prepared {
                gpu: Some(Box::new(move |ctx| {
                    metalcore::gemm(ctx, 1.0, &g1, false, &g2, true, 1.0, &mut gc)
                })),
                cpu: Box::new(move || {
                    matmul(
                        fc.as_mut(),
                        Accum::Add,
                        fa.as_ref(),
                        fb.as_ref().transpose(),
                        1.0,
                        Par::rayon(0),
                    );
                    black_box(&fc);
                }),
                check: Some(Box::new(move |ctx| {
                    let mut gc = GpuMatrix::from_col_major(ctx, n, n, &c)?;
                    metalcore::gemm(ctx, 1.0, &ga, false, &gb, true, 1.0, &mut gc)?;
                    let got = gc.to_col_major(ctx)?;
                    let (fa, fb) = (faer_mat(&a, n, n, f64::from), faer_mat(&b, n, n, f64::from));
                    let mut want = faer_mat(&c, n, n, f64::from);
                    matmul(
                        want.as_mut(),
                        Accum::Add,
                        fa.as_ref(),
                        fb.as_ref().transpose(),
                        1.0,
                        Par::rayon(0),
                    );
                    Ok(Checked {
                        what: "‖C−(C₀+ABᵀ)‖/‖C‖",
                        value: relative_diff(&want, &got),
                        tol: tolerance(n),
                    })
                })),
            })
        }),
    }
}

/// A well-conditioned lower-triangular n×n matrix (column-major): random below the diagonal,
/// n + 1 on it.
fn lower_triangular(n: usize, seed: u64) -> Vec<f32> {
    let mut l = random(n * n, seed);
    for j in 0..n {
        for i in 0..n {
            if i < j {
                l[i + j * n] = 0.0;
            } else if i == j {
                l[i + j * n] = n as f32 + 1.0;
            }
        }
    }
    l
}

/// `trsm` (allocates X per call), or with `in_place` `trsm_in_place` into one preallocated B
/// (each run solves the previous run's X: the timing is the same whatever the values; the
/// check runs `trsm` on the original B either way).
fn trsm_case(n: usize, k: usize, in_place: bool) -> Case {
    Case {
        op: if in_place {
            "trsm_in_place lower L·X = B"
        } else {
            "trsm lower L·X = B"
        },
        shape: format!("{n}×{n}, k = {k}"),
        flops: (n as f64).powi(2) * k as f64,
        prepare: Box::new(move |ctx| {
            let l = lower_triangular(n, 8);
            let b = random(n * k, 9);
            let fl = faer_mat(&l, n, n, |x| x);
            let fb = faer_mat(&b, n, k, |x| x);
            let mut fx = fb.clone();
            let gl = Rc::new(GpuMatrix::from_col_major(ctx, n, n, &l)?);
            let gb = Rc::new(GpuMatrix::from_col_major(ctx, n, k, &b)?);
            let opts = TrsmOptions {
                side: Side::Left,
                uplo: Uplo::Lower,
                trans: false,
                unit_diagonal: false,
            };
            let (g1, g2) = (gl.clone(), gb.clone());
            let gpu: GpuFn = if in_place {
                let mut x = GpuMatrix::from_col_major(ctx, n, k, &b)?;
                Box::new(move |ctx| metalcore::trsm_in_place(ctx, &g1, &mut x, &opts))
            } else {
                Box::new(move |ctx| metalcore::trsm(ctx, &g1, &g2, &opts).map(drop))
            };
            Ok(Prepared {
                gpu: Some(gpu),
                cpu: Box::new(move || {
                    fx.copy_from(&fb);
                    faer::linalg::triangular_solve::solve_lower_triangular_in_place(
                        fl.as_ref(),
                        fx.as_mut(),
                        Par::rayon(0),
                    );
                    black_box(&fx);
                }),
                check: Some(Box::new(move |ctx| {
                    let x = metalcore::trsm(ctx, &gl, &gb, &opts)?.to_col_major(ctx)?;
                    Ok(Checked {
                        what: "‖LX−B‖/(‖L‖‖X‖+‖B‖)",
                        value: trsm_backward_error(&l, &b, &x, n, k),
                        tol: tolerance(n),
                    })
                })),
            })
        }),
    }
}

/// ‖L X − B‖_F / (‖L‖_F ‖X‖_F + ‖B‖_F) in f64, all column-major (L n×n, X and B n×k).
fn trsm_backward_error(l: &[f32], b: &[f32], x: &[f32], n: usize, k: usize) -> f64 {
    let fl = faer_mat(l, n, n, f64::from);
    let fx = faer_mat(x, n, k, f64::from);
    let mut lx = Mat::<f64>::zeros(n, k);
    matmul(
        lx.as_mut(),
        Accum::Replace,
        fl.as_ref(),
        fx.as_ref(),
        1.0,
        Par::rayon(0),
    );
    let fb = faer_mat(b, n, k, f64::from);
    (&lx - &fb).norm_l2() / (fl.norm_l2() * fx.norm_l2() + fb.norm_l2())
}

/// The batched QR kernels to time: the default choice (`qr_columns` or `qr_tall` where they fit)
/// and the original workgroup-memory kernel (`SmallKernel::Shared`, rows `qr-batched-shared`);
/// `METALCORE_BATCHED_KERNEL=new|old|tall|all` keeps the default, the original, the tall kernel
/// (`SmallKernel::Tall`, rows `qr-batched-tall`, for comparison where the default is another),
/// or all three.
fn batched_kernels() -> impl Iterator<Item = metalcore::SmallKernel> {
    use metalcore::SmallKernel;
    let all = [SmallKernel::Auto, SmallKernel::Shared, SmallKernel::Tall];
    let keep = std::env::var("METALCORE_BATCHED_KERNEL").unwrap_or_default();
    all.into_iter().filter(move |k| match keep.as_str() {
        "new" => *k == SmallKernel::Auto,
        "old" => *k == SmallKernel::Shared,
        "tall" => *k == SmallKernel::Tall,
        "all" => true,
        _ => *k != SmallKernel::Tall,
    })
}

/// ‖RᵀR − AᵀA‖_F / ‖A‖_F² in f64 for column-major A (m×n) and R (k×n): zero for the R of any
/// QR of A, whatever the signs of its rows (the check of a QR that returns no Q). For a
/// backward-stable QR, A + E = QR, it is about 2‖E‖/‖A‖, so it takes the tolerance of
/// ‖QR − A‖/‖A‖.
fn gram_residual(a: &[f32], m: usize, n: usize, r: &[f32], k: usize) -> f64 {
    let norm: f64 = a.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
    let dot = |x: &[f32], y: &[f32]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum()
    };
    let mut diff = 0.0;
    for p in 0..n {
        for q in 0..n {
            let ata = dot(&a[p * m..(p + 1) * m], &a[q * m..(q + 1) * m]);
            let rtr = dot(&r[p * k..(p + 1) * k], &r[q * k..(q + 1) * k]);
            diff += (ata - rtr) * (ata - rtr);
        }
    }
    diff.sqrt() / norm
}

/// A batched QR row: mode Reduced (rows `qr-batched…`, checked by ‖QR − A‖/‖A‖) or mode R
/// (rows `qr-batched r (R only)`, what geqrfBatched computes less the reflectors, checked by
/// [`gram_residual`]).
fn qr_batched_case(
    batch: usize,
    m: usize,
    n: usize,
    kernel: metalcore::SmallKernel,
    mode: QrMode,
) -> Case {
    let options = metalcore::BatchedOptions {
        kernel,
        ..Default::default()
    };
    let with_q = mode != QrMode::R;
    Case {
        op: match kernel {
            _ if !with_q => "qr-batched r (R only)",
            metalcore::SmallKernel::Shared => "qr-batched-shared reduced (Q, R)",
            metalcore::SmallKernel::Tall => "qr-batched-tall reduced (Q, R)",
            _ => "qr-batched reduced (Q, R)",
        },
        shape: format!("{batch}×{m}×{n}"),
        flops: batch as f64 * if with_q { 2.0 } else { 1.0 } * qr_flops(m, n),
        prepare: Box::new(move |ctx| {
            let a = random(batch * m * n, 10);
            let ga = Rc::new(GpuBatch::from_col_major(ctx, batch, m, n, &a)?);
            let g = ga.clone();
            let k = m.min(n);
            let a2 = a.clone();
            Ok(Prepared {
                gpu: Some(Box::new(move |ctx| {
                    metalcore::qr_batched_with(ctx, &g, mode, &options).map(drop)
                })),
                cpu: Box::new(move || {
                    for_each_matrix(&a, m, n, &|_, mat| {
                        let f = mat.qr();
                        if with_q {
                            black_box((f.compute_thin_Q(), f.thin_R().to_owned()));
                        } else {
                            black_box(f.thin_R().to_owned());
                        }
                    });
                }),
                check: Some(Box::new(move |ctx| {
                    let res = metalcore::qr_batched_with(ctx, &ga, mode, &options)?;
                    let q = res.q.as_ref().map(|q| q.to_col_major(ctx)).transpose()?;
                    let q = q.unwrap_or_default();
                    let r = res.r.to_col_major(ctx)?;
                    let worst = (0..batch)
                        .map(|i| {
                            let a = &a2[i * m * n..(i + 1) * m * n];
                            let r = &r[i * k * n..(i + 1) * k * n];
                            if with_q {
                                qr_residual(a, m, n, &q[i * m * k..(i + 1) * m * k], r)
                            } else {
                                gram_residual(a, m, n, r, k)
                            }
                        })
                        .fold(0.0, f64::max);
                    Ok(Checked {
                        what: if with_q {
                            "max ‖QR−A‖/‖A‖"
                        } else {
                            "max ‖RᵀR−AᵀA‖/‖A‖²"
                        },
                        value: worst,
                        tol: tolerance(m.max(n)),
                    })
                })),
            })
        }),
    }
}

fn lstsq_flops(m: usize, n: usize, k: usize) -> f64 {
    let (mf, nf, kf) = (m as f64, n as f64, k as f64);
    qr_flops(m, n) + 4.0 * mf * nf * kf + nf * nf * kf
}

fn lstsq_case(m: usize, n: usize, k: usize) -> Case {
    Case {
        op: "lstsq",
        shape: format!("{m}×{n}, k = {k}"),
        flops: lstsq_flops(m, n, k),
        prepare: Box::new(move |ctx| {
            let a = random(m * n, 11);
            let b = random(m * k, 12);
            let (fa, fb) = (faer_mat(&a, m, n, |x| x), faer_mat(&b, m, k, |x| x));
            let ga = Rc::new(GpuMatrix::from_col_major(ctx, m, n, &a)?);
            let gb = Rc::new(GpuMatrix::from_col_major(ctx, m, k, &b)?);
            let (g1, g2) = (ga.clone(), gb.clone());
            Ok(Prepared {
                gpu: Some(Box::new(move |ctx| {
                    metalcore::lstsq(ctx, &g1, &g2).map(drop)
                })),
                cpu: Box::new(move || {
                    black_box(fa.as_ref().qr().solve_lstsq(fb.as_ref()));
                }),
                check: Some(Box::new(move |ctx| {
                    let x = metalcore::lstsq(ctx, &ga, &gb)?.to_col_major(ctx)?;
                    Ok(Checked {
                        what: "‖Aᵀ(AX−B)‖/(‖A‖(‖A‖‖X‖+‖B‖))",
                        value: lstsq_normal_residual(&a, &b, &x, m, n, k),
                        tol: tolerance(m),
                    })
                })),
            })
        }),
    }
}

/// ‖Aᵀ(AX − B)‖_F / (‖A‖_F (‖A‖_F ‖X‖_F + ‖B‖_F)) in f64, all column-major.
fn lstsq_normal_residual(a: &[f32], b: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> f64 {
    let fa = faer_mat(a, m, n, f64::from);
    let fx = faer_mat(x, n, k, f64::from);
    let fb = faer_mat(b, m, k, f64::from);
    let r = &fa * &fx - &fb;
    let atr = fa.transpose() * &r;
    atr.norm_l2() / (fa.norm_l2() * (fa.norm_l2() * fx.norm_l2() + fb.norm_l2()))
}

fn lstsq_batched_case(batch: usize, m: usize, n: usize, k: usize) -> Case {
    Case {
        op: "lstsq-batched",
        shape: format!("{batch}×{m}×{n}, k = {k}"),
        flops: batch as f64 * lstsq_flops(m, n, k),
        prepare: Box::new(move |ctx| {
            let a = random(batch * m * n, 13);
            let b = random(batch * m * k, 14);
            let ga = Rc::new(GpuBatch::from_col_major(ctx, batch, m, n, &a)?);
            let gb = Rc::new(GpuBatch::from_col_major(ctx, batch, m, k, &b)?);
            let (g1, g2) = (ga.clone(), gb.clone());
            let (a2, b2) = (a.clone(), b.clone());
            Ok(Prepared {
                gpu: Some(Box::new(move |ctx| {
                    metalcore::lstsq_batched(ctx, &g1, &g2).map(drop)
                })),
                cpu: Box::new(move || {
                    for_each_matrix(&a, m, n, &|i, mat| {
                        let rhs =
                            MatRef::from_column_major_slice(&b[i * m * k..(i + 1) * m * k], m, k);
                        black_box(mat.qr().solve_lstsq(rhs));
                    });
                }),
                check: Some(Box::new(move |ctx| {
                    let x = metalcore::lstsq_batched(ctx, &ga, &gb)?.to_col_major(ctx)?;
                    let worst = (0..batch)
                        .map(|i| {
                            lstsq_normal_residual(
                                &a2[i * m * n..(i + 1) * m * n],
                                &b2[i * m * k..(i + 1) * m * k],
                                &x[i * n * k..(i + 1) * n * k],
                                m,
                                n,
                                k,
                            )
                        })
                        .fold(0.0, f64::max);
                    Ok(Checked {
                        what: "max ‖Aᵀ(AX−B)‖/(‖A‖(‖A‖‖X‖+‖B‖))",
                        value: worst,
                        tol: tolerance(m),
                    })
                })),
            })
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Timing and the table.

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median wall time (call + synchronize), median time until the call returns (the host's
/// recording and submission), and, where the adapter has timestamp queries, median GPU time of
/// the call's (last) submission.
fn time_gpu(
    ctx: &Context,
    f: &mut GpuFn,
    o: &Options,
) -> metalcore::Result<(Duration, Duration, Option<Duration>)> {
    // Warm-up: the given number of runs, and then more until WARM_FOR has passed (at most
    // WARM_MAX_RUNS). A GPU left idle (say, during the CPU check of the previous row) drops its
    // clock — an H100 to 375 MHz — and a few short runs do not bring it back: a trsm timed
    // right after a long CPU check came out at 12.4 ms of GPU time instead of 4.7.
    const WARM_FOR: Duration = Duration::from_millis(300);
    const WARM_MAX_RUNS: usize = 200;
    let start = Instant::now();
    let mut i = 0;
    while i < o.warmup || (i < WARM_MAX_RUNS && start.elapsed() < WARM_FOR) {
        f(ctx)?;
        ctx.synchronize()?;
        ctx.last_gpu_time()?;
        i += 1;
    }
    let mut times = Vec::with_capacity(o.runs);
    let mut calls = Vec::with_capacity(o.runs);
    let mut spans = Vec::with_capacity(o.runs);
    for _ in 0..o.runs {
        let t = Instant::now();
        f(ctx)?;
        calls.push(t.elapsed());
        ctx.synchronize()?;
        times.push(t.elapsed());
        spans.extend(ctx.last_gpu_time()?);
    }
    let span = (spans.len() == times.len()).then(|| median(spans));
    Ok((median(times), median(calls), span))
}

fn time_cpu(f: &mut CpuFn, o: &Options) -> Duration {
    let mut times = Vec::with_capacity(o.runs);
    for i in 0..o.warmup + o.runs {
        let t = Instant::now();
        f();
        if i >= o.warmup {
            times.push(t.elapsed());
        }
    }
    median(times)
}

fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.3}")
    } else if ms < 1000.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// Three significant digits, at least one decimal: 0.0123, 1.5, 42.1, 31250.
fn fmt_rate(x: f64) -> String {
    if x < 1.0 {
        format!("{x:.3}")
    } else if x < 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// Runs the selected rows; returns how many failed (an error or a check beyond tolerance).
fn run(o: &Options, selected: Vec<Case>) -> metalcore::Result<usize> {
    if o.list {
        for c in &selected {
            println!("{}", c.label());
        }
        return Ok(0);
    }
    let ctx = metalcore::Context::with_options(metalcore::ContextOptions {
        disable_subgroups: o.no_subgroups,
        disable_cooperative_matrix: o.no_coop,
        gpu_timing: true,
        ..Default::default()
    })?;
    let info = ctx.adapter_info();
    println!("# metalcore benchmark\n");
    println!("- adapter: {}", ctx.describe());
    if info.device_type == wgpu::DeviceType::Cpu {
        println!(
            "- **software adapter**: these numbers check that the benchmark runs; they are not \
             performance numbers"
        );
    }
    println!(
        "- CPU reference: faer 0.24, f32, {} threads ({})",
        std::thread::available_parallelism().map_or(1, |t| t.get()),
        cpu_model()
    );
    println!(
        "- GPU ms: wall time of the call plus `Context::synchronize()`, inputs already on the \
         GPU, nothing read back; span ms: GPU timestamps from the first to the end of the last \
         command of the call's submission (`ContextOptions::gpu_timing`; device time, as CUDA \
         events measure it){}",
        if ctx.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            ""
        } else {
            " — not on this adapter (no timestamp queries)"
        }
    );
    println!(
        "- medians of {} runs after at least {} warm-up run(s) and 0.3 s of them (GPU rows); \
         speedup = faer time / GPU time; check = the GPU result against an f64 CPU computation\n",
        o.runs, o.warmup
    );
    println!("| operation | shape | GPU ms | span ms | GPU GFLOP/s | faer ms | speedup | check |");
    println!("|---|---|--:|--:|--:|--:|--:|---|");
    let mut failed = 0;
    for case in selected {
        let label = (case.op, case.shape.clone());
        let gpu_ms;
        let mut span_ms = String::from("—");
        let mut gflops = String::from("—");
        let mut cpu_ms = String::from("—");
        let mut speedup = String::from("—");
        let mut check = String::from("—");
        let mut gpu_time = None;
        match (case.prepare)(&ctx) {
            Err(e) => {
                failed += 1;
                gpu_ms = format!("error: {}", one_line(&e.to_string()));
            }
            Ok(mut p) => {
                if let (true, Some(c)) = (o.check && p.gpu.is_some(), p.check.take()) {
                    match c(&ctx) {
                        Ok(c) => {
                            let ok = c.value <= c.tol;
                            if !ok {
                                failed += 1;
                            }
                            check = format!(
                                "{} {:.1e}{}",
                                c.what,
                                c.value,
                                if ok { "" } else { " **FAIL**" }
                            );
                        }
                        Err(e) => {
                            failed += 1;
                            check = format!("error: {}", one_line(&e.to_string()));
                        }
                    }
                }
                match p.gpu.as_mut() {
                    None => gpu_ms = "not in this build".into(),
                    Some(f) => match time_gpu(&ctx, f, o) {
                        Ok((t, call, span)) => {
                            if o.host {
                                eprintln!(
                                    "host: {} {}: the call returned after {} ms",
                                    label.0,
                                    label.1,
                                    fmt_ms(call)
                                );
                            }
                            gpu_ms = fmt_ms(t);
                            if let Some(s) = span {
                                span_ms = fmt_ms(s);
                            }
                            gflops = fmt_rate(case.flops / t.as_secs_f64() / 1e9);
                            gpu_time = Some(t);
                        }
                        Err(e) => {
                            failed += 1;
                            gpu_ms = format!("error: {}", one_line(&e.to_string()));
                        }
                    },
                }
                if o.cpu {
                    let t = time_cpu(&mut p.cpu, o);
                    cpu_ms = fmt_ms(t);
                    if let Some(g) = gpu_time {
                        speedup = format!("{:.2}×", t.as_secs_f64() / g.as_secs_f64());
                    }
                }
            }
        }
        println!(
            "| {} | {} | {gpu_ms} | {span_ms} | {gflops} | {cpu_ms} | {speedup} | {check} |",
            label.0, label.1
        );
    }
    Ok(failed)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
