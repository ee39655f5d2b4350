"""WAV input: 16-bit PCM mono via the standard library (no extra dependency on the board)."""
from __future__ import annotations

import wave

import numpy as np


def read_wav(path, sample_rate=None, length=None) -> np.ndarray:
    """int16 samples of a mono 16-bit WAV; optionally check the rate and pad/trim to `length`."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit samples, expected 16-bit PCM")
            if sample_rate is not None and w.getframerate() != sample_rate:
                raise ValueError(f"{path}: {w.getframerate()} Hz, expected {sample_rate} Hz "
                                 f"(resample it, e.g. `sox in.wav -r {sample_rate} out.wav`)")
            data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            if w.getnchannels() > 1:
                data = data.reshape(-1, w.getnchannels())[:, 0]
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{path}: not a readable WAV file ({e})") from None
    if length is not None:
        data = np.pad(data, (0, max(0, length - len(data))))[:length]
    return data.astype(np.int16)


def write_wav(path, samples, sample_rate=16000):
    samples = np.asarray(samples, dtype="<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.tobytes())
