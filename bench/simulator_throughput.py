#!/usr/bin/env python3
"""Behaviour-simulator throughput: bit-exact GRU-S utterances per second at batch 256, against the
float numpy executor on the same inputs in the same run.

Usage: bench/simulator_throughput.py [--model GRU_S.pb] [--batch 256] [--repeat 5] [--bits 8]
The model defaults to the Hello Edge GRU-S in ../shared (TensorFlow frozen graph).
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from rnnaccel.host.compiler import compile_model
from rnnaccel.host.importers.tf_graph import load_tf_graph
from rnnaccel.host.reference import run_float
from rnnaccel.host.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "models" / "hello-edge" / "GRU_S.pb"


def best_rate(fn, n, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bits", type=int, default=8)
    a = ap.parse_args()
    model = load_tf_graph(a.model)
    ref = np.load(Path(a.model).parent / "reference" / f"{Path(a.model).stem}.npz")["mfcc"].astype(np.float64)
    rng = np.random.default_rng(0)
    x = ref[rng.integers(0, len(ref), a.batch)] + rng.normal(0, 0.1, (a.batch,) + ref.shape[1:])
    img = compile_model(model, ref, bits=a.bits)
    sim = Simulator(img, batch=a.batch)
    fixed = best_rate(lambda: sim.run(x), a.batch, a.repeat)
    flt = best_rate(lambda: run_float(model, x), a.batch, a.repeat)
    res = {"model": Path(a.model).stem, "bits": a.bits, "batch": a.batch, "cores": os.cpu_count(),
           "bit_exact_utt_per_s": round(fixed), "float_utt_per_s": round(flt),
           "ratio_fixed_vs_float": round(fixed / flt, 3)}
    print(f"bit-exact simulator: {fixed:10.0f} utterances/s  (batch {a.batch}, {a.bits}-bit weights)")
    print(f"float executor:      {flt:10.0f} utterances/s")
    print(f"ratio:               {fixed / flt:10.3f}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
