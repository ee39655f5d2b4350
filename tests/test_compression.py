"""NeuCompression: packing, encode/decode bit-exactness, codebook properties, quality, errors."""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest

from rnnaccel.host import compression as C
from rnnaccel.host import spec

SHAPES = [(37, 23), (308, 164), (1, 1), (5, 300), (300, 5)]


def gaussian(shape, seed=0, scale=0.1):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def ref_pack(values, bits):
    """Pure-Python reference: field n at bits [n*bits, (n+1)*bits) of one little-endian integer."""
    total = 0
    for n, v in enumerate(values):
        total |= int(v) << (n * bits)
    return total.to_bytes((len(values) * bits + 7) // 8, "little")


def scaled(W, enc):
    return np.asarray(W, np.float64) * 2.0 ** enc.frac_bits


def indices(enc):
    return C.unpack_fields(enc.packed, enc.mode, enc.rows * enc.cols).reshape(enc.shape)


def row_codebooks(enc):
    return enc.codebooks.astype(np.int64)[np.arange(enc.rows) // enc.group_rows]


# --------------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", list(range(1, C.MAX_FIELD_BITS + 1)))
def test_pack_roundtrip_every_width(bits):
    rng = np.random.default_rng(bits)
    for count in (0, 1, 2, 3, 5, 7, 8, 13, 101, 1001):
        v = rng.integers(0, 1 << bits, size=count, dtype=np.int64)
        data = C.pack_fields(v, bits)
        assert isinstance(data, bytes)
        assert len(data) == math.ceil(count * bits / 8) == C.packed_length(count, bits)
        assert data == ref_pack(v, bits)
        back = C.unpack_fields(data, bits, count)
        assert back.dtype == np.int64
        np.testing.assert_array_equal(back, v)
        # extreme values too
        ext = np.array([0, (1 << bits) - 1] * 3 + [1], np.int64)
        np.testing.assert_array_equal(C.unpack_fields(C.pack_fields(ext, bits), bits, 7), ext)


def test_pack_layout_by_hand():
    # 6 bits: 1 | 2<<6 | 3<<12 | 4<<18 = 0x103081
    assert C.pack_fields([1, 2, 3, 4], 6) == bytes([0x81, 0x30, 0x10])
    # 6 bits, odd count: 63 | 1<<6 -> 0x7F, then 0x00 (12 bits -> 2 bytes)
    assert C.pack_fields([63, 1], 6) == bytes([0x7F, 0x00])
    # 2 bits: 1 | 2<<2 | 3<<4 | 0<<6 = 0x39; then field 4 = 1 in the next byte
    assert C.pack_fields([1, 2, 3, 0, 1], 2) == bytes([0x39, 0x01])
    # 4 bits: low nibble first
    assert C.pack_fields([0xA, 0x5, 0xF], 4) == bytes([0x5A, 0x0F])
    # 8 and 16 bits: plain bytes / little-endian words
    assert C.pack_fields([0x12, 0xFF], 8) == bytes([0x12, 0xFF])
    assert C.pack_fields([0x1234, 0xFFFE], 16) == bytes([0x34, 0x12, 0xFE, 0xFF])
    np.testing.assert_array_equal(C.unpack_fields(bytes([0x81, 0x30, 0x10]), 6, 4), [1, 2, 3, 4])


def test_unpack_accepts_arrays_and_ignores_trailing_bytes():
    data = C.pack_fields([5, 6, 7], 3) + b"\xff\xff"
    np.testing.assert_array_equal(C.unpack_fields(data, 3, 3), [5, 6, 7])
    np.testing.assert_array_equal(C.unpack_fields(np.frombuffer(data, np.uint8), 3, 3), [5, 6, 7])
    np.testing.assert_array_equal(C.unpack_fields(bytearray(data), 3, 3), [5, 6, 7])


def test_pack_errors():
    with pytest.raises(ValueError, match="range"):
        C.pack_fields([64], 6)
    with pytest.raises(ValueError, match="range"):
        C.pack_fields([-1], 6)
    with pytest.raises(ValueError, match="integer"):
        C.pack_fields([1.0], 6)
    with pytest.raises(ValueError, match="width"):
        C.pack_fields([1], 0)
    with pytest.raises(ValueError, match="width"):
        C.pack_fields([1], C.MAX_FIELD_BITS + 1)
    with pytest.raises(ValueError, match="bytes"):
        C.unpack_fields(b"\x00\x00", 6, 3)
    with pytest.raises(ValueError, match="count"):
        C.unpack_fields(b"\x00", 6, -1)


def test_padded_size():
    assert C.padded_size(0) == 0
    assert C.padded_size(1) == spec.ALIGN
    assert C.padded_size(spec.ALIGN) == spec.ALIGN
    assert C.padded_size(spec.ALIGN + 1) == 2 * spec.ALIGN
    with pytest.raises(ValueError):
        C.padded_size(-1)


# --------------------------------------------------------------------------------------------------
# Encode / decode
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", spec.WEIGHT_MODES)
def test_encode_decode_all_modes(shape, mode):
    W = gaussian(shape, seed=shape[0] * 1000 + shape[1])
    enc = C.encode(W, mode)
    R, K = shape
    assert (enc.mode, enc.rows, enc.cols, enc.shape) == (mode, R, K, shape)
    assert len(enc.packed) == math.ceil(R * K * mode / 8)
    assert enc.frac_bits == spec.frac_bits_for(np.abs(W).max(), bits=spec.weight_int_bits(mode),
                                               lo=C.FRAC_LO, hi=C.FRAC_HI)
    q = C.decode_int(enc)
    assert q.shape == shape and q.dtype == np.int64
    wb = spec.weight_int_bits(mode)
    assert q.min() >= -(1 << (wb - 1)) and q.max() <= (1 << (wb - 1)) - 1
    np.testing.assert_array_equal(C.decode_float(enc), q * 2.0 ** -enc.frac_bits)
    assert enc.nbytes == len(enc.packed) + enc.codebook_bytes
    assert enc.ratio == pytest.approx(4.0 * R * K / enc.nbytes)

    if mode in spec.CODEBOOK_MODES:
        k = 1 << mode
        G = enc.group_rows
        assert G >= 1 and G & (G - 1) == 0
        assert enc.codebooks.dtype == np.int8
        assert enc.codebooks.shape == (-(-R // G), k) == (enc.n_groups, k)
        assert enc.codebook_blob == enc.codebooks.tobytes()
        assert enc.codebook_bytes == enc.n_groups * k
    else:
        assert enc.group_rows == 0 and enc.codebooks is None and enc.codebook_bytes == 0
        np.testing.assert_array_equal(q, spec.saturate(np.round(scaled(W, enc)), wb))
        assert np.max(np.abs(C.decode_float(enc) - W)) <= 2.0 ** -enc.frac_bits / 2 + 1e-15


@pytest.mark.parametrize("mode", [16, 8])
def test_plain_modes_are_twos_complement_bytes(mode):
    W = gaussian((7, 9), seed=3)
    enc = C.encode(W, mode)
    q = C.decode_int(enc)
    dtype = "<i2" if mode == 16 else "i1"
    assert enc.packed == q.astype(dtype).tobytes()
    assert q.min() < 0   # the sign extension is exercised


@pytest.mark.parametrize("fit", C.FITS)
@pytest.mark.parametrize("mode", spec.CODEBOOK_MODES)
@pytest.mark.parametrize("shape", [(37, 23), (308, 164)])
def test_codebook_weights_are_nearest_entries(shape, mode, fit):
    W = gaussian(shape, seed=7)
    enc = C.encode(W, mode, fit=fit)
    x = scaled(W, enc)
    cbs = row_codebooks(enc)                                 # [R, 2**b]
    idx = indices(enc)
    q = C.decode_int(enc)
    # decoded weights are exactly the row's codebook entries
    np.testing.assert_array_equal(q, np.take_along_axis(cbs, idx, axis=1))
    # ... and the index is the nearest entry, first on ties
    dist = np.abs(x[:, :, None] - cbs[:, None, :])
    np.testing.assert_array_equal(idx, np.argmin(dist, axis=2))
    # codebooks are sorted, in the int8 range, padded with their largest entry; padding is unused
    cb = enc.codebooks.astype(np.int64)
    assert np.all(np.diff(cb, axis=1) >= 0)
    for g in range(enc.n_groups):
        n_distinct = np.unique(cb[g]).size
        assert np.all(cb[g, n_distinct:] == cb[g, -1])
        rows = slice(g * enc.group_rows, (g + 1) * enc.group_rows)
        assert idx[rows].max() < n_distinct


def test_assignment_ties_go_to_the_lower_entry():
    cb = np.array([[-2, 0, 1, 3]], np.int64)
    x = np.array([[-1.0, 0.5, 2.0, 0.4999999, 0.5000001, 100.0, -100.0]])
    np.testing.assert_array_equal(C._assign(x, cb, 1), [[0, 1, 2, 1, 2, 3, 0]])


def test_row_to_codebook_mapping():
    # rows with very different magnitudes: each group must get its own codebook
    R, K = 12, 40
    rng = np.random.default_rng(5)
    W = rng.standard_normal((R, K)) * np.repeat([1.0, 0.01, 0.3], 4)[:, None]
    for G in (1, 2, 4, 8, 16):
        enc = C.encode(W, 4, group_rows=G)
        assert enc.group_rows == G and enc.n_groups == -(-R // G)
        cbs = row_codebooks(enc)
        np.testing.assert_array_equal(C.decode_int(enc),
                                      np.take_along_axis(cbs, indices(enc), axis=1))
    fine = C.quality(W, C.encode(W, 4, group_rows=4))["sqnr_db"]
    coarse = C.quality(W, C.encode(W, 4, group_rows=16))["sqnr_db"]
    assert fine > coarse


def brute_force_sse(x, k):
    """Least squared error over all int codebooks of <= k entries within the data's integer span."""
    lo, hi = int(np.floor(x.min())), int(np.ceil(x.max()))
    cands = range(lo, hi + 1)
    best = math.inf
    for n in range(1, k + 1):
        for combo in itertools.combinations(cands, n):
            cb = np.array(combo, np.float64)
            best = min(best, float(np.sum(np.min((x[:, None] - cb[None, :]) ** 2, axis=1))))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_optimal_fit_is_optimal(seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((2, 15)) * [[1.0], [0.6]]
    enc = C.encode(W, 2, group_rows=1, frac_bits=2)          # a small integer span per row
    x = scaled(W, enc)
    err = (C.decode_int(enc) - x) ** 2
    for r in range(2):
        assert float(np.sum(err[r])) == pytest.approx(brute_force_sse(x[r], 4), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("mode", spec.CODEBOOK_MODES)
def test_optimal_fit_beats_kmeans(mode):
    W = gaussian((308, 164), seed=11)
    e_opt = C.quality(W, C.encode(W, mode, fit="optimal"))
    e_km = C.quality(W, C.encode(W, mode, fit="kmeans"))
    assert e_opt["rmse"] <= e_km["rmse"] * (1 + 1e-12)


@pytest.mark.parametrize("fit", C.FITS)
def test_sqnr_monotonic_in_bits(fit):
    W = gaussian((308, 164), seed=1)
    sqnr = [C.quality(W, C.encode(W, m, fit=fit))["sqnr_db"] for m in (2, 4, 6, 8, 16)]
    assert all(a < b for a, b in zip(sqnr, sqnr[1:])), sqnr
    assert sqnr[0] > 8.0 and sqnr[1] > 19.0 and sqnr[2] > 28.0


def test_ratio_near_nominal():
    W = gaussian((308, 164), seed=2)
    floor = {6: 5.0, 4: 7.5, 2: 14.0}
    for mode in spec.WEIGHT_MODES:
        enc = C.encode(W, mode)
        assert enc.ratio <= spec.compression_ratio(mode) + 1e-9
        if mode in floor:
            assert enc.ratio >= floor[mode]
            assert enc.codebook_bytes <= C.DEFAULT_MAX_CODEBOOK_OVERHEAD * len(enc.packed)
        else:
            assert enc.ratio == pytest.approx(spec.compression_ratio(mode))


def test_group_rows_choice():
    for (R, K) in [(308, 164), (37, 23), (1024, 40), (3, 5000)]:
        for mode in spec.CODEBOOK_MODES:
            G = C.choose_group_rows(R, K, mode)
            idx_bytes = C.packed_length(R * K, mode)
            over = lambda g: -(-R // g) * (1 << mode) / idx_bytes   # noqa: E731
            assert G & (G - 1) == 0
            if over(G) <= 0.03:
                assert G == 1 or over(G // 2) > 0.03       # smallest that fits the budget
            else:
                assert G >= R and (G == 1 or G // 2 < R)   # nothing fits: one group
            assert C.encode(gaussian((R, K)), mode).group_rows == G
    assert C.choose_group_rows(308, 164, 8) == 0
    assert C.choose_group_rows(308, 164, 4, max_codebook_overhead=0.5) == 1
    assert C.choose_group_rows(308, 164, 6, 0.01) > C.choose_group_rows(308, 164, 6, 0.03)


def test_frac_bits_override():
    W = gaussian((20, 30), seed=4)
    auto = C.encode(W, 8)
    lower = C.encode(W, 8, frac_bits=auto.frac_bits - 2)
    assert lower.frac_bits == auto.frac_bits - 2
    assert C.quality(W, lower)["rmse"] > C.quality(W, auto)["rmse"]
    over = C.encode(W, 8, frac_bits=auto.frac_bits + 3)      # saturates
    assert C.decode_int(over).max() == 127 and C.decode_int(over).min() == -128
    over6 = C.encode(W, 6, frac_bits=auto.frac_bits + 3)     # codebook clipped to int8
    q = C.decode_int(over6)
    assert q.max() <= 127 and q.min() >= -128


def test_huge_values_with_forced_scale_saturate():
    W = np.array([[1e300, -1e300, 0.5], [3.0, -7.0, 0.0]])
    for mode in spec.WEIGHT_MODES:
        enc = C.encode(W, mode)                              # f clamps at FRAC_LO: still too big
        q = C.decode_int(enc)
        lim = 1 << (spec.weight_int_bits(mode) - 1)
        assert q[0, 0] == lim - 1 and q[0, 1] == -lim, (mode, q)
        enc = C.encode(W[1:], mode, frac_bits=40)
        q = C.decode_int(enc)
        assert q[0, 0] == lim - 1 and q[0, 1] == -lim and q[0, 2] == 0


def test_degenerate_matrices():
    for W in (np.zeros((5, 7)), np.full((3, 4), 0.3), np.array([[-2.5]]),
              np.tile([[-1.0, 0.0, 0.5]], (10, 3))):
        for mode in spec.WEIGHT_MODES:
            for fit in C.FITS:
                enc = C.encode(W, mode, fit=fit)
                err = np.max(np.abs(C.decode_float(enc) - W))
                assert err <= 2.0 ** -enc.frac_bits / 2 + 1e-15
    enc = C.encode(np.zeros((5, 7)), 4)
    assert np.all(enc.codebooks == 0) and C.quality(np.zeros((5, 7)), enc)["sqnr_db"] == math.inf


def test_accepts_float32_and_lists():
    W = gaussian((9, 11), seed=9)
    a = C.encode(W.astype(np.float32), 6)
    b = C.encode(W.astype(np.float32).astype(np.float64).tolist(), 6)
    assert a.packed == b.packed and np.array_equal(a.codebooks, b.codebooks)


@pytest.mark.parametrize("mode", spec.WEIGHT_MODES)
def test_deterministic(mode):
    W = gaussian((308, 164), seed=6)
    a, b = C.encode(W, mode), C.encode(W.copy(), mode)
    assert a.packed == b.packed and a.frac_bits == b.frac_bits and a.group_rows == b.group_rows
    assert a.codebook_blob == b.codebook_blob


def test_encode_speed():
    W = gaussian((308, 164), seed=8)
    C.encode(W, 6)
    t = time.perf_counter()
    for mode in spec.WEIGHT_MODES:
        C.decode_int(C.encode(W, mode))
    assert time.perf_counter() - t < 2.0


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
def test_bad_inputs():
    W = gaussian((4, 4))
    bad_w = W.copy()
    bad_w[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        C.encode(bad_w, 8)
    bad_w[1, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        C.encode(bad_w, 6)
    with pytest.raises(ValueError, match="2-D"):
        C.encode(np.zeros(5), 8)
    with pytest.raises(ValueError, match="2-D"):
        C.encode(np.zeros((2, 2, 2)), 8)
    for shape in [(0, 5), (5, 0)]:
        with pytest.raises(ValueError, match="empty"):
            C.encode(np.zeros(shape), 4)
    for mode in (3, 32, 0, "8", 8.0, True, None):
        with pytest.raises(ValueError, match="unknown weight mode"):
            C.encode(W, mode)
    with pytest.raises(ValueError, match="real"):
        C.encode(W + 1j, 8)
    with pytest.raises(ValueError, match="numeric"):
        C.encode(np.array([["a", "b"]]), 8)
    for g in (3, 0, -4, 2.0):
        with pytest.raises(ValueError, match="power of two"):
            C.encode(W, 4, group_rows=g)
    with pytest.raises(ValueError, match="codebook modes"):
        C.encode(W, 8, group_rows=4)
    with pytest.raises(ValueError, match="frac_bits"):
        C.encode(W, 8, frac_bits=2.5)
    with pytest.raises(ValueError, match="fit"):
        C.encode(W, 4, fit="magic")
    with pytest.raises(ValueError, match="shape mismatch"):
        C.quality(gaussian((4, 5)), C.encode(W, 8))


def test_decode_rejects_inconsistent_encodings():
    import dataclasses
    enc = C.encode(gaussian((6, 7)), 4)
    with pytest.raises(ValueError, match="bytes"):
        C.decode_int(dataclasses.replace(enc, packed=enc.packed[:-1]))
    with pytest.raises(ValueError, match="codebooks"):
        C.decode_int(dataclasses.replace(enc, codebooks=enc.codebooks[:, :4]))
    with pytest.raises(ValueError, match="EncodedMatrix"):
        C.decode_int("nope")


# --------------------------------------------------------------------------------------------------
# Quality and trade-off report
# --------------------------------------------------------------------------------------------------
def test_quality_values():
    W = np.array([[0.5, -0.25], [1.0, 0.0]])
    q = C.quality(W, C.encode(W, 16))
    assert q["rmse"] == 0.0 and q["max_abs_err"] == 0.0 and q["sqnr_db"] == math.inf
    W = gaussian((30, 40))
    enc = C.encode(W, 4)
    err = C.decode_float(enc) - W
    q = C.quality(W, enc)
    assert q["rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)))
    assert q["max_abs_err"] == pytest.approx(np.max(np.abs(err)))
    assert q["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(W ** 2) / np.sum(err ** 2)))


def test_tradeoff_table_and_plot(tmp_path):
    mats = {"lstm.w_ih": gaussian((308, 164), seed=1), "fc": gaussian((12, 308), seed=2)}
    rows = C.tradeoff_table(mats)
    assert len(rows) == 2 * len(spec.WEIGHT_MODES)
    for r in rows:
        assert {"matrix", "mode", "bytes", "ratio", "sqnr_db", "bits_per_weight"} <= set(r)
        enc = C.encode(mats[r["matrix"]], r["mode"])
        assert r["bytes"] == enc.nbytes and r["ratio"] == pytest.approx(enc.ratio)
    text = C.format_tradeoff(rows)
    assert "lstm.w_ih" in text and len(text.splitlines()) == len(rows) + 2
    png = tmp_path / "tradeoff.png"
    C.plot_tradeoff(rows, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one = tmp_path / "one.png"
    C.plot_tradeoff([r for r in rows if r["matrix"] == "fc"], one)
    assert one.stat().st_size > 1000
