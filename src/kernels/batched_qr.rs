//! `wgsl/batched_qr.wgsl`: QR, least squares and back substitution of many small matrices, one
//! workgroup per matrix (or several matrices per workgroup for tiny sizes), each matrix held in
//! workgroup memory from load to result.
//!
//! [`Small`] is a kernel variant: the override constants that size the workgroup array to one
//! problem shape and split it among invocations. [`Small::new`] returns `None` when the shape does
//! not fit the adapter's workgroup memory or invocation limit; the caller then takes the blocked
//! path. Matrices of a batch are consecutive (matrix b at `b * rows * cols`), outputs likewise.

use super::householder::Mats;
use crate::context::{grid, Access, Context, KernelSource, Recorder};

pub(crate) const SOURCE: KernelSource = KernelSource {
    name: "batched_qr",
    source: include_str!("../../wgsl/batched_qr.wgsl"),
};

pub(crate) const SOURCE_COLUMNS: KernelSource = KernelSource {
    name: "batched_qr_cols",
    source: include_str!("../../wgsl/batched_qr_cols.wgsl"),
};

pub(crate) const SOURCE_TALL: KernelSource = KernelSource {
    name: "batched_qr_tall",
    source: include_str!("../../wgsl/batched_qr_tall.wgsl"),
};

/// Invocations a workgroup of tiny matrices aims for (several matrices share one workgroup until
/// about this many lanes are busy).
const TARGET_INVOCATIONS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    a_offset: u32,
    b_offset: u32,
    out_offset: u32,
    aux_offset: u32,
    n: u32,
    nrhs: u32,
    ldr: u32,
    r_stride: u32,
    ldc: u32,
    c_stride: u32,
    _pad: u32,
}

/// A variant of the one-workgroup-per-matrix kernels for one problem shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Small {
    m: usize,
    n: usize,
    k: usize,
    nrhs: usize,
    qcols: usize,
    r_rows: usize,
    ld: usize,
    cols: usize,
    /// Lanes per matrix.
    tpm: usize,
    /// Matrices per workgroup.
    mpw: usize,
    /// Floats of workgroup memory per matrix.
    per: usize,
}

impl Small {
    /// The variant for m×n matrices with `nrhs` right-hand sides appended (least squares),
    /// forming `qcols` columns of Q (0: none) and writing `r_rows` rows of R, or `None` when one
    /// matrix does not fit the adapter's workgroup memory.
    pub fn new(
        ctx: &Context,
        m: usize,
        n: usize,
        nrhs: usize,
        qcols: usize,
        r_rows: usize,
    ) -> Option<Self> {
        let k = m.min(n);
        let ld = m | 1;
        let cols = (n + nrhs).max(qcols);
        let per = ld.checked_mul(cols)?.checked_add(4 * k + n)?;
        let limits = ctx.limits();
        let max_inv = (limits.max_compute_invocations_per_workgroup as usize).min(256);
        let tpm = cols.min(max_inv).max(1);
        let bytes = |mpw: usize| -> Option<u32> { u32::try_from(per.checked_mul(mpw)? * 4).ok() };
        if !ctx.fits_workgroup(bytes(1)?, tpm as u32) {
            return None;
        }
        let mut mpw = (TARGET_INVOCATIONS / tpm).max(1);
        while mpw > 1 && !bytes(mpw).is_some_and(|b| ctx.fits_workgroup(b, (tpm * mpw) as u32)) {
            mpw -= 1;
        }
        Some(Self {
            m,
            n,
            k,
            nrhs,
            qcols,
            r_rows,
            ld,
            cols,
            tpm,
            mpw,
            per,
        })
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        [
            ("M", self.m),
            ("N", self.n),
            ("K", self.k),
            ("NRHS", self.nrhs),
            ("QCOLS", self.qcols),
            ("R_ROWS", self.r_rows),
            ("LD", self.ld),
            ("COLS", self.cols),
            ("TPM", self.tpm),
            ("MPW", self.mpw),
            ("PER", self.per),
            ("SM", self.per * self.mpw),
            ("WG", self.tpm * self.mpw),
        ]
        .into_iter()
        .map(|(k, v)| (k, v as f64))
        .collect()
    }

    fn groups(&self, ctx: &Context, batch: usize) -> [u32; 3] {
        grid(ctx, batch.div_ceil(self.mpw) as u32)
    }

    /// QR of `batch` matrices starting at element `a_offset` of `a`: R (r_rows×n each) to `r`
    /// from element `r_offset`, Q (m×qcols each) to `q` from `q_offset` when qcols > 0.
    #[allow(clippy::too_many_arguments)]
    pub fn record_qr(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        a: &wgpu::Buffer,
        a_offset: usize,
        q: Option<(&wgpu::Buffer, usize)>,
        r: &wgpu::Buffer,
        r_offset: usize,
        batch: usize,
    ) {
        debug_assert_eq!(q.is_some(), self.qcols > 0);
        let params = Params {
            batch: batch as u32,
            a_offset: a_offset as u32,
            out_offset: q.map_or(0, |q| q.1 as u32),
            aux_offset: r_offset as u32,
            ..Default::default()
        };
        // Mode R binds R in Q's place (written by nobody there).
        let q_buffer = q.map_or(r, |q| q.0);
        rec.dispatch(
            ctx,
            &SOURCE,
            "qr_small",
            &self.constants(),
            &params,
            &[
                (a, Access::Read),
                (a, Access::Read),
                (q_buffer, Access::ReadWrite),
                (r, Access::ReadWrite),
            ],
            self.groups(ctx, batch),
        );
    }

    /// Least squares min ‖A X − B‖ for `batch` systems: A (m×n each) from `a_offset` of `a`,
    /// B (m×nrhs each) from `b_offset` of `b`; X (n×nrhs each) to `x` from `x_offset`, and per
    /// matrix 1 + the first exactly-zero diagonal index of R (0: none) to `info` from
    /// `info_offset`, as f32.
    #[allow(clippy::too_many_arguments)]
    pub fn record_lstsq(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        a: (&wgpu::Buffer, usize),
        b: (&wgpu::Buffer, usize),
        x: (&wgpu::Buffer, usize),
        info: (&wgpu::Buffer, usize),
        batch: usize,
    ) {
        let params = Params {
            batch: batch as u32,
            a_offset: a.1 as u32,
            b_offset: b.1 as u32,
            out_offset: x.1 as u32,
            aux_offset: info.1 as u32,
            ..Default::default()
        };
        rec.dispatch(
            ctx,
            &SOURCE,
            "lstsq_small",
            &self.constants(),
            &params,
            &[
                (a.0, Access::Read),
                (b.0, Access::Read),
                (x.0, Access::ReadWrite),
                (info.0, Access::ReadWrite),
            ],
            self.groups(ctx, batch),
        );
    }
}

/// Rows a column-per-lane variant ([`Columns`]) holds in registers at most (four mat4x4).
const COLUMNS_MAX_ROWS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ColumnsParams {
    batch: u32,
    a_offset: u32,
    q_offset: u32,
    r_offset: u32,
}

/// A variant of `qr_columns` (`wgsl/batched_qr_cols.wgsl`) for one QR shape: one lane per column
/// of [A | I] holding it in registers, every lane forming each reflector from its column,
/// published in workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Columns {
    m: usize,
    n: usize,
    qcols: usize,
    r_rows: usize,
    /// Lanes per matrix: n, plus m when Q is formed.
    nc: usize,
    /// Staging leading dimension (≥ m, ≡ 4 mod 8).
    lda: usize,
    /// Staging floats per matrix.
    per: usize,
    /// Matrices per workgroup.
    mpw: usize,
    /// Steps written out (the kernel's UNROLL), see [`Columns::new`].
    unroll: bool,
}

impl Columns {
    /// The variant for an m×n QR forming `qcols` columns of Q (0: none) and writing `r_rows`
    /// rows of R, or `None` when m > 64 or it does not fit the adapter's workgroup limits.
    pub fn new(ctx: &Context, m: usize, n: usize, qcols: usize, r_rows: usize) -> Option<Self> {
        if m == 0 || n == 0 || m > COLUMNS_MAX_ROWS {
            return None;
        }
        let nc = n.checked_add(if qcols > 0 { m } else { 0 })?;
        let mut lda = m.div_ceil(4) * 4;
        if (lda / 4).is_multiple_of(2) {
            lda += 4;
        }
        let per = (lda.checked_mul(n)?).max(m * qcols).div_ceil(4) * 4;
        let qm = m.div_ceil(16);
        let bytes = |mpw: usize| -> Option<u32> {
            // Per matrix: staging, the published column (two halves) and a redo flag; per
            // workgroup one more word (the OR of the redo flags).
            let floats = mpw.checked_mul(per + 2 * 16 * qm + 1)?.checked_add(1)?;
            u32::try_from(floats.checked_mul(4)?).ok()
        };
        let fits = |mpw: usize| {
            bytes(mpw).is_some_and(|b| {
                u32::try_from(mpw * nc).is_ok_and(|inv| ctx.fits_workgroup(b, inv))
            })
        };
        if !fits(1) {
            return None;
        }
        // Steps written out up to 32 rows (at 64, 64 steps of four registers, the loops stay:
        // BENCHMARKS.md v48), except on GL: llvmpipe's GL driver compiles that kernel for
        // longer than wgpu's GL backend waits for its context lock (6 s) in another thread.
        let unroll = m <= 32 && ctx.adapter_info().backend != wgpu::Backend::Gl;
        // A matrix of 64 lanes with written-out steps (32×32 with Q) shares its workgroup with
        // a second one: 174 vs 180 µs for 10000 of them on an H100; smaller matrices keep
        // workgroups of about 64 lanes (four 16×16 or eight 8×8 per workgroup were no faster;
        // BENCHMARKS.md v51). Taller ones (the loop variant) were not measured that way.
        let target = if nc >= TARGET_INVOCATIONS && unroll {
            2 * TARGET_INVOCATIONS
        } else {
            TARGET_INVOCATIONS
        };
        let mut mpw = (target / nc).max(1);
        while mpw > 1 && !fits(mpw) {
            mpw -= 1;
        }
        Some(Self {
            m,
            n,
            qcols,
            r_rows,
            nc,
            lda,
            per,
            mpw,
            unroll,
        })
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        let qm = self.m.div_ceil(16);
        [
            ("M", self.m),
            ("N", self.n),
            ("K", self.m.min(self.n)),
            ("QCOLS", self.qcols),
            ("R_ROWS", self.r_rows),
            ("NC", self.nc),
            ("QM", qm),
            ("LDA", self.lda),
            ("PER", self.per),
            ("MPW", self.mpw),
            ("WG", self.mpw * self.nc),
            ("ST4", self.mpw * self.per / 4),
            ("VBN", 2 * self.mpw * 4 * qm),
            ("UNROLL", usize::from(self.unroll)),
        ]
        .into_iter()
        .map(|(k, v)| (k, v as f64))
        .collect()
    }

    /// QR of `batch` matrices starting at element `a_offset` of `a`: R (r_rows×n each) to `r`
    /// from element `r_offset`, Q (m×qcols each) to `q` from `q_offset` when qcols > 0. The
    /// same contract as [`Small::record_qr`].
    #[allow(clippy::too_many_arguments)]
    pub fn record_qr(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        a: &wgpu::Buffer,
        a_offset: usize,
        q: Option<(&wgpu::Buffer, usize)>,
        r: &wgpu::Buffer,
        r_offset: usize,
        batch: usize,
    ) {
        debug_assert_eq!(q.is_some(), self.qcols > 0);
        let params = ColumnsParams {
            batch: batch as u32,
            a_offset: a_offset as u32,
            q_offset: q.map_or(0, |q| q.1 as u32),
            r_offset: r_offset as u32,
        };
        // Mode R binds R in Q's place (written by nobody there).
        let q_buffer = q.map_or(r, |q| q.0);
        rec.dispatch(
            ctx,
            &SOURCE_COLUMNS,
            "qr_columns",
            &self.constants(),
            &params,
            &[
                (a, Access::Read),
                (q_buffer, Access::ReadWrite),
                (r, Access::ReadWrite),
            ],
            grid(ctx, batch.div_ceil(self.mpw) as u32),
        );
    }
}

/// Rows per lane a [`Tall`] variant holds at most (one mat4x4 per column slot).
const TALL_MAX_ROWS_PER_LANE: usize = 16;
/// Column slots per subgroup a [`Tall`] variant holds at most (its mat4x4 registers a0..a3).
const TALL_MAX_SLOTS: usize = 4;
/// Invocations of a [`Tall`] workgroup at most (see [`Tall::new`]).
const TALL_MAX_INVOCATIONS: u32 = 512;

/// Rows of one reflector in a [`Tall`] kernel's workgroup memory: whole vec4s of register rows
/// (`rpl` rounded up to 4) for each of the `s` lanes.
fn ldv(rpl: usize, s: usize) -> usize {
    rpl.div_ceil(4) * 4 * s
}

/// Floats of a [`Tall`] kernel's reflectors in workgroup memory (k reflectors of `ldv` rows;
/// stacked blocks keep k(k+1)/2 entries per triangle of `stack` rows), `None` on overflow.
fn vn(k: usize, ldv: usize, stack: usize) -> Option<usize> {
    if stack == 0 {
        return k.checked_mul(ldv);
    }
    ldv.div_ceil(stack).checked_mul(k.checked_mul(k + 1)? / 2)
}

/// A variant of `qr_tall` (`wgsl/batched_qr_tall.wgsl`) for one QR shape: one workgroup of
/// `nsg` subgroups per matrix, the matrix in registers (subgroup s holds columns s, s + nsg, …,
/// lane l rows l, l + S, …), each reflector computed once by its column's subgroup and
/// published in workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tall {
    m: usize,
    n: usize,
    qcols: usize,
    r_rows: usize,
    /// Subgroup size.
    s: usize,
    /// Subgroups per workgroup.
    nsg: usize,
    /// Rows per lane.
    rpl: usize,
    /// Column slots per subgroup.
    cps: usize,
    /// 0 for dense blocks; b for a TSQR level whose blocks are b×b upper triangles stacked
    /// (see [`Tall::stacked`]).
    stack: usize,
}

impl Tall {
    /// The variant for an m×n QR forming `qcols` columns of Q (0: none) and writing `r_rows`
    /// rows of R, or `None` without subgroups of one fixed size, or when the matrix does not
    /// fit one workgroup's registers (m ≤ 16·S, n ≤ 4 per subgroup of a workgroup of at most 512
    /// invocations) or its reflectors the workgroup memory.
    pub fn new(ctx: &Context, m: usize, n: usize, qcols: usize, r_rows: usize) -> Option<Self> {
        Self::with_stack(ctx, m, n, qcols, r_rows, 0)
    }

    /// The variant for one level above the leaves of a TSQR tree of b-column panels: blocks of
    /// at most `m` rows made of the b×b upper-triangular R factors of the level below, stacked.
    /// Their reflectors are structurally zero below each triangle's diagonal, so only the rest
    /// is kept in workgroup memory: 512-row blocks of 32 columns fit in 34 KiB where dense ones
    /// would need 64 KiB (the blocks' rows must start at whole triangles).
    pub fn stacked(ctx: &Context, m: usize, b: usize) -> Option<Self> {
        Self::with_stack(ctx, m, b, b, b, b)
    }

    fn with_stack(
        ctx: &Context,
        m: usize,
        n: usize,
        qcols: usize,
        r_rows: usize,
        stack: usize,
    ) -> Option<Self> {
        let s = ctx.fixed_subgroup_size()? as usize;
        if m == 0 || n == 0 {
            return None;
        }
        let rpl = m.div_ceil(s);
        let limits = ctx.limits();
        let most = limits
            .max_compute_invocations_per_workgroup
            .min(limits.max_compute_workgroup_size_x)
            .min(TALL_MAX_INVOCATIONS) as usize;
        // As many subgroups as 512 invocations hold (where the adapter allows): fewer column
        // slots per subgroup shorten each step. Measured on an H100 (GPU time; 8 / 16 / 32
        // subgroups of 32 lanes): 10000×256×32 with Q 4.04 / 3.63 / 11.2 ms, the 4096² QR
        // (TSQR blocks) 47.4 / 45.6 / 68.2 ms, 65536×256 5.87 / 5.62 / 9.20 ms.
        let nsg = (most / s).min(n);
        if rpl > TALL_MAX_ROWS_PER_LANE || nsg == 0 {
            return None;
        }
        let cps = n.div_ceil(nsg);
        if cps > TALL_MAX_SLOTS {
            return None;
        }
        let k = m.min(n);
        // The reflectors (`vs` or `vss`, in whole vec4s), the other array's one element (at
        // most a vec4), the k taus, the atomic counter and the gate flag of TSQR levels.
        let floats = vn(k, ldv(rpl, s), stack)?
            .next_multiple_of(4)
            .checked_add(4 + k + 2)?;
        let bytes = u32::try_from(floats.checked_mul(4)?).ok()?;
        ctx.fits_workgroup(bytes, (nsg * s) as u32).then_some(Self {
            m,
            n,
            qcols,
            r_rows,
            s,
            nsg,
            rpl,
            cps,
            stack,
        })
    }

    /// Rows of the matrices (blocks) this variant takes.
    pub fn m(&self) -> usize {
        self.m
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        let k = self.m.min(self.n);
        let ldv = ldv(self.rpl, self.s);
        let vn = vn(k, ldv, self.stack).expect("checked in Tall::new");
        // Dense reflectors as vec4s in `vs`, stacked ones as floats in `vss` (the other 1).
        let (vs, vss) = if self.stack == 0 {
            (vn.div_ceil(4), 1)
        } else {
            (1, vn)
        };
        let mut constants = vec![
            ("M", self.m),
            ("N", self.n),
            ("K", k),
            ("QCOLS", self.qcols),
            ("R_ROWS", self.r_rows),
            ("S", self.s),
            ("NSG", self.nsg),
            ("RPL", self.rpl),
            ("CPS", self.cps),
            ("LDV", ldv),
            ("VN", vs),
            ("VNS", vss),
            ("WG", self.nsg * self.s),
        ];
        if self.stack > 0 {
            constants.push(("STACK", self.stack));
            constants.push(("NBLK", ldv.div_ceil(self.stack)));
        }
        constants.into_iter().map(|(k, v)| (k, v as f64)).collect()
    }

    /// QR of `batch` matrices, one workgroup each; the same contract as [`Small::record_qr`].
    #[allow(clippy::too_many_arguments)]
    pub fn record_qr(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        a: &wgpu::Buffer,
        a_offset: usize,
        q: Option<(&wgpu::Buffer, usize)>,
        r: &wgpu::Buffer,
        r_offset: usize,
        batch: usize,
    ) {
        debug_assert_eq!(q.is_some(), self.qcols > 0);
        let (m, n) = (self.m, self.n);
        let params = TallParams {
            count: batch as u32,
            nblocks: 1,
            rows: m as u32,
            a_offset: a_offset as u32,
            a_ld: m as u32,
            a_stride: (m * n) as u32,
            q_offset: q.map_or(0, |q| q.1 as u32),
            q_ld: m as u32,
            q_stride: (m * self.qcols) as u32,
            r_offset: r_offset as u32,
            r_ld: self.r_rows as u32,
            r_stride: (self.r_rows * n) as u32,
            gate: 0,
        };
        // Mode R binds R in Q's place (written by nobody there).
        let q_buffer = q.map_or(r, |q| q.0);
        self.dispatch(rec, ctx, &params, [a, q_buffer, r], batch, false);
    }

    /// One level of a TSQR tree (`kernels::tsqr`): each of `batch` matrices of `rows` rows (at
    /// `x`, column stride `x.ld`, matrix stride `x.stride`) cut into `nblocks` blocks, each
    /// block's explicit Q written at its rows of `q` and its R (b×b, zeros below the diagonal)
    /// at rows g·b … of `r`. The variant must have been made with qcols = r_rows = n = b and
    /// m ≥ the largest block. With `gate` (an element of each matrix's part of `q`, `q.stride`
    /// apart), the workgroups of a matrix return at once where its gate is 0.0
    /// (`kernels::cholqr` factored its panel).
    #[allow(clippy::too_many_arguments)]
    pub fn record_blocks(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        x: Mats,
        rows: usize,
        nblocks: usize,
        q: Mats,
        r: Mats,
        batch: usize,
        gate: Option<usize>,
    ) {
        debug_assert!(
            self.qcols == self.n && self.r_rows == self.n && rows.div_ceil(nblocks) <= self.m
        );
        let params = TallParams {
            count: (nblocks * batch) as u32,
            nblocks: nblocks as u32,
            rows: rows as u32,
            a_offset: x.offset as u32,
            a_ld: x.ld as u32,
            a_stride: x.stride as u32,
            q_offset: q.offset as u32,
            q_ld: q.ld as u32,
            q_stride: q.stride as u32,
            r_offset: r.offset as u32,
            r_ld: r.ld as u32,
            r_stride: r.stride as u32,
            gate: gate.unwrap_or(0) as u32,
        };
        self.dispatch(
            rec,
            ctx,
            &params,
            [x.buffer, q.buffer, r.buffer],
            nblocks * batch,
            gate.is_some(),
        );
    }

    fn dispatch(
        &self,
        rec: &mut Recorder,
        ctx: &Context,
        params: &TallParams,
        [a, q, r]: [&wgpu::Buffer; 3],
        count: usize,
        gated: bool,
    ) {
        let mut constants = self.constants();
        if gated {
            constants.push(("GATED", 1.0));
        }
        rec.dispatch(
            ctx,
            &SOURCE_TALL,
            "qr_tall",
            &constants,
            params,
            &[
                (a, Access::ReadWrite),
                (q, Access::ReadWrite),
                (r, Access::ReadWrite),
            ],
            grid(ctx, count as u32),
        );
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TallParams {
    count: u32,
    nblocks: u32,
    rows: u32,
    a_offset: u32,
    a_ld: u32,
    a_stride: u32,
    q_offset: u32,
    q_ld: u32,
    q_stride: u32,
    r_offset: u32,
    r_ld: u32,
    r_stride: u32,
    gate: u32,
}

/// R X = `C[0:n]` for `batch` systems, one workgroup each, in global memory: R is the upper
/// triangle of the n×n leading block of each matrix in `r` (as left by the blocked
/// factorization), C = QᵀB in `c` (nrhs columns each). X (n×nrhs, consecutive) goes to `x` from
/// element `x_offset`; 1 + the first exactly-zero diagonal index (0: none) to `info` from
/// `info_offset`, as f32.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_back_substitute(
    rec: &mut Recorder,
    ctx: &Context,
    n: usize,
    nrhs: usize,
    r: Mats,
    c: Mats,
    x: (&wgpu::Buffer, usize),
    info: (&wgpu::Buffer, usize),
    batch: usize,
) {
    let params = Params {
        batch: batch as u32,
        a_offset: r.offset as u32,
        b_offset: c.offset as u32,
        out_offset: x.1 as u32,
        aux_offset: info.1 as u32,
        n: n as u32,
        nrhs: nrhs as u32,
        ldr: r.ld as u32,
        r_stride: r.stride as u32,
        ldc: c.ld as u32,
        c_stride: c.stride as u32,
        _pad: 0,
    };
    let wg = ctx.workgroup_1d();
    rec.dispatch(
        ctx,
        &SOURCE,
        "back_substitute",
        &[("WG", wg as f64)],
        &params,
        &[
            (r.buffer, Access::Read),
            (c.buffer, Access::Read),
            (x.0, Access::ReadWrite),
            (info.0, Access::ReadWrite),
        ],
        grid(ctx, batch as u32),
    );
}
