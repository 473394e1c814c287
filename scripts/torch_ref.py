# CUDA-library reference timings (cuSOLVER / cuBLAS through PyTorch) for the rows of issue 8,
# GPU only, f32, TF32 off, medians of CUDA-event timings. Run on the lent GPU machine:
#   python3 scripts/torch_ref.py
import statistics, time, torch
torch.backends.cuda.matmul.allow_tf32 = False
dev = 'cuda'

def t(fn, reps=10, warm=3):
    # At least `warm` runs and 0.3 s of them, so the GPU clock is up (as examples/bench does).
    start, i = time.perf_counter(), 0
    while i < warm or (i < 200 and time.perf_counter() - start < 0.3):
        fn()
        torch.cuda.synchronize()
        i += 1
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    return statistics.median(ts)

print('torch', torch.__version__, torch.cuda.get_device_name(0), flush=True)
for n in (4096, 8192):
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    ms = t(lambda: a @ b)
    print(f'sgemm {n}: {ms:.3f} ms = {2 * n**3 / ms / 1e9:.1f} TF/s', flush=True)
for m, n in ((1024, 1024), (2048, 2048), (4096, 4096), (8192, 8192), (8192, 256), (65536, 256)):
    a = torch.randn(m, n, device=dev)
    print(f'geqrf {m}x{n}: {t(lambda: torch.geqrf(a), reps=5):.3f} ms | '
          f'linalg.qr (Q,R) {t(lambda: torch.linalg.qr(a), reps=5):.3f} ms', flush=True)
for n, k in ((1024, 1), (1024, 1024), (4096, 1), (4096, 4096)):
    l = torch.tril(torch.randn(n, n, device=dev)) + n ** 0.5 * torch.eye(n, device=dev)
    b = torch.randn(n, k, device=dev)
    print(f'strsm {n} k={k}: {t(lambda: torch.linalg.solve_triangular(l, b, upper=False)):.3f} ms',
          flush=True)
for bt, m, n in ((500, 8, 8), (1000, 16, 16), (500, 32, 32), (10000, 16, 16), (10000, 32, 32),
                 (100000, 16, 16), (1000, 64, 64), (10000, 256, 32)):
    a = torch.randn(bt, m, n, device=dev)
    print(f'geqrfBatched {bt}x{m}x{n}: {t(lambda: torch.geqrf(a)):.3f} ms', flush=True)
