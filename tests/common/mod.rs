//! Shared test machinery: one context per test binary, a seeded random source, f64 references.
#![allow(dead_code)]

pub mod small_qr;

use std::sync::OnceLock;

use metalcore::Context;

/// float32 machine epsilon (2⁻²³).
pub const EPS: f64 = f32::EPSILON as f64;

/// The context every test in this binary shares; the adapter is printed once.
pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        let ctx = Context::new().expect("a GPU or software adapter (see README)");
        // Straight to stderr, past the test harness's capture, so the log names the adapter.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "metalcore tests on: {}", ctx.describe());
        ctx
    })
}

/// A context that runs only the portable kernels (`disable_subgroups`), shared by the tests of
/// one binary: on adapters with subgroups it is the only way those kernels run.
pub fn portable_ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        let ctx = with_options(metalcore::ContextOptions {
            disable_subgroups: true,
            ..Default::default()
        });
        assert!(!ctx.features().contains(wgpu::Features::SUBGROUP));
        ctx
    })
}

/// A context with `options` (panics without an adapter, as every test needs one).
fn with_options(options: metalcore::ContextOptions) -> Context {
    Context::with_options(options).expect("a GPU or software adapter (see README)")
}

/// A context whose large GEMMs stay on the f32 kernel (`disable_cooperative_matrix`), shared by
/// the tests of one binary: where [`ctx`] runs them on cooperative matrices (tensor cores), the
/// only way `gemm_large` runs. Elsewhere the same kernels as [`ctx`].
pub fn f32_gemm_ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        let ctx = with_options(metalcore::ContextOptions {
            disable_cooperative_matrix: true,
            ..Default::default()
        });
        assert!(!ctx.coop_gemm());
        ctx
    })
}

/// SplitMix64: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    /// `len` standard normal values as f32.
    pub fn normal_vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.normal() as f32).collect()
    }
}

/// Column-major f64 matrix for references.
#[derive(Clone, Debug)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
    pub fn from_f32(rows: usize, cols: usize, data: &[f32]) -> Self {
        assert_eq!(data.len(), rows * cols);
        Self {
            rows,
            cols,
            data: data.iter().map(|&x| x as f64).collect(),
        }
    }
    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m[(i, i)] = 1.0;
        }
        m
    }
    pub fn t(&self) -> Self {
        let mut m = Self::zeros(self.cols, self.rows);
        for j in 0..self.cols {
            for i in 0..self.rows {
                m[(j, i)] = self[(i, j)];
            }
        }
        m
    }
    pub fn matmul(&self, b: &Mat) -> Mat {
        assert_eq!(self.cols, b.rows, "reference matmul shapes");
        let mut c = Mat::zeros(self.rows, b.cols);
        for j in 0..b.cols {
            for k in 0..self.cols {
                let bkj = b[(k, j)];
                if bkj == 0.0 {
                    continue;
                }
                for i in 0..self.rows {
                    c.data[i + j * self.rows] += self.data[i + k * self.rows] * bkj;
                }
            }
        }
        c
    }
    pub fn sub(&self, b: &Mat) -> Mat {
        assert_eq!((self.rows, self.cols), (b.rows, b.cols));
        Mat {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().zip(&b.data).map(|(x, y)| x - y).collect(),
        }
    }
    pub fn fro(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum::<f64>().sqrt()
    }
    pub fn max_abs(&self) -> f64 {
        self.data.iter().fold(
            0.0,
            |m, x| if x.is_nan() { f64::NAN } else { m.max(x.abs()) },
        )
    }
    /// Columns `c0..c1`.
    pub fn cols_range(&self, c0: usize, c1: usize) -> Mat {
        Mat {
            rows: self.rows,
            cols: c1 - c0,
            data: self.data[c0 * self.rows..c1 * self.rows].to_vec(),
        }
    }
    /// Rows `r0..r1`.
    pub fn rows_range(&self, r0: usize, r1: usize) -> Mat {
        let mut m = Mat::zeros(r1 - r0, self.cols);
        for j in 0..self.cols {
            for i in r0..r1 {
                m[(i - r0, j)] = self[(i, j)];
            }
        }
        m
    }
}

impl std::ops::Index<(usize, usize)> for Mat {
    type Output = f64;
    fn index(&self, (i, j): (usize, usize)) -> &f64 {
        &self.data[i + j * self.rows]
    }
}

impl std::ops::IndexMut<(usize, usize)> for Mat {
    fn index_mut(&mut self, (i, j): (usize, usize)) -> &mut f64 {
        &mut self.data[i + j * self.rows]
    }
}

/// Asserts `|got - want| <= tol * scale` elementwise, naming the first bad index with both values.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64, scale: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            (g - w).abs() <= tol * scale
        };
        assert!(
            ok,
            "{what}: element {i}: got {g:e}, want {w:e} (tolerance {:e})",
            tol * scale
        );
    }
}

/// Unblocked Householder QR in f64 with LAPACK's conventions (dgeqr2): returns (R_V, tau).
pub fn geqr2_f64(a: &Mat) -> (Mat, Vec<f64>) {
    let (m, n) = (a.rows, a.cols);
    let k = m.min(n);
    let mut rv = a.clone();
    let mut tau = vec![0.0; k];
    for c in 0..k {
        let alpha = rv[(c, c)];
        let xnorm = (c + 1..m).map(|i| rv[(i, c)].powi(2)).sum::<f64>().sqrt();
        if xnorm == 0.0 {
            continue;
        }
        let h = alpha.hypot(xnorm);
        let beta = if alpha >= 0.0 { -h } else { h };
        tau[c] = (beta - alpha) / beta;
        for i in c + 1..m {
            rv[(i, c)] /= alpha - beta;
        }
        rv[(c, c)] = beta;
        for j in c + 1..n {
            let mut w = rv[(c, j)];
            for i in c + 1..m {
                w += rv[(i, c)] * rv[(i, j)];
            }
            w *= tau[c];
            rv[(c, j)] -= w;
            for i in c + 1..m {
                let v = rv[(i, c)];
                rv[(i, j)] -= w * v;
            }
        }
    }
    (rv, tau)
}

/// The explicit reflector matrix V (m-j0 rows... here full m rows) of columns j0..j0+k of R_V.
pub fn explicit_v(rv: &Mat, j0: usize, k: usize) -> Mat {
    let mut v = Mat::zeros(rv.rows, k);
    for c in 0..k {
        let r = j0 + c;
        v[(r, c)] = 1.0;
        for i in r + 1..rv.rows {
            v[(i, c)] = rv[(i, r)];
        }
    }
    v
}

/// H_{j0} H_{j0+1} … H_{j0+k-1} (m×m) from the reflectors in columns j0.. of R_V, with
/// `tau[c]` the scalar of reflector c of the panel (f64).
pub fn reflector_product(rv: &Mat, tau: &[f64], j0: usize, k: usize) -> Mat {
    let m = rv.rows;
    let v = explicit_v(rv, j0, k);
    let mut prod = Mat::identity(m);
    for c in 0..k {
        // prod ← prod · (I - tau v vᵀ)
        for i in 0..m {
            let w: f64 = (0..m).map(|j| prod[(i, j)] * v[(j, c)]).sum::<f64>() * tau[c];
            for j in 0..m {
                prod[(i, j)] -= w * v[(j, c)];
            }
        }
    }
    prod
}

/// Upper triangle of the first `rows` rows of A (zeros below), `rows × a.cols`.
pub fn upper(a: &Mat, rows: usize) -> Mat {
    let mut r = Mat::zeros(rows, a.cols);
    for j in 0..a.cols {
        for i in 0..rows.min(a.rows).min(j + 1) {
            r[(i, j)] = a[(i, j)];
        }
    }
    r
}
