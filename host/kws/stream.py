"""Keyword spotting on a continuous audio stream: the built-in demo stream and the detector.

The model was trained on one-second clips that start from a zero state, so a stream is classified
in one-second windows (the model's `clip_samples` worth of MFCC frames) that slide by `hop`
frames: every `hop` new frames the device runs the last window from a cleared state. The front end
runs frame by frame (`MfccStream`); each window's posteriors go to `Detector`, which averages the
last `smooth` windows and fires a keyword once when its smoothed posterior crosses `threshold`,
then stays quiet for `refractory` windows and until that keyword has fallen below `release`
(so one spoken word fires once).

`builtin_stream` speaks a fixed list of keywords and distractor words with held-out (TEST split)
espeak-ng voices, with pauses, background noise and recorded babble: the demo's default input, with
its expected keyword sequence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import data

# ---- built-in stream ----------------------------------------------------------------------------
#: (word, pause after it in seconds); distractors (not keywords) must not fire.
BUILTIN_SCRIPT = (("yes", 1.2), ("house", 1.2), ("stop", 1.2), ("left", 1.2), ("go", 1.2),
                  ("down", 1.2), ("seven", 1.2), ("right", 1.2), ("no", 1.2), ("up", 1.2))
BUILTIN_SEED = 0


@dataclass
class Stream:
    audio: np.ndarray           # int16, 16 kHz
    expected: list              # keywords in order
    words: list = field(default_factory=list)   # (word, onset seconds, voice)


def builtin_stream(seed: int = BUILTIN_SEED, script=BUILTIN_SCRIPT, lead_s: float = 0.8) -> Stream:
    """The demo's default input: `script` spoken with held-out voices over noise (deterministic)."""
    rng = np.random.default_rng([seed, 0xD3])
    sr = data.SAMPLE_RATE
    voices = data.VOICES["test"]
    parts, words, t = [np.zeros(int(lead_s * sr))], [], lead_s
    for word, pause in script:
        voice = voices[int(rng.integers(len(voices)))]
        speech = data._trim(data.synthesize(word + ".", voice, int(rng.integers(140, 200)),
                                            int(rng.integers(30, 70))))
        speech *= 10 ** (float(rng.uniform(-22, -14)) / 20) / max(data._rms(speech), 1e-9)
        parts += [speech, np.zeros(int(pause * sr))]
        words.append((word, round(t, 3), voice))
        t += (len(speech) + int(pause * sr)) / sr
    x = np.concatenate(parts)
    x += data._colored_noise(rng, "pink", len(x)) * 10 ** (-55 / 20)
    bank, _ = data._babble_bank()
    if len(bank) >= len(x):
        start = int(rng.integers(0, len(bank) - len(x) + 1))
        x += bank[start:start + len(x)] * 10 ** (-50 / 20)
    x *= min(1.0, 0.95 / max(float(np.max(np.abs(x))), 1e-9))
    expected = [w for w, _ in script if w in data.KEYWORDS]
    return Stream(audio=data._to_int16(x), expected=expected, words=words)


# ---- windows ------------------------------------------------------------------------------------
class Windower:
    """Collects MFCC frames; every `hop` frames (once `size` frames exist) yields the last `size`."""

    def __init__(self, size: int, hop: int):
        if not 1 <= hop <= size:
            raise ValueError(f"hop must be in 1..{size}, not {hop}")
        self.size, self.hop = size, hop
        self.frames, self.count = [], 0

    def push(self, frame):
        self.frames.append(np.asarray(frame, np.float32))
        self.frames = self.frames[-self.size:]
        self.count += 1
        if self.count >= self.size and (self.count - self.size) % self.hop == 0:
            return np.stack(self.frames)
        return None


# ---- detector -----------------------------------------------------------------------------------
def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


#: the detector's time constants (seconds); `Detector.for_hop` turns them into window counts
SMOOTH_S = 0.6          # posteriors averaged over this span of windows
REFRACTORY_S = 0.8      # quiet time after a keyword fires


class Detector:
    """Posterior smoothing and one-shot firing (see the module docstring). `smooth` and
    `refractory` count windows; `for_hop` derives them from the time constants above."""

    @classmethod
    def for_hop(cls, hop_s: float, **kw):
        """A detector for windows `hop_s` seconds apart (the same time constants at any hop)."""
        kw.setdefault("smooth", max(1, math.ceil(SMOOTH_S / hop_s - 1e-6)))     # hop 5: 3, hop 10: 2
        kw.setdefault("refractory", max(0, round(REFRACTORY_S / hop_s + 1e-6)))  # hop 5: 4, hop 10: 2
        return cls(**kw)

    def __init__(self, labels=data.LABELS, smooth: int = 3, threshold: float = 0.7,
                 release: float = 0.3, refractory: int = 4):
        self.labels = list(labels)
        self.keyword_idx = [i for i, l in enumerate(self.labels) if l in data.KEYWORDS]
        self.smooth, self.threshold, self.release, self.refractory = smooth, threshold, release, refractory
        self.history, self.quiet, self.armed = [], 0, {i: True for i in self.keyword_idx}

    def push(self, posteriors):
        """One window's posteriors (in `labels` order) -> the keyword fired now, or None."""
        self.history = (self.history + [np.asarray(posteriors, np.float64)])[-self.smooth:]
        p = np.mean(self.history, axis=0)
        self.smoothed = p
        for i in self.keyword_idx:
            if p[i] < self.release:
                self.armed[i] = True
        if self.quiet > 0:
            self.quiet -= 1
            return None
        best = max(self.keyword_idx, key=lambda i: p[i])
        if p[best] >= self.threshold and self.armed[best]:
            self.armed[best] = False
            self.quiet = self.refractory
            return self.labels[best]
        return None
