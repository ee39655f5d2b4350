"""X buffer: the N-lane window over the input vector, wrapping at K, with segment/padding masks."""
import numpy as np
import pytest

pytest.importorskip("migen")
from migen.sim import run_simulation  # noqa: E402

from rnnaccel.gateware.xbuf import XBuffer  # noqa: E402


def write_runs(K, wr_width, segments):
    """(position, mask) of each write: every segment [s, e) in runs of wr_width from its start, as
    the core's loader writes segments A and B (B unaligned, from a_len)."""
    bounds = [0, *segments, K]
    for s, e in zip(bounds, bounds[1:]):
        for base in range(s, e, wr_width):
            yield base, sum(1 << j for j in range(wr_width) if base + j < e)


def run_window(n, kmax, x, k_useful, split, shift_b, total, mode16=False, wr_width=4, segments=()):
    K = len(x)
    dut = XBuffer(n, kmax, wr_width)
    n_eff = n // 2 if mode16 else n
    got = []

    def tb():
        yield dut.k.eq(K)
        yield dut.k_useful.eq(k_useful)
        yield dut.split.eq(split)
        yield dut.shift_b.eq(int(shift_b))
        yield dut.mode16.eq(int(mode16))
        yield   # the configuration is in place a cycle before the first write (XBuffer docstring)
        for n_write, (base, m) in enumerate(write_runs(K, wr_width, segments)):
            # with segments, the words come rotated as the vector pool's banks hand them over
            # (element j in wdata[(j + wrot) mod wr_width]), by a different amount each write
            rot = (3 * n_write + 1) % wr_width if segments else 0
            for j in range(wr_width):
                yield dut.wdata[(j + rot) % wr_width].eq(int(x[base + j]) if (m >> j) & 1 else 0x5A5A - 0x10000)
            yield dut.wrot.eq(rot)
            yield dut.wpos.eq(base)
            yield dut.we.eq(m)
            yield
        yield dut.we.eq(0)
        for _ in range(dut.write_latency - 1):   # writes land write_latency cycles after they are presented
            yield
        yield dut.restart.eq(1)
        yield
        yield dut.restart.eq(0)
        for _ in range(dut.settle - 1):   # the position registers settle before the first advance
            yield
        cycles = -(-total // n_eff)
        # Values a generator writes reach the design at the next clock edge, so the window of
        # stream cycle c is on the outputs latency + 1 edges after c's inputs are written.
        for c in range(cycles + dut.latency + 1):
            if c < cycles:
                yield dut.remaining.eq(total - c * n_eff)
                yield dut.advance.eq(1)
            else:
                yield dut.advance.eq(0)
            yield
            if c >= dut.latency and len(got) < cycles:
                lanes = []
                for i in range(n):
                    lanes.append((yield dut.x[i]))
                got.append((lanes, (yield dut.shifted), (yield dut.zero)))

    run_simulation(dut, tb())
    return got


def expect(n, x, k_useful, split, shift_b, total, mode16=False):
    K = len(x)
    n_eff = n // 2 if mode16 else n
    out = []
    for c in range(-(-total // n_eff)):
        lanes, sh, zero = [], 0, 0
        for i in range(n):
            e = i // 2 if mode16 else i
            col = (c * n_eff + e) % K
            lanes.append(int(x[col]))
            if (col < split) != shift_b:
                sh |= 1 << i
            if col >= k_useful or c * n_eff + e >= total:
                zero |= 1 << i
        out.append((lanes, sh, zero))
    return out


@pytest.mark.parametrize("n,K,rows,mode16,wr_width,segments", [
    (8, 8, 3, False, 4, ()), (8, 13, 4, False, 4, ()), (4, 23, 5, False, 4, ()), (8, 21, 3, True, 4, ()),
    (16, 40, 3, False, 4, ()),
    # the loader's width 8 and unaligned runs (segment B from a_len; the wrap copies straddling chunks)
    (8, 29, 3, False, 8, (5,)), (16, 37, 3, False, 8, (11,)), (32, 75, 3, False, 8, (10,)),
    (32, 53, 3, True, 8, (3, 30)), (16, 16, 4, False, 8, (7,))])
def test_window_wraps_at_k(n, K, rows, mode16, wr_width, segments):
    rng = np.random.default_rng(K)
    x = rng.integers(-32768, 32768, K)
    split, k_useful = 3, K - 2
    got = run_window(n, 128, x, k_useful, split, False, rows * K, mode16, wr_width, segments)
    want = expect(n, x, k_useful, split, False, rows * K, mode16)
    for c, (g, w) in enumerate(zip(got, want)):
        g_lanes = [g[0][i] if not (w[2] >> i) & 1 else None for i in range(n)]
        w_lanes = [w[0][i] if not (w[2] >> i) & 1 else None for i in range(n)]
        assert g_lanes == w_lanes, f"cycle {c}"
        assert g[1] & ~w[2] == w[1] & ~w[2], f"cycle {c} shifted"
        assert g[2] == w[2], f"cycle {c} zero"
    assert len(got) == len(want)
