"""The driver against the simulated SoC (Verilator, UART bridge on 127.0.0.1): the acceptance tests.

One board per session (N = 8 lanes, Wishbone: the configuration tests/test_soc.py builds too, so
the cached Verilator model is shared). Over the bridge: the Hello Edge GRU-S bit-exact with the
host simulator and cycle-exact with the cycle model; two images resident, run alternately, each
keeping its state; a weight flipped behind the driver's back caught by the cross-check; a run that
does not finish in time reset and reported; `rnnaccel validate` on all four Hello Edge models'
reference clips; the pynq:// transport under PYNQ's Python through a pynq Device on the bridge.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litex")
pytest.importorskip("migen")

from rnnaccel.driver import DeviceTimeout, MismatchError, open_device  # noqa: E402
from rnnaccel.host import cycles as cycle_model  # noqa: E402
from rnnaccel.host import isa  # noqa: E402
from rnnaccel.host.compiler import compile_model  # noqa: E402
from rnnaccel.host.simulator import Simulator  # noqa: E402
from rnnaccel.host.spec import quantize  # noqa: E402

from .test_driver_pynq import prepare_pynq_dir, run_pynq_board_test  # noqa: E402

N_LANES = 8
HELLO = ("GRU_S", "Basic_LSTM_S", "LSTM_S", "DNN_S")
CLIPS = 3                                      # reference clips per model through the bridge


@pytest.fixture(scope="session")
def simboard():
    from rnnaccel.soc.simboard import SimBoard
    with SimBoard(n_lanes=N_LANES, bus="wishbone") as b:
        yield b


@pytest.fixture
def uri(simboard):
    return f"uart://{simboard.host}:{simboard.port}?csr={simboard.csr_csv}&timeout=60"


@pytest.fixture(scope="module")
def gru_s(shared_dir):
    from rnnaccel.host.cli import load_any_model
    from rnnaccel.host.refcheck import load_reference
    he = shared_dir / "models" / "hello-edge"
    model = load_any_model(he / "GRU_S.pb")
    _, names, feats, _ = load_reference(he / "reference", "GRU_S")
    img = compile_model(model, feats[::2], bits=8)
    return img, feats, names


def test_gru_s_over_the_bridge_bit_exact_and_cycle_exact(uri, gru_s):
    img, feats, names = gru_s
    x = quantize(feats[0], img.in_frac)
    with open_device(uri) as dev:
        assert dev.caps["n_lanes"] == N_LANES
        m = dev.load(img, name="GRU_S")
        y = m.run_q(x, reset=True)
        assert np.array_equal(y, Simulator(img, 1).run_q(x, reset=True)), "logits differ from the host simulator"
        pred = cycle_model.run_cycles(img, len(x), N_LANES)
        assert m.last.cycles == pred.cycles, (m.last.cycles, pred.cycles)
        assert m.last.mac_ops == pred.lane_ops
        assert dev.read_reg("cycles") == pred.cycles
        assert m.inferences == 1 and not m.mismatches


def test_two_images_resident_alternately_streamed(uri, gru_s, tmp_path):
    """GRU-S and a second image resident together, frames streamed to each in turn: every output
    bit-exact with its own simulator (each model keeps its own state context and parity)."""
    from .models import families, inputs
    img_a, feats, _ = gru_s
    m2 = families()["lstm_peep_proj"]
    img_b = compile_model(m2, inputs(m2, 8), bits=4)
    xa = quantize(feats[1], img_a.in_frac)[:6]
    xb = quantize(inputs(m2, 1, seed=9)[0], img_b.in_frac)[:6]
    with open_device(uri) as dev:
        a, b = dev.load(img_a, name="gru_s"), dev.load(img_b, name="lstm")
        sa, sb = Simulator(img_a, 1), Simulator(img_b, 1)
        for t in range(6):
            assert np.array_equal(a.step(xa[t]), sa.run_q(xa[t][None], reset=(t == 0)))
            assert np.array_equal(b.step(xb[t]), sb.run_q(xb[t][None], reset=(t == 0)))
            assert a.last.cycles == a.last.predicted_cycles and b.last.cycles == b.last.predicted_cycles
        assert np.array_equal(a.read_state(), sa.mem[isa.SPACE_STATE][0])
        assert np.array_equal(b.read_state(), sb.mem[isa.SPACE_STATE][0])
        assert a.inferences == b.inferences == 6 and not a.mismatches and not b.mismatches


def test_flipped_weight_word_on_the_board_is_caught(uri, simboard, gru_s):
    img, feats, _ = gru_s
    x = quantize(feats[2], img.in_frac)
    with open_device(uri) as dev:
        m = dev.load(img)
        m.run_q(x, reset=True)
        N = N_LANES
        off = next(i for i in img.program if i.opcode == isa.OP_MATVEC).weight_off
        w = bytearray(img.weights + bytes(-len(img.weights) % N))
        w[off] ^= 0x40
        k = off // N
        dev.transport.write(dev.windows["wmem"][0] + (m.weight_base + k) * N,      # the raw bridge, not the driver
                            np.frombuffer(bytes(w[k * N:(k + 1) * N]), "<u4"))
        with pytest.raises(MismatchError) as e:
            m.run_q(x, reset=True)
        mm = e.value.mismatch
        assert mm.word == int(np.flatnonzero(mm.device != mm.expected)[0])
        assert f"output word {mm.word} is {mm.device[mm.word]} on the device" in str(e.value)


def test_timeout_soft_resets_the_board_and_it_runs_again(simboard, gru_s):
    img, feats, _ = gru_s
    x = quantize(feats[0], img.in_frac)
    with open_device(f"uart://{simboard.host}:{simboard.port}?csr={simboard.csr_csv}", timeout=1e-4) as dev:
        m = dev.load(img)
        with pytest.raises(DeviceTimeout, match="soft-reset"):
            m.run_q(x, reset=True)
        assert dev.status()["busy"] == 0
        dev.timeout = 60
        assert np.array_equal(m.run_q(x[:3], reset=True), Simulator(img, 1).run_q(x[:3], reset=True))


def test_validate_hello_edge_reference_clips(uri, shared_dir):
    he = shared_dir / "models" / "hello-edge"
    cmd = [sys.executable, "-m", "rnnaccel.host.cli", "validate", "--device", uri, "--data", str(he / "reference"),
           "--limit", str(CLIPS), "--bits", "8"]
    for name in HELLO:
        cmd += ["--model", str(he / f"{name}.pb")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["inferences"] == CLIPS * len(HELLO), res
    assert res["mismatches"] == 0 and res["cycle_mismatches"] == 0, r.stdout[-3000:]
    assert set(res["models"]) == set(HELLO)
    assert r.returncode == 0


def test_pynq_transport_against_the_simulated_board(simboard, tmp_path):
    prepare_pynq_dir(tmp_path, steps=4)
    run_pynq_board_test(simboard.host, simboard.port, simboard.csr_csv, tmp_path)


def test_sim_uri_starts_its_own_board(simboard):
    """sim:// builds (cached) and starts a simulated board itself and stops it on close."""
    with open_device(f"sim://?lanes={N_LANES}&bus=wishbone") as dev:
        assert dev.caps["n_lanes"] == N_LANES and dev.transport.name.startswith("uart://127.0.0.1:")
        board = dev._owns[0].board
    assert not board.running
