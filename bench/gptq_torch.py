"""GPTQ in PyTorch, transcribed from AutoGPTQ's GPTQ.fasterquant + Quantizer (lazy batches of 128 columns).

Two uses:
  * the PyTorch side of bench/gptq.sh: times the same computation as bench/java/.../GptqBench.java on CPU, fp32,
    with torch's thread count set from --threads (OMP_NUM_THREADS); W and H come from .npy files the script's
    caller writes (see bench/gptq.sh);
  * python/gptq_reference.py imports gptq_lazy() to cross-check its column-by-column reference (run in fp64).

Run: /work/venv/bin/python bench/gptq_torch.py --w W.npy --h H.npy --bits 4 --group 128 --threads 2 [--desc-act]
Prints one line "torch_ms prepare=.. quantize=.. total=.." (milliseconds).
"""
import argparse
import time

import numpy as np
import torch


def find_params(x, maxq, sym, mse=False, norm=2.4, grid=100, maxshrink=0.8):
    """AutoGPTQ Quantizer.find_params(x, weight=True), perchannel: per-row scale and zero."""
    zeros = torch.zeros(x.shape[0], dtype=x.dtype)
    xmin = torch.minimum(x.min(1)[0], zeros)
    xmax = torch.maximum(x.max(1)[0], zeros)
    if sym:
        xmax = torch.maximum(torch.abs(xmin), xmax)
        neg = xmin < 0
        xmin[neg] = -xmax[neg]
    both = (xmin == 0) & (xmax == 0)
    xmin[both] = -1
    xmax[both] = +1
    scale = (xmax - xmin) / maxq
    if sym:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-xmin / scale)
    if mse:
        best = torch.full([x.shape[0]], float("inf"), dtype=x.dtype)
        for i in range(int(maxshrink * grid)):
            p = 1 - i / grid
            xmin1 = p * xmin
            xmax1 = p * xmax
            scale1 = (xmax1 - xmin1) / maxq
            zero1 = torch.round(-xmin1 / scale1) if not sym else zero
            q = dequantize(x, scale1.unsqueeze(1), zero1.unsqueeze(1), maxq)
            q -= x
            q.abs_()
            q.pow_(norm)
            err = torch.sum(q, 1)
            tmp = err < best
            if torch.any(tmp):
                best[tmp] = err[tmp]
                scale[tmp] = scale1[tmp]
                zero[tmp] = zero1[tmp]
    return scale.unsqueeze(1), zero.unsqueeze(1)


def codes(x, scale, zero, maxq):
    return torch.clamp(torch.round(x / scale) + zero, 0, maxq)


def dequantize(x, scale, zero, maxq):
    return scale * (codes(x, scale, zero, maxq) - zero)


def hessian_inverse(H, percdamp):
    """Damping + cholesky → cholesky_inverse → cholesky(upper), as AutoGPTQ (no retry)."""
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(H.shape[0])
    H[diag, diag] += damp
    L = torch.linalg.cholesky(H)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


def gptq_lazy(W, H, bits, group_size=-1, sym=True, actorder=False, static_groups=False, mse=False,
              percdamp=0.01, blocksize=128, stable_sort=True):
    """fasterquant on W [rows, cols] and H [cols, cols] in their dtype. Returns (codes in original column order,
    dequantized Q, scale [rows, G], zero [rows, G], g_idx, perm, timings)."""
    W = W.clone()
    H = H.clone()
    rows, columns = W.shape
    maxq = 2 ** bits - 1
    t0 = time.perf_counter()
    scale0, zero0 = find_params(W, maxq, sym, mse)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    scale, zero, groups = [], [], []
    now_idx = 1
    if static_groups:
        for i in range(0, columns, group_size):
            groups.append(find_params(W[:, i:i + group_size], maxq, sym, mse))
            scale.append(groups[-1][0])
            zero.append(groups[-1][1])
    perm = torch.arange(columns)
    if actorder:
        perm = torch.argsort(torch.diag(H), descending=True, stable=stable_sort)
        W = W[:, perm]
        H = H[perm][:, perm]
    invperm = torch.argsort(perm)
    Hinv = hessian_inverse(H, percdamp)
    t1 = time.perf_counter()
    Q = torch.zeros_like(W)
    C = torch.zeros_like(W)
    cur_scale, cur_zero = scale0, zero0
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        C1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if group_size != -1:
                if not static_groups:
                    if (i1 + i) % group_size == 0:
                        cur_scale, cur_zero = find_params(W[:, (i1 + i):(i1 + i + group_size)], maxq, sym, mse)
                    if ((i1 + i) // group_size) - now_idx == -1:
                        scale.append(cur_scale)
                        zero.append(cur_zero)
                        now_idx += 1
                else:
                    idx = i1 + i
                    if actorder:
                        idx = perm[idx]
                    cur_scale, cur_zero = groups[idx // group_size]
            c = codes(w.unsqueeze(1), cur_scale, cur_zero, maxq)
            q = (cur_scale * (c - cur_zero)).flatten()
            Q1[:, i] = q
            C1[:, i] = c.flatten()
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        C[:, i1:i2] = C1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    t2 = time.perf_counter()
    g = group_size if group_size != -1 else columns
    if static_groups and actorder:
        g_idx = perm // g
    else:
        g_idx = torch.arange(columns) // g
    if actorder:
        Q = Q[:, invperm]
        C = C[:, invperm]
        g_idx = g_idx[invperm]
    if not scale:
        scale.append(scale0)
        zero.append(zero0)
    return C, Q, torch.cat(scale, 1), torch.cat(zero, 1), g_idx, perm, (t1 - t0, t2 - t1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--w", required=True)
    ap.add_argument("--h", required=True)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--desc-act", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="optional .npy path for the codes (uint8), to compare with Java")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    W = torch.from_numpy(np.load(a.w)).float()
    H = torch.from_numpy(np.load(a.h)).float()
    t = time.perf_counter()
    C, _, _, _, _, _, (prep, quant) = gptq_lazy(W, H, a.bits, a.group, actorder=a.desc_act)
    total = time.perf_counter() - t
    if a.out:
        np.save(a.out, C.to(torch.uint8).numpy())
    print(f"torch_ms prepare={prep * 1e3:.0f} quantize={quant * 1e3:.0f} total={total * 1e3:.0f} "
          f"threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
