"""TensorFlow's ``AudioSpectrogram`` + ``Mfcc`` ops in numpy (the Hello Edge feature front end).

Follows TensorFlow's C++ kernels (spectrogram.cc, mfcc.cc, mfcc_mel_filterbank.cc, mfcc_dct.cc)
step by step, so the features match what the frozen graphs feed their networks:

* frames of ``window_size`` samples every ``stride`` samples, no padding: a partial window at the end
  is dropped (so ``frames = 1 + (n - window) // stride``);
* periodic Hann window ``0.5 - 0.5 cos(2 pi i / window)``, zero-padded to ``fft_size`` (the next
  power of two), power spectrum ``|X|^2`` of ``fft_size/2 + 1`` bins (double precision, rounded to
  float32 because that is the op's output type and what ``Mfcc`` reads);
* ``Mfcc``: square root (back to magnitude), TF's mel filterbank, ``log(max(x, 1e-12))``, DCT-II
  ``sqrt(2/N) cos(pi i (j + 0.5) / N)``, first ``dct_count`` coefficients, float32 output.

TF's filterbank is not librosa's: it excludes DC and everything outside
[int(1.5 + lower/hz_per_bin), int(upper/hz_per_bin)], with ``hz_per_bin = (sample_rate/2) / (bins-1)``,
and splits each bin between the two mel channels whose centres surround it (linear in mel), with
the outermost half-triangles hanging off the lower/upper limits.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .ir import Frontend, ModelError

FILTERBANK_FLOOR = 1e-12
CHUNK_CLIPS = 128  # clips per vectorised batch: ~50 MB of temporaries at 49 frames of 640 samples


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def to_float_audio(audio) -> np.ndarray:
    """int16 PCM -> float in [-1, 1) exactly as TF DecodeWav (x / 32768); float audio passes through."""
    a = np.asarray(audio)
    if a.dtype == np.int16:
        return a.astype(np.float64) / 32768.0
    if not np.issubdtype(a.dtype, np.floating):
        raise ModelError(f"audio: expected int16 or float samples, got dtype {a.dtype}")
    # DecodeWav hands the spectrogram float32 samples.
    return a.astype(np.float32).astype(np.float64)


def fit_clip(audio, frontend: Frontend) -> np.ndarray:
    """Zero-pad or truncate the last axis to ``frontend.clip_samples`` (DecodeWav desired_samples)."""
    a = np.asarray(audio)
    n = frontend.clip_samples
    if a.shape[-1] >= n:
        return a[..., :n]
    pad = [(0, 0)] * (a.ndim - 1) + [(0, n - a.shape[-1])]
    return np.pad(a, pad)


def num_frames(n_samples: int, frontend: Frontend) -> int:
    if n_samples < frontend.window_size:
        return 0
    return 1 + (n_samples - frontend.window_size) // frontend.stride


def _check(frontend: Frontend):
    if frontend.fft_size < frontend.window_size:
        raise ModelError(f"frontend: fft_size {frontend.fft_size} < window_size {frontend.window_size}")
    if frontend.fft_size != next_pow2(frontend.window_size):
        # TF always uses the next power of two; anything else would not reproduce the graph.
        raise ModelError(f"frontend: fft_size {frontend.fft_size} is not the next power of two of "
                         f"window_size {frontend.window_size} ({next_pow2(frontend.window_size)}), "
                         "which is what TensorFlow's AudioSpectrogram uses")
    if frontend.stride < 1:
        raise ModelError(f"frontend: stride must be >= 1, got {frontend.stride}")
    if frontend.dct_count > frontend.num_channels:
        raise ModelError(f"frontend: dct_count {frontend.dct_count} > num_channels {frontend.num_channels}")


@lru_cache(maxsize=32)
def hann_periodic(window_size: int) -> np.ndarray:
    i = np.arange(window_size)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * i / window_size)


def _freq_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


@lru_cache(maxsize=32)
def mel_matrix(bins: int, sample_rate: float, channels: int, lower_hz: float, upper_hz: float) -> np.ndarray:
    """[bins, channels] weights of TF's MfccMelFilterbank (mel = magnitude @ W)."""
    mel_low, mel_hi = _freq_to_mel(lower_hz), _freq_to_mel(upper_hz)
    spacing = (mel_hi - mel_low) / (channels + 1)
    # channels + 1 centres: the extra top one is the upper edge of the last triangle.
    centers = mel_low + spacing * (np.arange(channels + 1) + 1)
    hz_per_bin = 0.5 * sample_rate / (bins - 1)
    start = int(1.5 + lower_hz / hz_per_bin)  # always excludes DC (HTK)
    end = int(upper_hz / hz_per_bin)
    W = np.zeros((bins, channels))
    for i in range(start, min(end, bins - 1) + 1):
        melf = _freq_to_mel(i * hz_per_bin)
        # band = channel whose right-hand (falling) slope holds this bin; -1 below the first centre.
        band = int(np.searchsorted(centers[:channels], melf, side="left")) - 1
        if band >= 0:
            w = (centers[band + 1] - melf) / (centers[band + 1] - centers[band])
        else:
            w = (centers[0] - melf) / (centers[0] - mel_low)
        if band >= 0:
            W[i, band] += w
        if band + 1 < channels:
            W[i, band + 1] += 1.0 - w  # rising slope of the next channel
    return W


@lru_cache(maxsize=32)
def dct_matrix(channels: int, count: int) -> np.ndarray:
    """[channels, count] DCT-II basis scaled by sqrt(2/N) (TF MfccDct, no special c0 scaling)."""
    i = np.arange(count)[None, :]
    j = np.arange(channels)[:, None]
    return np.sqrt(2.0 / channels) * np.cos(i * (np.pi / channels) * (j + 0.5))


def frame_signal(x: np.ndarray, frontend: Frontend) -> np.ndarray:
    """[..., n] -> [..., frames, window] strided view (no copy)."""
    n = x.shape[-1]
    t = num_frames(n, frontend)
    if t == 0:
        return np.zeros(x.shape[:-1] + (0, frontend.window_size))
    win = np.lib.stride_tricks.sliding_window_view(x, frontend.window_size, axis=-1)
    return win[..., :(t - 1) * frontend.stride + 1:frontend.stride, :]


def power_spectrum(frames: np.ndarray, frontend: Frontend) -> np.ndarray:
    """[..., window] float samples -> [..., fft/2+1] float32 |FFT|^2 (AudioSpectrogram output)."""
    spec = np.fft.rfft(frames * hann_periodic(frontend.window_size), n=frontend.fft_size, axis=-1)
    return (spec.real ** 2 + spec.imag ** 2).astype(np.float32)


def spectrum_to_mfcc(power: np.ndarray, frontend: Frontend) -> np.ndarray:
    """[..., bins] float32 power spectrum -> [..., dct_count] float32 (TF Mfcc op)."""
    W = mel_matrix(power.shape[-1], float(frontend.sample_rate), frontend.num_channels,
                   float(frontend.lower_hz), float(frontend.upper_hz))
    flat = power.reshape(-1, power.shape[-1])  # 2-D matmuls: numpy's stacked matmul is much slower
    mel = np.sqrt(flat.astype(np.float64)) @ W
    logmel = np.log(np.maximum(mel, FILTERBANK_FLOOR))
    out = logmel @ dct_matrix(frontend.num_channels, frontend.dct_count)
    return out.astype(np.float32).reshape(power.shape[:-1] + (frontend.dct_count,))


def mfcc(audio, frontend: Frontend) -> np.ndarray:
    """Audio [n] (or a batch [B, n]) -> float32 features [frames, dct_count] (or [B, frames, dct_count]).

    audio: int16 PCM or float in [-1, 1]. No padding/truncation: use ``fit_clip`` first to get
    exactly what a graph with DecodeWav(desired_samples) sees.
    """
    _check(frontend)
    a = np.asarray(audio)
    if a.ndim not in (1, 2):
        raise ModelError(f"audio: expected [n] or [B, n] samples, got shape {a.shape}")
    if a.ndim == 2 and len(a) > CHUNK_CLIPS:  # bound the float64/complex temporaries
        return np.concatenate([mfcc(a[i:i + CHUNK_CLIPS], frontend) for i in range(0, len(a), CHUNK_CLIPS)])
    x = to_float_audio(a)
    return spectrum_to_mfcc(power_spectrum(frame_signal(x, frontend), frontend), frontend)


class MfccStream:
    """Incremental MFCC: push audio as it arrives, get each frame as soon as its window is complete.

    Produces the same frames as ``mfcc`` on the concatenated audio (TF's Spectrogram queue logic:
    first frame after ``window_size`` samples, then one every ``stride`` samples).
    """

    def __init__(self, frontend: Frontend):
        _check(frontend)
        self.frontend = frontend
        self.reset()

    def reset(self):
        self._buf = np.zeros(0)
        self._skip = 0  # samples still to drop before the next window (stride > window)
        self.frames_out = 0

    def push(self, samples) -> list:
        """Append samples (int16 or float); returns a list of new float32 [dct_count] frames."""
        x = to_float_audio(np.ravel(samples))
        drop = min(self._skip, len(x))
        self._skip -= drop
        self._buf = np.concatenate([self._buf, x[drop:]])
        fe = self.frontend
        t = num_frames(len(self._buf), fe)
        if t == 0:
            return []
        feats = mfcc(self._buf, fe)  # _buf is already float64 from [-1, 1]
        # Keep only the samples the next window still needs.
        self._skip = max(0, t * fe.stride - len(self._buf))
        self._buf = self._buf[t * fe.stride:]
        self.frames_out += t
        return list(feats)
