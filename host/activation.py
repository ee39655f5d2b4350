"""Piecewise-linear (PWL) activation unit: the bit-exact integer definition of tanh, sigmoid and
softsign that the gateware implements and the behaviour simulator reproduces.

Input q: int16, Q3.12 (x = q / 2**12, [-8, 8)). Output: Q1.14 (1.0 == 16384), in [-16384, 16384].
All arithmetic below is on integers; ``>>`` is arithmetic, ``rnd(z, r) = (z + 2**(r-1)) >> r``
(``spec.shift_round``, round half up).

1. Sign and magnitude: ``neg = q < 0``; ``a = min(|q|, 32767)`` (so -32768 is read as -32767;
   15 bits unsigned).
2. Core input ``v`` (16 bits unsigned, Q3.13, value v / 2**13 in [0, 8)):
   tanh, softsign: ``v = a << 1``;  sigmoid: ``v = a`` (the core evaluates tanh(x/2), exactly,
   no LSB of x is lost).
3. Two-level segment index (the same for both ROMs; N_SEG = 224 segments per table):
   if ``v < 2**14`` (|core arg| < 2): fine segment, 128 LSB wide:
        ``addr = v[13:7]`` (0..127),   ``frac = v[6:0]`` (7 bits)
   else: coarse segment, 512 LSB wide:
        ``addr = v[15:9] + 96`` (128..223), ``frac = v[8:0]`` (9 bits)
   (frac is unsigned, the offset of v from the segment start.)
4. ROM word at ``addr`` of the function's table (tanh table for tanh AND sigmoid; softsign table
   for softsign): slope ``S`` (signed 16 bits, core LSBs per v LSB) and intercept ``C`` (signed
   20 bits, Q.18). One 36-bit word ``{S[15:0], C[19:0]}``; both tables (2 x 224 words) fit one
   512 x 36 block RAM with the table select as address bit 8.
5. One multiply and one add, core result ``R`` in Q.27 (F_CORE = 27):
   ``R = (C << 9) + S * frac``   (16 x 10-bit signed product, 25 bits; R fits 30 bits signed).
6. Rounding and output transform on the unrounded R:
   tanh, softsign: ``u = rnd(R, 13)``                  (u in [0, 16384])
   sigmoid:        ``u = rnd(R + 2**27, 14)``          (= (1 + tanh(x/2)) / 2, u in [8192, 16384])
7. Symmetry:  tanh, softsign: ``out = -u if neg else u``;  sigmoid: ``out = 16384 - u if neg else u``.
   relu (dispatcher only; exact, handled elsewhere in the datapath): ``out = max(q, 0)``, same scale
   as the input.

The tables are generated deterministically on first use (~0.3 s, cached in ``_CACHE``): per
segment the discrete minimax line (exact for these concave functions on |x|) is quantised, then
(S, C) is searched in integer space around it to minimise the maximum error of the final integer
outputs of every function that uses the table, subject to monotonicity across segment boundaries,
outputs <= 16384 and exact zero points (tanh(0) = 0, sigmoid(0) = 8192, softsign(0) = 0).
``docs/activation.md`` has the error figures.
"""
from __future__ import annotations

import numpy as np

from .spec import ACT_MAX, F_ACT_IN, F_ACT_OUT, shift_round

# --------------------------------------------------------------------------------------------------
# Layout of the core (see the module docstring); the hardware builds the ROM from tables().
# --------------------------------------------------------------------------------------------------
F_V = F_ACT_IN + 1          # 13: core input v is Q3.13
V_BITS = 16                 # v in [0, 2**16)
SPLIT_BIT = 14              # v < 2**14 -> fine segments
FINE_FRAC = 7               # fine segment: 2**7 v-LSBs wide, frac = v[6:0]
COARSE_FRAC = 9             # coarse segment: 2**9 v-LSBs wide, frac = v[8:0]
N_FINE = 1 << (SPLIT_BIT - FINE_FRAC)                           # 128
COARSE_BASE = N_FINE - (1 << (SPLIT_BIT - COARSE_FRAC))         # 96: addr = v[15:9] + 96
N_SEG = N_FINE + (1 << (V_BITS - COARSE_FRAC)) - (1 << (SPLIT_BIT - COARSE_FRAC))   # 224
ADDR_BITS = 8
F_CORE = 27                 # core result R is Q.27
F_ICPT = 18                 # intercept C is Q.18
ICPT_SHIFT = F_CORE - F_ICPT  # 9
SLOPE_BITS = 16             # S: signed 16
ICPT_BITS = 20              # C: signed 20
WORD_BITS = SLOPE_BITS + ICPT_BITS   # 36: {S, C}
ONE = 1 << F_ACT_OUT        # 16384

FUNCS = ("tanh", "sigmoid", "softsign", "relu")
PWL_FUNCS = ("tanh", "sigmoid", "softsign")
TABLE_OF = {"tanh": "tanh", "sigmoid": "tanh", "softsign": "softsign"}   # function -> ROM table
TABLES = ("tanh", "softsign")

_CACHE: dict = {}


# --------------------------------------------------------------------------------------------------
# Exact float functions
# --------------------------------------------------------------------------------------------------
def act_float(func, x):
    """The exact (float64) function the unit approximates."""
    x = np.asarray(x, dtype=np.float64)
    if func == "tanh":
        return np.tanh(x)
    if func == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))
    if func == "softsign":
        return x / (1.0 + np.abs(x))
    if func == "relu":
        return np.maximum(x, 0.0)
    raise ValueError(f"unknown activation {func!r}; expected one of {FUNCS}")


# --------------------------------------------------------------------------------------------------
# Integer core
# --------------------------------------------------------------------------------------------------
def _index(v):
    """v (int64, [0, 2**16)) -> (ROM address, frac)."""
    fine = v < (1 << SPLIT_BIT)
    addr = np.where(fine, v >> FINE_FRAC, (v >> COARSE_FRAC) + COARSE_BASE)
    frac = np.where(fine, v & ((1 << FINE_FRAC) - 1), v & ((1 << COARSE_FRAC) - 1))
    return addr, frac


def _seg_start(addr):
    addr = np.asarray(addr, dtype=np.int64)
    return np.where(addr < N_FINE, addr << FINE_FRAC, (addr - COARSE_BASE) << COARSE_FRAC)


def _seg_width(addr):
    return np.where(np.asarray(addr) < N_FINE, 1 << FINE_FRAC, 1 << COARSE_FRAC)


def _core(table, v):
    addr, frac = _index(v)
    return (table["intercept"][addr] << ICPT_SHIFT) + table["slope"][addr] * frac


def _outputs(func, r):
    """Core result R -> unsigned output magnitude u (before symmetry)."""
    if func == "sigmoid":
        return shift_round(r + (1 << F_CORE), F_CORE + 1 - F_ACT_OUT)
    return shift_round(r, F_CORE - F_ACT_OUT)


def act_q(func, q):
    """The bit-exact activation unit: int16 Q3.12 array (any shape) -> np.int64 array, Q1.14 (relu:
    max(q, 0) at the input's scale)."""
    qa = np.asarray(q)
    if qa.dtype.kind not in "iu":
        raise TypeError(f"act_q expects an integer array, got dtype {qa.dtype}")
    if qa.dtype.kind == "u" and qa.size and qa.max() > ACT_MAX:
        raise ValueError("act_q input out of int16 range")
    q64 = qa.astype(np.int64)
    if q64.size and (q64.min() < -(ACT_MAX + 1) or q64.max() > ACT_MAX):
        raise ValueError("act_q input out of int16 range")
    if func == "relu":
        return np.maximum(q64, 0)
    if func not in TABLE_OF:
        raise ValueError(f"unknown activation {func!r}; expected one of {FUNCS}")
    table = tables()[func]
    neg = q64 < 0
    a = np.minimum(np.abs(q64), ACT_MAX)
    v = a if func == "sigmoid" else a << (F_V - F_ACT_IN)
    u = _outputs(func, _core(table, v))
    if func == "sigmoid":
        return np.where(neg, ONE - u, u)
    return np.where(neg, -u, u)


# --------------------------------------------------------------------------------------------------
# Table generation
# --------------------------------------------------------------------------------------------------
def _uses(tname):
    """For a table: the functions evaluated through it, each (func, core-v points used, target of the
    output magnitude u in output LSBs as a float array indexed by v)."""
    v = np.arange(1 << V_BITS, dtype=np.int64)
    xc = v * 2.0 ** -F_V                       # the core's argument
    if tname == "tanh":
        t = np.tanh(xc)
        even = v[(v & 1) == 0]
        return [("tanh", even, t * ONE),
                ("sigmoid", v[v <= ACT_MAX], 0.5 * (1.0 + t) * ONE)]
    s = xc / (1.0 + xc)
    return [("softsign", v[(v & 1) == 0], s * ONE)]


def _zero_value(func):
    return ONE // 2 if func == "sigmoid" else 0


def _build_table(tname, ds=2, dc=24):
    core_f = (np.tanh if tname == "tanh" else (lambda z: z / (1.0 + z)))
    uses = _uses(tname)
    slope = np.zeros(N_SEG, dtype=np.int64)
    icpt = np.zeros(N_SEG, dtype=np.int64)
    prev_last = {func: None for func, _, _ in uses}
    dS = np.arange(-ds, ds + 1, dtype=np.int64)
    dC = np.arange(-dc, dc + 1, dtype=np.int64)
    s_lim = (1 << (SLOPE_BITS - 1)) - 1
    c_lim = (1 << (ICPT_BITS - 1)) - 1
    for k in range(N_SEG):
        start = int(_seg_start(k))
        width = int(_seg_width(k))
        # discrete minimax line over all v in the segment (chord slope, centred offset: exact for a
        # concave function), in value per v-LSB, relative to the segment start
        p = np.arange(width, dtype=np.float64)
        y = core_f((start + p) * 2.0 ** -F_V)
        m = (y[-1] - y[0]) / (width - 1)
        dev = y - (y[0] + m * p)
        b = y[0] + 0.5 * (dev.max() + dev.min())
        s0 = int(np.round(m * 2.0 ** F_CORE))
        c0 = int(np.round(b * 2.0 ** F_ICPT))
        S = (s0 + dS)[:, None] * np.ones_like(dC)[None, :]
        C = np.ones_like(dS)[:, None] * (c0 + dC)[None, :]
        S, C = S.ravel(), C.ravel()
        ok = (S >= 0) & (S <= s_lim) & (np.abs(C) <= c_lim)
        worst = np.zeros(S.size)
        total = np.zeros(S.size)
        firsts, lasts = {}, {}
        for func, pts, target in uses:
            sel = pts[(pts >= start) & (pts < start + width)]
            if sel.size == 0:
                continue
            frac = sel - start
            r = (C[:, None] << ICPT_SHIFT) + S[:, None] * frac[None, :]
            u = _outputs(func, r)
            e = np.abs(u - target[sel][None, :])
            worst = np.maximum(worst, e.max(axis=1))
            total += e.mean(axis=1)
            ok &= u[:, -1] <= ONE
            if prev_last[func] is not None:
                ok &= u[:, 0] >= prev_last[func]
            if start == 0:
                ok &= u[:, 0] == _zero_value(func)
            firsts[func], lasts[func] = u[:, 0], u[:, -1]
        if not ok.any():
            raise RuntimeError(f"activation table {tname}: no admissible entry for segment {k}")
        score = np.where(ok, worst + 1e-6 * total, np.inf)
        best = int(np.argmin(score))
        slope[k], icpt[k] = S[best], C[best]
        for func in lasts:
            prev_last[func] = int(lasts[func][best])
    return slope, icpt


def tables():
    """The ROM tables, per function (sigmoid shares the tanh table). Each entry: ``slope`` (int64,
    N_SEG, signed SLOPE_BITS), ``intercept`` (int64, N_SEG, signed ICPT_BITS), ``rom`` (uint64,
    N_SEG packed words ``(S mod 2**16) << 20 | (C mod 2**20)``) and the layout fields."""
    if "tables" not in _CACHE:
        out = {}
        for tname in TABLES:
            s, c = _build_table(tname)
            s.setflags(write=False)
            c.setflags(write=False)
            rom = (((s & ((1 << SLOPE_BITS) - 1)) << ICPT_BITS) | (c & ((1 << ICPT_BITS) - 1)))
            rom = rom.astype(np.uint64)
            rom.setflags(write=False)
            out[tname] = {
                "table": tname, "slope": s, "intercept": c, "rom": rom,
                "segments": N_SEG, "addr_bits": ADDR_BITS,
                "slope_bits": SLOPE_BITS, "intercept_bits": ICPT_BITS, "word_bits": WORD_BITS,
                "f_core": F_CORE, "f_intercept": F_ICPT, "intercept_shift": ICPT_SHIFT,
                "v_bits": V_BITS, "f_v": F_V, "split_bit": SPLIT_BIT,
                "fine_frac_bits": FINE_FRAC, "coarse_frac_bits": COARSE_FRAC,
                "n_fine": N_FINE, "coarse_base": COARSE_BASE,
            }
        out["sigmoid"] = out["tanh"]
        _CACHE["tables"] = out
    return _CACHE["tables"]


# --------------------------------------------------------------------------------------------------
# Exhaustive error
# --------------------------------------------------------------------------------------------------
def error_report():
    """Exhaustive error over all 65536 int16 inputs: per function max/mean |out/2**14 - f(q/2**12)|,
    segments and ROM bits of its table (sigmoid reads the tanh table: no ROM of its own)."""
    q = np.arange(-(ACT_MAX + 1), ACT_MAX + 1, dtype=np.int64)
    x = q * 2.0 ** -F_ACT_IN
    rep = {}
    for func in PWL_FUNCS:
        err = np.abs(act_q(func, q) * 2.0 ** -F_ACT_OUT - act_float(func, x))
        rep[func] = {
            "max_abs_err": float(err.max()),
            "mean_abs_err": float(err.mean()),
            "argmax_q": int(q[np.argmax(err)]),
            "segments": N_SEG,
            "rom_bits": N_SEG * WORD_BITS,
            "table": TABLE_OF[func],
        }
    return rep


def format_report(report):
    lines = [f"{'function':<9} {'table':<9} {'segments':>8} {'rom_bits':>8} "
             f"{'max_abs_err':>12} {'mean_abs_err':>12}"]
    for func, r in report.items():
        lines.append(f"{func:<9} {r['table']:<9} {r['segments']:>8} {r['rom_bits']:>8} "
                     f"{r['max_abs_err']:>12.3e} {r['mean_abs_err']:>12.3e}")
    return "\n".join(lines)
