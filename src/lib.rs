//! # metalcore
//!
//! Portable GPU linear-algebra primitives: triangular solve, Householder QR in compact-WY form,
//! batched QR for many small matrices, and least squares built on them. The kernels are WGSL
//! (`wgsl/`, one file per kernel family) run through [wgpu], so the same code runs on Metal,
//! Vulkan, DX12 and GL, and on software adapters (lavapipe, llvmpipe) without a GPU.
//!
//! Matrices are column-major f32 ([`GpuMatrix`], [`GpuBatch`]); every operation records its
//! work into one command submission and leaves results on the GPU until you read them.
//!
//! ```
//! use metalcore::{lstsq, qr, Context, GpuMatrix, QrMode};
//! # fn main() -> metalcore::Result<()> {
//! let ctx = Context::new()?; // a GPU, or a software adapter (lavapipe, llvmpipe)
//! // A = [[3, 1], [4, 2], [0, 2]] (row-major host data; stored column-major on the GPU).
//! let a = GpuMatrix::from_row_major(&ctx, 3, 2, &[3.0, 1.0, 4.0, 2.0, 0.0, 2.0])?;
//! let res = qr(&ctx, &a, QrMode::Reduced)?; // one submission, nothing read back yet
//! let r = res.r.to_row_major(&ctx)?; // R is 2×2, upper triangular
//! assert!((r[0].abs() - 5.0).abs() < 1e-5 && r[2] == 0.0);
//!
//! // Least squares: the x minimising ‖A x − b‖ (here b = A·[1, -1], so x = [1, -1]).
//! let b = GpuMatrix::from_col_major(&ctx, 3, 1, &[2.0, 2.0, -2.0])?;
//! let x = lstsq(&ctx, &a, &b)?.to_col_major(&ctx)?;
//! assert!((x[0] - 1.0).abs() < 1e-5 && (x[1] + 1.0).abs() < 1e-5);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod context;
pub mod error;
pub(crate) mod kernels;
pub mod linalg;
pub mod matrix;
pub mod npy;

pub use context::{CompiledKernel, Context, ContextOptions, LimitsPolicy, Stats};
pub use error::{Error, Result, Shape};
pub use linalg::batched::{
    batched_qr_kernel, batched_qr_path, lstsq_batched, lstsq_batched_checked, lstsq_batched_with,
    qr_batched, qr_batched_into, qr_batched_with, solve_batched, solve_batched_checked,
    solve_batched_with, BatchedOptions, BatchedPath, QrBatched, SmallKernel,
};
pub use linalg::blas::{column_norms, gemm, matmul};
pub use linalg::householder::{geqr2, larfb, larft};
pub use linalg::lstsq::{lstsq, lstsq_unchecked, solve};
pub use linalg::qr::{geqrf, qr, qr_with, PanelAlgorithm, Qr, QrFactors, QrMode, QrOptions};
pub use linalg::trsm::{
    trsm, trsm_batched, trsm_batched_checked, trsm_batched_in_place, trsm_checked, trsm_in_place,
    Side, TrsmOptions, Uplo,
};
pub use matrix::{GpuBatch, GpuMatrix};

/// The WGSL source of every kernel family, as `(name, source)`: what the portability test
/// translates to MSL, HLSL, SPIR-V and GLSL.
pub fn kernel_sources() -> Vec<(&'static str, &'static str)> {
    kernels::ALL.iter().map(|k| (k.name, k.source)).collect()
}
