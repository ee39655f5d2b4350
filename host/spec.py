"""The arithmetic contract: every numeric convention the gateware, the behaviour simulator and the
driver share. Defined once here; ``docs/arithmetic.md`` explains it. Nothing else may restate these
numbers.

Fixed-point values are integers q with a power-of-two scale: value = q * 2**-f ("f fractional bits").
"""
from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------------
# Word widths
# --------------------------------------------------------------------------------------------------
ACT_BITS = 16          # activations, state and every vector in the local memory: int16
ACC_BITS = 48          # accumulator: two's complement, wraps at 48 bits (the compiler proves no wrap)
BIAS_BITS = 32         # biases are int32 at the accumulator's scale
CODEBOOK_BITS = 8      # codebook entries are int8 at the matrix's weight scale

ACT_MIN, ACT_MAX = -(1 << (ACT_BITS - 1)), (1 << (ACT_BITS - 1)) - 1

# --------------------------------------------------------------------------------------------------
# Weight modes: bits per stored weight. 16 and 8 are plain two's complement integers; 6, 4 and 2
# are indices into an int8 codebook (NeuCompression). Ratios are against fp32 weights.
# --------------------------------------------------------------------------------------------------
WEIGHT_MODES = (16, 8, 6, 4, 2)
CODEBOOK_MODES = (6, 4, 2)
WEIGHT_MODE_CODE = {16: 0, 8: 1, 6: 2, 4: 3, 2: 4}   # 3-bit field in the program encoding
WEIGHT_MODE_FROM_CODE = {v: k for k, v in WEIGHT_MODE_CODE.items()}


def weight_int_bits(mode):
    """Width of the integer a decoded weight has: 16 for mode 16, else 8."""
    return 16 if mode == 16 else 8


def compression_ratio(mode):
    return 32.0 / mode


# --------------------------------------------------------------------------------------------------
# Fixed formats (fractional bits)
# --------------------------------------------------------------------------------------------------
F_ACT_IN = 12    # input of the sigmoid/tanh/softsign unit: Q3.12, range [-8, 8)
F_ACT_OUT = 14   # output of sigmoid/tanh/softsign: Q1.14, range [-2, 2); 1.0 == 16384
F_GATE = F_ACT_OUT
F_GRU_H = F_ACT_OUT  # a GRU's state h lives in [-1, 1]: Q1.14 always

# Hardware contract for hazard analysis: at most MAX_LANES multipliers, and at most
# MAX_DRAIN_CYCLES from an instruction's last weight to its last vector-memory write. An
# instruction of rows*K >= MAX_LANES*MAX_DRAIN_CYCLES MACs therefore outlives every write of the
# instructions before it.
MAX_LANES = 64
MAX_DRAIN_CYCLES = 64

# Segment alignment: the array shifts the segment's 9-bit lane weights, so a 16x18 multiplier
# per lane covers shifts up to 9 (the compiler gives the other segment shift 0).
MAX_SEG_SHIFT = 9

# Rows of one MATVEC: the core's row FIFO holds a whole instruction's rows, so the array never
# waits for the epilogue (the compiler splits larger layers).
MAX_ROWS = 512

MAX_SHIFT = 31   # largest alignment/requantisation shift the datapath supports
ALIGN = 64       # every weight matrix starts at a multiple of 64 bytes (the widest array word, N=64)


# --------------------------------------------------------------------------------------------------
# Integer primitives (numpy, vectorised; int64 in, int64 out)
# --------------------------------------------------------------------------------------------------
def shift_round(v, r):
    """Scale by 2**-r with round-half-up for r > 0 ((v + 2**(r-1)) >> r, arithmetic), exact left
    shift for r < 0. This is the only rounding the datapath does."""
    v = np.asarray(v, dtype=np.int64)
    if r > 0:
        return (v + (np.int64(1) << np.int64(r - 1))) >> np.int64(r)
    if r < 0:
        return v << np.int64(-r)
    return v


def saturate(v, bits=ACT_BITS):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def wrap(v, bits=ACC_BITS):
    """Two's complement wrap to `bits` (what a `bits`-wide register does)."""
    v = np.asarray(v, dtype=np.int64)
    m = np.int64(1) << np.int64(bits)
    half = np.int64(1) << np.int64(bits - 1)
    return ((v + half) & (m - 1)) - half


def requant(v, r, bits=ACT_BITS):
    """shift_round then saturate: accumulator -> int16 vector element."""
    return saturate(shift_round(v, r), bits)


def quantize(x, f, bits=ACT_BITS):
    """float -> saturated integer with f fractional bits, round half away from zero."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantize NaN or Inf")
    return saturate(np.round(x * 2.0 ** f), bits)


def dequantize(q, f):
    return np.asarray(q, dtype=np.float64) * 2.0 ** -f


def frac_bits_for(absmax, bits=ACT_BITS, headroom=1.0, lo=-8, hi=None):
    """Largest f such that absmax*headroom fits in a signed `bits` integer with f fractional bits."""
    hi = bits - 1 if hi is None else hi
    limit = (1 << (bits - 1)) - 1
    a = float(absmax) * headroom
    if a <= 0:
        return hi
    f = int(np.floor(np.log2(limit / a)))
    return int(min(max(f, lo), hi))
