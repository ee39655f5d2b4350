"""The driver's pynq:// transport under PYNQ's own Python (.venv-pynq: pynq 4.0, numpy 1.x, no torch).

Not run by the main suite directly (pynq is not installed there: the module skips); the main
suite runs it in .venv-pynq (tests/test_driver_simboard.py, tests/test_driver_pynq.py) with
RNNACCEL_PYNQ_BRIDGE=HOST:PORT (a UART bridge: the simulated board or the host board),
RNNACCEL_PYNQ_CSR=csr.csv and RNNACCEL_PYNQ_DIR holding a.rnna, b.rnna, xa.npy, xb.npy (int16
frames). MMIO goes through a `pynq.Device` subclass (driver/pynqdev.py) with REGISTER_RW.
"""
import os
from pathlib import Path

import numpy as np
import pytest

pynq = pytest.importorskip("pynq")

ENV = ("RNNACCEL_PYNQ_BRIDGE", "RNNACCEL_PYNQ_CSR", "RNNACCEL_PYNQ_DIR")
if not all(k in os.environ for k in ENV):
    pytest.skip("run by test_driver_pynq.py / test_driver_simboard.py with a bridge to a board",
                allow_module_level=True)

from rnnaccel.driver import MismatchError, open_device  # noqa: E402
from rnnaccel.driver.transport import Pynq  # noqa: E402
from rnnaccel.host.image import Image  # noqa: E402
from rnnaccel.host.isa import OP_MATVEC  # noqa: E402
from rnnaccel.host.simulator import Simulator  # noqa: E402

D = Path(os.environ["RNNACCEL_PYNQ_DIR"])
URI = f"pynq://?csr={os.environ['RNNACCEL_PYNQ_CSR']}&bridge={os.environ['RNNACCEL_PYNQ_BRIDGE']}&timeout=60"


def test_runs_on_a_board_like_python():
    assert int(np.__version__.split(".")[0]) < 2
    with pytest.raises(ImportError):
        import torch  # noqa: F401


def flip_weight(dev, model, mask=0x40):
    """Flip bits of the first weight byte of the model's first MATVEC by writing its whole weight
    word (every 32-bit sub-word: the window commits a word on its last sub-word) behind the driver."""
    img, N = model.image, model.n_lanes
    off = next(i for i in img.program if i.opcode == OP_MATVEC).weight_off
    w = bytearray(img.weights + bytes(-len(img.weights) % N))
    k = off // N
    w[off] ^= mask
    words = np.frombuffer(bytes(w[k * N:(k + 1) * N]), "<u4")
    addr = dev.windows["wmem"][0] + (model.weight_base + k) * N
    dev.transport.device.write_registers(addr, words.tobytes())       # pynq Device API, not the driver


def test_two_images_streamed_through_pynq_mmio_bit_exact_then_a_fault_is_caught():
    ia, ib = Image.load(D / "a.rnna"), Image.load(D / "b.rnna")
    xa, xb = np.load(D / "xa.npy"), np.load(D / "xb.npy")
    with open_device(URI) as dev:
        assert isinstance(dev.transport, Pynq) and all(isinstance(m, pynq.MMIO) for _, _, m in dev.transport.mmios)
        a, b = dev.load(ia, name="a"), dev.load(ib, name="b")
        sa, sb = Simulator(ia, 1), Simulator(ib, 1)
        n = min(len(xa), len(xb))
        for t in range(n):                   # frame by frame, alternating, each model keeps its state
            ya = a.step(xa[t])
            assert np.array_equal(ya, sa.run_q(xa[t][None], reset=(t == 0)))
            yb = b.step(xb[t])
            assert np.array_equal(yb, sb.run_q(xb[t][None], reset=(t == 0)))
            assert a.last.cycles == a.last.predicted_cycles and b.last.cycles == b.last.predicted_cycles
        assert a.inferences == n and b.inferences == n and not a.mismatches and not b.mismatches
        flip_weight(dev, a)
        with pytest.raises(MismatchError, match=r"output word \d+ is -?\d+ on the device but -?\d+ in the host"):
            a.run_q(xa[:4], reset=True)
        assert not b.mismatches
