//! Batched QR, least squares and square solves for many matrices of one shape ([`GpuBatch`]).
//!
//! Two paths, chosen per shape ([`batched_qr_path`]):
//! - **one workgroup per matrix** (`wgsl/batched_qr.wgsl`): while one matrix — with Q, or with
//!   its right-hand sides — fits the adapter's workgroup memory, a workgroup loads it once,
//!   factors it there (Householder, LAPACK `sgeqr2` conventions, overflow-safe norms), forms Q
//!   there by backward accumulation (`sorg2r`) or solves R X = QᵀB there, and writes each result
//!   once. Tiny matrices share a workgroup (about 64 lanes per workgroup, one lane per column).
//!   QR of matrices up to 64 rows runs `wgsl/batched_qr_cols.wgsl` ([`SmallKernel::Columns`]):
//!   one lane per column of [A | I] holding it in registers, each reflector computed once by its
//!   column's lane and broadcast, Qᵀ accumulated on the way (one barrier per reflector). Taller
//!   matrices (up to 16 rows per lane of a subgroup, 4 columns per subgroup of up to 512
//!   invocations: 256×32 with 32-lane subgroups) run `wgsl/batched_qr_tall.wgsl` ([`SmallKernel::Tall`])
//!   where the adapter's subgroups have one fixed size: the matrix in the registers of one
//!   workgroup, rows over the lanes, columns over the subgroups, each reflector formed once and
//!   published in workgroup memory, Q formed from them without a barrier. Other shapes up to a
//!   64×64 matrix's work, least squares and [`SmallKernel::Shared`] run the
//!   matrix-in-workgroup-memory kernel.
//! - **blocked, batched**: the blocked QR of [`qr`](crate::linalg::qr) run on the whole batch at
//!   once — every panel factorization, T build and trailing GEMM update is one dispatch for all
//!   matrices — then R extracted, Q formed (`sorgqr`) or Qᵀ applied to B (`sormqr`) and a batched
//!   back substitution.
//!
//! Both paths give the same conventions as [`qr`](crate::linalg::qr::qr): R's diagonal signed as
//! `sgeqrf` leaves it, exact zeros below it. Each operation is one submission with no read-back,
//! except the checked solves ([`BatchedOptions::check_singular`]), which read back one f32 per
//! matrix.
//!
//! **Isolation.** Matrices are never mixed: a NaN, Inf or zero matrix gives the other matrices of
//! its batch bit-for-bit the results they get alone (the arithmetic of one matrix does not depend
//! on its neighbours, its position in the batch, or the chunking).
//!
//! **Chunking.** A batch is processed in chunks so that no intermediate buffer — the blocked
//! path's copy of A, T blocks and GEMM workspace, which are reused from chunk to chunk — and no
//! dispatch needs more than one storage binding ([`Context::max_elements`]); all chunks are
//! recorded into the same submission. A [`GpuBatch`] may itself be larger than one binding (up
//! to the device's buffer size): `qr_batched` and `lstsq_batched` then copy windows of matrices
//! into binding-sized buffers, work there, and copy the results out — still one submission.

use crate::context::{Context, Recorder};
use crate::error::{Error, Result, Shape};
use crate::kernels::batched_qr::{self, Columns, Small, Tall};
use crate::kernels::householder::{self as hh, Mats};
use crate::linalg::non_empty;
use crate::linalg::qr::{record_apply_q, record_geqrf, record_orgqr, Plan, QrMode, Workspace};
use crate::matrix::GpuBatch;

/// Which implementation a batched operation runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BatchedPath {
    /// The one-workgroup-per-matrix kernels when the shape fits the adapter's workgroup memory,
    /// the blocked path otherwise.
    #[default]
    Auto,
    /// One workgroup per matrix (several for tiny matrices), the matrix in workgroup memory.
    /// A shape that does not fit gives [`Error::TooLarge`].
    WorkgroupPerMatrix,
    /// The blocked factorization of [`qr`](crate::linalg::qr::qr), batched.
    Blocked,
}

/// Which one-workgroup-per-matrix kernel [`qr_batched`] runs (least squares and solves always
/// use [`SmallKernel::Shared`]'s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SmallKernel {
    /// [`SmallKernel::Columns`] where the shape fits it, else [`SmallKernel::Tall`], else
    /// [`SmallKernel::Shared`] up to a 64×64 matrix's work (larger shapes: the blocked path).
    #[default]
    Auto,
    /// `qr_columns`: one lane per column of A and of Qᵀ, each column in registers, every
    /// lane forming each reflector from its column, published in workgroup memory (m ≤ 64).
    /// Falls back to `Shared` (then to the blocked path, as [`BatchedPath`] says) for shapes
    /// it does not take.
    Columns,
    /// `qr_small`: the matrix in workgroup memory, one lane per column of A, every lane
    /// recomputing each reflector's norm, Q formed afterwards (the original kernel, kept for
    /// comparison).
    Shared,
    /// `qr_tall`: the matrix in the registers of one workgroup of subgroups (rows spread over
    /// the lanes, columns over the subgroups), each reflector computed once by its column's
    /// subgroup and published in workgroup memory, Q formed from them without a barrier.
    /// Needs subgroups of one fixed size S: m ≤ 16·S, n ≤ 4 per subgroup of a workgroup of at
    /// most 512 invocations the adapter allows (S = 32: n ≤ 64; 32 with WebGPU's default 256),
    /// the reflectors (min(m, n)·m floats, rows padded) in workgroup memory. Falls back to `Columns`, then `Shared`, for shapes it does not take.
    Tall,
}

/// Tuning for the batched operations; `Default` is what the plain functions use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchedOptions {
    /// Which implementation to run.
    pub path: BatchedPath,
    /// Panel width of the blocked path (`None`: min(min(m, n), 128), as [`QrOptions`]).
    ///
    /// [`QrOptions`]: crate::linalg::qr::QrOptions
    pub block_size: Option<usize>,
    /// Largest number of f32 elements one chunk's buffer may hold (`None`: one storage binding,
    /// [`Context::max_elements`]; a larger value is capped there). Smaller values split a batch
    /// into more chunks, which changes no result.
    pub max_chunk_elements: Option<u64>,
    /// Least squares and solves only: after the submission, read back one f32 per matrix and
    /// return [`Error::Singular`] naming the first matrix whose R has a negligible diagonal
    /// element (|R_ii| <= max(m, n)·ε·max|R_jj|: rank-deficient or singular), and that column.
    /// Off: such a matrix's X holds huge values, Inf or NaN and nothing is read back.
    pub check_singular: bool,
    /// Which one-workgroup-per-matrix QR kernel to prefer (timing comparisons).
    pub kernel: SmallKernel,
}

/// The result of [`qr_batched`]: Q (absent in [`QrMode::R`]) and R, each a batch.
#[derive(Debug)]
pub struct QrBatched {
    /// batch×m×k (reduced) or batch×m×m (complete); `None` in mode R.
    pub q: Option<GpuBatch>,
    /// batch×k×n (reduced, R) or batch×m×n (complete), upper triangular (trapezoidal when
    /// m < n) with exact zeros below the diagonal.
    pub r: GpuBatch,
}

/// (rows of R, columns of Q (0: none)) of an m×n QR in `mode`.
fn qr_shapes(m: usize, n: usize, mode: QrMode) -> (usize, usize) {
    let k = m.min(n);
    match mode {
        QrMode::Reduced => (k, k),
        QrMode::Complete => (m, m),
        QrMode::R => (k, 0),
    }
}

/// The path [`BatchedPath::Auto`] takes for a batched QR of `rows × cols` matrices in `mode` on
/// this context: [`BatchedPath::WorkgroupPerMatrix`] or [`BatchedPath::Blocked`].
pub fn batched_qr_path(ctx: &Context, rows: usize, cols: usize, mode: QrMode) -> BatchedPath {
    match small_qr(ctx, rows, cols, mode, SmallKernel::Auto) {
        Some(_) => BatchedPath::WorkgroupPerMatrix,
        None => BatchedPath::Blocked,
    }
}

/// The one-workgroup-per-matrix kernel a batched QR of `rows × cols` matrices in `mode` runs on
/// this context with `options` ([`SmallKernel::Columns`], [`SmallKernel::Tall`] or
/// [`SmallKernel::Shared`]), or `None`
/// when it takes the blocked path.
pub fn batched_qr_kernel(
    ctx: &Context,
    rows: usize,
    cols: usize,
    mode: QrMode,
    options: &BatchedOptions,
) -> Option<SmallKernel> {
    if options.path == BatchedPath::Blocked {
        return None;
    }
    small_qr(ctx, rows, cols, mode, options.kernel).map(|k| match k {
        SmallQr::Columns(_) => SmallKernel::Columns,
        SmallQr::Shared(_) => SmallKernel::Shared,
        SmallQr::Tall(_) => SmallKernel::Tall,
    })
}

/// A one-workgroup-per-matrix QR kernel variant for one shape.
#[derive(Clone, Copy, Debug)]
enum SmallQr {
    Columns(Columns),
    Shared(Small),
    Tall(Tall),
}

/// The one-workgroup-per-matrix QR variant `kernel` asks for (or the other when it does not fit),
/// `None` when neither fits the adapter.
fn small_qr(
    ctx: &Context,
    m: usize,
    n: usize,
    mode: QrMode,
    kernel: SmallKernel,
) -> Option<SmallQr> {
    let (r_rows, qcols) = qr_shapes(m, n, mode);
    let columns = || Columns::new(ctx, m, n, qcols, r_rows).map(SmallQr::Columns);
    let shared = || Small::new(ctx, m, n, 0, qcols, r_rows).map(SmallQr::Shared);
    let tall = || Tall::new(ctx, m, n, qcols, r_rows).map(SmallQr::Tall);
    match kernel {
        // The shared kernel walks every row of every reflector sequentially in each lane (one
        // lane per column), m·k dependent steps: for large m·k the blocked path (TSQR panels)
        // is far faster — 10000×256×32 took 225 ms on it on an H100, 24.5 ms of kernel time
        // blocked.
        SmallKernel::Auto => columns().or_else(tall).or_else(|| {
            (m * m.min(n) <= AUTO_SHARED_MAX_WORK)
                .then(shared)
                .flatten()
        }),
        SmallKernel::Columns => columns().or_else(shared),
        SmallKernel::Shared => shared().or_else(columns),
        SmallKernel::Tall => tall().or_else(columns).or_else(shared),
    }
}

/// Largest m·min(m, n) [`SmallKernel::Auto`] gives the shared-memory kernel (above it, when
/// the column kernel does not fit, the blocked path): the sequential work of a 64×64 matrix.
const AUTO_SHARED_MAX_WORK: usize = 64 * 64;

/// The kernel variant to run, after `options.path`; `Err` when one workgroup per matrix is asked
/// for a shape that does not fit.
fn choose<T>(
    ctx: &Context,
    op: &'static str,
    options: &BatchedOptions,
    shape: Shape,
    small: Option<T>,
    per_matrix_floats: usize,
) -> Result<Option<T>> {
    match options.path {
        BatchedPath::Auto => Ok(small),
        BatchedPath::Blocked => Ok(None),
        BatchedPath::WorkgroupPerMatrix => small.map(Some).ok_or(Error::TooLarge {
            op,
            what: "workgroup memory for one matrix (bytes)",
            needed: per_matrix_floats as u64 * 4,
            limit: ctx.limits().max_compute_workgroup_storage_size as u64,
            shape,
        }),
    }
}

/// Elements one buffer of a chunk may hold: one storage binding, or less when the options say so.
fn binding_limit(ctx: &Context, options: &BatchedOptions) -> u64 {
    options
        .max_chunk_elements
        .map_or(ctx.max_elements(), |l| l.min(ctx.max_elements()))
}

/// Matrices per chunk so that no buffer of a chunk holds more than the binding limit, given the
/// largest per-matrix element count of any buffer a chunk binds.
fn chunk_len(
    ctx: &Context,
    op: &'static str,
    options: &BatchedOptions,
    shape: Shape,
    per_matrix: usize,
) -> Result<usize> {
    let limit = binding_limit(ctx, options);
    let per = per_matrix.max(1) as u64;
    if per > limit {
        return Err(Error::TooLarge {
            op,
            what: "one matrix's buffers in a chunk (bytes)",
            needed: per * 4,
            limit: limit * 4,
            shape,
        });
    }
    Ok(((limit / per) as usize).clamp(1, shape.batch.max(1)))
}

/// `(start, len)` of each chunk of `batch` matrices.
fn chunks(batch: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..batch)
        .step_by(chunk)
        .map(move |b0| (b0, chunk.min(batch - b0)))
}

fn check_block_size(op: &'static str, options: &BatchedOptions) -> Result<()> {
    if options.block_size == Some(0) {
        return Err(Error::shape(op, "block_size must be at least 1"));
    }
    Ok(())
}

/// Batched QR A_b = Q_b R_b of every matrix of `a`, as `torch.linalg.qr` on a 3-D tensor with
/// `mode`. One submission, nothing read back; `a` is not changed.
///
/// Any m×n (m ≥ n or m < n). Small matrices run one workgroup per matrix; larger ones the
/// batched blocked factorization (see the module docs).
pub fn qr_batched(ctx: &Context, a: &GpuBatch, mode: QrMode) -> Result<QrBatched> {
    qr_batched_with(ctx, a, mode, &BatchedOptions::default())
}

/// [`qr_batched`] with explicit [`BatchedOptions`].
pub fn qr_batched_with(
    ctx: &Context,
    a: &GpuBatch,
    mode: QrMode,
    options: &BatchedOptions,
) -> Result<QrBatched> {
    const OP: &str = "qr_batched";
    a.check_ctx(ctx, OP, "a")?;
    non_empty(OP, "a", a.shape_struct())?;
    let (m, n) = (a.rows(), a.cols());
    let (r_rows, qcols) = qr_shapes(m, n, mode);
    let mut r = GpuBatch::uninit(ctx, OP, a.batch(), r_rows, n)?;
    let mut q = match qcols {
        0 => None,
        _ => Some(GpuBatch::uninit(ctx, OP, a.batch(), m, qcols)?),
    };
    record_qr(ctx, OP, a, mode, q.as_mut(), &mut r, options)?;
    Ok(QrBatched { q, r })
}

/// [`qr_batched_with`] into caller-owned outputs: `r` must be batch×k×n (reduced, R) or
/// batch×m×n (complete); `q` batch×m×k (reduced) or batch×m×m (complete), and `None` exactly in
/// mode R. Every element of the outputs is written. One submission.
pub fn qr_batched_into(
    ctx: &Context,
    a: &GpuBatch,
    mode: QrMode,
    q: Option<&mut GpuBatch>,
    r: &mut GpuBatch,
    options: &BatchedOptions,
) -> Result<()> {
    const OP: &str = "qr_batched_into";
    a.check_ctx(ctx, OP, "a")?;
    r.check_ctx(ctx, OP, "r")?;
    if let Some(q) = &q {
        q.check_ctx(ctx, OP, "q")?;
    }
    non_empty(OP, "a", a.shape_struct())?;
    let (m, n) = (a.rows(), a.cols());
    let (r_rows, qcols) = qr_shapes(m, n, mode);
    let want_r = Shape::batch(a.batch(), r_rows, n);
    if r.shape_struct() != want_r {
        return Err(Error::shape(
            OP,
            format!(
                "R is {} but a QR of {} in mode {mode:?} needs R of {want_r}",
                r.shape_struct(),
                a.shape_struct()
            ),
        ));
    }
    match (&q, qcols) {
        (Some(q), 0) => {
            return Err(Error::shape(
                OP,
                format!(
                    "mode R forms no Q, but a Q of {} was given",
                    q.shape_struct()
                ),
            ))
        }
        (None, c) if c > 0 => {
            return Err(Error::shape(
                OP,
                format!(
                    "mode {mode:?} forms Q of {} but no Q was given",
                    Shape::batch(a.batch(), m, c)
                ),
            ))
        }
        (Some(q), c) if q.shape_struct() != Shape::batch(a.batch(), m, c) => {
            return Err(Error::shape(
                OP,
                format!(
                    "Q is {} but a QR of {} in mode {mode:?} needs Q of {}",
                    q.shape_struct(),
                    a.shape_struct(),
                    Shape::batch(a.batch(), m, c)
                ),
            ))
        }
        _ => {}
    }
    record_qr(ctx, OP, a, mode, q, r, options)
}

fn record_qr(
    ctx: &Context,
    op: &'static str,
    a: &GpuBatch,
    mode: QrMode,
    q: Option<&mut GpuBatch>,
    r: &mut GpuBatch,
    options: &BatchedOptions,
) -> Result<()> {
    check_block_size(op, options)?;
    let (batch, m, n) = (a.batch(), a.rows(), a.cols());
    let (r_rows, qcols) = qr_shapes(m, n, mode);
    let limit = binding_limit(ctx, options);
    let per = (m * n).max(m * qcols).max(r_rows * n);
    let mut rec = ctx.recorder(op);
    if (batch * per) as u64 <= limit {
        record_qr_chunked(&mut rec, ctx, op, a, mode, q, r, options)?;
        return ctx.submit(rec);
    }
    // The batch (or its Q or R) is larger than one storage binding: windows of matrices are
    // copied into buffers that fit one, factored there, and their Q and R copied out — all in
    // the same submission (copies have no binding limit).
    let win = chunk_len(ctx, op, options, a.shape_struct(), per)?;
    let wa = GpuBatch::uninit(ctx, op, win, m, n)?;
    let wr = GpuBatch::uninit(ctx, op, win, r_rows, n)?;
    let wq = match qcols {
        0 => None,
        _ => Some(GpuBatch::uninit(ctx, op, win, m, qcols)?),
    };
    for (b0, len) in chunks(batch, win) {
        rec.copy(
            &a.buffer,
            (b0 * m * n) as u64,
            &wa.buffer,
            0,
            (len * m * n) as u64,
        );
        let (va, mut vr) = (wa.window(len), wr.window(len));
        let mut vq = wq.as_ref().map(|w| w.window(len));
        record_qr_chunked(&mut rec, ctx, op, &va, mode, vq.as_mut(), &mut vr, options)?;
        let r_len = (r_rows * n) as u64;
        rec.copy(
            &wr.buffer,
            0,
            &r.buffer,
            b0 as u64 * r_len,
            len as u64 * r_len,
        );
        if let (Some(wq), Some(q)) = (&wq, &q) {
            let q_len = (m * qcols) as u64;
            rec.copy(
                &wq.buffer,
                0,
                &q.buffer,
                b0 as u64 * q_len,
                len as u64 * q_len,
            );
        }
    }
    ctx.submit(rec)
}

/// Records the QR of a batch whose buffers each fit one storage binding (intermediates chunked).
#[allow(clippy::too_many_arguments)]
fn record_qr_chunked(
    rec: &mut Recorder,
    ctx: &Context,
    op: &'static str,
    a: &GpuBatch,
    mode: QrMode,
    q: Option<&mut GpuBatch>,
    r: &mut GpuBatch,
    options: &BatchedOptions,
) -> Result<()> {
    let (batch, m, n) = (a.batch(), a.rows(), a.cols());
    let shape = a.shape_struct();
    let (r_rows, qcols) = qr_shapes(m, n, mode);
    let small = small_qr(ctx, m, n, mode, options.kernel);
    let wg_floats = (m | 1) * n.max(qcols) + 3 * m.min(n);
    match choose(ctx, op, options, shape, small, wg_floats)? {
        Some(small) => {
            let per = (m * n).max(m * qcols).max(r_rows * n);
            let chunk = chunk_len(ctx, op, options, shape, per)?;
            for (b0, len) in chunks(batch, chunk) {
                let a_offset = b0 * m * n;
                let q = q.as_ref().map(|q| (&q.buffer, b0 * m * qcols));
                let r_offset = b0 * r_rows * n;
                match small {
                    SmallQr::Columns(k) => {
                        k.record_qr(rec, ctx, &a.buffer, a_offset, q, &r.buffer, r_offset, len)
                    }
                    SmallQr::Shared(k) => {
                        k.record_qr(rec, ctx, &a.buffer, a_offset, q, &r.buffer, r_offset, len)
                    }
                    SmallQr::Tall(k) => {
                        k.record_qr(rec, ctx, &a.buffer, a_offset, q, &r.buffer, r_offset, len)
                    }
                }
            }
        }
        None => {
            let blocked = Blocked::new(
                ctx,
                op,
                options,
                shape,
                n.max(qcols),
                &[m * qcols, r_rows * n],
            )?;
            for (b0, len) in chunks(batch, blocked.chunk) {
                let plan = blocked.factor(rec, ctx, a, b0, len);
                let (rv, t) = blocked.factors();
                hh::extract_r(
                    rec,
                    ctx,
                    m,
                    rv,
                    r_rows,
                    n,
                    Mats::new(&r.buffer, b0 * r_rows * n, r_rows, r_rows * n),
                    len,
                );
                if let Some(q) = &q {
                    record_orgqr(
                        rec,
                        ctx,
                        &plan,
                        &blocked.ws,
                        rv,
                        t,
                        Mats::new(&q.buffer, b0 * m * qcols, m, m * qcols),
                        qcols,
                    );
                }
            }
        }
    }
    Ok(())
}

/// The blocked path's buffers for one chunk of matrices, reused chunk after chunk: the copy of A
/// factored in place (R and reflectors), tau, the T blocks and the GEMM workspace.
struct Blocked {
    m: usize,
    n: usize,
    /// Panel width, resolved once (the context's default where the options give none), so that
    /// every plan of every chunk agrees.
    nb: usize,
    chunk: usize,
    rv: wgpu::Buffer,
    tau: wgpu::Buffer,
    t: wgpu::Buffer,
    t_per: usize,
    ws: Workspace,
}

impl Blocked {
    /// Buffers for chunks of `shape`'s matrices; `wcols` is the widest operand the reflectors are
    /// applied to, `outputs` the per-matrix element counts of the other buffers a chunk binds.
    fn new(
        ctx: &Context,
        op: &'static str,
        options: &BatchedOptions,
        shape: Shape,
        wcols: usize,
        outputs: &[usize],
    ) -> Result<Self> {
        let (m, n) = (shape.rows, shape.cols);
        let probe = Plan::new_in(ctx, m, n, 1, options.block_size);
        let nb = probe.nb;
        let t_per = probe.panels() * nb * nb;
        let per = outputs
            .iter()
            .copied()
            .chain([m * n, m * nb, nb * nb, nb * wcols.max(1), t_per])
            .max()
            .unwrap_or(1);
        let chunk = chunk_len(ctx, op, options, shape, per)?;
        let plan = Plan::new(m, n, chunk, Some(nb));
        let ws = Workspace::new(ctx, op, &plan, wcols)?;
        let buffer = |elements: usize| -> Result<wgpu::Buffer> {
            ctx.check_elements(op, elements as u64, shape)?;
            Ok(ctx.storage_buffer(op, elements as u64))
        };
        Ok(Self {
            m,
            n,
            nb,
            chunk,
            rv: buffer(chunk * m * n)?,
            tau: buffer(chunk * m.min(n))?,
            t: buffer(chunk * t_per)?,
            t_per,
            ws,
        })
    }

    /// Views of the factored chunk: R_V (m×n each) and the T blocks.
    fn factors(&self) -> (Mats<'_>, Mats<'_>) {
        let nb = self.nb;
        (
            Mats::new(&self.rv, 0, self.m, self.m * self.n),
            Mats::new(&self.t, 0, nb, self.t_per),
        )
    }

    /// Records the copy of matrices `b0 .. b0 + len` of `a` and their blocked factorization.
    fn factor(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        a: &GpuBatch,
        b0: usize,
        len: usize,
    ) -> Plan {
        let (m, n) = (self.m, self.n);
        let plan = Plan::new(m, n, len, Some(self.nb));
        rec.copy(
            &a.buffer,
            (b0 * m * n) as u64,
            &self.rv,
            0,
            (len * m * n) as u64,
        );
        let (rv, t) = self.factors();
        record_geqrf(
            rec,
            ctx,
            &plan,
            &self.ws,
            rv,
            Mats::new(&self.tau, 0, 1, plan.k),
            t,
        );
        plan
    }
}

/// Batched least squares: for each b, X_b = argmin ‖A_b X − B_b‖_F (A_b m×n with m ≥ n and full
/// column rank, B_b m×nrhs), as LAPACK `sgels`: A = QR, C = QᵀB by applying the reflectors
/// (Q is never formed), then R X = C\[0..n\] by back substitution. Returns X (batch×n×nrhs).
/// One submission, nothing read back.
///
/// A rank-deficient A_b is not detected (its X holds large or non-finite values, the other
/// matrices are unaffected); [`lstsq_batched_checked`] reports an exactly singular R.
pub fn lstsq_batched(ctx: &Context, a: &GpuBatch, b: &GpuBatch) -> Result<GpuBatch> {
    lstsq_batched_with(ctx, a, b, &BatchedOptions::default())
}

/// [`lstsq_batched`] that returns [`Error::Singular`] (which matrix, which column) when some
/// R_b has a negligible diagonal element (rank-deficient A_b). Reads back one f32 per matrix
/// after the submission.
pub fn lstsq_batched_checked(ctx: &Context, a: &GpuBatch, b: &GpuBatch) -> Result<GpuBatch> {
    lstsq_batched_with(
        ctx,
        a,
        b,
        &BatchedOptions {
            check_singular: true,
            ..Default::default()
        },
    )
}

/// Batched square solve A_b X_b = B_b (A_b n×n), through the same QR as [`lstsq_batched`].
/// One submission, nothing read back; a singular A_b gives non-finite values in its X_b only.
pub fn solve_batched(ctx: &Context, a: &GpuBatch, b: &GpuBatch) -> Result<GpuBatch> {
    solve(ctx, a, b, &BatchedOptions::default())
}

/// [`solve_batched`] that returns [`Error::Singular`] (which matrix, which column) when some
/// A_b is singular or numerically rank-deficient (a negligible diagonal element of its R). Reads
/// back one f32 per matrix after the submission.
pub fn solve_batched_checked(ctx: &Context, a: &GpuBatch, b: &GpuBatch) -> Result<GpuBatch> {
    solve(
        ctx,
        a,
        b,
        &BatchedOptions {
            check_singular: true,
            ..Default::default()
        },
    )
}

/// [`solve_batched`] with explicit [`BatchedOptions`].
pub fn solve_batched_with(
    ctx: &Context,
    a: &GpuBatch,
    b: &GpuBatch,
    options: &BatchedOptions,
) -> Result<GpuBatch> {
    solve(ctx, a, b, options)
}

fn solve(ctx: &Context, a: &GpuBatch, b: &GpuBatch, options: &BatchedOptions) -> Result<GpuBatch> {
    const OP: &str = "solve_batched";
    if a.rows() != a.cols() {
        return Err(Error::shape(
            OP,
            format!("A is {}: a solve needs square matrices", a.shape_struct()),
        ));
    }
    lstsq(ctx, OP, a, b, options)
}

/// [`lstsq_batched`] with explicit [`BatchedOptions`].
pub fn lstsq_batched_with(
    ctx: &Context,
    a: &GpuBatch,
    b: &GpuBatch,
    options: &BatchedOptions,
) -> Result<GpuBatch> {
    lstsq(ctx, "lstsq_batched", a, b, options)
}

fn lstsq(
    ctx: &Context,
    op: &'static str,
    a: &GpuBatch,
    b: &GpuBatch,
    options: &BatchedOptions,
) -> Result<GpuBatch> {
    a.check_ctx(ctx, op, "a")?;
    b.check_ctx(ctx, op, "b")?;
    non_empty(op, "a", a.shape_struct())?;
    non_empty(op, "b", b.shape_struct())?;
    check_block_size(op, options)?;
    let (batch, m, n) = (a.batch(), a.rows(), a.cols());
    let nrhs = b.cols();
    if b.batch() != batch || b.rows() != m {
        return Err(Error::shape(
            op,
            format!(
                "A is {} but B is {}: B needs {batch} matrices of {m} rows",
                a.shape_struct(),
                b.shape_struct()
            ),
        ));
    }
    if m < n {
        return Err(Error::shape(
            op,
            format!(
                "A is {}: least squares needs m ≥ n (underdetermined systems are not supported)",
                a.shape_struct()
            ),
        ));
    }
    let shape = a.shape_struct();
    let x = GpuBatch::uninit(ctx, op, batch, n, nrhs)?;
    ctx.check_elements(op, batch as u64, shape)?;
    let info = ctx.storage_buffer("metalcore info", batch as u64);
    let mut rec = ctx.recorder(op);
    let limit = binding_limit(ctx, options);
    let per = (m * n).max(m * nrhs).max(n * nrhs);
    if (batch * per) as u64 <= limit {
        record_lstsq_chunked(&mut rec, ctx, op, a, b, &x, (&info, 0), options)?;
    } else {
        // Larger than one storage binding: windows copied into binding-sized buffers, solved
        // there, X copied out — the same submission, as in `record_qr`.
        let win = chunk_len(ctx, op, options, shape, per)?;
        let wa = GpuBatch::uninit(ctx, op, win, m, n)?;
        let wb = GpuBatch::uninit(ctx, op, win, m, nrhs)?;
        let wx = GpuBatch::uninit(ctx, op, win, n, nrhs)?;
        for (b0, len) in chunks(batch, win) {
            let (a_len, b_len, x_len) = ((m * n) as u64, (m * nrhs) as u64, (n * nrhs) as u64);
            let (w0, wl) = (b0 as u64, len as u64);
            rec.copy(&a.buffer, w0 * a_len, &wa.buffer, 0, wl * a_len);
            rec.copy(&b.buffer, w0 * b_len, &wb.buffer, 0, wl * b_len);
            let (va, vb, vx) = (wa.window(len), wb.window(len), wx.window(len));
            record_lstsq_chunked(&mut rec, ctx, op, &va, &vb, &vx, (&info, b0), options)?;
            rec.copy(&wx.buffer, 0, &x.buffer, w0 * x_len, wl * x_len);
        }
    }
    ctx.submit(rec)?;
    if options.check_singular {
        let info = ctx.read_buffer("batched solve info", &info, 0, batch as u64)?;
        if let Some((matrix, &v)) = info.iter().enumerate().find(|(_, &v)| v != 0.0) {
            return Err(Error::Singular {
                op,
                matrix,
                index: v as usize - 1,
            });
        }
    }
    Ok(x)
}

/// Records the batched least squares of batches whose buffers each fit one storage binding;
/// `info` receives one flag per matrix from element `info.1` on.
#[allow(clippy::too_many_arguments)]
fn record_lstsq_chunked(
    rec: &mut Recorder,
    ctx: &Context,
    op: &'static str,
    a: &GpuBatch,
    b: &GpuBatch,
    x: &GpuBatch,
    info: (&wgpu::Buffer, usize),
    options: &BatchedOptions,
) -> Result<()> {
    let (batch, m, n) = (a.batch(), a.rows(), a.cols());
    let nrhs = b.cols();
    let shape = a.shape_struct();
    let small = Small::new(ctx, m, n, nrhs, 0, 0);
    let wg_floats = (m | 1) * (n + nrhs) + 3 * n;
    match choose(ctx, op, options, shape, small, wg_floats)? {
        Some(small) => {
            let per = (m * n).max(m * nrhs).max(n * nrhs);
            let chunk = chunk_len(ctx, op, options, shape, per)?;
            for (b0, len) in chunks(batch, chunk) {
                small.record_lstsq(
                    rec,
                    ctx,
                    (&a.buffer, b0 * m * n),
                    (&b.buffer, b0 * m * nrhs),
                    (&x.buffer, b0 * n * nrhs),
                    (info.0, info.1 + b0),
                    len,
                );
            }
        }
        None => {
            let blocked = Blocked::new(ctx, op, options, shape, n.max(nrhs), &[m * nrhs])?;
            ctx.check_elements(op, (blocked.chunk * m * nrhs) as u64, shape)?;
            let c = ctx.storage_buffer(op, (blocked.chunk * m * nrhs) as u64);
            for (b0, len) in chunks(batch, blocked.chunk) {
                let plan = blocked.factor(rec, ctx, a, b0, len);
                let (rv, t) = blocked.factors();
                rec.copy(
                    &b.buffer,
                    (b0 * m * nrhs) as u64,
                    &c,
                    0,
                    (len * m * nrhs) as u64,
                );
                let cm = Mats::new(&c, 0, m, m * nrhs);
                record_apply_q(rec, ctx, &plan, &blocked.ws, rv, t, cm, nrhs, true);
                batched_qr::record_back_substitute(
                    rec,
                    ctx,
                    n,
                    nrhs,
                    rv,
                    cm,
                    (&x.buffer, b0 * n * nrhs),
                    (info.0, info.1 + b0),
                    len,
                );
            }
        }
    }
    Ok(())
}
