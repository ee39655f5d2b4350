"""End-to-end check of a TensorFlow model against TensorFlow's own outputs.

REFERENCE_DIR holds `clips.npz` (int16 audio [N, 16000], names) and `<model>.npz` (TF's MFCC
features `mfcc` [N, T, 10] and `logits` [N, 12]), as ../shared/models/hello-edge/reference does.

    audio -> numpy MFCC            vs TF's Mfcc                 -> mfcc_max_abs_diff
    TF's MFCC -> float executor    vs TF's logits               -> float_max_abs_diff
    audio -> numpy MFCC -> compile -> bit-accurate simulation vs TF's top-1 -> fixed_top1_agreement

Calibration uses the even-numbered clips; the agreement is reported on all clips and, separately,
on the odd-numbered (held-out) ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class RefCheckError(ValueError):
    pass


def load_reference(ref_dir, model_name):
    ref_dir = Path(ref_dir)
    clips, feats = ref_dir / "clips.npz", ref_dir / f"{model_name}.npz"
    for f in (clips, feats):
        if not f.exists():
            raise RefCheckError(f"{f}: missing (REFERENCE_DIR needs clips.npz and {model_name}.npz)")
    c, r = np.load(clips), np.load(feats)
    return c["audio"], [str(n) for n in c["names"]], r["mfcc"].astype(np.float64), r["logits"].astype(np.float64)


def reference_check(model_path, ref_dir, bits=8):
    from .compiler import compile_model
    from .importers.tf_graph import load_tf_graph
    from .mfcc import mfcc
    from .reference import run_float
    from .simulator import Simulator

    model = load_tf_graph(model_path)
    name = Path(model_path).stem
    audio, names, tf_mfcc, tf_logits = load_reference(ref_dir, name)
    ours = np.stack([mfcc(a, model.frontend) for a in audio]).astype(np.float64)
    if ours.shape != tf_mfcc.shape:
        raise RefCheckError(f"MFCC shape {ours.shape} differs from the reference {tf_mfcc.shape}")
    mfcc_diff = float(np.max(np.abs(ours - tf_mfcc)))
    flt = run_float(model, tf_mfcc)
    float_diff = float(np.max(np.abs(flt - tf_logits)))

    img = compile_model(model, ours[::2], bits=bits)
    fixed = Simulator(img, batch=len(ours)).run(ours)
    tf_top = tf_logits.argmax(-1)
    agree = fixed.argmax(-1) == tf_top
    return {
        "model": name, "bits": bits, "clips": len(audio),
        "mfcc_max_abs_diff": mfcc_diff,
        "float_max_abs_diff": float_diff,
        "float_top1_agreement": float(np.mean(flt.argmax(-1) == tf_top)),
        "fixed_top1_agreement": float(np.mean(agree)),
        "fixed_top1_agreement_heldout": float(np.mean(agree[1::2])),
        "fixed_max_abs_diff": float(np.max(np.abs(fixed - tf_logits))),
        "disagreeing_clips": [names[i] for i in np.flatnonzero(~agree)],
        "image_bytes": len(img.to_bytes()),
        "compression": round(img.meta["fp32_weight_bytes"] / img.meta["stored_weight_bytes"], 3),
    }
