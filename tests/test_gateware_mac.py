"""MAC array: finished rows equal exact integer dot products for flat streams of every shape."""
import numpy as np
import pytest

pytest.importorskip("migen")
from migen.sim import run_simulation  # noqa: E402

from rnnaccel.gateware.mac import MacArray  # noqa: E402


def flat_stream(W, x, n, shifted_cols, mode16=False):
    """Per-cycle lane inputs of the flat stream of W [R, K] against x: what the weight and
    window units deliver. bnd: lane where a row starts in this cycle (not the stream's first)."""
    R, K = W.shape
    total = R * K
    n_eff = n // 2 if mode16 else n
    out = []
    for c in range(-(-total // n_eff)):
        idx = np.arange(c * n_eff, (c + 1) * n_eff)
        ok = idx < total
        starts = [i for i in range(n_eff) if ok[i] and idx[i] % K == 0 and idx[i] > 0]
        lanes_x, lanes_w, sh, zero = [], [], 0, 0
        for i in range(n_eff):
            col = idx[i] % K
            xv = int(x[col]) if ok[i] else 0
            wv = int(W.flat[idx[i]]) if ok[i] else 0
            parts = [(wv & 0xFF, xv), (wv >> 8, xv)] if mode16 else [(wv, xv)]
            for j, (wp, xp) in enumerate(parts):
                lane = len(lanes_x)
                lanes_x.append(xp)
                lanes_w.append(wp)
                if ok[i] and col in shifted_cols:
                    sh |= 1 << lane
                if not ok[i]:
                    zero |= 1 << lane
        bnd = (starts[0] * (2 if mode16 else 1)) if starts else n
        out.append(dict(x=lanes_x, w=lanes_w, shifted=sh, zero=zero, bnd=bnd, first=c == 0,
                        last=(c + 1) * n_eff >= total))
    return out


def run_array(n, cycles, shift, mode16=False, gaps=0, seed=0):
    dut = MacArray(n)
    rows = []
    rng = np.random.default_rng(seed)
    # the cycle schedule: upstream stalls (valid low) between the stream cycles
    sched = []
    for c in cycles:
        while gaps and rng.random() < gaps:
            sched.append(None)
        sched.append(c)
    sched += [None] * (dut.latency + 2)

    def tb():
        yield dut.shift_ahead3.eq(shift)   # three cycles before the first input cycle
        yield dut.mode16.eq(int(mode16))
        yield
        full = [None, None] + sched + [None, None]
        for t, c in enumerate(full[:-2]):
            nxt, nxt2 = full[t + 1], full[t + 2]
            for i in range(n):           # the weights of the input cycle after next
                yield dut.w_ahead2[i].eq(nxt2["w"][i] if nxt2 else 0)
            yield dut.shifted_ahead.eq(int(nxt["shifted"]) if nxt else 0)
            yield dut.zero_ahead.eq(int(nxt["zero"]) if nxt else 0)
            if c is not None:
                for i in range(n):
                    yield dut.x[i].eq(c["x"][i])
                for k in ("bnd", "first", "last"):
                    yield getattr(dut, k).eq(int(c[k]))
            yield dut.valid.eq(int(c is not None))
            yield
            yield from collect()

    def collect():
        if (yield dut.row0_valid):
            rows.append((yield dut.row0))
        if (yield dut.row1_valid):
            rows.append((yield dut.row1))

    run_simulation(dut, tb())
    return rows


@pytest.mark.parametrize("n,R,K,shift,gaps", [(4, 5, 11, 3, 0), (8, 7, 9, 9, 0.3), (8, 3, 16, 0, 0),
                                              (4, 6, 4, 2, 0.2), (8, 2, 13, 5, 0)])
def test_rows_equal_dot_products(n, R, K, shift, gaps):
    rng = np.random.default_rng(R * K)
    W = rng.integers(-128, 128, (R, K))
    x = rng.integers(-32768, 32768, K)
    scols = set(range(3))  # segment A (first 3 columns) is the shifted one
    rows = run_array(n, flat_stream(W, x, n, scols), shift, gaps=gaps, seed=K)
    xs = np.array([int(v) << (shift if k in scols else 0) for k, v in enumerate(x)], dtype=object)
    assert rows == [int(sum(int(W[j, k]) * xs[k] for k in range(K))) for j in range(R)]


def test_16bit_weights_fuse_lane_pairs():
    n, R, K = 8, 5, 7
    rng = np.random.default_rng(3)
    W = rng.integers(-32768, 32768, (R, K))
    x = rng.integers(-32768, 32768, K)
    rows = run_array(n, flat_stream(W, x, n, set(), mode16=True), 0, mode16=True)
    assert rows == [int(sum(int(W[j, k]) * int(x[k]) for k in range(K))) for j in range(R)]


@pytest.mark.parametrize("n", [32, 64])
def test_rows_on_verilator_gru_sized(n):
    """A GRU-S-sized stream (154 rows x 164 columns, segment A shifted by 6) on the real widths."""
    from rnnaccel.gateware.sim import run_verilator
    R, K, shift = 154, 164, 6
    rng = np.random.default_rng(n)
    W = rng.integers(-128, 128, (R, K))
    x = rng.integers(-32768, 32768, K)
    scols = set(range(10))
    cyc = flat_stream(W, x, n, scols)
    dut = MacArray(n)
    C = len(cyc)
    mask = np.uint64 if n == 64 else np.int64
    ins = {dut.x[i]: np.array([c["x"][i] for c in cyc]) for i in range(n)}
    for k in ("bnd", "first", "last"):
        ins[getattr(dut, k)] = np.array([int(c[k]) for c in cyc], dtype=mask)
    ins[dut.valid] = np.ones(C, dtype=int)
    ins[dut.mode16] = np.zeros(C, dtype=int)
    # three idle cycles first: the shift is presented three cycles ahead of the input cycles,
    # the weights two, the masks one
    ins = {s: np.concatenate([np.zeros(3, dtype=v.dtype), v]) for s, v in ins.items()}

    def lead(v, k):                       # v presented k cycles ahead
        return np.concatenate([np.zeros(3 - k, dtype=v.dtype), v, np.zeros(k, dtype=v.dtype)])
    ins.update({dut.w_ahead2[i]: lead(np.array([c["w"][i] for c in cyc]), 2) for i in range(n)})
    ins[dut.shifted_ahead] = lead(np.array([int(c["shifted"]) for c in cyc], dtype=mask), 1)
    ins[dut.zero_ahead] = lead(np.array([int(c["zero"]) for c in cyc], dtype=mask), 1)
    ins[dut.shift_ahead3] = np.full(C + 3, shift)
    res = run_verilator(dut, ins, [dut.row0_valid, dut.row0, dut.row1_valid, dut.row1],
                        flush=dut.latency + 2, name=f"MacArray{n}")
    rows = []
    for t in range(len(res[dut.row0_valid])):
        if res[dut.row0_valid][t]:
            rows.append(int(res[dut.row0][t]))
        if res[dut.row1_valid][t]:
            rows.append(int(res[dut.row1][t]))
    xs = np.array([int(v) << (shift if k in scols else 0) for k, v in enumerate(x)], dtype=object)
    assert rows == [int(sum(int(W[j, k]) * xs[k] for k in range(K))) for j in range(R)]
    assert C == -(-R * K // n)  # no idle cycle: ceil(rows*K / N) stream cycles
