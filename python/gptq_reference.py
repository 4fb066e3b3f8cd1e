"""Independent GPTQ / RTN reference in torch fp64, and the generator of the Java golden fixtures.

The GPTQ here is the paper's column-by-column loop (every column's error is fed to all later columns at once, no
lazy batches), made to reproduce the semantics of AutoGPTQ / GPTQModel `fasterquant` (docs formats.md §2):
quantizer params of the original W for group size -1; dead columns (diag H == 0 -> H[d,d] = 1, W[:, d] = 0);
static groups from the post-dead, unpermuted W; act-order by a *stable* descending argsort of diag(H); damping
percdamp * mean(diag H); Hinv = cholesky(cholesky_inverse(cholesky(H)), upper); group params at each group start
computed from the W as it was at the start of the current 128-column block (the lazy-batch implementations read
the global W, which has not yet received the current block's updates); sym/asym min-max quantizer, round half to
even, optional MSE clipping search; g_idx as the reference returns it. RTN uses the same quantizer and natural
groups without error feedback.

Outputs per case: codes, scales, zeros, g_idx, perm, the GPTQ objective and tr(dW H dW^T) for GPTQ and RTN
(original W and H), and a tie mask: per element, 2 if its rounding argument x/scale (or its group's asym zero
-xmin/scale) was within 1e-9 of a half-integer, 1 if within 2e-3. Such ties are structural, not rare: with sym,
the group's extreme element maps to exactly +-(maxq+1)/2 up to the last ulp of its scale, so whether the
negative extreme gets code 0 or 1 depends on the last bit of the weights, i.e. on the summation order of the
error feedback. Another correct implementation may round those the other way, after which the row's error
feedback legitimately diverges; consumers compare rows exactly up to their first tie.

Generate the committed fixtures (deterministic; also cross-checks every case against the lazy-batch transcription
in bench/gptq_torch.py, which must give identical codes in fp64):
    /work/venv/bin/python python/gptq_reference.py --out src/test/resources/fixtures/gptq
A small random set for the live Java cross-check (GptqReferenceLiveTest):
    /work/venv/bin/python python/gptq_reference.py --out /tmp/x --quick --seed 7
"""
import argparse
import math
import os
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)


# ---------------------------------------------------------------- quantizer

def find_params(x, bits, sym, mse=False, norm=2.4, grid=100, maxshrink=0.8):
    """Per-row (scale, zero, zero_tie) of x [rows, k]; zero_tie is the tie level (see tie_level) of the asym zero
    point round(-xmin / scale): a tie there shifts every code of the group."""
    maxq = 2 ** bits - 1
    xmin = torch.clamp(x.min(dim=1).values, max=0.0)
    xmax = torch.clamp(x.max(dim=1).values, min=0.0)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    both0 = (xmin == 0) & (xmax == 0)
    xmin = torch.where(both0, torch.full_like(xmin, -1.0), xmin)
    xmax = torch.where(both0, torch.full_like(xmax, 1.0), xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-xmin / scale)
    ztie = torch.zeros_like(scale, dtype=torch.uint8) if sym else tie_level(-xmin, scale)
    if mse:
        best = torch.full_like(scale, math.inf)
        for i in range(int(maxshrink * grid)):
            p = 1 - i / grid
            xmin1, xmax1 = p * xmin, p * xmax
            scale1 = (xmax1 - xmin1) / maxq
            zero1 = zero if sym else torch.round(-xmin1 / scale1)
            err = (dequant(x, scale1[:, None], zero1[:, None], maxq) - x).abs().pow(norm).sum(dim=1)
            better = err < best
            best = torch.where(better, err, best)
            scale = torch.where(better, scale1, scale)
            zero = torch.where(better, zero1, zero)
            if not sym:
                ztie = torch.where(better, tie_level(-xmin1, scale1), ztie)
    return scale, zero, ztie


def quant(x, scale, zero, maxq):
    return torch.clamp(torch.round(x / scale) + zero, 0, maxq)


# A rounding argument within these distances of a half-integer is a tie that another correct implementation may
# round the other way: level 2 = within fp64 noise (structural ties: with sym, the group's extreme maps to exactly
# +-(maxq+1)/2 up to the last ulp of its scale), level 1 = within fp32 noise.
TIE64, TIE32 = 1e-9, 2e-3


def tie_level(x, scale):
    t = x / scale
    dist = (t - torch.floor(t) - 0.5).abs()
    return (dist < TIE32).to(torch.uint8) + (dist < TIE64).to(torch.uint8)


def dequant(x, scale, zero, maxq):
    return scale * (quant(x, scale, zero, maxq) - zero)


# ---------------------------------------------------------------- GPTQ, column by column

def gptq(W0, H0, bits, group, sym=True, desc_act=False, static=False, mse=False, percdamp=0.01, blocksize=128):
    W = W0.clone().double()
    H = H0.clone().double()
    rows, cols = W.shape
    maxq = 2 ** bits - 1
    g = cols if group == -1 else group
    full_scale, full_zero, full_ztie = find_params(W, bits, sym, mse)   # group -1: from the original W
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    static_params = [find_params(W[:, c:c + g], bits, sym, mse) for c in range(0, cols, g)] if static else None
    perm = torch.argsort(torch.diag(H), descending=True, stable=True) if desc_act else torch.arange(cols)
    W = W[:, perm]
    H = H[perm][:, perm]
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)

    codes = torch.zeros(rows, cols)
    ties = torch.zeros(rows, cols, dtype=torch.uint8)
    Q = torch.zeros(rows, cols)
    scales, zeros = [], []
    loss = torch.zeros(rows)
    snapshot = None
    s, z, zt = full_scale, full_zero, full_ztie
    for c in range(cols):
        if c % blocksize == 0:
            snapshot = W.clone()        # what the lazy-batch loop's global W holds during this block
        if static:
            s, z, zt = static_params[(int(perm[c]) if desc_act else c) // g]
        elif group != -1 and c % g == 0:
            s, z, zt = find_params(snapshot[:, c:c + g], bits, sym, mse)
            scales.append(s)
            zeros.append(z)
        w = W[:, c]
        d = Hinv[c, c]
        q = quant(w, s, z, maxq)
        dq = s * (q - z)
        ties[:, c] = torch.maximum(tie_level(w, s), zt)
        codes[:, c] = q
        Q[:, c] = dq
        loss += (w - dq) ** 2 / d ** 2 / 2
        err = (w - dq) / d
        W[:, c + 1:] -= err[:, None] * Hinv[c, c + 1:][None, :]
    if static:
        scales = [p[0] for p in static_params]
        zeros = [p[1] for p in static_params]
    elif group == -1:
        scales, zeros = [full_scale], [full_zero]

    invperm = torch.argsort(perm)
    if static and desc_act:
        g_idx = perm // g
    else:
        g_idx = torch.arange(cols) // g
    g_idx = g_idx[invperm]
    codes = codes[:, invperm]
    ties = ties[:, invperm]
    Q = Q[:, invperm]
    return dict(codes=codes, ties=ties, Q=Q, scales=torch.stack(scales, 1), zeros=torch.stack(zeros, 1), g_idx=g_idx,
                perm=perm, loss=loss.sum().item())


def rtn(W0, bits, group, sym=True, mse=False):
    W = W0.double()
    rows, cols = W.shape
    g = cols if group == -1 else group
    maxq = 2 ** bits - 1
    codes, Q, scales, zeros = torch.zeros(rows, cols), torch.zeros(rows, cols), [], []
    ties = torch.zeros(rows, cols, dtype=torch.uint8)
    for c in range(0, cols, g):
        s, z, zt = find_params(W[:, c:c + g], bits, sym, mse)
        ties[:, c:c + g] = torch.maximum(tie_level(W[:, c:c + g], s[:, None]), zt[:, None])
        codes[:, c:c + g] = quant(W[:, c:c + g], s[:, None], z[:, None], maxq)
        Q[:, c:c + g] = s[:, None] * (codes[:, c:c + g] - z[:, None])
        scales.append(s)
        zeros.append(z)
    return dict(codes=codes, ties=ties, Q=Q, scales=torch.stack(scales, 1), zeros=torch.stack(zeros, 1),
                g_idx=torch.arange(cols) // g)


def first_divergence(codes, ref_codes, ref_ties, perm, level):
    """Rows where codes differ from the reference; each must first differ (in processing order) at a reference tie
    of at least `level`, after which the row's error feedback legitimately diverges. Returns the number of
    diverging rows and of differing codes; raises on a difference that is not explained by a tie."""
    rows = 0
    for r in range(codes.shape[0]):
        diff = (codes[r, perm] != ref_codes[r, perm]).nonzero()
        if len(diff):
            k = int(diff[0])
            if ref_ties[r, perm[k]] < level:
                raise AssertionError(f"row {r} differs at processing position {k} without a tie")
            rows += 1
    return rows, int((codes != ref_codes).sum())


def weighted_error(W, Q, H):
    """tr(dW H dW^T) with the original W and H."""
    E = W.double() - Q
    return torch.sum((E @ H.double()) * E).item()


# ---------------------------------------------------------------- inputs and cases

def make_input(rng, rows, cols, seqs, tokens, dead, duplicate):
    """Correlated activations with per-column scales, dead columns and one exact duplicate column (a diag tie);
    W with an outlier, an all-zero row and an all-positive row. H = 2/seqs * sum_s x_s^T x_s in fp64."""
    k = max(4, cols // 4)
    n = seqs * tokens
    X = rng.standard_normal((n, k)) @ (rng.standard_normal((k, cols)) / math.sqrt(k)) * 0.8
    X += rng.standard_normal((n, cols)) * 0.3
    X *= np.exp(rng.normal(0.0, 0.7, cols))
    X[:, 3] = X[:, 2] * 0.98 + rng.standard_normal(n) * 0.02
    src, dst = duplicate
    X[:, dst] = X[:, src]
    X[:, dead] = 0
    X = X.astype(np.float32)
    H = np.zeros((cols, cols))
    for s in range(seqs):
        x = X[s * tokens:(s + 1) * tokens].astype(np.float64)
        H += x.T @ x
    H *= 2.0 / seqs
    W = (rng.standard_normal((rows, cols)) * np.exp(rng.normal(0, 0.4, (rows, 1))) * 0.05).astype(np.float32)
    W[1, 7] = 0.9
    W[2, :] = 0
    W[3, :] = np.abs(W[3, :])
    return X.reshape(seqs, tokens, cols), H, W


INPUTS = {
    # name: rows, cols, seqs, tokens, dead columns, duplicated column (src, dst), store X
    "a": (48, 256, 12, 64, [5, 200], (10, 130), False),
    "b": (32, 128, 8, 48, [77], (20, 21), False),
    "c": (24, 64, 6, 40, [0], (8, 40), True),
}

# id: input, bits, group, sym, desc_act, static, mse, blocksize
CASES = []
for bits in (2, 3, 4, 8):
    for group in (-1, 32, 128):
        CASES.append(("a", bits, group, True, False, False, False, 128))
    CASES.append(("a", bits, 64, False, False, False, False, 128))
CASES += [
    ("a", 4, 16, True, False, False, False, 128),
    ("a", 2, 16, False, True, False, False, 128),
    ("a", 4, 128, True, True, False, False, 128),
    ("a", 4, 32, False, True, False, False, 128),
    ("a", 3, 64, True, True, False, False, 128),
    ("a", 4, 128, True, True, True, False, 128),
    ("a", 4, 32, False, True, True, False, 128),
    ("a", 4, 64, True, False, True, False, 128),
    ("a", 4, 128, True, False, False, True, 128),
    ("a", 3, 32, False, True, False, True, 128),
    ("a", 4, 256, True, False, False, False, 128),
    ("a", 4, 128, True, False, False, False, 64),
    ("a", 4, 32, True, True, False, False, 32),
    ("b", 4, 32, True, True, False, False, 128),
    ("b", 8, -1, False, False, False, False, 128),
    ("b", 2, 64, True, True, True, False, 128),
    ("b", 3, 128, False, False, False, True, 128),
    ("b", 4, -1, True, True, False, False, 128),
    ("c", 4, 16, True, False, False, False, 128),
    ("c", 4, -1, False, True, False, False, 128),
    ("c", 3, 32, True, True, True, False, 128),
    ("c", 2, 16, True, False, False, True, 16),
]

QUICK_INPUTS = {"q": (40, 96, 5, 32, [11], (4, 60), False)}
QUICK_CASES = [
    ("q", 4, 32, True, True, False, False, 128),
    ("q", 3, 16, False, False, False, False, 32),
    ("q", 4, 32, True, True, True, True, 128),
    ("q", 8, -1, True, False, False, False, 128),
]


def generate(out, inputs, cases, seed, cross_check):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {}
    for name, (rows, cols, seqs, tokens, dead, dup, store_x) in inputs.items():
        X, H, W = make_input(rng, rows, cols, seqs, tokens, dead, dup)
        H32 = H.astype(np.float32)          # the fixture's H; its exact values are the input of both sides
        arrays = dict(W=W, H=H32)
        if store_x:
            arrays["X"] = X
            arrays["H64"] = H
        np.savez_compressed(os.path.join(out, f"input_{name}.npz"), **arrays)
        data[name] = (torch.from_numpy(W.astype(np.float64)), torch.from_numpy(H32.astype(np.float64)))
    lines = ["id\tinput\tbits\tgroup\tsym\tdesc_act\tstatic\tmse\tblock\tgptq_err\trtn_err\tloss"]
    for i, (name, bits, group, sym, desc, static, mse, block) in enumerate(cases):
        W, H = data[name]
        r = gptq(W, H, bits, group, sym, desc, static, mse, blocksize=block)
        t = rtn(W, bits, group, sym, mse)
        if cross_check:
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
            from gptq_torch import gptq_lazy
            C, _, sc, ze, gi, _, _ = gptq_lazy(W, H, bits, group, sym, desc, static, mse, blocksize=block)
            rows_div, codes_div = first_divergence(C, r["codes"], r["ties"], r["perm"], 2)
            assert torch.equal(gi, r["g_idx"])
            if rows_div:
                print(f"  case {i}: lazy-batch transcription diverges after a tie in {rows_div} row(s), "
                      f"{codes_div} codes", flush=True)
            else:
                assert torch.allclose(sc, r["scales"], rtol=1e-12, atol=0)
        ge = weighted_error(W, r["Q"], H)
        re = weighted_error(W, t["Q"], H)
        assert ge < re, f"case {i}: GPTQ error {ge} not below RTN {re}"
        cid = f"case{i:02d}"
        np.savez_compressed(
            os.path.join(out, f"{cid}.npz"),
            codes=r["codes"].numpy().astype(np.uint8), scales=r["scales"].numpy(),
            zeros=r["zeros"].numpy().astype(np.int32), g_idx=r["g_idx"].numpy().astype(np.int32),
            perm=r["perm"].numpy().astype(np.int32), ties=r["ties"].numpy(),
            rtn_codes=t["codes"].numpy().astype(np.uint8), rtn_scales=t["scales"].numpy(),
            rtn_ties=t["ties"].numpy(),
            rtn_zeros=t["zeros"].numpy().astype(np.int32))
        lines.append("\t".join(str(v) for v in (cid, name, bits, group, int(sym), int(desc), int(static),
                                                 int(mse), block, repr(ge), repr(re), repr(r["loss"]))))
        print(lines[-1], flush=True)
    with open(os.path.join(out, "cases.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--quick", action="store_true", help="a small random set instead of the fixture set")
    ap.add_argument("--no-cross-check", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.quick:
        generate(a.out, QUICK_INPUTS, QUICK_CASES, a.seed, not a.no_cross_check)
    else:
        generate(a.out, INPUTS, CASES, a.seed, not a.no_cross_check)


if __name__ == "__main__":
    main()
