"""Compiler + bit-accurate simulator: every model family, every weight mode."""
import numpy as np
import pytest

from rnnaccel.host import isa
from rnnaccel.host.compiler import compile_model
from rnnaccel.host.image import Image
from rnnaccel.host.reference import run_float
from rnnaccel.host.simulator import SimError, Simulator
from rnnaccel.host.spec import WEIGHT_MODES, quantize

from . import golden
from .models import families, inputs

FAMILIES = families()


@pytest.fixture(scope="module")
def images():
    """(family, bits) -> (model, image), compiled once."""
    out = {}
    for name, m in FAMILIES.items():
        for bits in WEIGHT_MODES:
            out[name, bits] = (m, compile_model(m, inputs(m, 32, seed=7), bits=bits))
    return out


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("bits", WEIGHT_MODES)
def test_simulator_equals_golden_interpreter(images, name, bits):
    """The vectorised simulator equals a scalar arbitrary-precision interpreter word for word:
    outputs and every state word, on two successive runs (state carried over)."""
    m, img = images[name, bits]
    img = Image.from_bytes(img.to_bytes())  # through the binary format
    x = inputs(m, 3, seed=11)
    xq = quantize(x, img.in_frac)
    for b in range(len(x)):
        state, parity = None, 0
        sim1 = Simulator(img, batch=1)
        for run in range(2):
            seq = xq[b, : m.steps - 3 * run]
            out, state, parity = golden.run(img, seq.tolist(), state if img.streamable else None,
                                            parity if img.streamable else 0)
            y = sim1.run_q(seq[None])
            assert sim1.mem[isa.SPACE_STATE][0].tolist() == state
            flat = y.reshape(-1).tolist()
            assert flat == out[:len(flat)], f"{name} bits={bits} clip {b} run {run}"


@pytest.mark.parametrize("name", FAMILIES)
def test_16bit_close_to_float(name):
    """With 16-bit weights the only errors left are 16-bit activations and the PWL tables
    (calibrated on the test inputs themselves, so no value saturates)."""
    m = FAMILIES[name]
    x = inputs(m, 64, seed=3)
    img = compile_model(m, x, bits=16)
    yf = run_float(m, x)
    yq = Simulator(img, batch=len(x)).run(x)
    scale = max(1.0, np.abs(yf).max())
    assert np.abs(yq - yf).max() < 0.01 * scale, name


@pytest.mark.parametrize("name", FAMILIES)
def test_accuracy_degrades_gracefully(images, name):
    """Relative output error grows as weights get fewer bits, and 8-bit stays small."""
    m = images[name, 8][0]
    x = inputs(m, 64, seed=4)
    yf = run_float(m, x)
    err = {b: np.sqrt(np.mean((Simulator(images[name, b][1], batch=len(x)).run(x) - yf) ** 2))
           / np.sqrt(np.mean(yf ** 2)) for b in WEIGHT_MODES}
    assert err[16] < err[4] and err[8] < err[2]
    assert err[8] < 0.08, err


def test_batch_rows_are_independent(images):
    m, img = images["gru_tf", 8]
    x = inputs(m, 8, seed=5)
    full = Simulator(img, batch=8).run_q(quantize(x, img.in_frac))
    for i in range(8):
        one = Simulator(img, batch=1).run_q(quantize(x[i:i + 1], img.in_frac))
        assert np.array_equal(one[0], full[i])


@pytest.mark.parametrize("name", ["gru_tf", "gru_torch", "lstm_peep_proj", "stacked_gru"])
def test_streaming_equals_whole_sequence(images, name):
    """One step per call with state kept equals one call over the whole sequence."""
    m, img = images[name, 4]
    assert img.streamable
    xq = quantize(inputs(m, 4, seed=6), img.in_frac)
    whole = Simulator(img, batch=4).run_q(xq, reset=True)
    sim = Simulator(img, batch=4)
    for t in range(m.steps):
        y = sim.run_q(xq[:, t:t + 1], reset=(t == 0))
    assert np.array_equal(y, whole)


def test_sequence_outputs_shape(images):
    m, img = images["bidir_seq", 8]
    assert img.seq_output and not img.streamable
    y = Simulator(img, batch=2).run(inputs(m, 2))
    assert y.shape == (2, m.steps, 12)
    m, img = images["reverse_seq_out", 8]
    y = Simulator(img, batch=2).run(inputs(m, 2))
    assert y.shape == (2, m.steps, m.out_features)


def _flags(model):
    img = compile_model(model, inputs(model, 8), bits=8)
    return [i.flags for i in img.program if i.opcode == isa.OP_MATVEC]


def test_wait_flags_mark_hazards():
    from .models import _fc, _gru, _lstm
    from rnnaccel.host.ir import Model, Recurrent
    rng = np.random.default_rng(0)
    E, W, O = isa.FLAG_WAIT_EPI, isa.FLAG_WAIT, isa.FLAG_WAIT_OLDER
    # GRU: c loads r*h, which r (two back) wrote: c loads while u streams, r's last rows may still
    # be in flight -> WAIT_OLDER; its epilogue reads u's U -> WAIT_EPI. fc's product reads h' from
    # c -> WAIT. r after fc (back-edge): fc waited for c, so h' is written -> no hazard.
    for h in (24, 70):
        gru = Model([Recurrent(_gru(rng, 10, h, False), return_sequences=False), _fc(rng, h, 12)], 10, 5)
        assert _flags(gru) == [0, 0, O | E, W]
    # LSTM: g, f, o depend on their predecessor through epilogue/diag operands only.
    lstm = Model([Recurrent(_lstm(rng, 10, 70, peep=True), return_sequences=False), _fc(rng, 70, 12)], 10, 5)
    assert _flags(lstm) == [0, E, E, E, W]
    # Two stacked GRUs: layer 2's r reads layer 1's h' right after layer 1's c wrote it.
    stack = Model([Recurrent(_gru(rng, 10, 70, False), name="a"),
                   Recurrent(_gru(rng, 70, 70, False), return_sequences=False, name="b"), _fc(rng, 70, 12)], 10, 5)
    assert _flags(stack)[3] == W


def test_bad_inputs_are_refused(images):
    m, img = images["gru_tf", 8]
    sim = Simulator(img, batch=1)
    with pytest.raises(ValueError, match="NaN"):
        sim.run(np.full((1, m.steps, m.in_features), np.nan))
    with pytest.raises(ValueError, match="features per step"):
        sim.run(np.zeros((1, m.steps, m.in_features + 1)))
    with pytest.raises(ValueError, match="steps"):
        sim.run(np.zeros((1, img.max_steps + 1, m.in_features)))


def _corrupt(img, pc, **changes):
    prog = list(img.program)
    ins = prog[pc]
    prog[pc] = type(ins)(**{**vars(ins), **changes})
    return Image(**{**{k: getattr(img, k) for k in ("params", "weights", "consts", "meta", "flags", "state_words",
                                                    "scratch_words", "pp_dist", "in_features", "in_frac",
                                                    "out_features", "out_frac", "max_steps", "out_step_stride",
                                                    "weight_modes", "max_k", "macs_per_step")}, "program": prog})


def test_program_errors_give_error_codes(images):
    m, img = images["gru_tf", 8]
    x = np.zeros((1, m.steps, m.in_features))
    bad = _corrupt(img, 1, dst=isa.Operand(isa.SPACE_SCRATCH, 60000))
    with pytest.raises(SimError) as e:
        Simulator(bad).run(x)
    assert e.value.code == isa.ERR_ADDR and e.value.pc == 1
    bad = _corrupt(img, len(img.program) - 1, opcode=isa.OP_ENDLOOP)  # HALT -> ENDLOOP
    with pytest.raises(SimError) as e:
        Simulator(bad).run(x)
    assert e.value.code == isa.ERR_LOOP
    bad = _corrupt(img, 1, weight_off=len(img.weights))
    with pytest.raises(SimError) as e:
        Simulator(bad)
    assert e.value.code == isa.ERR_WEIGHT
    # a program without HALT runs off its end
    no_halt = _corrupt(img, len(img.program) - 1, opcode=isa.OP_LOOP)
    with pytest.raises(SimError) as e:
        Simulator(no_halt).run(x)
    assert e.value.code in (isa.ERR_LOOP, isa.ERR_NOHALT)
