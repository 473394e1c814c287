//! Triangular solve (BLAS `strsm`, LAPACK `strtrs`), single and batched.
//!
//! Solves op(A)·X = B ([`Side::Left`]) or X·op(A) = B ([`Side::Right`]) for X, where A is n×n
//! lower or upper triangular ([`Uplo`]), op(A) is A or Aᵀ (`trans`), and the diagonal is taken
//! as read or as all ones (`unit_diagonal`). Only the triangle named by `uplo` is read; the
//! other triangle (and, with a unit diagonal, the diagonal) may hold anything, NaN included.
//!
//! # Algorithm
//! The right side is the left side transposed (X·op(A) = B ⇔ op(A)ᵀ·Xᵀ = Bᵀ), which the kernels
//! handle by addressing, without transposing anything. Let T be the triangular matrix actually
//! applied to the rows (left) or columns (right) of X; it is lower or upper, and substitution
//! runs forward or backward accordingly. X starts as a copy of B and is solved in place.
//!
//! The solve of a range of rows of T is recursive. A range of at most nb rows (nb = 64 where the
//! adapter offers 20.2 KiB of workgroup storage, else 32) is a *diagonal block*: one workgroup
//! per chunk of right-hand sides holds T_jj and the chunk in workgroup memory and solves it by
//! substitution (`solve_block`), writing X_j in place and into a workspace. A longer range is
//! split in two, `first` and `second` in substitution order (first = the upper rows when T is
//! lower, the lower rows when T is upper):
//! 1. solve `first`;
//! 2. X_second ← X_second − T_second,first · X_first, one GEMM on the shared tiled kernel
//!    (right side: X_second ← X_second − X_first · T_first,second), reading X_first from the
//!    workspace (a GEMM may not write a buffer it reads) and the off-diagonal block of A through
//!    GEMM's transpose flags;
//! 3. solve `second`.
//!
//! Where the split falls is the schedule:
//! - *halving* (first = half the range, rounded to whole blocks) while the range's rows × k ×
//!   batch is at least 2²⁰ (`SPLIT_MIN`, overridable with
//!   [`ContextOptions::trsm_split_min`](crate::ContextOptions::trsm_split_min)). For n = 4096
//!   and k = 4096 this recurses down to the 64-blocks: the updates are 1 GEMM of
//!   2048×4096×2048, 2 of 1024×4096×1024, …, 32 of 64×4096×64 (m×n×K), so half the flops run
//!   with K = n/2 and three quarters with K ≥ n/4, where the GEMM reaches its full rate;
//! - *peeling* (first = one block) below that: the classic blocked loop, a rank-nb update of
//!   everything after each block. A small problem (k = 1, say) is latency-bound, and peeling
//!   keeps the sequential work of each launch short (K = nb instead of K = n/2, n/4, …), so
//!   few right-hand sides are solved as fast as before recursion was introduced.
//!
//! Either way the launches are the same in number: n/nb diagonal-block solves and one GEMM
//! between consecutive ones, all in one submission. Splits fall on multiples of nb from row 0,
//! so only the block at the end of the matrix may be partial. The workspace holds a whole X
//! (n×k per system) when halving happens, else one block of rows.
//!
//! Almost all flops are in the GEMM updates. Substitution on the diagonal blocks is backward
//! stable and so is blocking with conventional GEMM updates, recursive or not: every element
//! of X is still b_i minus a sum of n products divided once by T_ii, only the order of the sums
//! changes, each term passing through at most n + 1 roundings (Higham, *Accuracy and Stability
//! of Numerical Algorithms*, §8.1, Thm 8.5, and §13.1).
//! So the residual ‖op(A)·X − B‖ is O(n·ε)·(‖A‖·‖X‖ + ‖B‖), whatever the conditioning of A.
//! No diagonal block is inverted: multiplying by computed inverses (the GEMM-only leaf some
//! libraries use) would bring the condition of the blocks into that bound.
//!
//! Batched solves run the same code with a stride per matrix: for n ≤ nb the whole system is one
//! diagonal block, so each system is solved by one workgroup (per chunk of right-hand sides) in
//! workgroup memory, in one launch; larger systems go through the blocked path, batched GEMMs
//! included (the batch counts toward the halving threshold, as it multiplies the GEMMs' work). Every call records into one submission and reads nothing back, except the
//! `*_checked` calls, which read back the diagonal (n floats per matrix) to report an exact zero.
//!
//! # Singular and non-finite input
//! An exact zero on a non-unit diagonal makes the plain calls return whatever IEEE arithmetic
//! gives (inf and NaN in the affected rows); [`trsm_checked`] and [`trsm_batched_checked`]
//! report it as [`Error::Singular`] with the 0-based index of the first zero, as `strtrs` does
//! with `info`. NaN or inf in A or B propagates to the parts of X that depend on it, and never
//! crosses from one system of a batch to another.

use crate::context::{Context, Recorder};
use crate::error::{Error, Result, Shape};
use crate::kernels::gemm::Gemm;
use crate::kernels::householder::Mats;
use crate::kernels::trsm::{self as kt, SolveBlock, Tile, Variant};
use crate::kernels::View;
use crate::linalg::non_empty;
use crate::matrix::{GpuBatch, GpuMatrix};

/// Which side of X the triangular matrix is on (BLAS `side`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Side {
    /// op(A)·X = B (BLAS `'L'`): B is n×k.
    #[default]
    Left,
    /// X·op(A) = B (BLAS `'R'`): B is k×n.
    Right,
}

/// Which triangle of A holds the matrix (BLAS `uplo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Uplo {
    /// A is lower triangular (BLAS `'L'`); the strict upper triangle is not read.
    #[default]
    Lower,
    /// A is upper triangular (BLAS `'U'`); the strict lower triangle is not read.
    Upper,
}

/// What to solve: BLAS `strsm`'s `side`, `uplo`, `transa` and `diag`. The default solves
/// L·X = B with a lower-triangular, non-unit L.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TrsmOptions {
    /// Left: op(A)·X = B; right: X·op(A) = B.
    pub side: Side,
    /// Which triangle of A is used.
    pub uplo: Uplo,
    /// op(A) = Aᵀ (BLAS `transa = 'T'`) when set, A otherwise.
    pub trans: bool,
    /// Take the diagonal of A as all ones without reading it (BLAS `diag = 'U'`).
    pub unit_diagonal: bool,
}

/// The sizes of one (batched) solve: A is n×n, there are k right-hand sides.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Problem {
    n: usize,
    k: usize,
    batch: usize,
    opts: TrsmOptions,
}

impl Problem {
    /// `batch` systems of order n with k right-hand sides each.
    pub(crate) fn new(n: usize, k: usize, batch: usize, opts: TrsmOptions) -> Self {
        Self { n, k, batch, opts }
    }

    /// The kernel variant and the block order: one block when n fits a workgroup, else blocks
    /// of the largest order the adapter runs.
    fn blocking(&self, ctx: &Context) -> (Variant, usize) {
        let variant = Variant::for_block(self.n.min(Variant::max_block(ctx)), self.k);
        (variant, variant.nb.min(self.n))
    }
}

/// Checks the shapes of A (batch×n×n) and B and returns (n, k), k the number of right-hand
/// sides. On the right side a vector may be given as 1×n or n×1 (same storage).
fn check_shapes(
    op: &'static str,
    a: Shape,
    b: Shape,
    opts: &TrsmOptions,
    ctx: &Context,
) -> Result<(usize, usize)> {
    if a.rows != a.cols {
        return Err(Error::shape(
            op,
            format!("A must be square (triangular n×n), but A is {a}"),
        ));
    }
    non_empty(op, "a", a)?;
    if a.batch != b.batch {
        return Err(Error::shape(
            op,
            format!(
                "A holds {} matrices but B holds {} (A is {a}, B is {b})",
                a.batch, b.batch
            ),
        ));
    }
    let n = a.rows;
    let k = match opts.side {
        Side::Left if b.rows == n => b.cols,
        Side::Right if b.cols == n => b.rows,
        Side::Right if b.cols == 1 && b.rows == n => 1,
        Side::Left => {
            return Err(Error::shape(
                op,
                format!(
                    "op(A)·X = B needs B with {n} rows (A is {a}), but B is {b}: B must be \
                     {n}×k (or {n}×1 for a vector)"
                ),
            ))
        }
        Side::Right => {
            return Err(Error::shape(
                op,
                format!(
                    "X·op(A) = B needs B with {n} columns (A is {a}), but B is {b}: B must be \
                     k×{n} (or {n}×1 / 1×{n} for a vector)"
                ),
            ))
        }
    };
    non_empty(op, "b", b)?;
    // The kernels index with 32-bit integers.
    for (what, shape) in [("A", a), ("B", b)] {
        let elements = (shape.batch * shape.rows * shape.cols) as u64;
        if elements > u32::MAX as u64 {
            return Err(Error::TooLarge {
                op,
                what: if what == "A" {
                    "A's elements (32-bit indexing)"
                } else {
                    "B's elements (32-bit indexing)"
                },
                needed: elements,
                limit: u32::MAX as u64,
                shape,
            });
        }
        ctx.check_elements(op, elements, shape)?;
    }
    Ok((n, k))
}

/// The built-in [`ContextOptions::trsm_split_min`](crate::ContextOptions::trsm_split_min): a
/// sub-problem of at least this many rows × right-hand sides × batch is split in half, a smaller
/// one peels one diagonal block at a time. 2²⁰ elements is 64 output tiles of the GEMM's
/// 128×128 variant for the half being updated (or 256 of its 64×64 one): about where one
/// update stops filling a large GPU and launch latency, not arithmetic, sets its time.
const SPLIT_MIN: usize = 1 << 20;

/// The blocked solve of one [`Problem`], recorded by [`Schedule::solve`].
struct Schedule<'a> {
    p: &'a Problem,
    a: Mats<'a>,
    x: Mats<'a>,
    variant: Variant,
    nb: usize,
    /// T = op(A) read transposed (relative to A's storage).
    read_t: bool,
    /// T lower: substitution runs forward.
    forward: bool,
    right: bool,
    /// Split in half while rows·k·batch ≥ this; peel one block below it.
    split_min: usize,
    /// Solved blocks kept for the GEMMs (a GEMM may not write a buffer it reads): either the
    /// whole of X's shape (`full`, when any sub-problem is split in half, as a split's GEMM
    /// reads many blocks) or one block of rows (when every step peels a single block).
    scratch: Option<(wgpu::Buffer, bool)>,
}

impl Schedule<'_> {
    /// Rows of the scratch per system.
    fn scratch_rows(&self) -> usize {
        match &self.scratch {
            Some((_, true)) => self.p.n,
            _ => self.nb,
        }
    }

    /// Where the solved rows starting at `r0` of X live in the scratch, as a row offset.
    fn scratch_row(&self, r0: usize) -> usize {
        match &self.scratch {
            Some((_, true)) => r0,
            _ => 0,
        }
    }

    /// Solves rows (left) / columns (right) `lo..hi` of X against T's diagonal block there,
    /// once everything outside that block has been subtracted. `last`: nothing solved here is
    /// read again (the very end of the whole solve), so the scratch copy is skipped.
    ///
    /// Above one block the range is split: `first` in substitution order is solved, its
    /// product with T's off-diagonal block subtracted from `second` by one GEMM, then `second`
    /// is solved. The split is in half (rounded to whole blocks) while the range is large
    /// enough (`split_min`), so the top GEMMs have inner dimension n/2, n/4, …, and peels one
    /// block (the previous blocked loop: rank-nb updates, less sequential work per launch) below.
    /// Splits are at multiples of nb from row 0, so only the block at n may be partial.
    fn solve(&self, rec: &mut Recorder, ctx: &Context, mut lo: usize, hi: usize, last: bool) {
        let nb = self.nb;
        let mut hi = hi;
        loop {
            let len = hi - lo;
            if len <= nb {
                self.leaf(rec, ctx, lo, len, last);
                return;
            }
            let halve = len * self.p.k * self.p.batch >= self.split_min;
            let mid = if halve {
                lo + (len / 2).div_ceil(nb) * nb
            } else if self.forward {
                lo + nb
            } else {
                lo + (len - 1) / nb * nb
            };
            debug_assert!(lo < mid && mid < hi && mid % nb == 0);
            let (first, second) = if self.forward {
                ((lo, mid), (mid, hi))
            } else {
                ((mid, hi), (lo, mid))
            };
            self.solve(rec, ctx, first.0, first.1, false);
            self.update(rec, ctx, first, second);
            (lo, hi) = second;
        }
    }

    /// The diagonal block of rows `j0..j0 + w` (w ≤ nb) solved in workgroup memory.
    fn leaf(&self, rec: &mut Recorder, ctx: &Context, j0: usize, w: usize, last: bool) {
        let (p, x) = (self.p, self.x);
        let x_tile = if self.right {
            Tile {
                buffer: x.buffer,
                offset: x.offset + j0 * x.ld,
                rs: x.ld,
                cs: 1,
                stride: x.stride,
            }
        } else {
            Tile {
                buffer: x.buffer,
                offset: x.offset + j0,
                rs: 1,
                cs: x.ld,
                stride: x.stride,
            }
        };
        let scratch_tile = match (&self.scratch, last) {
            (Some((buffer, _)), false) => {
                let (rows, r0, k) = (self.scratch_rows(), self.scratch_row(j0), p.k);
                // Left: rows×k (ld rows); right: k×rows (ld k).
                Some(if self.right {
                    Tile {
                        buffer,
                        offset: r0 * k,
                        rs: k,
                        cs: 1,
                        stride: rows * k,
                    }
                } else {
                    Tile {
                        buffer,
                        offset: r0,
                        rs: 1,
                        cs: rows,
                        stride: rows * k,
                    }
                })
            }
            _ => None,
        };
        SolveBlock {
            variant: self.variant,
            w,
            k: p.k,
            batch: p.batch,
            a: self.a.at(j0, j0),
            trans_a: self.read_t,
            forward: self.forward,
            unit: p.opts.unit_diagonal,
            x: x_tile,
            scratch: scratch_tile,
        }
        .record(rec, ctx);
    }

    /// `X[second] −= T[second, first] · X[first]` (right side: `X[:, second] −= X[:, first] ·
    /// op(A)[first, second]`), reading the solved `X[first]` from the scratch and the block of A
    /// through GEMM's transpose flags.
    fn update(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        (f0, f1): (usize, usize),
        (s0, s1): (usize, usize),
    ) {
        let Some((s_buf, _)) = &self.scratch else {
            return;
        };
        let (p, a, x, k) = (self.p, self.a, self.x, self.p.k);
        let (fw, sw) = (f1 - f0, s1 - s0);
        let rows = self.scratch_rows();
        let s_stride = rows * k;
        // The block of op(A) at rows r.., columns c.., as a GEMM operand and its transpose flag.
        let op_a = |r: usize, c: usize| -> (View, bool) {
            if p.opts.trans {
                (a.at(c, r).view(), true)
            } else {
                (a.at(r, c).view(), false)
            }
        };
        let r0 = self.scratch_row(f0);
        let gemm = if self.right {
            // X[:, s] -= X_f (k×fw) · op(A)[f, s]
            let s_view = View::new(s_buf, r0 * k, k);
            let (av, ta) = op_a(f0, s0);
            Gemm::new(
                k,
                sw,
                fw,
                -1.0,
                s_view,
                false,
                av,
                ta,
                1.0,
                x.at(0, s0).view(),
            )
            .batched(p.batch, [s_stride, a.stride, x.stride])
        } else {
            // X[s, :] -= op(A)[s, f] · X_f (fw×k)
            let s_view = View::new(s_buf, r0, rows);
            let (av, ta) = op_a(s0, f0);
            Gemm::new(
                sw,
                k,
                fw,
                -1.0,
                av,
                ta,
                s_view,
                false,
                1.0,
                x.at(s0, 0).view(),
            )
            .batched(p.batch, [a.stride, s_stride, x.stride])
        };
        gemm.record(rec, ctx);
    }
}

/// Records the in-place solve of the `batch` systems: `a` holds the n×n triangular matrices,
/// `x` (left: n×k, ld n; right: k×n, ld k) holds B on entry and X on exit. Allocates the scratch
/// buffer the blocked path needs (it lives as long as the recorded commands).
pub(crate) fn record_solve(
    rec: &mut Recorder,
    ctx: &Context,
    op: &'static str,
    p: &Problem,
    a: Mats,
    x: Mats,
) -> Result<()> {
    let (n, k) = (p.n, p.k);
    let right = p.opts.side == Side::Right;
    // T is op(A) (left) or op(A)ᵀ (right): read transposed and lower/upper accordingly.
    let read_t = p.opts.trans ^ right;
    let forward = (p.opts.uplo == Uplo::Lower) ^ read_t;
    let (variant, nb) = p.blocking(ctx);
    let split_min = ctx.trsm_split_min().unwrap_or(SPLIT_MIN).max(1);

    let scratch = if n > nb {
        // Split in half somewhere iff the whole problem is (the test is monotone in the rows).
        let full = n * k * p.batch >= split_min;
        let rows = if full { n } else { nb };
        let elements = (rows * k * p.batch) as u64;
        let shape = Shape::batch(p.batch, rows, k);
        if elements > u32::MAX as u64 {
            return Err(Error::TooLarge {
                op,
                what: "the block workspace's elements (32-bit indexing)",
                needed: elements,
                limit: u32::MAX as u64,
                shape,
            });
        }
        ctx.check_elements(op, elements, shape)?;
        Some((
            ctx.scratch_buffer("metalcore trsm workspace", elements),
            full,
        ))
    } else {
        None
    };
    Schedule {
        p,
        a,
        x,
        variant,
        nb,
        read_t,
        forward,
        right,
        split_min,
        scratch,
    }
    .solve(rec, ctx, 0, n, true);
    Ok(())
}

/// Records the diagonal extraction the checked calls read back; returns its buffer.
fn record_diagonal(rec: &mut Recorder, ctx: &Context, p: &Problem, a: Mats) -> wgpu::Buffer {
    let diag = ctx.storage_buffer("metalcore trsm diagonal", (p.n * p.batch) as u64);
    kt::extract_diagonal(rec, ctx, p.n, p.batch, a, &diag, 0);
    diag
}

/// Reads the diagonal back and reports the first exact zero, as `strtrs`'s info.
fn check_diagonal(ctx: &Context, op: &'static str, p: &Problem, diag: &wgpu::Buffer) -> Result<()> {
    let d = ctx.read_buffer("trsm diagonal", diag, 0, (p.n * p.batch) as u64)?;
    match d.iter().position(|&v| v == 0.0) {
        Some(pos) => Err(Error::Singular {
            op,
            matrix: pos / p.n,
            index: pos % p.n,
        }),
        None => Ok(()),
    }
}

/// Solve on `batch` matrices: `a_buf` holds A, `x_buf` B on entry (already copied there) and X
/// on exit. `checked` also extracts and checks the diagonal (one read-back).
#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &Context,
    op: &'static str,
    mut rec: Recorder,
    p: &Problem,
    a_buf: &wgpu::Buffer,
    x_buf: &wgpu::Buffer,
    checked: bool,
) -> Result<()> {
    let a = Mats::new(a_buf, 0, p.n, p.n * p.n);
    let x_ld = if p.opts.side == Side::Left { p.n } else { p.k };
    let x = Mats::new(x_buf, 0, x_ld, p.n * p.k);
    let diag = (checked && !p.opts.unit_diagonal).then(|| record_diagonal(&mut rec, ctx, p, a));
    record_solve(&mut rec, ctx, op, p, a, x)?;
    ctx.submit(rec)?;
    match diag {
        Some(d) => check_diagonal(ctx, op, p, &d),
        None => Ok(()),
    }
}

fn solve_new(
    ctx: &Context,
    op: &'static str,
    a: &GpuMatrix,
    b: &GpuMatrix,
    opts: &TrsmOptions,
    checked: bool,
) -> Result<GpuMatrix> {
    a.check_ctx(ctx, op, "a")?;
    b.check_ctx(ctx, op, "b")?;
    let (n, k) = check_shapes(op, a.shape_struct(), b.shape_struct(), opts, ctx)?;
    let p = Problem {
        n,
        k,
        batch: 1,
        opts: *opts,
    };
    let x = GpuMatrix::uninit(ctx, op, b.rows(), b.cols())?;
    let mut rec = ctx.recorder(op);
    rec.copy(&b.buffer, 0, &x.buffer, 0, b.len() as u64);
    run(ctx, op, rec, &p, &a.buffer, &x.buffer, checked)?;
    Ok(x)
}

fn solve_batch_new(
    ctx: &Context,
    op: &'static str,
    a: &GpuBatch,
    b: &GpuBatch,
    opts: &TrsmOptions,
    checked: bool,
) -> Result<GpuBatch> {
    a.check_ctx(ctx, op, "a")?;
    b.check_ctx(ctx, op, "b")?;
    let (n, k) = check_shapes(op, a.shape_struct(), b.shape_struct(), opts, ctx)?;
    let p = Problem {
        n,
        k,
        batch: a.batch(),
        opts: *opts,
    };
    let x = GpuBatch::uninit(ctx, op, b.batch(), b.rows(), b.cols())?;
    let mut rec = ctx.recorder(op);
    rec.copy(&b.buffer, 0, &x.buffer, 0, b.len() as u64);
    run(ctx, op, rec, &p, &a.buffer, &x.buffer, checked)?;
    Ok(x)
}

/// Triangular solve (BLAS `strsm` with alpha = 1): returns X with op(A)·X = B
/// ([`Side::Left`], B n×k) or X·op(A) = B ([`Side::Right`], B k×n), X shaped as B.
///
/// A is n×n; only the triangle named by `opts.uplo` is read (and its diagonal unless
/// `opts.unit_diagonal`). B may be a vector: n×1 on either side (1×n also on the right).
/// One submission, no read-back; recursively blocked with GEMM updates for large n (see the
/// module docs).
///
/// An exact zero on a non-unit diagonal is not detected here: X then holds inf/NaN as IEEE
/// arithmetic gives. Use [`trsm_checked`] for LAPACK `strtrs`-style detection.
///
/// Errors: A not square, B's shape not matching A and the side, an empty A or B, or sizes the
/// device cannot hold, each as an [`Error`] naming `trsm` and the shapes.
pub fn trsm(ctx: &Context, a: &GpuMatrix, b: &GpuMatrix, opts: &TrsmOptions) -> Result<GpuMatrix> {
    solve_new(ctx, "trsm", a, b, opts, false)
}

/// [`trsm`] that reports a singular A like LAPACK `strtrs`: an exact zero on a
/// non-unit diagonal gives [`Error::Singular`] with the 0-based index of the first such zero
/// (`matrix` is 0). The diagonal is extracted in the same submission as the solve and read
/// back (one read-back of n floats); with `unit_diagonal` nothing is checked or read back.
pub fn trsm_checked(
    ctx: &Context,
    a: &GpuMatrix,
    b: &GpuMatrix,
    opts: &TrsmOptions,
) -> Result<GpuMatrix> {
    solve_new(ctx, "trsm_checked", a, b, opts, true)
}

/// [`trsm`] in place: B is overwritten with X (BLAS `strsm`'s own convention). One submission,
/// no read-back.
pub fn trsm_in_place(
    ctx: &Context,
    a: &GpuMatrix,
    b: &mut GpuMatrix,
    opts: &TrsmOptions,
) -> Result<()> {
    const OP: &str = "trsm_in_place";
    a.check_ctx(ctx, OP, "a")?;
    b.check_ctx(ctx, OP, "b")?;
    let (n, k) = check_shapes(OP, a.shape_struct(), b.shape_struct(), opts, ctx)?;
    let p = Problem {
        n,
        k,
        batch: 1,
        opts: *opts,
    };
    run(ctx, OP, ctx.recorder(OP), &p, &a.buffer, &b.buffer, false)
}

/// Batched triangular solve: for every b, X_b with op(A_b)·X_b = B_b (left) or
/// X_b·op(A_b) = B_b (right), the same options for all. A is batch×n×n, B batch×n×k (left) or
/// batch×k×n (right), as [`trsm`] for each.
///
/// For n ≤ 64 (32 on adapters with only WebGPU's default 16 KiB of workgroup storage) each
/// system is solved by one workgroup holding its matrix and right-hand sides in workgroup memory,
/// all systems in one launch; larger n take the blocked path with batched GEMMs. One submission,
/// no read-back. Systems do not affect one another (a NaN stays in its system).
pub fn trsm_batched(
    ctx: &Context,
    a: &GpuBatch,
    b: &GpuBatch,
    opts: &TrsmOptions,
) -> Result<GpuBatch> {
    solve_batch_new(ctx, "trsm_batched", a, b, opts, false)
}

/// [`trsm_batched`] with LAPACK `strtrs`-style detection: the first system (in batch order) with
/// an exact zero on its non-unit diagonal is reported as [`Error::Singular`] (`matrix` its
/// index, `index` the 0-based position of its first zero). One read-back of n·batch floats;
/// none with `unit_diagonal`.
pub fn trsm_batched_checked(
    ctx: &Context,
    a: &GpuBatch,
    b: &GpuBatch,
    opts: &TrsmOptions,
) -> Result<GpuBatch> {
    solve_batch_new(ctx, "trsm_batched_checked", a, b, opts, true)
}

/// [`trsm_batched`] in place: B is overwritten with X.
pub fn trsm_batched_in_place(
    ctx: &Context,
    a: &GpuBatch,
    b: &mut GpuBatch,
    opts: &TrsmOptions,
) -> Result<()> {
    const OP: &str = "trsm_batched_in_place";
    a.check_ctx(ctx, OP, "a")?;
    b.check_ctx(ctx, OP, "b")?;
    let (n, k) = check_shapes(OP, a.shape_struct(), b.shape_struct(), opts, ctx)?;
    let p = Problem {
        n,
        k,
        batch: a.batch(),
        opts: *opts,
    };
    run(ctx, OP, ctx.recorder(OP), &p, &a.buffer, &b.buffer, false)
}
