"""ActivationUnit (gateware/activation.py) against the bit-exact reference act_q.

Verilator: every int16 input for every function (5 x 65536), streamed back-to-back in a shuffled
order so the function code changes from one cycle to the next, then again with random valid gaps.
Migen simulator: a few hundred inputs (it is slow), to keep the Migen-level model honest too.
The Verilator model is built once and cached (rnnaccel.gateware.sim).
"""
import numpy as np
import pytest

from rnnaccel.gateware.activation import ActivationUnit
from rnnaccel.gateware.sim import run_verilator
from rnnaccel.host.activation import act_q
from rnnaccel.host.isa import ACT_CODE

ALL_Z = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)
CODES = np.array(sorted(ACT_CODE.values()))
ILLEGAL = np.array([c for c in range(8) if c not in ACT_CODE.values()])


def expected(z, code):
    """The unit's contract: act_q for the PWL functions and relu, z for none (and illegal codes)."""
    out = np.asarray(z, dtype=np.int64).copy()
    for name, c in ACT_CODE.items():
        sel = code == c
        if name != "none" and sel.any():
            out[sel] = act_q(name, z[sel])
    return out


def all_pairs(seed):
    """Every (z, function) pair once, shuffled, plus a short tail of illegal codes."""
    z = np.tile(ALL_Z, CODES.size)
    code = np.repeat(CODES, ALL_Z.size)
    perm = np.random.default_rng(seed).permutation(z.size)
    rng = np.random.default_rng(seed + 1)
    tail = rng.integers(-(1 << 15), 1 << 15, 2000)
    return (np.concatenate([z[perm], tail]),
            np.concatenate([code[perm], rng.choice(ILLEGAL, tail.size)]))


def run(z, code, valid):
    dut = ActivationUnit()
    res = run_verilator(dut, {"z": z, "func": code, "valid": valid}, ["out", "out_valid"],
                        flush=dut.latency + 4)
    return res["out"], res["out_valid"]


def test_exhaustive_back_to_back():
    z, code = all_pairs(seed=1)
    assert np.unique(z[code == ACT_CODE["tanh"]]).size == 1 << 16
    n, lat = z.size, ActivationUnit.latency
    out, out_valid = run(z, code, np.ones(n, dtype=np.int64))

    # latency: out_valid is valid delayed by exactly `latency` cycles
    want_valid = np.zeros(out_valid.size, dtype=np.int64)
    want_valid[lat:lat + n] = 1
    assert np.array_equal(out_valid, want_valid)

    got, want = out[lat:lat + n], expected(z, code)
    for name, c in ACT_CODE.items():
        sel = code == c
        bad = np.flatnonzero(got[sel] != want[sel])
        assert bad.size == 0, (f"{name}: {bad.size} mismatches, first z={z[sel][bad[0]]}: "
                               f"rtl {got[sel][bad[0]]} != act_q {want[sel][bad[0]]}")
    assert np.array_equal(got, want)     # illegal codes too: pass z through


def test_exhaustive_with_valid_gaps():
    z, code = all_pairs(seed=2)
    n, lat = z.size, ActivationUnit.latency
    rng = np.random.default_rng(3)
    # ~30 % idle cycles (bursts of up to 3) carrying garbage data and codes
    gaps = rng.integers(0, 4, n) * (rng.random(n) < 0.3)
    total = n + int(gaps.sum())
    pos = np.arange(n) + np.cumsum(gaps)
    zz = rng.integers(-(1 << 15), 1 << 15, total)
    cc = rng.integers(0, 8, total)
    valid = np.zeros(total, dtype=np.int64)
    zz[pos], cc[pos], valid[pos] = z, code, 1

    out, out_valid = run(zz, cc, valid)
    assert np.array_equal(np.flatnonzero(out_valid), pos + lat)
    assert np.array_equal(out[pos + lat], expected(z, code))


def test_migen_simulator():
    from migen.sim import run_simulation

    rng = np.random.default_rng(4)
    n = 300
    # corners (saturation, segment boundaries) then random inputs; random codes and valid gaps
    corners = np.array([-32768, -32767, -1, 0, 1, 8191, 8192, 16383, 16384, 32767])
    z = np.concatenate([np.repeat(corners, CODES.size), rng.integers(-32768, 32768, n)])
    code = np.concatenate([np.tile(CODES, corners.size), rng.choice(CODES, n)])
    valid = (rng.random(z.size) < 0.8).astype(int)
    valid[:corners.size * CODES.size] = 1

    dut = ActivationUnit()
    rec = []

    def bench():
        for c in range(z.size + dut.latency + 2):
            if c < z.size:
                yield dut.z.eq(int(z[c]))
                yield dut.func.eq(int(code[c]))
                yield dut.valid.eq(int(valid[c]))
            else:
                yield dut.valid.eq(0)
            yield
            rec.append(((yield dut.out_valid), (yield dut.out)))

    run_simulation(dut, bench())
    out_valid = np.array([v for v, _ in rec])
    out = np.array([o for _, o in rec])
    pos = np.flatnonzero(valid)
    # an input written before tick c is read back after tick c + latency
    assert np.array_equal(np.flatnonzero(out_valid), pos + dut.latency)
    assert np.array_equal(out[pos + dut.latency], expected(z[pos], code[pos]))


@pytest.mark.parametrize("func", ["tanh", "sigmoid", "softsign"])
def test_rom_is_the_host_table(func):
    """The ROM image comes from tables() (no copy that could drift)."""
    from rnnaccel.host.activation import TABLE_OF, TABLES, tables
    dut = ActivationUnit()
    t = TABLES.index(TABLE_OF[func])
    depth = 1 << tables()[func]["addr_bits"]
    words = [sum(int(m.init[i]) << lo for lo, m in dut.rom_slices) for i in range(2 * depth)]   # the slices side by side
    rom = np.array(words[t * depth:t * depth + tables()[func]["segments"]], dtype=np.uint64)
    assert np.array_equal(rom, tables()[func]["rom"])
