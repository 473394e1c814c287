//! A matrix used with a Context other than the one that created it: every public operation
//! answers `Error::ForeignContext` naming itself and the argument, before anything is recorded.
//! (Without the check, another context's buffer id was looked up in this device's registry:
//! wgpu panicked in `to_col_major`, and `qr` reported "source and destination cannot be the same
//! buffer" — ids of two instances collide, so it could also have used the wrong buffer.)

mod common;
use common::*;
use metalcore::*;

fn foreign(what: &str, r: Result<impl Sized>, op: &str, name: &str) {
    match r {
        Err(e @ Error::ForeignContext { .. }) => {
            let Error::ForeignContext { op: o, name: n, .. } = e else {
                unreachable!()
            };
            assert_eq!((o, n), (op, name), "{what}: wrong op or argument named");
            let msg = e.to_string();
            assert!(
                msg.starts_with(op) && msg.contains(name) && msg.contains("another Context"),
                "{what}: {msg}"
            );
        }
        Err(e) => panic!("{what}: expected ForeignContext, got {e}"),
        Ok(_) => panic!("{what}: a matrix of another context was accepted"),
    }
}

#[test]
fn every_operation_refuses_another_contexts_matrices() {
    let own = ctx();
    let other = Context::new().expect("a second context on the same adapter");
    let mut rng = Rng::new(5);
    let up = |ctx: &Context, m: usize, n: usize, rng: &mut Rng| {
        GpuMatrix::from_col_major(ctx, m, n, &rng.normal_vec(m * n)).unwrap()
    };
    let ups = |ctx: &Context, b: usize, m: usize, n: usize, rng: &mut Rng| {
        GpuBatch::from_col_major(ctx, b, m, n, &rng.normal_vec(b * m * n)).unwrap()
    };
    // A diagonally dominant lower triangle, so the good calls below succeed.
    let mut l = vec![0.0f32; 16];
    for j in 0..4 {
        l[j + 4 * j] = 4.0;
        for i in j + 1..4 {
            l[i + 4 * j] = 0.5;
        }
    }
    let a = up(&other, 6, 4, &mut rng);
    let sq = GpuMatrix::from_col_major(&other, 4, 4, &l).unwrap();
    let b = up(own, 4, 2, &mut rng);
    let opts = TrsmOptions::default();

    foreign(
        "to_col_major",
        a.to_col_major(own),
        "GpuMatrix::to_col_major",
        "self",
    );
    foreign(
        "to_row_major",
        a.to_row_major(own),
        "GpuMatrix::to_col_major",
        "self",
    );
    foreign(
        "duplicate",
        a.duplicate(own),
        "GpuMatrix::duplicate",
        "self",
    );
    foreign("qr", qr(own, &a, QrMode::Reduced), "qr", "a");
    foreign("geqrf", geqrf(own, &a, &QrOptions::default()), "geqrf", "a");
    foreign("geqr2", geqr2(own, &a), "geqr2", "a");
    foreign("column_norms", column_norms(own, &a), "column_norms", "a");
    foreign("matmul", matmul(own, &b, true, &a, true), "matmul", "b");
    foreign("lstsq", lstsq(own, &a, &b), "lstsq", "a");
    foreign("solve", solve(own, &sq, &b), "solve", "a");
    foreign("trsm", trsm(own, &sq, &b, &opts), "trsm", "a");
    let mut b2 = b.duplicate(own).unwrap();
    foreign(
        "trsm_in_place",
        trsm_in_place(own, &sq, &mut b2, &opts),
        "trsm_in_place",
        "a",
    );
    // The output argument too.
    let own_sq = GpuMatrix::from_col_major(own, 4, 4, &l).unwrap();
    let mut c_other = up(&other, 4, 2, &mut rng);
    foreign(
        "gemm's c",
        gemm(own, 1.0, &own_sq, false, &b, false, 0.0, &mut c_other),
        "gemm",
        "c",
    );
    // Factors made on one context, applied on the other.
    let f = geqrf(&other, &a, &QrOptions::default()).unwrap();
    foreign("QrFactors::r", f.r(own, false), "QrFactors::r", "self.rv");
    foreign("QrFactors::q", f.q(own, false), "QrFactors::q", "self.rv");
    let mut c6 = up(own, 6, 2, &mut rng);
    foreign(
        "apply_qt",
        f.apply_qt(own, &mut c6),
        "QrFactors::apply_qt",
        "self.rv",
    );
    foreign("larft", larft(own, &f.rv, &f.tau, 0), "larft", "r_v");
    let t_own = GpuMatrix::zeros(own, 4, 4).unwrap();
    foreign(
        "larfb",
        larfb(own, &mut c6, &f.rv, &t_own, true, 0),
        "larfb",
        "r_v",
    );

    let ab = ups(&other, 3, 6, 4, &mut rng);
    let bb = ups(own, 3, 6, 1, &mut rng);
    foreign(
        "qr_batched",
        qr_batched(own, &ab, QrMode::R),
        "qr_batched",
        "a",
    );
    foreign(
        "lstsq_batched",
        lstsq_batched(own, &ab, &bb),
        "lstsq_batched",
        "a",
    );
    foreign(
        "GpuBatch::to_col_major",
        ab.to_col_major(own),
        "GpuBatch::to_col_major",
        "self",
    );
    let lb = ups(&other, 2, 4, 4, &mut rng);
    let rb = ups(own, 2, 4, 1, &mut rng);
    foreign(
        "trsm_batched",
        trsm_batched(own, &lb, &rb, &opts),
        "trsm_batched",
        "a",
    );

    // The same calls on the owning context work.
    assert_eq!(a.to_col_major(&other).unwrap().len(), 24);
    assert!(qr(&other, &a, QrMode::Reduced).is_ok());
    assert!(trsm(own, &own_sq, &b, &opts).is_ok());
    assert!(qr_batched(&other, &ab, QrMode::R).is_ok());
}

/// `disable_cooperative_matrix` keeps the large GEMMs off cooperative matrices, and a context
/// from `from_wgpu` never uses them (it cannot see the adapter's configurations); both then
/// run `gemm_large` for a product of 128 whole tiles (K = 512, deep enough for `gemm_coop`).
#[test]
fn cooperative_matrices_stay_off_when_asked() {
    let off = Context::with_options(metalcore::ContextOptions {
        disable_cooperative_matrix: true,
        ..Default::default()
    })
    .unwrap();
    assert!(!off.coop_gemm());
    let wrapped = Context::from_wgpu(
        off.device().clone(),
        off.queue().clone(),
        off.adapter_info().clone(),
    );
    assert!(!wrapped.coop_gemm());
    for c in [&off, &wrapped] {
        let a = metalcore::GpuMatrix::filled(c, 2048, 512, 1.0).unwrap();
        let b = metalcore::GpuMatrix::filled(c, 512, 1024, 0.5).unwrap();
        let p = metalcore::matmul(c, &a, false, &b, false).unwrap();
        assert!(p.to_col_major(c).unwrap().iter().all(|&x| x == 256.0));
        let entries: Vec<_> = c.compiled_kernels().iter().map(|k| k.entry).collect();
        assert!(entries.contains(&"gemm_large"), "{entries:?}");
        assert!(!entries.contains(&"gemm_coop"), "{entries:?}");
    }
}
