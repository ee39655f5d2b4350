"""The whole core on Verilator: bit-exact with the behaviour simulator (every output and state word),
cycle-exact with the cycle model, and error codes for corrupt programs."""
import dataclasses

import numpy as np
import pytest

pytest.importorskip("migen")

from rnnaccel.gateware.core import RNNAccelCore  # noqa: E402
from rnnaccel.gateware.rtlrun import RtlSession  # noqa: E402
from rnnaccel.host import cycles, isa  # noqa: E402
from rnnaccel.host.compiler import compile_model  # noqa: E402
from rnnaccel.host.image import Image  # noqa: E402
from rnnaccel.host.simulator import Simulator  # noqa: E402
from rnnaccel.host.spec import WEIGHT_MODES, quantize  # noqa: E402

from .models import families, inputs  # noqa: E402

FAMILIES = families()
SMALL = dict(n_lanes=8, wmem_bytes=64 * 1024, vmem_words=4096, prog_words=1024, param_words=2048, kmax=512)


def check_runs(core, img, runs, n_lanes):
    """Run the frame sequences `runs` back to back (state carried over) on the RTL and the
    simulator; compare outputs, the whole state, cycles and MAC counts."""
    sess = RtlSession(core, img)
    sim = Simulator(img, 1)
    expected = []
    for k, x_q in enumerate(runs):
        parity = sim.parity if img.streamable else 0
        steps = len(x_q)
        pred = cycles.run_cycles(img, steps, n_lanes)
        handle = sess.run(x_q, parity=parity, budget=2 * pred.cycles + 2000,
                          clear_state=not img.streamable)
        y = sim.run_q(x_q[None], reset=not img.streamable or k == 0)
        expected.append((handle, y.reshape(-1), sim.mem[isa.SPACE_STATE][0].copy(), pred))
    sess.execute()
    for handle, y, state, pred in expected:
        r = sess.results(handle)
        assert r.error == 0 and r.done
        assert np.array_equal(r.out[:y.size], y), "outputs differ"
        assert np.array_equal(r.state, state), "state differs"
        assert r.cycles == pred.cycles, (r.cycles, pred.cycles)
        assert r.mac_ops == pred.lane_ops
    return [sess.results(h) for h, *_ in expected]


@pytest.fixture(scope="module")
def small_core():
    return RNNAccelCore(**SMALL)


def test_latencies_match_the_cycle_model(small_core):
    c = small_core
    assert c.mac.latency == cycles.mac_latency(c.n_lanes)
    assert c.xbuf.latency == cycles.XBUF_LATENCY
    assert c.epi.latency == cycles.EPILOGUE_LATENCY


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("bits", WEIGHT_MODES)
def test_every_family_and_mode(small_core, name, bits):
    m = FAMILIES[name]
    img = compile_model(m, inputs(m, 16, seed=7), bits=bits)
    x = quantize(inputs(m, 1, seed=3)[0], img.in_frac)
    runs = [x[:5], x[5:9]] if img.streamable else [x, x[::-1].copy()]
    check_runs(RNNAccelCore(**SMALL), img, runs, SMALL["n_lanes"])


# ---- error codes ----------------------------------------------------------------------------------
def _with(img, pc, **changes):
    prog = list(img.program)
    prog[pc] = dataclasses.replace(prog[pc], **changes)
    return dataclasses.replace(img, program=prog)


@pytest.mark.parametrize("fault,code", [
    ("opcode", isa.ERR_OPCODE), ("nested_loop", isa.ERR_LOOP), ("endloop", isa.ERR_LOOP),
    ("addr", isa.ERR_ADDR), ("const_write", isa.ERR_ADDR), ("weight", isa.ERR_WEIGHT),
    ("rows0", isa.ERR_FIELD), ("nohalt", isa.ERR_NOHALT)])
def test_corrupt_programs_stop_with_an_error_code(fault, code):
    m = FAMILIES["gru_tf"]
    img = compile_model(m, inputs(m, 8), bits=8)
    mv = next(i for i, ins in enumerate(img.program) if ins.opcode == isa.OP_MATVEC)
    bad = {
        "opcode": lambda: _with(img, mv, opcode=0x07),
        "nested_loop": lambda: _with(img, mv, opcode=isa.OP_LOOP),
        "endloop": lambda: _with(img, 0, opcode=isa.OP_ENDLOOP),
        "addr": lambda: _with(img, mv, dst=isa.Operand(isa.SPACE_SCRATCH, 4000)),
        "const_write": lambda: _with(img, mv, dst=isa.Operand(isa.SPACE_CONST, 0)),
        "weight": lambda: _with(img, mv, weight_off=SMALL["wmem_bytes"]),
        "rows0": lambda: _with(img, mv, rows=0),
        "nohalt": lambda: _with(img, len(img.program) - 1, opcode=isa.OP_LOOP),
    }[fault]()
    x = quantize(inputs(m, 1)[0], img.in_frac)[:3]
    sess = RtlSession(RNNAccelCore(**SMALL), bad)
    h_bad = sess.run(x, budget=20000)
    sess.img = img  # the driver reloads a good program ...
    for k, w in enumerate(np.frombuffer(isa.encode_program(img.program), "<u4")):
        sess._cycle(prog_we=1, prog_adr=k, prog_dat=int(w))
    h_good = sess.run(x, budget=20000, clear_state=True)   # ... and the core runs again after the error
    sess.execute()
    r = sess.results(h_bad)
    assert r.error == code and not r.done
    start = sess.marks[h_bad][0]
    busy = np.flatnonzero(sess.res["busy"][start + 1:start + 20000])
    bound = cycles.run_cycles(img, len(x), SMALL["n_lanes"]).cycles + 100  # at the latest: the end of the program
    assert busy.size == 0 or busy[-1] < bound, "an error must stop the core within a bounded time"
    good = sess.results(h_good)
    sim = Simulator(img, 1)
    assert good.error == 0 and np.array_equal(good.out[:12], sim.run_q(x[None], reset=True).reshape(-1))


# ---- the Hello Edge models at N = 32 ----------------------------------------------------------------
@pytest.fixture(scope="module")
def hello_edge(shared_dir):
    from rnnaccel.host.importers.tf_graph import load_tf_graph
    he = shared_dir / "models" / "hello-edge"
    out = {}
    for name in ("GRU_S", "Basic_LSTM_S", "LSTM_S", "DNN_S"):
        model = load_tf_graph(he / f"{name}.pb")
        feats = np.load(he / "reference" / f"{name}.npz")["mfcc"].astype(np.float64)
        out[name] = (model, feats)
    return out


@pytest.mark.parametrize("name,bits", [("GRU_S", 8), ("GRU_S", 4), ("Basic_LSTM_S", 8), ("LSTM_S", 6),
                                       ("DNN_S", 8)])
def test_hello_edge_models_on_rtl(hello_edge, name, bits):
    model, feats = hello_edge[name]
    img = compile_model(model, feats[::2], bits=bits)
    core = RNNAccelCore(n_lanes=32, wmem_bytes=128 * 1024, vmem_words=8192)
    clips = [quantize(feats[i], img.in_frac) for i in (1, 7)]   # 'right' and an espeak 'yes'
    rs = check_runs(core, img, clips, 32)
    sim = Simulator(img, 2)
    top_sim = sim.run_q(np.stack(clips), reset=True).reshape(2, -1).argmax(-1)
    assert [int(r.out[:img.out_features].argmax()) for r in rs] == list(top_sim)
