"""Host-vs-device regression: every model family at every weight mode, device against host simulator.

    rnnaccel regress [--device sim://] [--modes 16,8,6,4,2] [--n 4] [--out build/regress]

Cases: the model zoo (host/zoo.py: GRU in both reset conventions, basic and peephole/projection
LSTM, DNN, MLP activations, bidirectional, stacked, reversed, wide rows) at every weight mode, plus
the shared Hello Edge models on their reference clips (`--hello-edge DIR`, at `--he-modes`). Each
case is compiled, loaded through the driver, run on `--n` inputs (all reference clips for Hello
Edge) with every inference cross-checked against the host simulator and its cycle count compared
with the cycle model, then unloaded. An image larger than the device's memories is reported as
"does not fit" (not silently skipped).

Writes `<out>/regress.md` (table) and `<out>/regress.json`; the last line printed is one JSON
object with the totals (cases, inferences, mismatches, cycle_mismatches, failed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODES = (16, 8, 6, 4, 2)
HELLO_EDGE = Path(__file__).resolve().parents[2] / "shared" / "models" / "hello-edge"
HELLO_EDGE_MODELS = ("GRU_S", "Basic_LSTM_S", "LSTM_S", "DNN_S")


@dataclass
class Case:
    name: str
    bits: int
    model: object          # ir.Model
    x: np.ndarray          # float features [n, T, F]
    calib: np.ndarray


def zoo_cases(modes=MODES, n=4, names=None):
    from . import zoo
    fams = zoo.families()
    for name in names or fams:
        if name not in fams:
            raise ValueError(f"unknown family {name!r}; the zoo has {', '.join(fams)}")
        m = fams[name]
        for b in modes:
            yield Case(name, b, m, zoo.inputs(m, n=n, seed=1), zoo.inputs(m, n=32, seed=0))


def hello_edge_cases(root=HELLO_EDGE, modes=(8,), n=None, names=HELLO_EDGE_MODELS):
    from .importers.tf_graph import load_tf_graph
    from .refcheck import load_reference
    root = Path(root)
    for name in names:
        model = load_tf_graph(root / f"{name}.pb")
        _, _, feats, _ = load_reference(root / "reference", name)
        x = feats if n is None else feats[:n]
        for b in modes:
            yield Case(f"hello-edge/{name}", b, model, x, feats[::2])   # calibration as reference-check


def run_case(dev, case: Case, progress=None) -> dict:
    """Compile, load, run every input cross-checked, unload; one result row."""
    from ..driver import ImageDoesNotFit
    from .compiler import compile_model
    row = {"case": case.name, "bits": case.bits, "inferences": 0, "mismatches": 0, "cycle_mismatches": 0}
    img = compile_model(case.model, case.calib, bits=case.bits)
    row["macs_per_step"] = img.macs_per_step
    try:
        m = dev.load(img, name=f"{case.name}@{case.bits}", check="record")
    except ImageDoesNotFit as e:
        row["status"] = f"does not fit: {e}"
        if progress:
            progress.update(len(case.x))
        return row
    try:
        cycles, util = [], []
        for x in case.x:
            m.run(x)
            cycles.append(m.last.cycles)
            util.append(m.last.mac_ops / max(m.last.cycles * dev.caps["n_lanes"], 1))
            if progress:
                progress.update(1)
        row.update(inferences=m.inferences, mismatches=len(m.mismatches),
                   cycle_mismatches=len(m.cycle_mismatches), cycles=int(np.mean(cycles)),
                   steps=int(case.x.shape[1]), utilisation=round(float(np.mean(util)), 4),
                   status="ok" if not m.mismatches and not m.cycle_mismatches else "FAIL")
        if m.mismatches:
            row["first_mismatch"] = str(m.mismatches[0])
    finally:
        dev.unload(m)
    return row


def markdown(rows, device, n_lanes) -> str:
    out = [f"Regression on `{device}` ({n_lanes} MACs): device vs host simulator, every inference.", "",
           "| case | bits | inferences | mismatches | cycle mismatches | cycles / inference | MAC utilisation | status |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        util = f"{100 * r['utilisation']:.1f} %" if "utilisation" in r else "-"
        out.append(f"| {r['case']} | {r['bits']} | {r['inferences']} | {r['mismatches']} | {r['cycle_mismatches']} | "
                   f"{r.get('cycles', '-'):,} | {util} | {r['status'].split(':')[0]} |"
                   if "cycles" in r else
                   f"| {r['case']} | {r['bits']} | 0 | - | - | - | - | {r['status'].split(':')[0]} |")
    return "\n".join(out) + "\n"


def regress(device="sim://", modes=MODES, n=4, families=None, hello_edge=HELLO_EDGE, he_modes=(8,), he_n=None,
            out="build/regress", progress=True):
    from tqdm import tqdm

    from ..driver import open_device
    cases = list(zoo_cases(modes, n, families))
    if hello_edge and Path(hello_edge).is_dir():
        cases += list(hello_edge_cases(hello_edge, he_modes, he_n))
    elif hello_edge and hello_edge != HELLO_EDGE:
        raise FileNotFoundError(f"{hello_edge}: no Hello Edge model folder")
    t0 = time.time()
    rows = []
    with open_device(device, check="record") as dev:
        n_lanes = dev.caps["n_lanes"]
        bar = tqdm(total=sum(len(c.x) for c in cases), unit="inf", disable=not progress, file=sys.stderr)
        for c in cases:
            bar.set_description(f"{c.name}@{c.bits}")
            rows.append(run_case(dev, c, bar))
        bar.close()
        name = dev.transport.name
    total = {"cases": len(rows), "inferences": sum(r["inferences"] for r in rows),
             "mismatches": sum(r["mismatches"] for r in rows),
             "cycle_mismatches": sum(r["cycle_mismatches"] for r in rows),
             "failed": [f"{r['case']}@{r['bits']}" for r in rows if r["status"] == "FAIL"],
             "not_fitting": [f"{r['case']}@{r['bits']}" for r in rows if r["status"].startswith("does not fit")],
             "device": name, "macs": n_lanes, "seconds": round(time.time() - t0, 1)}
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "regress.md").write_text(markdown(rows, name, n_lanes))
        (out / "regress.json").write_text(json.dumps({"total": total, "rows": rows}, indent=1))
        total["report"] = str(out / "regress.md")
    return total, rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="rnnaccel regress", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="sim://", help="device URI (default sim://, the simulated board)")
    ap.add_argument("--modes", default="16,8,6,4,2", help="weight modes of the zoo cases (default all)")
    ap.add_argument("--n", type=int, default=4, help="inputs per zoo case (default 4)")
    ap.add_argument("--families", help="comma-separated zoo families (default all)")
    ap.add_argument("--hello-edge", default=str(HELLO_EDGE),
                    help="Hello Edge folder (models + reference/); '' to leave them out")
    ap.add_argument("--he-modes", default="8", help="weight modes of the Hello Edge cases (default 8)")
    ap.add_argument("--he-n", type=int, help="reference clips per Hello Edge model (default all)")
    ap.add_argument("--out", default="build/regress", help="folder for regress.md and regress.json")
    a = ap.parse_args(argv)
    modes = tuple(int(b) for b in a.modes.split(","))
    he_modes = tuple(int(b) for b in a.he_modes.split(","))
    bad = [b for b in modes + he_modes if b not in MODES]
    if bad:
        print(f"rnnaccel regress: error: weight modes {bad}: use {MODES}", file=sys.stderr)
        return 2
    fams = a.families.split(",") if a.families else None
    try:
        total, rows = regress(a.device, modes, a.n, fams, a.hello_edge or None, he_modes, a.he_n, a.out)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"rnnaccel regress: error: {e}", file=sys.stderr)
        return 2
    print(markdown(rows, total["device"], total["macs"]))
    print(json.dumps(total))
    return 1 if total["mismatches"] or total["cycle_mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
