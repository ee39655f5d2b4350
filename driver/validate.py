"""`rnnaccel validate`: run a data set through a device and the behaviour simulator.

For every model: each sequence runs on the device from a cleared state (the driver cross-checks
every inference with the host simulator, `check="record"`), and the device's cycle counter is
compared with the cycle model (host/cycles.py). DATA is
  - a reference folder like ../shared/models/hello-edge/reference/ (clips.npz + <model>.npz: the
    features under `mfcc` of <model>.npz are used; without one, MFCC of clips.npz's audio through
    the model's front end),
  - a folder of .wav files (MFCC through the model's front end),
  - a .npy/.npz of feature sequences [N, T, F].
MODEL is a compiled image (.rnna) or a model file `rnnaccel compile` accepts (compiled here with
--bits, calibrated on --calib or on the even-numbered sequences of DATA).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rnnaccel.host.image import Image
from rnnaccel.host.spec import quantize


class ValidateError(ValueError):
    pass


def _frontend(obj):
    from rnnaccel.host.ir import Frontend
    fe = getattr(obj, "frontend", None)
    if fe is None and isinstance(obj, Image) and obj.meta.get("frontend"):
        fe = Frontend(**obj.meta["frontend"])
    return fe


def features_for(data, stem, model_or_image):
    """(features [N, T, F] float, names, reference logits or None)."""
    from rnnaccel.host.cli import UserError, load_features
    p = Path(data)
    if p.is_dir() and (p / "clips.npz").exists():
        clips = np.load(p / "clips.npz")
        names = [str(n) for n in clips["names"]]
        ref = p / f"{stem}.npz"
        if ref.exists():
            r = np.load(ref)
            return r["mfcc"].astype(np.float64), names, r["logits"].astype(np.float64) if "logits" in r else None
        fe = _frontend(model_or_image)
        if fe is None:
            raise ValidateError(f"{data}: no {stem}.npz with features, and {stem} has no MFCC front end to compute "
                                f"them from clips.npz")
        from rnnaccel.host.mfcc import mfcc
        return np.stack([mfcc(a, fe) for a in clips["audio"]]).astype(np.float64), names, None

    class _M:
        frontend = _frontend(model_or_image)
    try:
        x = load_features(data, _M)
    except UserError as e:
        raise ValidateError(str(e)) from None
    names = [f.name for f in sorted(p.glob("*.wav"))] if p.is_dir() else [f"{p.name}[{i}]" for i in range(len(x))]
    return x, names, None


def prepare(model_path, data, bits=8, calib=None):
    """(Image, features, names, reference logits) for one MODEL argument."""
    p = Path(model_path)
    stem = p.stem
    if p.suffix == ".rnna":
        img = Image.load(p)
        x, names, ref = features_for(data, stem, img)
        return img, x, names, ref
    from rnnaccel.host.cli import load_any_model, load_features
    from rnnaccel.host.compiler import CompileError, compile_model
    model = load_any_model(model_path)
    x, names, ref = features_for(data, stem, model)
    cal = load_features(calib, model) if calib else x[::2]
    try:
        img = compile_model(model, cal, bits=bits)
    except CompileError as e:
        raise ValidateError(str(e)) from None
    return img, x, names, ref


def validate_model(dev, img, x, name, limit=None, log=print):
    if x.shape[-1] != img.in_features:
        raise ValidateError(f"{name}: data has {x.shape[-1]} features per step, the model expects {img.in_features}")
    if limit:
        x = x[:limit]
    m = dev.load(img, name=name, check="record")
    try:
        t0 = time.perf_counter()
        outs, cyc, pred = [], [], []
        for s in x:
            y = m.run_q(quantize(s, img.in_frac), reset=True)
            outs.append(y)
            cyc.append(m.last.cycles)
            pred.append(m.last.predicted_cycles)
        wall = time.perf_counter() - t0
        res = {"inferences": m.inferences, "mismatches": len(m.mismatches),
               "cycle_mismatches": len(m.cycle_mismatches),
               "cycles_per_inference": float(np.mean(cyc)) if cyc else 0.0,
               "predicted_cycles": float(np.mean(pred)) if pred else 0.0,
               "inferences_per_s": round(len(x) / wall, 2) if wall else None,
               "seconds": round(wall, 3)}
        if m.mismatches:
            res["first_mismatch"] = str(m.mismatches[0])
            log(f"  MISMATCH {m.mismatches[0]}")
        if m.cycle_mismatches:
            i, c, p = m.cycle_mismatches[0]
            res["first_cycle_mismatch"] = {"inference": i, "device": c, "model": p}
        return res, np.array(outs)
    finally:
        dev.unload(m)


def validate(device, models, data, bits=8, calib=None, limit=None, log=print):
    """Validate every model in `models` on `device` (a URI or an open Device)."""
    from . import open_device
    own = isinstance(device, str)
    dev = open_device(device, check="record") if own else device
    try:
        per = {}
        for mp in models:
            img, x, names, ref = prepare(mp, data, bits, calib)
            name = Path(mp).stem
            log(f"{name}: {min(len(x), limit or len(x))} sequences of {x.shape[1]}x{x.shape[2]} through "
                f"{dev.transport.name} (N={dev.caps['n_lanes']})")
            r, outs = validate_model(dev, img, x, name, limit, log)
            if ref is not None and len(outs):
                from rnnaccel.host.spec import dequantize
                last = outs[:, -1] if img.seq_output else outs
                n = len(last)
                r["top1_agreement_with_reference"] = float(np.mean(
                    dequantize(last, img.out_frac).argmax(-1) == ref[:n].argmax(-1)))
            log(f"  {r['inferences']} inferences, {r['mismatches']} mismatches, {r['cycle_mismatches']} cycle "
                f"mismatches; {r['cycles_per_inference']:.0f} cycles per inference (cycle model "
                f"{r['predicted_cycles']:.0f}); {r['inferences_per_s']} inferences/s")
            per[name] = r
        return {"device": dev.transport.name, "n_lanes": dev.caps["n_lanes"],
                "inferences": sum(r["inferences"] for r in per.values()),
                "mismatches": sum(r["mismatches"] for r in per.values()),
                "cycle_mismatches": sum(r["cycle_mismatches"] for r in per.values()),
                "models": per}
    finally:
        if own:
            dev.close()
