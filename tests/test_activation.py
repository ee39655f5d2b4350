"""Exhaustive tests of the PWL activation unit's integer definition (host/activation.py)."""
import numpy as np
import pytest

from rnnaccel.host import activation as A
from rnnaccel.host.spec import F_ACT_IN, F_ACT_OUT

Q = np.arange(-32768, 32768, dtype=np.int64)
ONE = 1 << F_ACT_OUT
PWL = ("tanh", "sigmoid", "softsign")


@pytest.fixture(scope="module")
def report():
    rep = A.error_report()
    print("\n" + A.format_report(rep))
    return rep


@pytest.mark.parametrize("func", PWL)
def test_exhaustive_error(func, report):
    out = A.act_q(func, Q)
    err = np.abs(out * 2.0 ** -F_ACT_OUT - A.act_float(func, Q * 2.0 ** -F_ACT_IN))
    print(f"{func}: max {err.max():.3e} mean {err.mean():.3e}")
    assert err.max() < 2e-4
    assert err.max() < 1e-4          # the design goal, met with margin
    assert report[func]["max_abs_err"] == pytest.approx(err.max())
    assert report[func]["mean_abs_err"] == pytest.approx(err.mean())
    assert report[func]["segments"] == A.N_SEG
    assert report[func]["rom_bits"] == A.N_SEG * A.WORD_BITS


@pytest.mark.parametrize("func", PWL)
def test_monotonic_and_range(func):
    out = A.act_q(func, Q)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= -ONE and out.max() <= ONE


def test_symmetry_and_fixed_points():
    pos = np.arange(1, 32768, dtype=np.int64)
    for func in ("tanh", "softsign"):
        assert np.array_equal(A.act_q(func, -pos), -A.act_q(func, pos))
        assert A.act_q(func, 0) == 0
        assert A.act_q(func, -32768) == -A.act_q(func, 32767)
    assert np.array_equal(A.act_q("sigmoid", -pos), ONE - A.act_q("sigmoid", pos))
    assert A.act_q("sigmoid", 0) == ONE // 2
    assert A.act_q("sigmoid", -32768) == ONE - A.act_q("sigmoid", 32767)
    assert A.act_q("sigmoid", Q).min() >= 0


def test_sigmoid_uses_full_input_precision():
    # sigmoid reads the tanh core at v = |q| (Q3.13 of x/2): odd and even q differ
    s = A.act_q("sigmoid", np.arange(0, 64, dtype=np.int64))
    assert np.all(np.diff(s) >= 0) and len(np.unique(s)) > 40


def test_relu_exact():
    assert np.array_equal(A.act_q("relu", Q), np.maximum(Q, 0))


def test_dtype_and_shape():
    for dt in (np.int16, np.int32, np.int64):
        q = Q.astype(dt).reshape(16, 64, 64)
        for func in A.FUNCS:
            out = A.act_q(func, q)
            assert out.dtype == np.int64 and out.shape == q.shape
            assert np.array_equal(out.ravel(), A.act_q(func, Q))
    out = A.act_q("tanh", 4096)
    assert out.dtype == np.int64 and out.shape == ()
    assert A.act_q("tanh", [1, -1]).shape == (2,)
    assert A.act_q("sigmoid", np.zeros((0, 3), dtype=np.int16)).shape == (0, 3)
    with pytest.raises(ValueError):
        A.act_q("tanh", np.array([40000]))
    with pytest.raises(TypeError):
        A.act_q("tanh", np.array([0.5]))
    with pytest.raises(ValueError):
        A.act_q("gelu", Q)


def test_tables_fit_hardware_widths():
    T = A.tables()
    assert T["sigmoid"] is T["tanh"]
    for name in ("tanh", "softsign"):
        t = T[name]
        s, c = t["slope"], t["intercept"]
        assert s.dtype.kind == "i" and c.dtype.kind == "i"
        assert len(s) == len(c) == t["segments"] == A.N_SEG <= 1 << t["addr_bits"]
        assert np.all(np.abs(s) < 1 << (t["slope_bits"] - 1))
        assert np.all(np.abs(c) < 1 << (t["intercept_bits"] - 1))
        assert t["slope_bits"] <= 18 and A.COARSE_FRAC + 1 <= 18     # ECP5 18x18 multiplier
        # packed ROM words unpack to the fields
        w = t["rom"].astype(np.int64)
        sw = w >> t["intercept_bits"]
        cw = w & ((1 << t["intercept_bits"]) - 1)
        sw = np.where(sw >= 1 << (t["slope_bits"] - 1), sw - (1 << t["slope_bits"]), sw)
        cw = np.where(cw >= 1 << (t["intercept_bits"] - 1), cw - (1 << t["intercept_bits"]), cw)
        assert np.array_equal(sw, s) and np.array_equal(cw, c)
        # core result and product widths (docstring: product 25 bits, R 30 bits signed)
        v = np.arange(1 << A.V_BITS, dtype=np.int64)
        addr, frac = A._index(v)
        assert addr.min() == 0 and addr.max() == A.N_SEG - 1
        prod = s[addr] * frac
        r = (c[addr] << A.ICPT_SHIFT) + prod
        assert np.abs(prod).max() < 1 << 24 and np.abs(r).max() < 1 << 29


def test_tables_deterministic():
    first = {k: (v["slope"].copy(), v["intercept"].copy()) for k, v in A.tables().items()}
    A._CACHE.clear()
    again = A.tables()
    for k, (s, c) in first.items():
        assert np.array_equal(again[k]["slope"], s) and np.array_equal(again[k]["intercept"], c)
