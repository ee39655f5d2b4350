"""Live keyword-spotting demo: audio -> MFCC frame by frame -> accelerator -> detector, in a terminal.

    rnnaccel demo                                  simulated board, built-in keyword stream
    rnnaccel demo --wav speech.wav                 a WAV file (16 kHz mono, or resampled)
    rnnaccel demo --mic                            the microphone (arecord or sounddevice), Ctrl-C ends
    rnnaccel demo --device uart:///dev/ttyUSB1?csr=bitstreams/ulx3s/csr.csv   a real board

Data flow: the shipped GRU-S (host/kws/models/gru_s.npz) is compiled at `--bits` (default 4: 8x
NeuCompression) and loaded through the driver; audio goes through `MfccStream` one 40 ms frame at a
time; every `--hop` frames the device classifies the last second (stream.Windower) and the driver
cross-checks the run against the host simulator; `stream.Detector` smooths the posteriors and fires
each keyword once. The last line printed is one JSON object (detected, expected, frames,
frames_per_s, mismatches, ...).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import data, stream

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "gru_s.npz"
CHUNK = 640                   # samples pushed at a time (one 40 ms frame at 16 kHz)
N_CALIB = 100                 # TRAIN-split clips used to calibrate the fixed-point image


# ---- audio sources: each yields int16 chunks ----------------------------------------------------
def file_source(audio, realtime=False):
    t0 = time.perf_counter()
    for k in range(0, len(audio), CHUNK):
        if realtime:
            time.sleep(max(0.0, t0 + k / data.SAMPLE_RATE - time.perf_counter()))
        yield audio[k:k + CHUNK]


def mic_source(seconds=None):
    """Microphone at 16 kHz mono through `arecord` (alsa-utils) or the `sounddevice` package."""
    n_total = None if seconds is None else int(seconds * data.SAMPLE_RATE)
    got = 0
    if shutil.which("arecord"):
        cmd = ["arecord", "-q", "-f", "S16_LE", "-r", str(data.SAMPLE_RATE), "-c", "1", "-t", "raw"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while n_total is None or got < n_total:
                buf = proc.stdout.read(2 * CHUNK)
                if not buf:
                    err = proc.stderr.read().decode(errors="replace").strip()
                    raise RuntimeError(f"arecord stopped: {err or 'no audio device?'}")
                got += len(buf) // 2
                yield np.frombuffer(buf, "<i2")
        finally:
            proc.terminate()
        return
    try:
        import sounddevice as sd
    except ImportError:
        raise RuntimeError("no microphone capture available: install alsa-utils (arecord) or "
                           "`pip install sounddevice`, or give a file with --wav") from None
    with sd.InputStream(samplerate=data.SAMPLE_RATE, channels=1, dtype="int16", blocksize=CHUNK) as s:
        while n_total is None or got < n_total:
            block, _ = s.read(CHUNK)
            got += len(block)
            yield block[:, 0].copy()


# ---- model ----------------------------------------------------------------------------------------
def build_image(model_path=DEFAULT_MODEL, bits=4, progress=True):
    """The IR model and its image at `bits`, calibrated on TRAIN-split synthetic clips."""
    from ..compiler import compile_model
    from .evaluate import calib_features, label_map
    from .train import load_model_npz
    model = load_model_npz(model_path)
    if model.frontend is None:
        raise ValueError(f"{model_path}: the model has no MFCC front end")
    calib = calib_features(model, N_CALIB, progress=progress)
    return model, compile_model(model, calib, bits=bits), label_map(model)


# ---- terminal -------------------------------------------------------------------------------------
class Display:
    """A live status line on a terminal (rewritten in place); plain periodic lines otherwise."""

    def __init__(self, out=sys.stdout, live=None):
        self.out = out
        self.live = out.isatty() if live is None else live
        self.last_plain = 0.0

    def status(self, text, t_audio):
        if self.live:
            self.out.write("\r\033[K" + text)
            self.out.flush()
        elif t_audio - self.last_plain >= 2.0:
            self.last_plain = t_audio
            print(text, file=self.out, flush=True)

    def event(self, text):
        if self.live:
            self.out.write("\r\033[K")
        print(text, file=self.out, flush=True)

    def close(self):
        if self.live:
            self.out.write("\r\033[K")
            self.out.flush()


def _bar(p, width=10):
    n = int(round(p * width))
    return "#" * n + "." * (width - n)


# ---- the demo ---------------------------------------------------------------------------------------
def run(device="sim://", model_path=DEFAULT_MODEL, bits=4, wav=None, mic=False, seconds=None, hop=10,
        realtime=False, check="record", seed=stream.BUILTIN_SEED, out=sys.stdout, live=None, progress=True):
    from ...driver import open_device
    from ..audio import read_wav

    t_setup = time.perf_counter()
    model, img, lmap = build_image(model_path, bits, progress)
    fe = model.frontend
    window = fe.clip_samples // fe.stride
    realtime_fps = fe.sample_rate / fe.stride          # frames of audio per second (25)
    frame_s = 1.0 / realtime_fps
    expected = None
    if mic:
        source, what = mic_source(seconds), "microphone"
    elif wav:
        source, what = file_source(read_wav(wav, sample_rate=fe.sample_rate), realtime), str(wav)
    else:
        s = stream.builtin_stream(seed)
        expected = s.expected
        source, what = file_source(s.audio, realtime), f"built-in stream (seed {seed}): " + \
            " ".join(w for w, _, _ in s.words)
    disp = Display(out, live)
    from ..mfcc import MfccStream
    with open_device(device, check=check) as dev:
        m = dev.load(img, name=model.name)
        n_lanes = dev.caps["n_lanes"]
        disp.event(f"device {dev.transport.name}: {n_lanes} MACs; model {model.name} at {bits}-bit "
                   f"({img.meta['fp32_weight_bytes'] / max(img.meta['stored_weight_bytes'], 1):.1f}x "
                   f"compression), window {window} frames, hop {hop}; setup "
                   f"{time.perf_counter() - t_setup:.1f} s")
        disp.event(f"audio: {what}")
        mf, win, det = MfccStream(fe), stream.Windower(window, hop), \
            stream.Detector.for_hop(hop * frame_s)
        detected, frames, lat, util = [], 0, [], []
        t0 = time.perf_counter()
        try:
            for chunk in source:
                for f in mf.push(chunk):
                    frames += 1
                    w = win.push(f)
                    if w is None:
                        continue
                    t_run = time.perf_counter()
                    y = m.run(w, reset=True)
                    lat.append(time.perf_counter() - t_run)
                    info = m.last
                    util.append(info.mac_ops / max(info.cycles * n_lanes, 1))
                    p = np.zeros(len(data.LABELS))
                    p[lmap] = stream.softmax(y)
                    t_audio = frames * frame_s
                    kw = det.push(p)
                    if kw:
                        detected.append(kw)
                        disp.event(f"[{t_audio:7.2f} s]  >>> {kw.upper():<6} (p={det.smoothed[data.LABELS.index(kw)]:.2f})")
                    top = np.argsort(det.smoothed)[::-1][:3]
                    post = "  ".join(f"{data.LABELS[i]:>9} {_bar(det.smoothed[i])}" for i in top)
                    chk = "off" if not m.check else (f"ok {m.inferences}" if not m.mismatches
                                                     else f"MISMATCH {len(m.mismatches)}")
                    fps = frames / max(time.perf_counter() - t0, 1e-9)
                    disp.status(f"[{t_audio:7.2f} s] {post} | {1e3 * lat[-1]:5.1f} ms/window "
                                f"{info.cycles:,} cyc | MAC util {100 * util[-1]:.1f}% | {fps:4.1f} frames/s "
                                f"({'real time' if fps >= realtime_fps else 'BEHIND real time'}) | check {chk}",
                                t_audio)
        except KeyboardInterrupt:
            pass
        fps = frames / max(time.perf_counter() - t0, 1e-9)
        disp.close()
        for mm in m.mismatches[:3]:
            disp.event(f"cross-check mismatch: {mm}")
        res = {
            "detected": detected, "expected": expected, "frames": frames,
            "frames_per_s": round(fps, 1), "keeps_up": fps >= realtime_fps,
            "audio_seconds": round(frames * frame_s, 2),
            "inferences": m.inferences, "mismatches": len(m.mismatches),
            "cycle_mismatches": len(m.cycle_mismatches), "checked": bool(m.check),
            "device": dev.transport.name, "macs": n_lanes, "bits": bits,
            "cycles_per_inference": m.last.cycles if m.inferences else None,
            "mac_utilisation": round(float(np.mean(util)), 4) if util else None,
            "latency_ms_mean": round(1e3 * float(np.mean(lat)), 2) if lat else None,
            "latency_ms_max": round(1e3 * float(np.max(lat)), 2) if lat else None,
        }
        if expected is not None:
            res["all_detected"] = detected == expected
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(prog="rnnaccel demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="sim://", help="device URI (default sim://: start the simulated board; "
                                                        "docs/driver.md lists uart://, pynq://, uio://, host://)")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="keyword model .npz (default: the shipped GRU-S)")
    ap.add_argument("--bits", type=int, default=4, choices=(16, 8, 6, 4, 2),
                    help="weight mode: 4 = 8x NeuCompression (default)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--wav", help="a WAV file to stream instead of the built-in keyword stream")
    src.add_argument("--mic", action="store_true", help="stream the microphone (Ctrl-C ends)")
    ap.add_argument("--seconds", type=float, help="with --mic: stop after this many seconds")
    ap.add_argument("--hop", type=int, default=10, help="frames between classifications (40 ms each; default 10: "
                    "400 ms, docs/demo.md compares hops)")
    ap.add_argument("--realtime", action="store_true", help="pace file input at the audio rate")
    ap.add_argument("--seed", type=int, default=stream.BUILTIN_SEED, help="voice/noise seed of the built-in stream")
    ap.add_argument("--no-check", action="store_true", help="do not cross-check runs with the host simulator")
    ap.add_argument("--plain", action="store_true", help="no live status line (plain lines, e.g. for logs)")
    a = ap.parse_args(argv)
    try:
        res = run(a.device, a.model, a.bits, a.wav, a.mic, a.seconds, a.hop, a.realtime,
                  "off" if a.no_check else "record", a.seed, live=False if a.plain else None)
    except (ValueError, RuntimeError, FileNotFoundError, OSError) as e:
        print(f"rnnaccel demo: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 1 if res["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
