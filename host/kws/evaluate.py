"""Keyword-spotting accuracy of a model on the synthetic TEST split, float and fixed point.

Any IR model with an MFCC front end works: ours (``.npz`` from :mod:`.train`) or the shared Hello
Edge frozen graphs (``.pb``; their own front end settings, ``model.frontend``, choose the features).

* float: :func:`rnnaccel.host.reference.run_float`;
* fixed point, per weight mode (16, 8, 6, 4, 2): ``compile_model`` calibrated on ``n_calib``
  TRAIN-split features (never test data), then the bit-accurate ``Simulator``.

Results: accuracy and confusion matrix per mode; :func:`markdown_table`, :func:`plot_accuracy`,
:func:`plot_confusion`. ``python -m rnnaccel.host.kws.evaluate`` evaluates the shipped GRU-S and the
shared Hello Edge models and writes ``docs/kws/`` (accuracy.md, accuracy.png, confusion_gru_s.png).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .. import ir

MODES = ("float", 16, 8, 6, 4, 2)
N_TEST = 2400        # 200 blocks of the 12 classes
TEST_SEED = 0
N_CALIB = 300
SIM_CHUNK = 1200
DOCS_DIR = Path(__file__).resolve().parents[2] / "docs" / "kws"


def parse_mode(bits):
    """'float' or a weight mode (int); raises ValueError otherwise."""
    if bits is None or str(bits).lower() == "float":
        return "float"
    b = int(bits)
    if b not in MODES:
        raise ValueError(f"bits must be float or one of 16, 8, 6, 4, 2, not {bits!r}")
    return b


def label_map(model: ir.Model):
    """Index of each model output in data.LABELS (models may order their classes differently)."""
    from .data import LABELS
    if model.labels is None:
        if model.out_features != len(LABELS):
            raise ir.ModelError(f"{model.name}: {model.out_features} outputs and no labels; "
                                f"expected the {len(LABELS)} keyword-spotting classes")
        return np.arange(len(LABELS))
    missing = [l for l in model.labels if l not in LABELS]
    if missing:
        raise ir.ModelError(f"{model.name}: labels {missing} are not keyword-spotting classes {list(LABELS)}")
    return np.array([LABELS.index(l) for l in model.labels])


def _last(y):
    y = np.asarray(y)
    return y[:, -1] if y.ndim == 3 else y


def logits(model: ir.Model, x, bits="float", calib=None):
    """Model outputs [N, classes] for features x [N, T, F]: float, or compiled at ``bits`` with
    ``calib`` features and run in the bit-accurate simulator."""
    bits = parse_mode(bits)
    if bits == "float":
        return _last(np.concatenate([_run_float(model, x[i:i + SIM_CHUNK])
                                     for i in range(0, len(x), SIM_CHUNK)]))
    from ..compiler import compile_model
    from ..simulator import Simulator
    if calib is None:
        raise ValueError("fixed-point evaluation needs calibration features")
    img = compile_model(model, calib, bits=bits)
    sim = Simulator(img, batch=min(len(x), SIM_CHUNK))
    return _last(np.concatenate([sim.run(x[i:i + SIM_CHUNK], reset=True)
                                 for i in range(0, len(x), SIM_CHUNK)]))


def _run_float(model, x):
    from ..reference import run_float
    return run_float(model, x)


def predict(model: ir.Model, x, bits="float", calib=None):
    """Predicted class indices in data.LABELS order."""
    return label_map(model)[logits(model, x, bits, calib).argmax(-1)]


def confusion(y_true, y_pred, n_classes):
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def test_features(model: ir.Model, n=N_TEST, seed=TEST_SEED, progress=True, cache_dir=None):
    """Synthetic TEST-split features through the model's own front end, and labels."""
    from .train import load_features
    if model.frontend is None:
        raise ir.ModelError(f"{model.name}: no MFCC front end: cannot evaluate on audio")
    return load_features("test", n, seed, model.frontend, cache_dir=cache_dir, progress=progress)


def calib_features(model: ir.Model, n=N_CALIB, seed=0, progress=True, cache_dir=None):
    """Calibration features from the TRAIN split (never test data)."""
    from .train import load_features
    return load_features("train", n, seed, model.frontend, cache_dir=cache_dir, progress=progress)[0]


REPO = Path(__file__).resolve().parents[2]


def portable_path(path):
    """A model path as recorded in results: relative to the repository (its parent for ../shared),
    never this machine's absolute path."""
    if not path:
        return path
    p = Path(path).resolve()
    for base, prefix in ((REPO, ""), (REPO.parent, "../")):
        try:
            return prefix + str(p.relative_to(base))
        except ValueError:
            continue
    return p.name


def evaluate(model: ir.Model, n=N_TEST, seed=TEST_SEED, modes=MODES, n_calib=N_CALIB, progress=True,
             cache_dir=None, features=None):
    """Accuracy and confusion matrix of ``model`` per mode on the synthetic test split.

    features: optional ``(x, labels, calib)`` to skip data loading. Returns a JSON-able dict."""
    from .data import LABELS
    if features is None:
        x, y = test_features(model, n, seed, progress, cache_dir)
        modes_fx = [m for m in map(parse_mode, modes) if m != "float"]
        calib = calib_features(model, n_calib, progress=progress, cache_dir=cache_dir) if modes_fx else None
    else:
        x, y, calib = features
    res = {"model": model.name, "path": portable_path(model.meta.get("path")), "n": int(len(x)), "seed": seed,
           "labels": list(LABELS), "results": {}}
    for mode in map(parse_mode, modes):
        t = time.time()
        pred = predict(model, x, mode, calib)
        res["results"][str(mode)] = {"accuracy": float(np.mean(pred == y)),
                                     "confusion": confusion(y, pred, len(LABELS)).tolist(),
                                     "seconds": round(time.time() - t, 2)}
    return res


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------
def _pct(a):
    return f"{100 * a:.1f}" if a is not None else "-"


def markdown_table(results: list) -> str:
    """Accuracy (%) per weight mode, one row per evaluated model."""
    modes = [m for m in map(str, MODES) if any(m in r["results"] for r in results)]
    head = "| model | n | " + " | ".join("float" if m == "float" else f"{m}-bit" for m in modes) + " |"
    lines = [head, "|" + "---|" * (len(modes) + 2)]
    for r in results:
        cells = [_pct(r["results"].get(m, {}).get("accuracy")) for m in modes]
        lines.append(f"| {r['model']} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_accuracy(results: list, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    modes = [m for m in MODES if any(str(m) in r["results"] for r in results)]
    xs = np.arange(len(modes))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in results:
        acc = [100 * r["results"][str(m)]["accuracy"] if str(m) in r["results"] else np.nan for m in modes]
        ax.plot(xs, acc, "o-", label=r["model"])
    ax.set_xticks(xs, ["float" if m == "float" else f"{m}-bit" for m in modes])
    ax.set_xlabel("weights")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"Synthetic espeak-ng test set (held-out voices, n={results[0]['n']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(conf, labels, path, title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    conf = np.asarray(conf)
    rate = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.8))
    ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rate[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_confusion(conf, labels) -> str:
    short = [l.strip("_")[:5] for l in labels]
    lines = ["true\\pred " + " ".join(f"{s:>5}" for s in short)]
    for s, row in zip(short, conf):
        lines.append(f"{s:>9} " + " ".join(f"{v:>5}" for v in row))
    return "\n".join(lines)


def main(argv=None):
    """Evaluate the shipped model and the shared Hello Edge models; write docs/kws/."""
    from .train import SHIPPED_MODEL, load_model_npz
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--model", default=str(SHIPPED_MODEL))
    p.add_argument("--hello-edge", default=str(Path(__file__).resolve().parents[3] / "shared" / "models" /
                                               "hello-edge"),
                   help="folder with the shared Hello Edge .pb models (skipped if absent)")
    p.add_argument("--n", type=int, default=N_TEST)
    p.add_argument("--seed", type=int, default=TEST_SEED)
    p.add_argument("--out", default=str(DOCS_DIR))
    a = p.parse_args(argv)
    models = [load_model_npz(a.model)]
    he = Path(a.hello_edge)
    if he.is_dir():
        from ..importers.tf_graph import load_tf_graph
        for f in ("GRU_S", "Basic_LSTM_S", "LSTM_S", "DNN_S"):
            if (he / f"{f}.pb").is_file():
                models.append(load_tf_graph(he / f"{f}.pb", name=f"Hello Edge {f}"))
    else:
        print(f"note: {he} not found: Hello Edge models skipped", file=sys.stderr)
    results = []
    for m in models:
        r = evaluate(m, a.n, a.seed)
        results.append(r)
        print(m.name, {k: round(v["accuracy"], 4) for k, v in r["results"].items()}, flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    (out / "accuracy.md").write_text(
        f"Top-1 accuracy (%) on the synthetic espeak-ng TEST split (held-out voices), n={a.n}, "
        f"seed {a.seed}; fixed point: compile_model (calibrated on {N_CALIB} TRAIN clips) + Simulator.\n\n"
        + table + "\n")
    (out / "accuracy.json").write_text(json.dumps(results) + "\n")
    plot_accuracy(results, out / "accuracy.png")
    r0 = results[0]
    for mode in ("float", "8"):
        if mode in r0["results"]:
            suffix = "" if mode == "float" else f"_{mode}bit"
            plot_confusion(r0["results"][mode]["confusion"], r0["labels"], out / f"confusion_gru_s{suffix}.png",
                           f"{r0['model']} ({'float' if mode == 'float' else mode + '-bit'}), "
                           f"accuracy {_pct(r0['results'][mode]['accuracy'])} %, n={r0['n']}")
    print(table)


if __name__ == "__main__":
    main()
