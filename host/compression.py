"""NeuCompression: the offline weight encoder and the bit-exact reference decoder.

The on-chip decompression unit implements :func:`decode_int` as a shift register plus (for the
codebook modes) a table lookup, so the format below is deliberately trivial to decode. All numeric
conventions (the weight modes, the codebook entry width, ``ALIGN``, ``frac_bits_for``) come from
:mod:`rnnaccel.host.spec`; this module restates none of them.

Format of one encoded matrix
----------------------------
Input: a float matrix ``W[R, K]`` (R rows = outputs, K columns = inputs) and a mode from
``spec.WEIGHT_MODES`` (bits per stored weight).

Scale
    One power-of-two exponent ``frac_bits`` (f_w) per matrix: the largest f (``spec.frac_bits_for``
    with the width ``spec.weight_int_bits(mode)``, f searched in [FRAC_LO, FRAC_HI]) such that
    ``round(max|W| * 2**f)`` fits that signed width. An integer weight ``w_q`` means
    ``w = w_q * 2**-f_w``. The compiler may force f_w (``encode(..., frac_bits=f)``); values that no
    longer fit saturate (plain modes) or clip to the int8 codebook range (codebook modes).

Plain modes (16 and 8)
    ``w_q = saturate(round(W * 2**f_w))`` as int16 / int8 (round half away from zero). The stored
    field is the two's complement bit pattern (``w_q mod 2**bits``); there are no codebooks and
    ``group_rows == 0``.

Codebook modes (6, 4, 2 = b)
    Rows are split into groups of G consecutive rows (G a power of two; the last group may be
    shorter). Group g = rows [g*G, (g+1)*G) has one codebook of exactly 2**b int8 entries; row r
    uses codebook ``r >> log2(G)``. Each stored field is an index into its row's codebook and the
    decoded integer weight is ``codebook[r // G][index]``.

    Encoder (not needed to decode; documented for reproducibility). The codebook of a group is
    fitted on its scaled weights ``x = W * 2**f_w`` by one of two deterministic fitters:

    * ``fit="optimal"`` (default): the global optimum of the k-means objective restricted to
      int8 entries - the codebook of at most 2**b integer entries with the least squared error
      under the nearest-entry assignment, found exactly by dynamic programming over the integers
      spanning the data (``_fit_optimal``). Lloyd k-means rounded afterwards is a local optimum
      and loses about 1 dB at 6 bits on Gaussian weights (neighbouring centroids collide when
      rounded), 0.3 dB at 4 bits; the DP has no such loss and is as fast.
    * ``fit="kmeans"``: 1-D Lloyd k-means (k = 2**b) in float, initialised at the (i + 1/2)/k
      quantiles of the companded density p**(1/3), iterated to convergence or ``KMEANS_ITERS``;
      centroids are rounded and clipped to int8, then a few integer Lloyd steps (reassign,
      re-average, re-round) refine them, keeping the best.

    The distinct entries, ascending, form the codebook; if there are fewer than 2**b it is padded
    by repeating its largest entry (codebooks are therefore non-decreasing; an all-zero group has
    an all-zero codebook). Every weight then gets the index of the nearest entry, computed exactly
    against the int8 entries, ties going to the lower index; with the padded, sorted codebook this
    is the first occurrence of a value, so padding entries are never referenced.

    G is given (``group_rows=``) or chosen as the smallest power of two for which
    ``codebook bytes / packed index bytes <= max_codebook_overhead`` (default 3 %); if even a single
    group exceeds the budget (tiny matrices), G is the smallest power of two >= R (one group).

Packing (all modes)
    The weight stream of a matrix is row-major - row 0's K fields, then row 1's, with no padding
    between rows - packed as fixed-width b-bit unsigned fields, LSB first, into little-endian bytes:
    field n occupies bits [n*b, (n+1)*b) of the byte string read as one little-endian integer. So
    for b = 6 four fields fill three bytes, b = 8 is the int8 bytes themselves and b = 16 is
    little-endian int16. The packed length is ``ceil(R*K*b/8)`` bytes; unused high bits of the last
    byte are zero. Codebooks are stored separately as ``n_groups * 2**b`` int8 bytes, group 0 first
    (``EncodedMatrix.codebook_blob``). When placing a matrix in memory the compiler pads it to a
    multiple of ``spec.ALIGN`` bytes (:func:`padded_size`).

Example: 6-bit fields [1, 2, 3, 4] form the integer 1 | 2<<6 | 3<<12 | 4<<18 = 0x103081, stored as
bytes ``81 30 10``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import spec

__all__ = [
    "EncodedMatrix", "encode", "decode_int", "decode_float", "pack_fields", "unpack_fields",
    "packed_length", "padded_size", "choose_group_rows", "quality", "tradeoff_table",
    "format_tradeoff", "plot_tradeoff", "DEFAULT_MAX_CODEBOOK_OVERHEAD", "FITS",
]

FRAC_LO, FRAC_HI = -16, 30             # search range of the per-matrix weight exponent
DEFAULT_MAX_CODEBOOK_OVERHEAD = 0.03   # codebook bytes / packed index bytes
FITS = ("optimal", "kmeans")           # codebook fitters; the first is the default
KMEANS_ITERS = 100                     # Lloyd iteration cap (float phase)
KMEANS_TOL = 1e-4                      # stop when no centroid moves more than this (scaled units)
KMEANS_INIT_BINS = 256                 # histogram bins of the companded initialisation
REFINE_ITERS = 8                       # integer Lloyd steps after rounding
DP_CHUNK_ELEMS = 1 << 21               # groups per DP chunk: about this many [L, L] cells
MAX_FIELD_BITS = 32                    # widest field pack_fields/unpack_fields handle

_CB_LO = -(1 << (spec.CODEBOOK_BITS - 1))
_CB_HI = (1 << (spec.CODEBOOK_BITS - 1)) - 1
_DP_CLIP = float(1 << 12)


# --------------------------------------------------------------------------------------------------
# Bit packing (shared with the gateware tests)
# --------------------------------------------------------------------------------------------------
def _check_bits(bits):
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise ValueError(f"field width must be an integer, got {bits!r}")
    bits = int(bits)
    if not 1 <= bits <= MAX_FIELD_BITS:
        raise ValueError(f"field width must be in 1..{MAX_FIELD_BITS} bits, got {bits}")
    return bits


def packed_length(count, bits):
    """Bytes occupied by `count` fields of `bits` bits: ceil(count*bits/8)."""
    return (int(count) * int(bits) + 7) // 8


def padded_size(nbytes):
    """`nbytes` rounded up to a multiple of spec.ALIGN (where the compiler places the next
    matrix)."""
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"byte count must be non-negative, got {nbytes}")
    return -(-nbytes // spec.ALIGN) * spec.ALIGN


def _chunk_geometry(bits):
    """(fields per chunk, bytes per chunk) for the whole-byte chunk of lcm(bits, 8) bits."""
    lcm = bits * 8 // math.gcd(bits, 8)
    return lcm // bits, lcm // 8


def pack_fields(values, bits) -> bytes:
    """Pack unsigned integers (any shape, C order) as `bits`-wide fields, LSB first, little-endian:
    field n occupies bits [n*bits, (n+1)*bits) of the result read as one little-endian integer.
    Returns ceil(n*bits/8) bytes; unused high bits of the last byte are zero."""
    bits = _check_bits(bits)
    v = np.asarray(values)
    if v.dtype != bool and not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"pack_fields needs integer values, got dtype {v.dtype}")
    v = v.reshape(-1)
    n = v.size
    if n == 0:
        return b""
    if v.min() < 0 or int(v.max()) >= (1 << bits):
        raise ValueError(f"values out of range for unsigned {bits}-bit fields "
                         f"(min {int(v.min())}, max {int(v.max())})")
    v = v.astype(np.uint64)
    m, nb = _chunk_geometry(bits)
    if nb <= 8:   # whole chunks fit a uint64: arithmetic path
        pad = (-n) % m
        if pad:
            v = np.concatenate([v, np.zeros(pad, np.uint64)])
        v = v.reshape(-1, m)
        chunk = np.zeros(v.shape[0], np.uint64)
        for i in range(m):
            chunk |= v[:, i] << np.uint64(i * bits)
        out = chunk.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :nb].reshape(-1)
    else:         # generic path through a bit matrix
        bitmat = ((v[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
        out = np.packbits(bitmat.reshape(-1), bitorder="little")
    return out[:packed_length(n, bits)].tobytes()


def unpack_fields(data, bits, count) -> np.ndarray:
    """Inverse of :func:`pack_fields`: the first `count` unsigned `bits`-wide fields of `data`
    (bytes-like or a uint8 array) as int64. Bytes beyond ceil(count*bits/8) are ignored."""
    bits = _check_bits(bits)
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
        raise ValueError(f"field count must be a non-negative integer, got {count!r}")
    count = int(count)
    need = packed_length(count, bits)
    buf = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) \
        else np.asarray(data, dtype=np.uint8).reshape(-1)
    if buf.size < need:
        raise ValueError(f"{count} fields of {bits} bits need {need} bytes, got {buf.size}")
    if count == 0:
        return np.zeros(0, np.int64)
    buf = buf[:need]
    m, nb = _chunk_geometry(bits)
    if nb <= 8:
        pad = (-need) % nb
        if pad:
            buf = np.concatenate([buf, np.zeros(pad, np.uint8)])
        rows = buf.reshape(-1, nb)
        if nb < 8:
            rows = np.concatenate([rows, np.zeros((rows.shape[0], 8 - nb), np.uint8)], axis=1)
        chunk = np.ascontiguousarray(rows).view("<u8").reshape(-1)
        mask = np.uint64((1 << bits) - 1)
        shifts = np.arange(m, dtype=np.uint64) * np.uint64(bits)
        fields = (chunk[:, None] >> shifts[None, :]) & mask
        return fields.reshape(-1)[:count].astype(np.int64)
    bitv = np.unpackbits(buf, count=count * bits, bitorder="little").reshape(count, bits)
    return bitv.astype(np.int64) @ (np.int64(1) << np.arange(bits, dtype=np.int64))


# --------------------------------------------------------------------------------------------------
# The encoded matrix
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedMatrix:
    mode: int                              # bits per stored weight (spec.WEIGHT_MODES)
    rows: int                              # R (outputs)
    cols: int                              # K (inputs)
    frac_bits: int                         # f_w: weight = w_q * 2**-f_w
    group_rows: int                        # G (power of two) for codebook modes, 0 for plain modes
    codebooks: Optional[np.ndarray]        # int8 [n_groups, 2**mode] or None
    packed: bytes                          # the weight stream, ceil(R*K*mode/8) bytes

    @property
    def shape(self):
        return (self.rows, self.cols)

    @property
    def n_groups(self):
        return 0 if self.codebooks is None else int(self.codebooks.shape[0])

    @property
    def packed_bytes(self):
        return len(self.packed)

    @property
    def codebook_bytes(self):
        return 0 if self.codebooks is None else int(self.codebooks.size)

    @property
    def codebook_blob(self) -> bytes:
        """The codebooks as stored: n_groups * 2**mode int8 bytes, group 0 first."""
        return b"" if self.codebooks is None else self.codebooks.astype(np.int8).tobytes()

    @property
    def nbytes(self):
        """Packed weight bytes plus codebook bytes (alignment padding not included)."""
        return self.packed_bytes + self.codebook_bytes

    @property
    def ratio(self):
        """fp32 bytes / nbytes (codebook overhead included)."""
        return 4.0 * self.rows * self.cols / self.nbytes

    @property
    def bits_per_weight(self):
        """Effective storage bits per weight, codebooks included."""
        return 8.0 * self.nbytes / (self.rows * self.cols)


# --------------------------------------------------------------------------------------------------
# Input checking
# --------------------------------------------------------------------------------------------------
def _check_mode(mode):
    if isinstance(mode, bool) or not isinstance(mode, numbers.Integral) \
            or int(mode) not in spec.WEIGHT_MODES:
        raise ValueError(f"unknown weight mode {mode!r}; expected one of {spec.WEIGHT_MODES}")
    return int(mode)


def _check_matrix(W, what="weight matrix"):
    a = np.asarray(W)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{what} must be numeric, got dtype {a.dtype}")
    if np.iscomplexobj(a):
        raise ValueError(f"{what} must be real, got complex dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D [rows, cols], got ndim {a.ndim} (shape {a.shape})")
    if a.size == 0:
        raise ValueError(f"{what} is empty (shape {a.shape})")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or Inf")
    return a


def _is_pow2(g):
    return g >= 1 and (g & (g - 1)) == 0


# --------------------------------------------------------------------------------------------------
# Group size
# --------------------------------------------------------------------------------------------------
def choose_group_rows(rows, cols, mode, max_codebook_overhead=DEFAULT_MAX_CODEBOOK_OVERHEAD):
    """Smallest power-of-two G with codebook bytes / packed index bytes <= max_codebook_overhead;
    the smallest power of two >= rows (one group) when no G meets the budget."""
    mode = _check_mode(mode)
    if mode not in spec.CODEBOOK_MODES:
        return 0
    if not max_codebook_overhead > 0:
        raise ValueError(f"max_codebook_overhead must be positive, got {max_codebook_overhead}")
    index_bytes = packed_length(rows * cols, mode)
    entries = 1 << mode
    g = 1
    while g < rows:
        if -(-rows // g) * entries <= max_codebook_overhead * index_bytes:
            return g
        g *= 2
    return g


# --------------------------------------------------------------------------------------------------
# Codebook fitting, per row group. Both fitters return int64 codebooks [n_groups, 2**bits], each
# non-decreasing and padded by repeating its largest entry.
# --------------------------------------------------------------------------------------------------
def _group_slices(R, G):
    return [slice(g * G, min((g + 1) * G, R)) for g in range(-(-R // G))]


def _pad_codebooks(entries, k):
    out = np.empty((len(entries), k), np.int64)
    for g, e in enumerate(entries):
        u = np.unique(np.asarray(e, np.int64))
        out[g, :u.size] = u
        out[g, u.size:] = u[-1]
    return out


class _Sorted:
    """The scaled weights of every group, sorted within each group, in one flat array; `key` adds a
    per-group offset so one global searchsorted resolves every group's cluster boundaries (used by
    k-means only: it only models the assignment, the final one is exact, per group)."""

    OFFSET = 4096.0

    def __init__(self, x, G):
        R, K = x.shape
        self.n_groups = -(-R // G)
        gid = np.repeat(np.arange(self.n_groups), G * K)[: R * K]
        # clipped for fitting only: outliers cannot pull a centroid beyond the codebook range
        flat = np.clip(x.reshape(-1), _CB_LO - 0.5, _CB_HI + 0.5)
        n_full = R // G                       # groups are contiguous: sort each one in place
        xs = flat.copy()
        if n_full:
            xs[: n_full * G * K] = np.sort(flat[: n_full * G * K].reshape(n_full, G * K), axis=1)\
                .reshape(-1)
        xs[n_full * G * K:] = np.sort(flat[n_full * G * K:])
        self.xs = xs
        self.key = xs + gid * self.OFFSET
        self.starts = np.arange(self.n_groups) * G * K
        self.ends = np.minimum(self.starts + G * K, R * K)
        self.cs = np.concatenate([[0.0], np.cumsum(self.xs)])
        self.cs2 = np.concatenate([[0.0], np.cumsum(self.xs * self.xs)])
        self.goff = np.arange(self.n_groups)[:, None] * self.OFFSET

    def bounds(self, c):
        """[n_groups, k+1] element positions of the clusters of sorted centroids c (ties lower)."""
        mids = (c[:, 1:] + c[:, :-1]) * 0.5 + self.goff
        pos = np.searchsorted(self.key, mids.reshape(-1), side="left").reshape(mids.shape)
        return np.concatenate([self.starts[:, None], pos, self.ends[:, None]], axis=1)

    def stats(self, c):
        b = self.bounds(c)
        n = np.diff(b, axis=1)
        s = self.cs[b[:, 1:]] - self.cs[b[:, :-1]]
        s2 = self.cs2[b[:, 1:]] - self.cs2[b[:, :-1]]
        return n, s, s2

    def sse(self, c):
        n, s, s2 = self.stats(c)
        return np.sum(s2 - 2.0 * c * s + n * c * c, axis=1)


def _companded_init(xs, k):
    """k initial centroids at the (i + 1/2)/k quantiles of the density**(1/3) of xs (sorted): the
    asymptotically optimal point density, far better than plain quantiles for bell-shaped
    weights."""
    lo, hi = float(xs[0]), float(xs[-1])
    if hi <= lo:
        return np.full(k, lo)
    hist, edges = np.histogram(xs, bins=KMEANS_INIT_BINS, range=(lo, hi))
    cdf = np.concatenate([[0.0], np.cumsum(hist ** (1.0 / 3.0))])
    return np.interp((np.arange(k) + 0.5) / k, cdf / cdf[-1], edges)


def _fit_kmeans(x, G, bits):
    """Lloyd k-means in float (vectorised across groups), rounded to int8, then integer Lloyd steps
    (reassign, re-average, re-round) keeping each group's best."""
    k = 1 << bits
    grp = _Sorted(x, G)
    c = np.stack([_companded_init(grp.xs[s:e], k) for s, e in zip(grp.starts, grp.ends)])
    for _ in range(KMEANS_ITERS):
        n, s, _ = grp.stats(c)
        new = np.where(n > 0, s / np.maximum(n, 1), c)
        moved = np.max(np.abs(new - c))
        c = new
        if moved < KMEANS_TOL:
            break
    ci = np.clip(np.round(c), _CB_LO, _CB_HI)
    best, best_sse = ci, grp.sse(ci)
    for _ in range(REFINE_ITERS):
        n, s, _ = grp.stats(ci)
        nxt = np.sort(np.clip(np.round(np.where(n > 0, s / np.maximum(n, 1), ci)), _CB_LO, _CB_HI),
                      axis=1)
        if np.array_equal(nxt, ci):
            break
        ci = nxt
        e = grp.sse(ci)
        better = e < best_sse
        best = np.where(better[:, None], ci, best)
        best_sse = np.where(better, e, best_sse)
    return _pad_codebooks(list(best), k)


def _fit_optimal(x, G, bits):
    """The minimum-squared-error codebook of at most 2**bits integer entries in the codebook range,
    under the nearest-entry (ties lower) assignment, by dynamic programming over the integer grid.

    With candidate values v_0 < ... < v_{L-1} (consecutive integers spanning the data) and, on the
    half-integer grid h_t = v_0 + t/2, N(t) = #{x <= h_t}, S(t) = sum{x <= h_t}, the squared error
    is sum(x**2) + sum over entries of their cluster's (c**2 n - 2 c s). Telescoping, with
    B_i = v_i**2 N(2i) - 2 v_i S(2i) and D(t) = h_t N(t) - S(t), the cost of consecutive entries
    v_i < v_j is B_j - B_i - 2 (j - i) D(i + j) (points up to the midpoint h_{i+j} go to v_i), the
    first entry v_b costs B_b and the last adds its tail. The DP runs over entries (<= 2**bits
    layers) for a chunk of groups at once; the fewest entries reaching the minimum are kept."""
    k = 1 << bits
    R, K = x.shape
    # far-out values (a forced scale) all go to an extreme entry; bounded, they keep the sums exact
    x = np.clip(x, _CB_LO - _DP_CLIP, _CB_HI + _DP_CLIP)
    slices = _group_slices(R, G)
    lo = int(max(_CB_LO, min(_CB_HI, np.floor(x.min()))))
    hi = int(min(_CB_HI, max(_CB_LO, np.ceil(x.max()))))
    L = hi - lo + 1
    v = lo + np.arange(L, dtype=np.float64)
    h = lo + 0.5 * np.arange(2 * L - 1, dtype=np.float64)
    # transition tables indexed [b, a] (b: this entry, a: the previous one) so that the DP's
    # argmin runs over the contiguous last axis
    bb, aa = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    mid = bb + aa
    gap2 = 2.0 * (bb - aa)
    forbid = np.where(aa < bb, 0.0, np.inf)
    entries = []
    chunk = max(1, DP_CHUNK_ELEMS // (L * L))
    for c0 in range(0, len(slices), chunk):
        sl = slices[c0:c0 + chunk]
        C = len(sl)
        N = np.empty((C, 2 * L - 1))
        S = np.empty((C, 2 * L - 1))
        n_tot = np.empty(C)
        s_tot = np.empty(C)
        for c, s in enumerate(sl):
            xs = np.sort(x[s].reshape(-1))
            cs = np.concatenate([[0.0], np.cumsum(xs)])
            p = np.searchsorted(xs, h, side="right")
            N[c], S[c] = p, cs[p]
            n_tot[c], s_tot[c] = xs.size, cs[-1]
        Nv, Sv = N[:, 0::2], S[:, 0::2]
        B = v * v * Nv - 2.0 * v * Sv
        D = h * N - S
        seg = (B[:, :, None] - B[:, None, :] + forbid) - gap2 * D[:, mid]   # [C, b, a]
        tail = v * v * (n_tot[:, None] - Nv) - 2.0 * v * (s_tot[:, None] - Sv)
        dps = [B]                # dps[j][c, b]: best cost' of j+1 entries, the last being v_b
        args = []                # args[j-1][c, b]: the entry before v_b in that solution
        cand = np.empty_like(seg)
        for _ in range(1, min(k, L)):
            np.add(seg, dps[-1][:, None, :], out=cand)
            a = np.argmin(cand, axis=2)
            dps.append(np.take_along_axis(cand, a[:, :, None], axis=2)[:, :, 0])
            args.append(a)
        totals = np.array([np.min(dp + tail, axis=1) for dp in dps])     # [layers, C]
        tol = 1e-9 * (n_tot * float(max(abs(lo), abs(hi), 1)) ** 2 + 1.0)
        layers = np.argmax(totals <= totals.min(axis=0) + tol, axis=0)   # fewest entries at the min
        for c in range(C):
            j = int(layers[c])
            b = int(np.argmin(dps[j][c] + tail[c]))
            e = [b]
            for layer in range(j - 1, -1, -1):
                b = int(args[layer][c, b])
                e.append(b)
            entries.append(v[np.array(e[::-1])].astype(np.int64))
    return _pad_codebooks(entries, k)


def _assign(x, codebooks, G):
    """Index of the nearest codebook entry (ties -> lower index) for every weight, exact."""
    R = x.shape[0]
    idx = np.empty(x.shape, np.int64)
    for g in range(codebooks.shape[0]):
        u = np.unique(codebooks[g]).astype(np.float64)   # == codebooks[g][:u.size] (sorted, padded)
        mids = (u[1:] + u[:-1]) * 0.5
        sl = slice(g * G, min((g + 1) * G, R))
        idx[sl] = np.searchsorted(mids, x[sl], side="left")
    return idx


# --------------------------------------------------------------------------------------------------
# Encode / decode
# --------------------------------------------------------------------------------------------------
def encode(W, mode, group_rows=None, frac_bits=None,
           max_codebook_overhead=DEFAULT_MAX_CODEBOOK_OVERHEAD, fit=FITS[0]) -> EncodedMatrix:
    """Encode a float matrix W[R, K] in weight mode `mode` (see the module docstring).

    group_rows: G for the codebook modes (a power of two), chosen automatically when None; must be
    None or 0 for the plain modes. frac_bits: force the weight exponent f_w (the compiler's
    override); otherwise the largest f for which max|W| fits. fit: codebook fitter, "optimal"
    (exact minimum-error int8 codebook) or "kmeans" (Lloyd); ignored by the plain modes."""
    mode = _check_mode(mode)
    if fit not in FITS:
        raise ValueError(f"unknown codebook fit {fit!r}; expected one of {FITS}")
    W = _check_matrix(W)
    R, K = W.shape
    wbits = spec.weight_int_bits(mode)

    if frac_bits is None:
        f = spec.frac_bits_for(np.max(np.abs(W)), bits=wbits, lo=FRAC_LO, hi=FRAC_HI)
    else:
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, numbers.Integral):
            raise ValueError(f"frac_bits must be an integer, got {frac_bits!r}")
        f = int(frac_bits)
        if not -64 <= f <= 64:
            raise ValueError(f"frac_bits {f} is out of the supported range -64..64")
    x = W * 2.0 ** f      # exact (power-of-two scaling)

    if mode not in spec.CODEBOOK_MODES:
        if group_rows not in (None, 0):
            raise ValueError(f"group_rows applies to codebook modes {spec.CODEBOOK_MODES} only, "
                             f"not mode {mode}")
        lim = 1 << (wbits - 1)
        wq = spec.saturate(np.clip(np.round(x), -lim, lim - 1), wbits)   # clip before int cast
        packed = pack_fields(wq & ((1 << mode) - 1), mode)
        return EncodedMatrix(mode, R, K, f, 0, None, packed)

    if group_rows is None:
        G = choose_group_rows(R, K, mode, max_codebook_overhead)
    else:
        if isinstance(group_rows, bool) or not isinstance(group_rows, numbers.Integral) \
                or not _is_pow2(int(group_rows)):
            raise ValueError(f"group_rows must be a power of two >= 1, got {group_rows!r}")
        G = int(group_rows)
    cb = (_fit_optimal if fit == "optimal" else _fit_kmeans)(x, G, mode)
    idx = _assign(x, cb, G)
    packed = pack_fields(idx, mode)
    return EncodedMatrix(mode, R, K, f, G, cb.astype(np.int8), packed)


def _check_encoded(enc):
    if not isinstance(enc, EncodedMatrix):
        raise ValueError(f"expected an EncodedMatrix, got {type(enc).__name__}")
    mode = _check_mode(enc.mode)
    if enc.rows < 1 or enc.cols < 1:
        raise ValueError(f"encoded matrix has empty shape {enc.shape}")
    need = packed_length(enc.rows * enc.cols, mode)
    if len(enc.packed) != need:
        raise ValueError(f"packed stream is {len(enc.packed)} bytes, expected {need}")
    if mode in spec.CODEBOOK_MODES:
        if not _is_pow2(enc.group_rows):
            raise ValueError(f"group_rows must be a power of two, got {enc.group_rows}")
        want = (-(-enc.rows // enc.group_rows), 1 << mode)
        if enc.codebooks is None or tuple(enc.codebooks.shape) != want:
            got = None if enc.codebooks is None else tuple(enc.codebooks.shape)
            raise ValueError(f"codebooks must have shape {want}, got {got}")
    return mode


def decode_int(enc: EncodedMatrix) -> np.ndarray:
    """The integer weights the MAC array sees: int64 [R, K] (weight = value * 2**-frac_bits)."""
    mode = _check_encoded(enc)
    R, K = enc.rows, enc.cols
    fields = unpack_fields(enc.packed, mode, R * K).reshape(R, K)
    if mode not in spec.CODEBOOK_MODES:
        half = np.int64(1) << np.int64(mode - 1)
        return fields - ((fields & half) << np.int64(1))   # two's complement sign extension
    cb = enc.codebooks.astype(np.int64)
    group = np.arange(R) // enc.group_rows
    return cb[group[:, None], fields]


def decode_float(enc: EncodedMatrix) -> np.ndarray:
    """Decoded weights as float64 [R, K]."""
    return spec.dequantize(decode_int(enc), enc.frac_bits)


def quality(W, enc: EncodedMatrix) -> dict:
    """Reconstruction error of `enc` against the float matrix W: rmse, max_abs_err, sqnr_db."""
    W = _check_matrix(W)
    if W.shape != enc.shape:
        raise ValueError(f"shape mismatch: W is {W.shape}, encoded matrix is {enc.shape}")
    err = decode_float(enc) - W
    se = float(np.sum(err * err))
    sig = float(np.sum(W * W))
    if se == 0.0:
        sqnr = math.inf
    elif sig == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(sig / se)
    return {"rmse": math.sqrt(se / W.size), "max_abs_err": float(np.max(np.abs(err))),
            "sqnr_db": sqnr}


# --------------------------------------------------------------------------------------------------
# Trade-off report
# --------------------------------------------------------------------------------------------------
def tradeoff_table(W_dict, modes=spec.WEIGHT_MODES,
                   max_codebook_overhead=DEFAULT_MAX_CODEBOOK_OVERHEAD, fit=FITS[0]):
    """One row per (matrix, mode): dicts with matrix, rows, cols, mode, group_rows, bytes (packed +
    codebooks), codebook_bytes, bits_per_weight (effective), ratio (vs fp32), sqnr_db, rmse,
    max_abs_err."""
    out = []
    for name, W in W_dict.items():
        W = _check_matrix(W, f"matrix {name!r}")
        for mode in modes:
            enc = encode(W, mode, max_codebook_overhead=max_codebook_overhead, fit=fit)
            q = quality(W, enc)
            out.append({"matrix": name, "rows": enc.rows, "cols": enc.cols, "mode": enc.mode,
                        "group_rows": enc.group_rows, "bytes": enc.nbytes,
                        "codebook_bytes": enc.codebook_bytes,
                        "bits_per_weight": enc.bits_per_weight, "ratio": enc.ratio,
                        "sqnr_db": q["sqnr_db"], "rmse": q["rmse"],
                        "max_abs_err": q["max_abs_err"]})
    return out


def format_tradeoff(rows) -> str:
    """A plain-text table of :func:`tradeoff_table` rows (for the CLI)."""
    head = f"{'matrix':<24} {'shape':>11} {'mode':>4} {'G':>4} {'bytes':>9} {'bits/w':>7} " \
           f"{'ratio':>7} {'SQNR dB':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        shape = f"{r['rows']}x{r['cols']}"
        lines.append(f"{str(r['matrix'])[:24]:<24} {shape:>11} {r['mode']:>4} {r['group_rows']:>4} "
                     f"{r['bytes']:>9} {r['bits_per_weight']:>7.3f} {r['ratio']:>6.2f}x "
                     f"{r['sqnr_db']:>8.2f}")
    return "\n".join(lines)


def plot_tradeoff(rows, path_png):
    """SQNR (dB) vs effective bits per weight, one line per matrix, written to `path_png`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = list(dict.fromkeys(r["matrix"] for r in rows))
    for name in names:
        rs = sorted((r for r in rows if r["matrix"] == name), key=lambda r: r["bits_per_weight"])
        xs = [r["bits_per_weight"] for r in rs]
        ys = [min(r["sqnr_db"], 200.0) for r in rs]
        ax.plot(xs, ys, marker="o", label=str(name))
        if len(names) == 1:
            for r, xv, yv in zip(rs, xs, ys):
                ax.annotate(f"{r['mode']}b ({r['ratio']:.1f}x)", (xv, yv),
                            textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xlabel("storage bits per weight (incl. codebooks)")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title("NeuCompression: accuracy vs storage")
    ax.grid(True, alpha=0.3)
    if names:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=120)
    return path_png
