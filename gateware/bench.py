"""RTL benchmark: MAC utilisation of the keyword-spotting GRU-S step, measured on the core in
Verilator, checked bit for bit against the behaviour simulator and cycle for cycle against the
cycle model.

Two runs in one simulation: one step, and `steps` steps, both from zero state. The steady-state
cost of a step is (cycles(steps) - cycles(1)) / (steps - 1); the single-step run (what a streaming
demo pays per frame, with the per-run start and drain) is reported beside it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnaccel.host import cycles as cyc
from rnnaccel.host import isa
from rnnaccel.host.compiler import compile_model
from rnnaccel.host.simulator import Simulator
from rnnaccel.host.spec import quantize

from .core import RNNAccelCore
from .rtlrun import RtlSession

SHARED_GRU_S = Path(__file__).resolve().parents[2] / "shared" / "models" / "hello-edge" / "GRU_S.pb"


def default_model():
    """The Hello Edge GRU-S beside the checkout, else the project's shipped GRU-S."""
    if SHARED_GRU_S.exists():
        return SHARED_GRU_S
    shipped = Path(__file__).resolve().parents[1] / "host" / "kws" / "models" / "gru_s.npz"
    if shipped.exists():
        return shipped
    raise FileNotFoundError("no GRU-S model found: pass --model (a Hello Edge GRU_S.pb or a shipped .npz)")


def rtl_bench(n_lanes, model_path=None, steps=25, bits=8, seed=0):
    from rnnaccel.host.importers import load_model
    model = load_model(str(model_path or default_model()))
    rng = np.random.default_rng(seed)
    # calibration and input: MFCC-like features (the reference clips if they are beside the model)
    ref = Path(str(model_path or default_model())).parent / "reference" / "GRU_S.npz"
    if ref.exists():
        feats = np.load(ref)["mfcc"].astype(np.float64)
    else:
        feats = rng.normal(0, 8, (32, model.steps or steps, model.in_features))
    img = compile_model(model, feats, bits=bits, steps=max(steps, model.steps or 1))
    x = quantize(feats[1 % len(feats)], img.in_frac)
    x = np.concatenate([x] * (-(-steps // len(x))))[:steps]

    core = RNNAccelCore(n_lanes=n_lanes, wmem_bytes=max(128 * 1024, 2 * len(img.weights)), vmem_words=8192)
    sess = RtlSession(core, img)
    pred1, predT = cyc.run_cycles(img, 1, n_lanes), cyc.run_cycles(img, steps, n_lanes)
    h1 = sess.run(x[:1], budget=2 * pred1.cycles + 1000, clear_state=True)
    hT = sess.run(x, budget=2 * predT.cycles + 1000, clear_state=True)
    sess.execute()
    r1, rT = sess.results(h1), sess.results(hT)

    exact = True
    for r, xs in ((r1, x[:1]), (rT, x)):
        sim = Simulator(img, 1)
        y = sim.run_q(xs[None], reset=True).reshape(-1)
        exact &= r.error == 0 and np.array_equal(r.out[:y.size], y) and \
            np.array_equal(r.state, sim.mem[isa.SPACE_STATE][0])
    macs_step = img.macs_per_step
    per_step = (rT.cycles - r1.cycles) / (steps - 1)
    ideal = macs_step / n_lanes
    return {
        "macs": n_lanes, "model": Path(str(model_path or default_model())).name, "bits": bits, "steps": steps,
        "macs_per_step": macs_step, "cycles_per_step": per_step, "ideal_cycles": ideal,
        "utilisation": round(ideal / per_step, 4),
        "single_step_cycles": r1.cycles, "single_step_utilisation": round(ideal / r1.cycles, 4),
        "mac_ops_counter": rT.mac_ops, "bit_exact": bool(exact),
        "cycle_model_exact": r1.cycles == pred1.cycles and rT.cycles == predT.cycles,
    }
