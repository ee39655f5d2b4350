"""Row FIFO: first word fall-through over a block RAM, timed exactly like a Migen SyncFIFO (fwft):
a word written in cycle t is readable from t + 1, whatever the history; `level` counts words a cycle late."""
import random

import pytest

pytest.importorskip("migen")
from migen.sim import run_simulation  # noqa: E402

from rnnaccel.gateware.fifo import RowFifo  # noqa: E402


def run(seed, p_we, p_re, n=2500, depth=16):
    rnd = random.Random(seed)
    dut = RowFifo(16, depth)
    ref, seen = [], {"bram": 0}

    def tb():
        prev, word, held = (0, 0, 0), 0, 0
        for t in range(n):
            we, din, re = prev                    # the inputs the design sees in this cycle
            readable, dout, level = (yield dut.readable), (yield dut.dout), (yield dut.level)
            assert readable == (len(ref) > 0), (seed, t)
            assert level == held, (seed, t)          # `level`: the words held a cycle earlier
            held = len(ref)
            if readable:
                assert dout == ref[0], (seed, t)
                if re:
                    ref.pop(0)
            if we:
                ref.append(din)
            seen["bram"] += len(ref) > 5          # words must have gone through the block RAM
            we = int(rnd.random() < p_we and len(ref) < depth - 1)
            re = int(rnd.random() < p_re)
            yield dut.we.eq(we)
            yield dut.din.eq(word)
            yield dut.re.eq(re)
            prev, word = (we, word, re), (word + we) & 0xFFFF
            yield
    run_simulation(dut, tb())
    return seen["bram"]


@pytest.mark.parametrize("p_we,p_re", [(0.9, 0.95), (0.95, 0.5), (0.5, 0.9), (1.0, 1.0), (0.3, 0.3), (0.99, 0.7)])
def test_row_fifo_is_a_fwft_fifo_with_one_cycle_latency(p_we, p_re):
    through_bram = sum(run(seed, p_we, p_re) for seed in range(4))
    if p_we > p_re:
        assert through_bram > 0
