"""cuBLAS side of the GPU report: torch.matmul FP16 (and PyTorch's 2:4 semi-structured sparse
matmul where this PyTorch and GPU have it) on the shapes `kernels gpu-bench` times.

Run on the device machine (CUDA + PyTorch, no .NET): python3 bench/gpu/torch_matmul.py OUT.json
Shapes are (M, K, n): Y[n, M] = X[n, K] @ W[M, K]^T, as in gpu-bench. Median of 9 timed runs
after a warm-up, each synchronised, as gpu-bench does.
"""
import json
import os
import sys
import time

import torch

SHAPES = [(4096, 4096, 4096), (8192, 8192, 4096), (11008, 4096, 1), (11008, 4096, 512), (4096, 11008, 1)]


def median_ms(fn, runs=9):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times[len(times) // 2]


def two_four(w):
    """Magnitude 2:4 along K (the input axis), as the runtime prunes."""
    groups = w.reshape(w.shape[0], -1, 4)
    keep = groups.abs().topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return (groups * mask).reshape(w.shape)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "torch-matmul.json"
    torch.manual_seed(1)
    dev = torch.device("cuda")
    rows = []
    try:
        from torch.sparse import to_sparse_semi_structured
    except ImportError:
        to_sparse_semi_structured = None
    for m, k, n in SHAPES:
        w = torch.randn(m, k, device=dev, dtype=torch.float16) * 0.02
        x = torch.randn(n, k, device=dev, dtype=torch.float16)
        ms = median_ms(lambda: torch.matmul(x, w.t()))
        rows.append({"m": m, "k": k, "n": n, "format": "dense F16 (cuBLAS)", "median_ms": ms,
                     "tflops": 2.0 * m * k * n / (ms * 1e-3) / 1e12, "weight_gbps": m * k * 2 / (ms * 1e-3) / 1e9})
        if to_sparse_semi_structured is not None and n >= 64:
            try:
                ws = to_sparse_semi_structured(two_four(w))
                # PyTorch's semi-structured kernels take the sparse operand first: (W x^T)^T.
                xt = x.t().contiguous()
                ms = median_ms(lambda: torch.mm(ws, xt))
                rows.append({"m": m, "k": k, "n": n, "format": "2:4 F16 (cuSPARSELt/CUTLASS)", "median_ms": ms,
                             "tflops": 2.0 * m * k * n / (ms * 1e-3) / 1e12})
            except Exception as e:  # not every GPU / build has it: say so in the report
                rows.append({"m": m, "k": k, "n": n, "format": "2:4 F16", "error": f"{type(e).__name__}: {e}"})
    for r in rows:
        print(r)
    # Written whole or not at all: a temp file beside the target, then a rename.
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}, f, indent=2)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
