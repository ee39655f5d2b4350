#!/usr/bin/env python3
"""Keyword spotting on continuous streams: sliding one-second windows (the demo) vs naive streaming.

Runs the demo's built-in stream for seeds 0..N-1 (8 keywords + 2 distractor words each, held-out
voices, noise) through the compiled GRU-S in the bit-accurate simulator (bit-identical to the
device, which the driver's cross-check and the regression verify) and scores the detector's output:

  windowed  the demo: every `hop` frames, the last second from a cleared state
  naive     one GRU step per frame, state carried for the whole stream (what a streaming RNN
            does if the model was trained on one-second clips only)

Prints a table and, last, one JSON line; the ratio is windowed vs naive keyword F1.
Usage: bench/kws_stream.py [--seeds 20] [--bits 4] [--hop 10]
"""
import argparse
import difflib
import json

import numpy as np

from rnnaccel.host.kws import data, stream
from rnnaccel.host.kws.demo import build_image
from rnnaccel.host.mfcc import MfccStream
from rnnaccel.host.simulator import Simulator


def posteriors(y, lmap):
    p = np.zeros(len(data.LABELS))
    p[lmap] = stream.softmax(y)
    return p


def score(expected, fired):
    """(hits, misses, false alarms) from an alignment of the fired keywords with the expected ones."""
    hits = sum(b2 - b1 for op, a1, a2, b1, b2 in
               difflib.SequenceMatcher(a=expected, b=fired, autojunk=False).get_opcodes() if op == "equal")
    return hits, len(expected) - hits, len(fired) - hits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--hop", type=int, default=10, help="frames between windows (default 10, the demo's)")
    a = ap.parse_args()
    model, img, lmap = build_image(bits=a.bits, progress=False)
    fe = model.frontend
    size = fe.clip_samples // fe.stride
    hop_s = a.hop * fe.stride / fe.sample_rate
    step_img = img   # the same image: a 1-step run of a streamable image carries its state
    tot = {"windowed": np.zeros(4, int), "naive": np.zeros(4, int)}   # hits, misses, false alarms, exact
    print(f"{'seed':>4} | windowed (hits/miss/false) | naive (hits/miss/false)")
    for seed in range(a.seeds):
        s = stream.builtin_stream(seed)
        frames = MfccStream(fe).push(s.audio)
        res = {}
        win, det, sim, fired = stream.Windower(size, a.hop), stream.Detector.for_hop(hop_s), Simulator(img), []
        for f in frames:
            w = win.push(f)
            if w is not None and (k := det.push(posteriors(sim.run(w, reset=True).ravel(), lmap))):
                fired.append(k)
        res["windowed"] = fired
        det, sim, fired = stream.Detector.for_hop(hop_s), Simulator(step_img), []
        for k_frame, f in enumerate(frames):
            y = sim.run(np.asarray(f)[None], reset=False).ravel()
            if (k_frame + 1) % a.hop == 0 and (k := det.push(posteriors(y, lmap))):
                fired.append(k)
        res["naive"] = fired
        cols = []
        for name, fired in res.items():
            h, m, fa = score(s.expected, fired)
            tot[name] += (h, m, fa, int(fired == s.expected))
            cols.append(f"{h}/{m}/{fa}")
        print(f"{seed:>4} | {cols[0]:>26} | {cols[1]:>22}")
    out = {"seeds": a.seeds, "bits": a.bits, "hop": a.hop, "keywords": a.seeds * len(s.expected)}
    for name, (h, m, fa, ex) in tot.items():
        prec, rec = h / max(h + fa, 1), h / max(h + m, 1)
        out[name] = {"recall": round(rec, 4), "precision": round(prec, 4),
                     "f1": round(2 * prec * rec / max(prec + rec, 1e-9), 4),
                     "false_alarms": int(fa), "streams_exact": int(ex)}
    out["f1_ratio_windowed_vs_naive"] = round(out["windowed"]["f1"] / max(out["naive"]["f1"], 1e-9), 2)
    for name in tot:
        r = out[name]
        print(f"{name:>8}: recall {100 * r['recall']:.1f} %, precision {100 * r['precision']:.1f} %, "
              f"F1 {r['f1']:.3f}, {r['false_alarms']} false alarms, {r['streams_exact']}/{a.seeds} streams exact")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
