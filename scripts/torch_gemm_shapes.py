# cuBLAS (torch.addmm, TF32 off) on the shapes of examples/gemm_shapes.rs: C -= A·B, medians of
# ten CUDA-event timings after three. On the lent GPU machine:
#   python3 scripts/torch_gemm_shapes.py
import torch
torch.backends.cuda.matmul.allow_tf32 = False
print('torch', torch.__version__, torch.cuda.get_device_name(0))
for m, n, k in ((8192, 7936, 256), (8192, 7936, 512), (4096, 3840, 256), (4096, 3584, 512),
                (256, 7936, 8192), (512, 7936, 8192)):
    a, b = torch.rand(m, k, device='cuda'), torch.rand(k, n, device='cuda')
    c = torch.rand(m, n, device='cuda')
    for _ in range(3):
        c.addmm_(a, b, alpha=-1)
    ts = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); c.addmm_(a, b, alpha=-1); e.record(); torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    ms = ts[len(ts) // 2]
    print(f'{m}x{n}x{k}: {ms:.3f} ms = {2 * m * n * k / ms / 1e9:.1f} TF/s')
