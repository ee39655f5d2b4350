"""Epilogue on Verilator: every row equals the simulator's row arithmetic (row_preact + row_output),
with each row carrying its own instruction settings (rows of consecutive instructions back to back)."""
import numpy as np
import pytest

pytest.importorskip("migen")

from rnnaccel.host import isa  # noqa: E402
from rnnaccel.host.simulator import row_output, row_preact  # noqa: E402
from rnnaccel.host.spec import ACC_BITS, wrap  # noqa: E402
from rnnaccel.gateware.epilogue import Epilogue  # noqa: E402

COMBINES = [isa.COMB_NONE, isa.COMB_MUL, isa.COMB_GRU, isa.COMB_MAC, isa.COMB_MULACT]
ACTS = list(isa.ACT_CODE)


def random_rows(n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        ins = isa.Instr(isa.OP_MATVEC, combine=int(rng.choice(COMBINES)), act=str(rng.choice(ACTS)),
                        act2=str(rng.choice(["tanh", "sigmoid", "softsign"])), diag=bool(rng.random() < 0.5),
                        diag_shift=int(rng.integers(-20, 12)), out_shift=int(rng.integers(-6, 32)),
                        s_c=int(rng.integers(8, 16)), s_q=int(rng.integers(0, 15)), s_p=int(rng.integers(-4, 6)))
        mag = int(rng.integers(8, 46))
        acc = int(rng.integers(-(1 << mag), 1 << mag))
        da, db, p, q = (int(v) for v in rng.integers(-32768, 32768, 4))
        rows.append((ins, acc, da, db, p, q))
    # corners: saturation both ways, zero, extreme operands
    for acc in (-(1 << 47), (1 << 47) - 1, 0):
        rows.append((isa.Instr(isa.OP_MATVEC, combine=isa.COMB_GRU, act="tanh", out_shift=0), acc,
                     -32768, -32768, -32768, 32767))
    return rows


def test_epilogue_matches_simulator_rows():
    from rnnaccel.gateware.sim import run_verilator
    rows = random_rows(6000, 1)
    dut = Epilogue()
    rng = np.random.default_rng(2)
    bias = rng.integers(-(1 << 31), 1 << 31, len(rows))
    ins = {
        "valid": np.ones(len(rows), int),
        "acc": np.array([r[1] for r in rows], dtype=np.int64),
        "bias": np.concatenate([[0], bias[:-1]]),     # a row's bias comes a cycle after the row
        "da": np.array([r[2] for r in rows]), "db": np.array([r[3] for r in rows]),
        "p": np.array([r[4] for r in rows]), "q": np.array([r[5] for r in rows]),
        "tag": np.arange(len(rows)) & 0xFFFF,
        "diag": np.array([int(r[0].diag) for r in rows]),
        "diag_shift": np.array([r[0].diag_shift for r in rows]),
        "out_shift": np.array([r[0].out_shift for r in rows]),
        "act": np.array([isa.ACT_CODE[r[0].act] for r in rows]),
        "act2": np.array([isa.ACT_CODE[r[0].act2] for r in rows]),
        "combine": np.array([r[0].combine for r in rows]),
        "s_c": np.array([r[0].s_c for r in rows]), "s_q": np.array([r[0].s_q for r in rows]),
        "s_p": np.array([r[0].s_p for r in rows]),
    }
    # one idle cycle in every seven: valid gaps must not disturb the pipeline
    gap = (np.arange(len(rows)) % 7) == 3
    ins["valid"][gap] = 0
    res = run_verilator(dut, ins, ["out_valid", "y", "out_tag"], flush=dut.latency + 2, name="Epilogue")
    got = res["y"][res["out_valid"] == 1]
    tags = res["out_tag"][res["out_valid"] == 1]
    live = [(ins_, int(wrap(np.int64(acc) + int(b), ACC_BITS)), *ops) for (ins_, acc, *ops), b, g in zip(rows, bias, gap) if not g]
    assert len(got) == len(live)
    assert np.array_equal(tags, (np.flatnonzero(~gap)) & 0xFFFF)
    want = []
    for ins_, acc, da, db, p, q in live:
        z = row_preact(ins_, np.array([acc]), np.array([da]), np.array([db]))
        want.append(int(row_output(ins_, z, np.array([p]), np.array([q]))[0]))
    bad = np.flatnonzero(np.array(want) != got)
    assert bad.size == 0, [(live[i][0].combine, live[i][0].act, live[i][1:], want[i], int(got[i])) for i in bad[:5]]
    assert np.flatnonzero(res["out_valid"])[0] == dut.latency


def test_round_saturate_matches_its_definition():
    """_round_sat16 (the epilogue's carry-free rounding + int16 saturation) equals
    sat16(right ? (t + 1) >> 1 : t) on values around every boundary and at random."""
    from migen import Module, Signal
    from migen.sim import run_simulation
    from rnnaccel.gateware.epilogue import _round_sat16

    W = 57
    m = Module()
    t, right = Signal((W, True)), Signal()
    y = _round_sat16(m, t, right, "y")
    rng = np.random.default_rng(5)
    vals = [b + d for b in (0, 32767, -32768, 65535, -65536, -65537, -65538, 1 << 17, -(1 << 17),
                            (1 << (W - 1)) - 1, -(1 << (W - 1))) for d in range(-3, 4)]
    vals += [int(v) >> int(s) for v, s in zip(rng.integers(-(1 << 62), 1 << 62, 400), rng.integers(0, 46, 400))]
    vals = [max(-(1 << (W - 1)), min((1 << (W - 1)) - 1, v)) for v in vals]
    ins = [(v, r) for v in vals for r in (0, 1)]
    got = []

    def tb():   # the result is a cycle late (a register stage inside): read it with the next input
        for v, r in ins + [(0, 0)]:
            yield t.eq(v)
            yield right.eq(r)
            yield
            got.append((yield y))

    run_simulation(m, tb())
    for g, (v, r) in zip(got[1:], ins):
        want = max(-32768, min(32767, (v + 1) >> 1 if r else v))
        assert g == want, (v, r, g, want)
