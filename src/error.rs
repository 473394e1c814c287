//! The one error type of metalcore.
//!
//! Every variant names the operation that failed and, where shapes are involved, the shapes, so
//! that a message read in a log says what was asked and why it could not be done.

use std::fmt;

/// A matrix shape `rows × cols`, printed as `7×3` (or `500×7×3` for a batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of matrices (1 for a single matrix).
    pub batch: usize,
    /// Rows of each matrix.
    pub rows: usize,
    /// Columns of each matrix.
    pub cols: usize,
}

impl Shape {
    /// The shape of a single `rows × cols` matrix.
    pub fn matrix(rows: usize, cols: usize) -> Self {
        Self {
            batch: 1,
            rows,
            cols,
        }
    }

    /// The shape of `batch` matrices of `rows × cols`.
    pub fn batch(batch: usize, rows: usize, cols: usize) -> Self {
        Self { batch, rows, cols }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.batch == 1 {
            write!(f, "{}×{}", self.rows, self.cols)
        } else {
            write!(f, "{}×{}×{}", self.batch, self.rows, self.cols)
        }
    }
}

/// Everything that can go wrong in metalcore.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter could be found on any backend that was tried.
    #[error(
        "no GPU adapter found (tried: {tried}). Install a software driver to run without a GPU: \
         Vulkan through Mesa lavapipe (`apt-get install mesa-vulkan-drivers`) or GL through Mesa \
         llvmpipe (EGL), and pick it with WGPU_BACKEND=vulkan|gl"
    )]
    NoAdapter {
        /// What was tried, in words (backends and environment variables honoured).
        tried: String,
    },

    /// The adapter refused to create a device.
    #[error("could not create a device on adapter {adapter}: {message}")]
    RequestDevice {
        /// The adapter's name and backend.
        adapter: String,
        /// wgpu's message.
        message: String,
    },

    /// The inputs' shapes do not fit together or do not fit the operation.
    #[error("{op}: {message}")]
    Shape {
        /// The operation, e.g. `"trsm"`.
        op: &'static str,
        /// What is wrong, with the shapes involved.
        message: String,
    },

    /// An input has no elements.
    #[error("{op}: input `{name}` is empty ({shape})")]
    Empty {
        /// The operation.
        op: &'static str,
        /// The argument's name.
        name: &'static str,
        /// Its shape.
        shape: Shape,
    },

    /// An input was created by another [`Context`](crate::Context): its buffer belongs to
    /// another device, where this context's commands cannot reach it.
    #[error(
        "{op}: input `{name}` ({shape}) was created by another Context; a matrix can only be \
         used with the Context that created it"
    )]
    ForeignContext {
        /// The operation.
        op: &'static str,
        /// The argument's name.
        name: &'static str,
        /// Its shape.
        shape: Shape,
    },

    /// The problem is larger than the device allows.
    #[error("{op}: {what} needs {needed} but the device allows at most {limit} ({shape})")]
    TooLarge {
        /// The operation.
        op: &'static str,
        /// What is too large (a buffer, a dispatch, workgroup memory).
        what: &'static str,
        /// How much is needed.
        needed: u64,
        /// What the device offers.
        limit: u64,
        /// The shape that asked for it.
        shape: Shape,
    },

    /// A triangular or R factor has an exact zero on its diagonal (LAPACK's `info > 0`).
    #[error(
        "{op}: matrix {matrix} is singular: diagonal element {index} (0-based) is exactly zero"
    )]
    Singular {
        /// The operation.
        op: &'static str,
        /// Which matrix of a batch (0 for a single matrix).
        matrix: usize,
        /// The 0-based index of the first zero on the diagonal.
        index: usize,
    },

    /// A least-squares or solve problem whose matrix is rank-deficient (or singular): R from its
    /// QR has a diagonal element negligible against the largest.
    #[error(
        "{op}: matrix {matrix} ({shape}) is rank-deficient: column {column} (0-based) of R has \
         |R_ii| <= max(m, n)·ε·max|R_jj|; a full-rank matrix is needed"
    )]
    RankDeficient {
        /// The operation.
        op: &'static str,
        /// Which matrix of a batch (0 for a single matrix).
        matrix: usize,
        /// The first such column, 0-based.
        column: usize,
        /// The matrix's shape.
        shape: Shape,
    },

    /// wgpu reported an error while the operation was recorded or run.
    #[error("{op}: the GPU reported an error: {message}")]
    Gpu {
        /// The operation.
        op: &'static str,
        /// wgpu's message.
        message: String,
    },

    /// Reading a result back from the GPU failed.
    #[error("reading back {what} failed: {message}")]
    ReadBack {
        /// What was being read.
        what: &'static str,
        /// wgpu's message.
        message: String,
    },

    /// Host data does not match the shape it is said to have.
    #[error("{op}: {len} values given for a {shape} matrix (expected {expected})")]
    HostData {
        /// The constructor.
        op: &'static str,
        /// The shape asked for.
        shape: Shape,
        /// Values expected.
        expected: usize,
        /// Values given.
        len: usize,
    },
}

/// `Result` with metalcore's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }
}
