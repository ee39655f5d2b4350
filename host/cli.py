"""The `rnnaccel` command line: one entry point, one subcommand per job.

    rnnaccel compile MODEL -o OUT.rnna --bits 8 --calib FEATURES
    rnnaccel simulate IMAGE --data FEATURES
    rnnaccel reference-check MODEL.pb REFERENCE_DIR --bits 8
    rnnaccel act-tables
    rnnaccel compression MODEL [--plot PNG]
    rnnaccel disasm IMAGE
    rnnaccel validate --device URI --model MODEL [--model MODEL2 ...] [--bits B] --data DATA
    rnnaccel synth --macs N [--freq MHZ] [--out DIR] [--seed S] [--placer static|heap] [--free-lanes] [--free-weights] [--no-pnr]
    rnnaccel kws eval [--model PATH] [--bits float|16|8|6|4|2] [--n N] [--seed S]
    rnnaccel kws train [--arch gru|lstm|dnn] [--out PATH] [--epochs E] [--n-train N] [--seed S]
    rnnaccel demo [--device URI] [--wav FILE | --mic] [--bits 4]   (live keyword spotting)
    rnnaccel regress [--device URI] [--modes 16,8,6,4,2] [--n 4]    (host-vs-device regression)

Commands that are meant for scripts print one JSON object as their last line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


# --------------------------------------------------------------------------------------------------
# Data helpers
# --------------------------------------------------------------------------------------------------
def load_features(path, model=None):
    """Feature sequences [N, T, F] from .npy, .npz (key 'mfcc' or 'features'), a .wav file or a
    folder of .wav files (through the model's MFCC front end)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such file or directory")
    if p.is_dir() or p.suffix.lower() == ".wav":
        from .audio import read_wav
        from .mfcc import mfcc
        if model is None or model.frontend is None:
            raise UserError(f"{path}: audio input needs a model with an MFCC front end")
        files = sorted(p.glob("*.wav")) if p.is_dir() else [p]
        if not files:
            raise UserError(f"{path}: no .wav files")
        return np.stack([mfcc(read_wav(f, model.frontend.sample_rate, model.frontend.clip_samples),
                              model.frontend) for f in files])
    if p.suffix == ".npy":
        x = np.load(p)
    elif p.suffix == ".npz":
        z = np.load(p)
        key = next((k for k in ("mfcc", "features", "x") if k in z), None)
        if key is None:
            raise UserError(f"{path}: expected an array named mfcc, features or x (has {list(z.keys())})")
        x = z[key]
    else:
        raise UserError(f"{path}: unsupported data file (use .npy, .npz, .wav or a folder of .wav)")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise UserError(f"{path}: features must be [N, T, F] or [T, F], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise UserError(f"{path}: features contain NaN/Inf (first at index {tuple(bad)})")
    return x


def default_audio_calibration(model, n=128):
    """MFCC features of synthetic spoken keywords (training voices only) for audio models."""
    from .kws.data import generate
    from .mfcc import mfcc
    print(f"calibrating on {n} synthetic keyword clips (training voices); pass --calib for your own data",
          file=sys.stderr)
    try:
        audio, _, _ = generate("train", n, seed=0, progress=False)
    except RuntimeError as e:
        raise UserError(f"no --calib given and the synthetic calibration set is unavailable: {e}") from None
    return mfcc(audio, model.frontend).astype(np.float64)


def load_any_model(path):
    from .importers import load_model
    from .ir import ModelError
    try:
        return load_model(path)
    except ModelError as e:
        raise UserError(str(e)) from None
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None


# --------------------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------------------
def cmd_compile(a):
    from .compiler import CompileError, compile_model, report
    model = load_any_model(a.model)
    if a.calib is not None:
        calib = load_features(a.calib, model)
    elif model.frontend is not None:
        calib = default_audio_calibration(model)
    else:
        raise UserError("--calib FEATURES is needed: sample inputs (.npy/.npz [N, T, F], or .wav files for "
                        "models with an MFCC front end) choose the fixed-point scales")
    try:
        img = compile_model(model, calib, bits=a.bits, steps=a.steps)
    except CompileError as e:
        raise UserError(str(e)) from None
    n = img.save(a.output)
    print(report(model, img))
    print(json.dumps({"image": str(a.output), "bytes": n, "bits": a.bits,
                      "compression": round(img.meta["fp32_weight_bytes"] / img.meta["stored_weight_bytes"], 3),
                      "parameters": model.param_count, "instructions": len(img.program)}))


def cmd_simulate(a):
    from .image import Image, ImageError
    from .simulator import Simulator
    try:
        img = Image.load(a.image)
    except ImageError as e:
        raise UserError(str(e)) from None
    x = load_features(a.data)
    sim = Simulator(img, batch=len(x))
    y = sim.run(x)
    labels = img.meta.get("labels")
    last = y[:, -1] if img.seq_output else y
    top = last.argmax(-1)
    for i, k in enumerate(top[:a.show]):
        logits = np.array2string(last[i], precision=2, max_line_width=400, suppress_small=True)
        print(f"{i:4d}  top-1 {labels[k] if labels else k:<10} logits {logits}")
    print(json.dumps({"inferences": len(x), "top1": [int(k) for k in top]}))


def cmd_reference_check(a):
    from .refcheck import reference_check
    res = reference_check(a.model, a.reference_dir, a.bits)
    print(json.dumps(res))


def cmd_act_tables(a):
    from .activation import error_report, format_report
    rep = error_report()
    print(format_report(rep))
    worst = max(v["max_abs_err"] for v in rep.values())
    ok = worst < 2e-4
    print(json.dumps({"max_abs_err": {k: v["max_abs_err"] for k, v in rep.items()}, "limit": 2e-4, "ok": ok}))
    return 0 if ok else 1


def cmd_compression(a):
    from .compression import format_tradeoff, plot_tradeoff, tradeoff_table
    from .ir import FC, Recurrent
    model = load_any_model(a.model)
    mats = {}
    for layer in model.layers:
        if isinstance(layer, FC):
            mats[layer.name] = layer.weight
        elif isinstance(layer, Recurrent):
            for i, c in enumerate(layer.cells()):
                mats[f"{layer.name}.{i}"] = np.hstack([c.w_x, c.w_h])
    rows = tradeoff_table(mats)
    print(format_tradeoff(rows))
    if a.plot:
        plot_tradeoff(rows, a.plot)
        print(f"plot written to {a.plot}")


def cmd_rtl_bench(a):
    from rnnaccel.gateware.bench import rtl_bench
    res = rtl_bench(a.macs, a.model, steps=a.steps, bits=a.bits)
    print(f"GRU-S step on the RTL, N = {res['macs']}: {res['cycles_per_step']:.1f} cycles per step "
          f"(ideal {res['ideal_cycles']:.1f}): utilisation {100 * res['utilisation']:.2f} %; "
          f"single-step run {res['single_step_cycles']} cycles ({100 * res['single_step_utilisation']:.2f} %); "
          f"bit-exact {res['bit_exact']}, cycle model exact {res['cycle_model_exact']}")
    print(json.dumps(res))
    return 0 if res["bit_exact"] and res["cycle_model_exact"] else 1


def cmd_cycles(a):
    from .cycles import layer_report
    from .image import Image, ImageError
    try:
        img = Image.load(a.image)
    except ImageError as e:
        raise UserError(str(e)) from None
    steps = a.steps or img.max_steps
    rows, r = layer_report(img, steps, a.macs)
    print(f"{a.image}: {steps} steps on N = {a.macs} lanes (cycle model of gateware/core.py)")
    print(f"{'pc':>4}  {'layer':<44} {'rows x K':>10} {'cycles':>9} {'util':>7}")
    for x in rows:
        print(f"{x['pc']:>4}  {x['note'][:44]:<44} {x['rows']:>4} x {x['k']:<4} {x['cycles']:>9.1f} "
              f"{100 * x['utilisation']:>6.1f}%")
    util = r.lane_ops / (a.macs * r.cycles)
    print(f"run: {r.cycles} cycles, {r.macs:,} MACs, utilisation {100 * util:.2f} %")
    print(json.dumps({"macs": a.macs, "steps": steps, "cycles": r.cycles, "mac_ops": r.macs,
                      "utilisation": round(util, 4)}))


def cmd_synth(a):
    if a.macs < 4 or a.macs & (a.macs - 1):
        raise UserError(f"--macs {a.macs}: must be a power of two >= 4")
    if a.freq <= 0:
        raise UserError(f"--freq {a.freq}: must be > 0")
    try:
        from rnnaccel.gateware.synth import UNITS, SynthError, synthesize
    except ImportError as e:
        raise UserError(f"synthesis needs the gateware and synth extras (pip install 'rnnaccel[synth]'): {e}") from None
    if a.unit is not None and a.unit not in UNITS:
        raise UserError(f"--unit {a.unit}: one of {', '.join(UNITS)}")
    out = a.out or (f"build/synth-{a.unit}/n{a.macs}" if a.unit else f"build/synth-core/n{a.macs}")
    try:
        placer = {"placer": a.placer} if a.placer else {}      # synthesize's default otherwise
        r = synthesize(a.macs, out, freq_mhz=a.freq, seed=a.seed, pnr=not a.no_pnr, unit=a.unit,
                       pin_lanes=not a.free_lanes, pin_weights=not a.free_weights, **placer)
    except SynthError as e:
        raise UserError(str(e)) from None
    v = r.get("versions", {})
    print(f"{r['unit']} N = {r['macs']} MACs on {r['device']} ({', '.join(v.values())}); files in {out}")
    avail = r.get("available", {})
    print(f"{'resource':<12} {'used':>8} {'of':>8} {'%':>6}")
    for key, name in (("lut4", "LUT4"), ("ff", "FF"), ("dp16kd", "DP16KD"), ("mult18x18d", "MULT18X18D")):
        n = avail.get(key)
        print(f"{name:<12} {r[key]:>8} {n if n else '-':>8} " + (f"{100 * r[key] / n:>5.1f}%" if n else f"{'-':>6}"))
    if r["fmax_mhz"] is not None:
        print(f"Fmax {r['fmax_mhz']:.1f} MHz: timing {'met' if r['timing_met'] else 'NOT met'} at {a.freq} MHz "
              f"(seed {a.seed}, placer {r['placer']})")
        for i, p in enumerate(r.get("top_paths") or [], 1):
            print(f"  path {i}: {p['delay_ns']:6.2f} ns  {p['from_group']} -> {p['to_group']}")
    else:
        print("yosys only (--no-pnr): cell counts before packing, no timing")
    print("time: " + ", ".join(f"{k} {t:.0f} s" for k, t in r["seconds"].items()))
    keys = ("macs", "fmax_mhz", "timing_met", "freq_mhz", "seed", "placer", "lut4", "ff", "dp16kd", "mult18x18d",
            "device", "versions", "seconds", "out_dir")
    summary = {k: r.get(k) for k in keys}
    if r.get("top_paths"):
        summary["critical_path"] = r["top_paths"][0]
    print(json.dumps(summary))
    return 0


def cmd_validate(a):
    try:
        from rnnaccel.driver import DriverError
        from rnnaccel.driver.validate import ValidateError, validate
    except ImportError as e:
        raise UserError(f"validate needs the driver (pip install -e '.[driver]' with a C compiler): {e}") from None
    if a.limit is not None and a.limit < 1:
        raise UserError(f"--limit {a.limit}: must be >= 1")
    try:
        res = validate(a.device, a.model, a.data, bits=a.bits, calib=a.calib, limit=a.limit,
                       log=lambda m: print(m, flush=True))
    except (DriverError, ValidateError) as e:
        raise UserError(str(e)) from None
    ok = res["mismatches"] == 0 and res["cycle_mismatches"] == 0
    print(f"{'PASS' if ok else 'FAIL'}: {res['inferences']} inferences, {res['mismatches']} mismatches, "
          f"{res['cycle_mismatches']} cycle mismatches")
    print(json.dumps(res))
    return 0 if ok else 1


def cmd_disasm(a):
    from .image import Image, ImageError
    from .isa import disassemble
    try:
        img = Image.load(a.image)
    except ImageError as e:
        raise UserError(str(e)) from None
    print(f"{a.image}: {img.meta.get('name')} bits={img.meta.get('bits')} in={img.in_features}@Q.{img.in_frac} "
          f"out={img.out_features}@Q.{img.out_frac} state={img.state_words} scratch={img.scratch_words} "
          f"const={img.const_words} max_steps={img.max_steps} streamable={img.streamable}")
    print(disassemble(img.program))


def cmd_kws_eval(a):
    from .kws import evaluate as ev
    from .kws.data import LABELS
    from .kws.train import SHIPPED_MODEL
    if a.n < 1:
        raise UserError(f"--n {a.n}: need at least one test clip")
    if a.seed < 0:
        raise UserError(f"--seed {a.seed}: must be >= 0")
    path = a.model or str(SHIPPED_MODEL)
    model = load_any_model(path)
    if model.frontend is None:
        raise UserError(f"{path}: the model has no MFCC front end; kws eval feeds it synthetic audio")
    bits = ev.parse_mode(a.bits)
    res = ev.evaluate(model, n=a.n, seed=a.seed, modes=(bits,))
    r = res["results"][str(bits)]
    conf = np.array(r["confusion"])
    fe = model.frontend
    print(f"model {model.name} ({path}): {model.param_count:,} parameters, MFCC {fe.frames}x{fe.dct_count} "
          f"(window {fe.window_size}, stride {fe.stride})")
    print(f"synthetic test split (held-out voices): n={a.n}, seed {a.seed}; weights: "
          + ("float (reference executor)" if bits == "float" else f"{bits}-bit fixed point (simulator)"))
    print(f"{'class':<10} {'n':>5} {'correct':>8} {'accuracy':>9}")
    for i, lab in enumerate(LABELS):
        tot = int(conf[i].sum())
        print(f"{lab:<10} {tot:>5} {int(conf[i, i]):>8} " + (f"{100 * conf[i, i] / tot:>8.1f}%" if tot else f"{'-':>9}"))
    print(f"{'all':<10} {a.n:>5} {int(np.trace(conf)):>8} {100 * r['accuracy']:>8.2f}%")
    print(json.dumps({"accuracy": round(r["accuracy"], 6), "n": a.n, "bits": bits, "model": str(path),
                      "seed": a.seed, "correct": int(np.trace(conf))}))


def cmd_kws_train(a):
    from .kws.train import train_and_save
    cfg = {"arch": a.arch, "seed": a.seed}
    if a.epochs is not None:
        if a.epochs < 1:
            raise UserError(f"--epochs {a.epochs}: must be >= 1")
        cfg["epochs"] = a.epochs
    if a.n_train is not None:
        if a.n_train < 12:
            raise UserError(f"--n-train {a.n_train}: need at least 12 clips (one per class)")
        cfg["n_train"] = a.n_train
    if a.seed < 0:
        raise UserError(f"--seed {a.seed}: must be >= 0")
    out = a.out or f"build/kws_{a.arch}.npz"
    model, info = train_and_save(cfg, out=out)
    print(json.dumps({"model": str(out), "arch": a.arch, "parameters": model.param_count,
                      "accuracy": model.meta.get("accuracy"), "seconds": info["seconds_total"]}))


# --------------------------------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(prog="rnnaccel", description=(
        "RNNAccel: compile recurrent networks (GRU, LSTM, FC) into images for the rnnaccel FPGA "
        "accelerator, simulate them bit-exactly, and check them against their source framework."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Data flow: model (.pb/.onnx/.pt) -> compile -> image (.rnna) -> driver -> accelerator. "
               "Run `rnnaccel COMMAND --help` for details.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True
    bits = dict(type=int, choices=[16, 8, 6, 4, 2], default=8,
                help="weight mode: 16/8-bit integers, or 6/4/2-bit NeuCompression codebooks "
                     "(5.3x/8x/16x vs fp32). Default 8")

    s = sub.add_parser("compile", help="compile a model into an accelerator image",
                       description="Import MODEL (TensorFlow frozen .pb, ONNX, PyTorch .pt), calibrate "
                                   "fixed-point scales on sample inputs, compress weights, write an image.")
    s.add_argument("model")
    s.add_argument("-o", "--output", required=True, help="image file to write (.rnna)")
    s.add_argument("--bits", **bits)
    s.add_argument("--calib", help="calibration inputs: .npy/.npz [N, T, F], a .wav or a folder of .wav "
                                    "(default for audio models: 128 synthetic keyword clips)")
    s.add_argument("--steps", type=int, help="largest number of time steps per run (input buffer size)")
    s.set_defaults(fn=cmd_compile)

    s = sub.add_parser("simulate", help="run an image in the bit-accurate behaviour simulator")
    s.add_argument("image")
    s.add_argument("--data", required=True, help="features .npy/.npz [N, T, F]")
    s.add_argument("--show", type=int, default=10, help="print this many results (default 10)")
    s.set_defaults(fn=cmd_simulate)

    s = sub.add_parser("reference-check", help="end-to-end check of a TF model against TensorFlow's outputs",
                       description="Audio -> numpy MFCC -> compile -> bit-accurate simulation, compared with "
                                   "TensorFlow's own MFCC and logits in REFERENCE_DIR (clips.npz + <model>.npz).")
    s.add_argument("model")
    s.add_argument("reference_dir")
    s.add_argument("--bits", **bits)
    s.set_defaults(fn=cmd_reference_check)

    s = sub.add_parser("act-tables", help="exhaustive error of the piecewise-linear activation tables")
    s.set_defaults(fn=cmd_act_tables)

    s = sub.add_parser("compression", help="NeuCompression trade-off table (and plot) for a model's weights")
    s.add_argument("model")
    s.add_argument("--plot", help="write a PNG of SQNR vs bits per weight")
    s.set_defaults(fn=cmd_compression)

    s = sub.add_parser("rtl-bench", help="MAC utilisation of the GRU-S step measured on the core's RTL",
                       description="Build the core with N MAC lanes in Verilator, run the keyword-spotting "
                                   "GRU-S (one step, and a sequence), check every word against the behaviour "
                                   "simulator and the cycles against the cycle model, and report utilisation.")
    s.add_argument("--macs", type=int, default=32, choices=[8, 16, 32, 64], help="MAC lanes N (default 32)")
    s.add_argument("--model", help="GRU-S model (default: ../shared Hello Edge GRU_S.pb, else the shipped one)")
    s.add_argument("--steps", type=int, default=25, help="steps of the sequence run (default 25)")
    s.add_argument("--bits", type=int, default=8, choices=[16, 8, 6, 4, 2], help="weight mode (default 8)")
    s.set_defaults(fn=cmd_rtl_bench)

    s = sub.add_parser("cycles", help="cycle model: cycles and MAC utilisation per layer for an image",
                       description="Predict the core's exact cycle count for an image (host/cycles.py, checked "
                                   "against the RTL in the tests) and break it down per layer.")
    s.add_argument("image")
    s.add_argument("--macs", type=int, default=32, help="MAC lanes N (default 32)")
    s.add_argument("--steps", type=int, help="time steps of the run (default: the image's max_steps)")
    s.set_defaults(fn=cmd_cycles)

    s = sub.add_parser("synth", help="synthesise, place and route the core alone on an ECP5 (Fmax, resources)",
                       description="Wrap the core (N MAC lanes, default memories) in a registered 32-bit port, "
                                   "synthesise it with YoWASP yosys (synth_ecp5) and place and route it with "
                                   "nextpnr-ecp5 on an LFE5U-85F-6CABGA381. Tool logs, the Verilog and nextpnr's "
                                   "report stay in --out. Takes minutes (N = 32: about ten). Last line: one "
                                   "JSON object.")
    s.add_argument("--macs", type=int, required=True, help="MAC lanes N (a power of two, 4..64)")
    s.add_argument("--freq", type=float, default=100, help="target clock in MHz (default 100)")
    s.add_argument("--out", help="build directory (default build/synth-core/nN)")
    s.add_argument("--seed", type=int, default=1, help="placer seed (default 1)")
    s.add_argument("--placer", help="nextpnr placer: static (default: less wire and better timing than heap on "
                                    "this core) or heap")
    s.add_argument("--no-pnr", action="store_true", help="yosys only: cell counts, no place and route")
    s.add_argument("--free-lanes", action="store_true",
                   help="leave the MAC lanes' multipliers to the placer (default: pinned in lane order along a "
                        "DSP row in the die's middle, which is what lets N = 32 route)")
    s.add_argument("--free-weights", action="store_true",
                   help="leave the weight memory's block RAMs to the placer (default: each read-address group "
                        "of four slices on neighbouring sites either side of the lanes' row)")
    s.add_argument("--unit", help="one unit of the core alone: mac, xbuf, weights or epilogue (inputs from a "
                                  "scan chain, outputs folded onto one pin): its own timing in a few minutes")
    s.set_defaults(fn=cmd_synth)

    s = sub.add_parser("validate", help="run a data set through a device and the simulator: bit-exact and cycle agreement",
                       description="Run every sequence of DATA through the device (URI: host://, sim://, "
                                   "uart://HOST:PORT?csr=..., pynq://..., uio://..., docs/driver.md) and the "
                                   "behaviour simulator; report bit-exact agreement and the device's cycle counter "
                                   "vs the cycle model, per model. Last line: one JSON object.")
    s.add_argument("--device", required=True, help="device URI, e.g. uart://127.0.0.1:1234?csr=build/csr.csv")
    s.add_argument("--model", required=True, action="append",
                   help="compiled image (.rnna) or a model file (.pb/.onnx/.pt/.npz); repeat for several")
    s.add_argument("--data", required=True, help="a reference folder (clips.npz + <model>.npz, as "
                                                 "../shared/models/hello-edge/reference), a folder of .wav, or .npy/.npz "
                                                 "features [N, T, F]")
    s.add_argument("--bits", **bits)
    s.add_argument("--calib", help="calibration inputs for model files (default: the even-numbered sequences of DATA)")
    s.add_argument("--limit", type=int, help="only the first N sequences per model")
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("disasm", help="print an image's header and layer program")
    s.add_argument("image")
    s.set_defaults(fn=cmd_disasm)

    k = sub.add_parser("kws", help="keyword-spotting application: train and evaluate models",
                       description="Keyword spotting on synthetic espeak-ng data (12 classes, held-out voices "
                                   "for test): train the shipped GRU-S or other networks, measure accuracy "
                                   "in float and in bit-accurate fixed point.")
    ksub = k.add_subparsers(dest="kws_cmd", metavar="KWS_COMMAND")
    ksub.required = True
    s = ksub.add_parser("eval", help="accuracy of a model on the synthetic test split",
                        description="Accuracy on the synthetic TEST split (voices never used in training), "
                                    "float or compiled to a weight mode (calibrated on TRAIN clips) and run in "
                                    "the bit-accurate simulator. Last line: one JSON object.")
    s.add_argument("--model", help="model file: .npz (rnnaccel kws train), .pb (Hello Edge), .onnx, .pt; "
                                   "default: the shipped GRU-S (host/kws/models/gru_s.npz)")
    s.add_argument("--bits", default="8", choices=["float", "16", "8", "6", "4", "2"],
                   help="float (reference executor) or a weight mode (default 8)")
    s.add_argument("--n", type=int, default=2400, help="test clips (default 2400)")
    s.add_argument("--seed", type=int, default=0, help="seed of the synthetic test set (default 0)")
    s.set_defaults(fn=cmd_kws_eval)

    s = ksub.add_parser("train", help="train a keyword-spotting network (PyTorch, CPU)",
                        description="Generate (cached) synthetic data, train, quantisation-aware fine-tune, "
                                    "report validation/test accuracy and save a float .npz model. "
                                    "Last line: one JSON object.")
    s.add_argument("--arch", choices=["gru", "lstm", "dnn"], default="gru",
                   help="gru: GRU-S 154 units (default); lstm: basic LSTM 118 units; dnn: FC 250-144x3-12")
    s.add_argument("--out", help="model file to write (.npz; default build/kws_ARCH.npz)")
    s.add_argument("--epochs", type=int, help="training epochs (default 30)")
    s.add_argument("--n-train", type=int, help="synthetic training clips (default 24000)")
    s.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling (default 0)")
    s.set_defaults(fn=cmd_kws_train)

    b = sub.add_parser("board", help="start a board for the driver: `board sim` runs the simulated board",
                       description="Boards the driver talks to. `sim`: the SoC in Verilator (built once, cached "
                                   "in build/soc/), its bus reachable through a UART bridge on a TCP port of "
                                   "127.0.0.1; prints `listening on 127.0.0.1:P (csr map: ...)` and runs until "
                                   "Ctrl-C or SIGTERM.")
    bsub = b.add_subparsers(dest="board_cmd", metavar="BOARD")
    bsub.required = True
    s = bsub.add_parser("sim", help="the simulated board (Verilator) on 127.0.0.1")
    s.add_argument("--macs", type=int, default=None, help="MAC lanes N (default 32)")
    s.add_argument("--port", type=int, default=None, help="TCP port on 127.0.0.1 (default: a free one)")
    s.add_argument("--bus", choices=["wishbone", "axi-lite"], default="wishbone", help="SoC bus (default wishbone)")
    s.set_defaults(fn=cmd_board_sim)

    s = sub.add_parser("bitstream", help="build the SoC for a board: bitstream, register map, report",
                       description="ulx3s / ecp5-evn: LiteX + YoWASP yosys, nextpnr-ecp5, ecppack -> a .bit. "
                                   "pynq-z2: the Zynq-7000 SoC (ARM through AXI GP0): Verilog, .xdc, Vivado .tcl "
                                   "(and the .bit when Vivado is on PATH). Writes bitstreams/BOARD/ (bitstream, "
                                   "csr.csv, csr.json, report.json); tool logs in build/soc/BOARD/.")
    s.add_argument("--board", required=True, choices=["ulx3s", "ecp5-evn", "pynq-z2"])
    s.add_argument("--macs", type=int, help="MAC lanes N (default: the board's)")
    s.add_argument("--clk", type=float, help="system clock in MHz (default: the board's)")
    s.add_argument("--bus", choices=["wishbone", "axi-lite"], help="SoC bus (default: wishbone; pynq-z2 axi-lite)")
    s.add_argument("--out", help="output directory (default bitstreams/BOARD)")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    s.add_argument("--no-compile", action="store_true", help="generate the SoC and register map only")
    s.set_defaults(fn=cmd_bitstream)

    s = sub.add_parser("demo", add_help=False, help="live keyword-spotting demo on a device (default: the "
                                                    "simulated board); `rnnaccel demo --help`")
    s.add_argument("args", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_demo)
    s = sub.add_parser("regress", add_help=False, help="host-vs-device regression over every model family and "
                                                       "weight mode; `rnnaccel regress --help`")
    s.add_argument("args", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_regress)
    return p


def cmd_board_sim(a):
    try:
        from rnnaccel.soc.simboard import DEFAULT_LANES, SimBoardError, serve
    except ImportError as e:
        raise UserError(f"the simulated board needs the soc extra (pip install 'rnnaccel[soc]'): {e}") from None
    n = a.macs or DEFAULT_LANES
    if n < 4 or n & (n - 1):
        raise UserError(f"--macs {n}: must be a power of two >= 4")
    try:
        return serve(n_lanes=n, bus=a.bus, port=a.port)
    except SimBoardError as e:
        raise UserError(str(e)) from None


def cmd_bitstream(a):
    try:
        from rnnaccel.soc.targets import BuildError, bitstream
    except ImportError as e:
        raise UserError(f"bitstreams need the soc and synth extras (pip install 'rnnaccel[soc,synth]'): {e}") from None
    try:
        rep = bitstream(a.board, n_lanes=a.macs, sys_clk_mhz=a.clk, bus=a.bus, out_dir=a.out, seed=a.seed,
                        no_compile=a.no_compile)
    except BuildError as e:
        raise UserError(str(e)) from None
    print(json.dumps({k: rep.get(k) for k in ("board", "n_lanes", "sys_clk_mhz", "fmax_mhz", "timing_met",
                                             "bitstream")}))
    return 0 if rep.get("timing_met") in (True, None) else 1


def cmd_demo(a):
    from .kws.demo import main as demo_main
    return demo_main(a.args)


def cmd_regress(a):
    from .regress import main as regress_main
    return regress_main(a.args)


DELEGATED = {"demo": cmd_demo, "regress": cmd_regress}   # commands that parse their own options


def main(argv=None):
    import os
    from .image import ImageError
    from .ir import ModelError
    from .simulator import SimError
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in DELEGATED:
        return DELEGATED[argv[0]](argparse.Namespace(args=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        rc = args.fn(args)
    except (UserError, ModelError, ImageError, SimError, ValueError, OSError) as e:
        if os.environ.get("RNNACCEL_DEBUG"):
            raise
        print(f"rnnaccel {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
