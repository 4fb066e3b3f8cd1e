"""Reference table of float32 -> float16 (numpy) and float32 -> bfloat16 (torch) conversions of tricky values.

Both libraries round to nearest, ties to even. The values are chosen where a conversion can go wrong: the midpoints
between consecutive half / bfloat16 values and their float neighbours (subnormal range, exponent boundaries, around
1.0, near the largest finite value and the overflow threshold 65520), tiny values that round to zero or to the
smallest subnormal, infinities, NaNs, and seeded random floats.

Output: one line per float, `float32_bits fp16_bits bf16_bits` in hex; the Java test HalfTest reads it
(NaN results are compared for NaN-ness only, since payload conventions differ between libraries).

  python python/half_reference.py > src/test/resources/fixtures/io/half-reference.txt
"""
import sys

import numpy as np
import torch


def f32_bits(values):
    return np.asarray(values, dtype=np.float64).astype(np.float32).view(np.uint32)


def neighbours(bits, spread=2):
    out = []
    for b in bits:
        for d in range(-spread, spread + 1):
            v = int(b) + d
            if 0 <= v < 2 ** 32:
                out.append(v)
    return out


def main():
    rng = np.random.default_rng(20261123)
    bits = []
    # fp16 midpoints: between every pair of consecutive positive halves in chosen ranges, as exact float32 values
    halves = list(range(0, 64)) + list(range(0x3f0, 0x410)) + list(range(0x3bf0, 0x3c10)) + \
        list(range(0x7bc0, 0x7c00)) + [int(h) for h in rng.integers(0, 0x7bff, 120)]
    for h in halves:
        lo = np.array([h], dtype=np.uint16).view(np.float16).astype(np.float32)[0]
        hi = np.array([h + 1], dtype=np.uint16).view(np.float16).astype(np.float32)[0] if h < 0x7bff \
            else np.float32(65536.0)
        mid = (np.float64(lo) + np.float64(hi)) / 2  # exact in float32: halves have 11 significant bits
        bits += neighbours(f32_bits([mid, lo]))
    # bf16 midpoints: float bit patterns with the low half exactly 0x8000, and their neighbours
    bf = list(range(0, 64)) + list(range(0x7f00, 0x7f80)) + list(range(0x3f70, 0x3f90)) + \
        [int(b) for b in rng.integers(0, 0x7f80, 120)]
    bits += neighbours([(b << 16) | 0x8000 for b in bf])
    # overflow thresholds, tiny values, specials
    specials = [65504.0, 65519.0, 65519.99, 65520.0, 65520.01, 65536.0, 1e5, 3.4028234663852886e38, 2.0 ** -24,
                2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -26, 1.5 * 2.0 ** -24, 2.5 * 2.0 ** -24, 2.0 ** -14,
                2.0 ** -149, 1e-45, 0.0, 1.0, 0.1, 1.0 / 3.0, np.pi, 1e-8, 6.1e-5]
    bits += list(f32_bits(specials))
    bits += [0x7f800000, 0x7f800001, 0x7fc00000, 0x7fffffff, 0x7f7fffff, 0x7f7f8000, 0x00000001, 0x007fffff]
    # random floats: all bit patterns, and the range where fp16 is finite
    bits += [int(b) for b in rng.integers(0, 2 ** 32, 400, dtype=np.uint64)]
    bits += list(f32_bits(np.exp2(rng.uniform(-26, 16.5, 400)) * rng.choice([-1.0, 1.0], 400)))
    # both signs for everything
    bits = sorted(set(int(b) & 0x7fffffff for b in bits))
    bits = sorted(set(bits + [b | 0x80000000 for b in bits]))

    f = np.array(bits, dtype=np.uint32).view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        h = f.astype(np.float16).view(np.uint16)
    b = torch.from_numpy(f.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    out = sys.stdout
    for fb, hb, bb in zip(bits, h, b):
        out.write(f"{fb:08x} {int(hb):04x} {int(bb):04x}\n")


if __name__ == "__main__":
    main()
