//! Matrices on the GPU: [`GpuMatrix`] (one column-major f32 matrix) and [`GpuBatch`]
//! (equal-shape matrices stored one after another).
//!
//! Storage is column-major with leading dimension = rows, as LAPACK, faer and nalgebra use:
//! element (i, j) of a `rows × cols` matrix is at `i + j * rows`; matrix b of a batch starts at
//! `b * rows * cols`. Row-major host data goes in and out through the `*_row_major` functions.

use crate::context::Context;
use crate::error::{Error, Result, Shape};

fn checked_len(op: &'static str, shape: Shape) -> Result<u64> {
    (shape.batch as u64)
        .checked_mul(shape.rows as u64)
        .and_then(|x| x.checked_mul(shape.cols as u64))
        .ok_or_else(|| Error::shape(op, format!("element count of {shape} overflows")))
}

fn owned(id: u64, ctx: &Context, op: &'static str, name: &'static str, shape: Shape) -> Result<()> {
    if id == ctx.id() {
        Ok(())
    } else {
        Err(Error::ForeignContext { op, name, shape })
    }
}

fn transpose_into(rows: usize, cols: usize, src: &[f32], dst: &mut [f32], src_row_major: bool) {
    for i in 0..rows {
        for j in 0..cols {
            if src_row_major {
                dst[i + j * rows] = src[i * cols + j];
            } else {
                dst[i * cols + j] = src[i + j * rows];
            }
        }
    }
}

/// One `rows × cols` f32 matrix in a GPU buffer, column-major (leading dimension = rows).
/// Not `Clone`: a clone would share the buffer, so writes through one would show in the other;
/// use [`GpuMatrix::duplicate`] for a copy.
#[derive(Debug)]
pub struct GpuMatrix {
    pub(crate) buffer: wgpu::Buffer,
    rows: usize,
    cols: usize,
    /// [`Context::id`] of the context that created it.
    ctx: u64,
}

impl GpuMatrix {
    /// Uploads column-major data: `data[i + j * rows]` is element (i, j).
    pub fn from_col_major(ctx: &Context, rows: usize, cols: usize, data: &[f32]) -> Result<Self> {
        let m = Self::uninit(ctx, "GpuMatrix::from_col_major", rows, cols)?;
        if data.len() != rows * cols {
            return Err(Error::HostData {
                op: "GpuMatrix::from_col_major",
                shape: Shape::matrix(rows, cols),
                expected: rows * cols,
                len: data.len(),
            });
        }
        if !data.is_empty() {
            ctx.queue()
                .write_buffer(&m.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(m)
    }

    /// Uploads row-major data: `data[i * cols + j]` is element (i, j).
    pub fn from_row_major(ctx: &Context, rows: usize, cols: usize, data: &[f32]) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::HostData {
                op: "GpuMatrix::from_row_major",
                shape: Shape::matrix(rows, cols),
                expected: rows * cols,
                len: data.len(),
            });
        }
        let mut col = vec![0.0; data.len()];
        transpose_into(rows, cols, data, &mut col, true);
        Self::from_col_major(ctx, rows, cols, &col)
    }

    /// A matrix of zeros.
    pub fn zeros(ctx: &Context, rows: usize, cols: usize) -> Result<Self> {
        // wgpu zero-initialises new buffers.
        Self::uninit(ctx, "GpuMatrix::zeros", rows, cols)
    }

    /// A matrix filled with `value` (tests poison outputs with NaN this way).
    pub fn filled(ctx: &Context, rows: usize, cols: usize, value: f32) -> Result<Self> {
        Self::from_col_major(ctx, rows, cols, &vec![value; rows * cols])
    }

    /// A buffer for a result; its contents are whatever the operation writes.
    pub(crate) fn uninit(
        ctx: &Context,
        op: &'static str,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        let shape = Shape::matrix(rows, cols);
        let len = checked_len(op, shape)?;
        ctx.check_elements(op, len, shape)?;
        Ok(Self {
            buffer: ctx.storage_buffer(op, len),
            rows,
            cols,
            ctx: ctx.id(),
        })
    }

    /// A copy in a new buffer (one submission).
    pub fn duplicate(&self, ctx: &Context) -> Result<Self> {
        self.check_ctx(ctx, "GpuMatrix::duplicate", "self")?;
        let copy = Self::uninit(ctx, "GpuMatrix::duplicate", self.rows, self.cols)?;
        let mut rec = ctx.recorder("GpuMatrix::duplicate");
        rec.copy(&self.buffer, 0, &copy.buffer, 0, self.len() as u64);
        ctx.submit(rec)?;
        Ok(copy)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the matrix has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying buffer (column-major f32), for callers who bind it in their own passes.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub(crate) fn shape_struct(&self) -> Shape {
        Shape::matrix(self.rows, self.cols)
    }

    /// `Err(ForeignContext)` naming `op` and the argument `name` unless `ctx` created this
    /// matrix (another context's buffer lives on another device).
    pub(crate) fn check_ctx(
        &self,
        ctx: &Context,
        op: &'static str,
        name: &'static str,
    ) -> Result<()> {
        owned(self.ctx, ctx, op, name, self.shape_struct())
    }

    /// Reads the matrix back, column-major (blocking).
    pub fn to_col_major(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.check_ctx(ctx, "GpuMatrix::to_col_major", "self")?;
        ctx.read_buffer("GpuMatrix", &self.buffer, 0, self.len() as u64)
    }

    /// Async twin of [`GpuMatrix::to_col_major`].
    pub async fn to_col_major_async(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.check_ctx(ctx, "GpuMatrix::to_col_major_async", "self")?;
        ctx.read_buffer_async("GpuMatrix", &self.buffer, 0, self.len() as u64)
            .await
    }

    /// Reads the matrix back, row-major (blocking).
    pub fn to_row_major(&self, ctx: &Context) -> Result<Vec<f32>> {
        let col = self.to_col_major(ctx)?;
        let mut row = vec![0.0; col.len()];
        transpose_into(self.rows, self.cols, &col, &mut row, false);
        Ok(row)
    }
}

/// `batch` matrices of `rows × cols` f32, each column-major, stored one after another.
/// Not `Clone`, for the same reason as [`GpuMatrix`]; use [`GpuBatch::duplicate`].
#[derive(Debug)]
pub struct GpuBatch {
    pub(crate) buffer: wgpu::Buffer,
    batch: usize,
    rows: usize,
    cols: usize,
    /// [`Context::id`] of the context that created it.
    ctx: u64,
}

impl GpuBatch {
    /// Uploads column-major matrices one after another: element (i, j) of matrix b is
    /// `data[b * rows * cols + i + j * rows]`.
    pub fn from_col_major(
        ctx: &Context,
        batch: usize,
        rows: usize,
        cols: usize,
        data: &[f32],
    ) -> Result<Self> {
        let b = Self::uninit(ctx, "GpuBatch::from_col_major", batch, rows, cols)?;
        if data.len() != batch * rows * cols {
            return Err(Error::HostData {
                op: "GpuBatch::from_col_major",
                shape: Shape::batch(batch, rows, cols),
                expected: batch * rows * cols,
                len: data.len(),
            });
        }
        if !data.is_empty() {
            ctx.queue()
                .write_buffer(&b.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(b)
    }

    /// Uploads row-major matrices one after another (numpy's C order for a `batch×rows×cols`
    /// array): element (i, j) of matrix b is `data[b * rows * cols + i * cols + j]`.
    pub fn from_row_major(
        ctx: &Context,
        batch: usize,
        rows: usize,
        cols: usize,
        data: &[f32],
    ) -> Result<Self> {
        if data.len() != batch * rows * cols {
            return Err(Error::HostData {
                op: "GpuBatch::from_row_major",
                shape: Shape::batch(batch, rows, cols),
                expected: batch * rows * cols,
                len: data.len(),
            });
        }
        let mut col = vec![0.0; data.len()];
        let n = rows * cols;
        for b in 0..batch {
            transpose_into(
                rows,
                cols,
                &data[b * n..(b + 1) * n],
                &mut col[b * n..(b + 1) * n],
                true,
            );
        }
        Self::from_col_major(ctx, batch, rows, cols, &col)
    }

    /// A batch of zero matrices.
    pub fn zeros(ctx: &Context, batch: usize, rows: usize, cols: usize) -> Result<Self> {
        Self::uninit(ctx, "GpuBatch::zeros", batch, rows, cols)
    }

    pub(crate) fn uninit(
        ctx: &Context,
        op: &'static str,
        batch: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        let shape = Shape::batch(batch, rows, cols);
        let len = checked_len(op, shape)?;
        // A batch may be larger than one storage binding (qr_batched works through it in
        // windows); only the buffer itself must be possible.
        ctx.check_buffer_elements(op, len, shape)?;
        Ok(Self {
            buffer: ctx.storage_buffer(op, len),
            batch,
            rows,
            cols,
            ctx: ctx.id(),
        })
    }

    /// A copy in a new buffer (one submission).
    pub fn duplicate(&self, ctx: &Context) -> Result<Self> {
        self.check_ctx(ctx, "GpuBatch::duplicate", "self")?;
        let copy = Self::uninit(ctx, "GpuBatch::duplicate", self.batch, self.rows, self.cols)?;
        let mut rec = ctx.recorder("GpuBatch::duplicate");
        rec.copy(&self.buffer, 0, &copy.buffer, 0, self.len() as u64);
        ctx.submit(rec)?;
        Ok(copy)
    }

    /// The first `batch` matrices of this batch, sharing its buffer (crate-internal: the
    /// windowed batched paths factor chunks through such views).
    pub(crate) fn window(&self, batch: usize) -> Self {
        debug_assert!(batch <= self.batch);
        Self {
            buffer: self.buffer.clone(),
            batch,
            rows: self.rows,
            cols: self.cols,
            ctx: self.ctx,
        }
    }

    /// Number of matrices.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Rows of each matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of each matrix.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.batch * self.rows * self.cols
    }

    /// Whether the batch has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub(crate) fn shape_struct(&self) -> Shape {
        Shape::batch(self.batch, self.rows, self.cols)
    }

    /// As [`GpuMatrix::check_ctx`].
    pub(crate) fn check_ctx(
        &self,
        ctx: &Context,
        op: &'static str,
        name: &'static str,
    ) -> Result<()> {
        owned(self.ctx, ctx, op, name, self.shape_struct())
    }

    /// Reads all matrices back, each column-major, one after another (blocking).
    pub fn to_col_major(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.check_ctx(ctx, "GpuBatch::to_col_major", "self")?;
        ctx.read_buffer("GpuBatch", &self.buffer, 0, self.len() as u64)
    }

    /// Async twin of [`GpuBatch::to_col_major`].
    pub async fn to_col_major_async(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.check_ctx(ctx, "GpuBatch::to_col_major_async", "self")?;
        ctx.read_buffer_async("GpuBatch", &self.buffer, 0, self.len() as u64)
            .await
    }

    /// Reads all matrices back, each row-major, one after another (blocking).
    pub fn to_row_major(&self, ctx: &Context) -> Result<Vec<f32>> {
        let col = self.to_col_major(ctx)?;
        let mut row = vec![0.0; col.len()];
        let n = self.rows * self.cols;
        for b in 0..self.batch {
            transpose_into(
                self.rows,
                self.cols,
                &col[b * n..(b + 1) * n],
                &mut row[b * n..(b + 1) * n],
                false,
            );
        }
        Ok(row)
    }
}
