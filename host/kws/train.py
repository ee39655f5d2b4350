"""Training of the keyword-spotting networks (Hello Edge GRU-S, basic LSTM, DNN) in PyTorch.

Features (:func:`load_features`)
    MFCC (:func:`rnnaccel.host.mfcc.mfcc`, the TF front end the accelerator's host computes) of the
    synthetic espeak-ng clips (:func:`rnnaccel.host.kws.data.generate`), computed once and cached as
    ``.npz`` beside the audio cache. The networks see *raw* MFCC, exactly what the accelerator gets.

Networks (all with the IR's conventions, so :func:`to_ir` is a plain copy)
    ``gru``   GRU 154 units, TensorFlow's reset-before cell (``ir.GRUCell(reset_after=False)``),
              last step -> FC 154->12 (Hello Edge GRU_S: 78,090 parameters);
    ``lstm``  basic LSTM 118 units (gates i, f, g, o; the forget bias is part of the stored bias,
              initialised to 1 as TF's forget_bias) -> FC 118->12 (Hello Edge Basic_LSTM_S), on the
              same 25 frames as the GRU (Basic_LSTM_S used 49 frames of stride 320: we keep one
              feature cache and the cheaper 25-step sequence);
    ``dnn``   Flatten 25x10 -> FC 250->144->144->144 ReLU -> FC 144->12 (Hello Edge DNN_S).

    Feature normalisation (per-coefficient mean / standard deviation of the training features) is a
    fixed re-parametrisation of the first layer: the networks hold weights for normalised inputs
    and :meth:`effective` folds the normalisation into the first layer's weights and bias, so every
    forward pass, the export and the quantisation work on the raw-MFCC weights.

Augmentation (on the fly, :class:`Augment`)
    Cepstral-domain equivalents of audio changes, drawn per clip: gain (an exact c0 offset),
    spectral tilt, and a vocal-tract-length warp (the log-mel envelope resampled at f/alpha, a 10x10
    matrix per alpha). They target what differs between the training voices and the held-out ones.

Quantisation-aware fine-tune
    The last ``qat_epochs`` epochs fake-quantise every weight matrix the way the compiler stores
    it (per gate ``[W_x | W_h]`` for the recurrent cells, whole matrices for FC) with the real
    NeuCompression encoder (``compression.encode`` / ``decode_float``, mode drawn per step from
    ``qat_bits``), with a straight-through estimator (:class:`FakeQuant`). The shipped model is
    fine-tuned at 4 bits: its float weights then sit near a 4-bit codebook and 8/16-bit rounding
    of them costs nothing measurable either.

Model files (:func:`save_model` / :func:`load_model_npz`)
    A float ``.npz``: every IR array (``L{i}.{field}``, ``L{i}.bwd.{field}``) plus ``header``, a
    JSON string with the architecture (layers), front end, labels, training config and accuracy.
    These two functions need numpy only (torch is imported lazily by the training code).

Everything random follows the seeds (torch.manual_seed, numpy Generators), so on CPU a run is
bit-for-bit repeatable for a given seed and thread count.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from .. import ir
from . import data

#: Front end of the shipped model (Hello Edge "S" models): 40 ms windows, 40 ms stride, 25 frames.
FRONTEND = ir.Frontend(window_size=640, stride=640)
ARCHS = ("gru", "lstm", "dnn")
LABELS = list(data.LABELS)
SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "gru_s.npz"
FILE_FORMAT = "rnnaccel-model-npz"
FILE_VERSION = 1

#: Training configuration of the shipped model (``rnnaccel kws train`` defaults).
DEFAULT_CONFIG = dict(
    arch="gru",
    n_train=24000,       # synthetic training clips (2000 blocks of 12 classes)
    n_val=1200,          # held-out-voice validation clips (model selection only)
    data_seed=0,         # seed of the synthetic data set
    seed=0,              # seed of initialisation, shuffling, augmentation
    epochs=30,           # total epochs, QAT epochs included
    qat_epochs=6,        # last epochs with fake-quantised weights (0: float training only)
    qat_bits=(4,),       # weight modes drawn per step during QAT (4-bit QAT keeps 8-bit exact too)
    qat_refit=1,         # refit the codebooks every this many steps (nearest entry in between)
    batch=128,
    lr=3e-3,
    weight_decay=1e-4,   # AdamW (decoupled), on weight matrices only
    dropout=0.1,         # on the classifier input
    gain_db=6.0,         # augmentation: random gain +-gain_db, applied to MFCC c0 exactly
    warp=0.12,           # augmentation: vocal-tract length (frequency) warp factor in 1 +- warp
    tilt=0.5,            # augmentation: spectral tilt, +-tilt nats of log mel at the band edges
    label_smoothing=0.1,
    clip_grad=5.0,
    max_abs_weight=None,  # optional clip of the (normalised-space) weights after each step
    val_bits=(8, 4),     # fixed-point modes reported on the validation set after each epoch
)


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------
def _frontend_tag(frontend: ir.Frontend) -> str:
    d = json.dumps(dataclasses.asdict(frontend), sort_keys=True)
    return hashlib.sha256(d.encode()).hexdigest()[:8]


def feature_cache_path(split, n, seed=0, frontend=FRONTEND, cache_dir=None) -> Path:
    audio_path = data.cache_path(split, n, seed, cache_dir)
    return audio_path.with_name(f"mfcc{frontend.frames}-{_frontend_tag(frontend)}_{audio_path.name}")


#: Audio sets up to this many clips are cached too (32 KB per clip); bigger ones only as MFCC.
AUDIO_CACHE_MAX = 6000


def load_features(split, n, seed=0, frontend=FRONTEND, cache_dir=None, progress=True):
    """MFCC features float32 [n, frames, dct_count] and labels int64 [n] of the synthetic ``split``.

    Cached under ``cache_dir`` (default ``data.default_cache_dir()``); ``cache_dir=False``
    disables every cache."""
    path = None if cache_dir is False else feature_cache_path(split, n, seed, frontend, cache_dir)
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return f["x"], f["labels"]
    audio_cache = cache_dir if (cache_dir is not False and n <= AUDIO_CACHE_MAX) else False
    audio, labels, _ = data.generate(split, n, seed=seed, cache_dir=audio_cache, progress=progress)
    from ..mfcc import mfcc
    x = mfcc(audio, frontend).astype(np.float32)
    del audio
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.savez(fh, x=x, labels=labels)
        os.replace(tmp, path)
    return x, labels


# --------------------------------------------------------------------------------------------------
# Networks (torch is imported on first use: model files load without it)
# --------------------------------------------------------------------------------------------------
_CLASSES = {}

#: c0 of the TF MFCC moves by this much per dB of input gain: the DCT's first row is sqrt(2/N)
#: everywhere, the mel channels are magnitudes (log gain = dB * ln(10) / 20).
C0_PER_DB = FRONTEND.num_channels * math.sqrt(2.0 / FRONTEND.num_channels) * math.log(10.0) / 20.0


def _mel_inv(m):
    return 700.0 * np.expm1(np.asarray(m, np.float64) / 1127.0)


def warp_matrices(alphas, frontend=FRONTEND):
    """[len(alphas), F, F] matrices M: ``mfcc @ M`` is the MFCC of the same sound with its spectral
    envelope moved from f to alpha*f (vocal-tract length perturbation, VTLP), computed in the
    cepstral domain: log mel envelope = mfcc @ pinv(DCT), resampled at the mel-channel centres
    f_k / alpha (linear interpolation, edges held), DCT again."""
    from ..mfcc import _freq_to_mel, dct_matrix
    ch = frontend.num_channels
    C = dct_matrix(ch, frontend.dct_count)
    Cp = np.linalg.pinv(C)
    mlo, mhi = _freq_to_mel(frontend.lower_hz), _freq_to_mel(frontend.upper_hz)
    spacing = (mhi - mlo) / (ch + 1)
    f = _mel_inv(mlo + spacing * (np.arange(ch) + 1))
    out = []
    for a in np.atleast_1d(alphas):
        pos = np.clip((_freq_to_mel(f / a) - mlo) / spacing - 1.0, 0.0, ch - 1.0)
        lo = np.minimum(np.floor(pos).astype(int), ch - 2)
        w = pos - lo
        W = np.zeros((ch, ch))
        W[np.arange(ch), lo] = 1.0 - w
        W[np.arange(ch), lo + 1] += w
        out.append(Cp @ W.T @ C)
    return np.stack(out)


def tilt_vector(frontend=FRONTEND):
    """MFCC change of a log-mel tilt of +1 nat at the top channel, -1 at the bottom."""
    from ..mfcc import dct_matrix
    ch = frontend.num_channels
    return np.linspace(-1.0, 1.0, ch) @ dct_matrix(ch, frontend.dct_count)


class Augment:
    """On-the-fly feature augmentation (exact or cepstral-domain equivalents of audio changes):
    gain (c0 offset), spectral tilt, vocal-tract length warp. Draws from the numpy Generator."""

    GRID = 33   # warp factors are drawn from this many values

    def __init__(self, cfg, frontend=FRONTEND):
        self.gain_db, self.tilt, self.warp = cfg["gain_db"], cfg["tilt"], cfg["warp"]
        self.alphas = np.linspace(1 - self.warp, 1 + self.warp, self.GRID) if self.warp else None
        self.M = warp_matrices(self.alphas, frontend).astype(np.float32) if self.warp else None
        self.tv = tilt_vector(frontend).astype(np.float32)

    def __call__(self, x, rng):
        """x float32 [B, T, F] -> augmented copy."""
        B = len(x)
        if self.warp:
            x = np.einsum("btf,bfg->btg", x, self.M[rng.integers(self.GRID, size=B)])
        else:
            x = x.copy()
        if self.tilt:
            x += (rng.uniform(-self.tilt, self.tilt, B).astype(np.float32)[:, None, None] * self.tv)
        if self.gain_db:
            x[:, :, 0] += (rng.uniform(-self.gain_db, self.gain_db, B) * C0_PER_DB).astype(np.float32)[:, None]
        return x


class FakeQuant:
    """Straight-through fake quantisation of torch matrices with the real NeuCompression encoder:
    forward value ``decode_float(encode(W, bits))``, gradient identity.

    Fitting a codebook (modes 6/4/2) costs ~0.1 s per GRU-S gate matrix, so with ``refit`` > 1 the
    codebooks (and the weight exponent) of each matrix ``key`` are refitted every ``refit`` calls
    only and in between the weights are assigned to the nearest entry of the last fit (the
    encoder's own assignment rule). Plain modes (16, 8) are always encoded exactly."""

    def __init__(self, bits, refit=1):
        self.bits, self.refit = int(bits), max(1, int(refit))
        self.fits, self.calls = {}, {}

    def values(self, key, W):
        from .. import spec
        from ..compression import _assign, decode_float, encode
        n = self.calls.get(key, 0)
        self.calls[key] = n + 1
        if self.bits not in spec.CODEBOOK_MODES or n % self.refit == 0 or key not in self.fits:
            enc = encode(W, self.bits)
            self.fits[key] = enc
            return decode_float(enc)
        enc = self.fits[key]
        cb = enc.codebooks.astype(np.int64)
        idx = _assign(W * 2.0 ** enc.frac_bits, cb, enc.group_rows)
        return cb[(np.arange(W.shape[0]) // enc.group_rows)[:, None], idx] * 2.0 ** -enc.frac_bits

    def __call__(self, key, W):
        import torch
        q = self.values(key, W.detach().double().cpu().numpy())
        return W + (torch.as_tensor(q, dtype=W.dtype, device=W.device) - W).detach()


def _quantizer(quant):
    return quant if (quant is None or isinstance(quant, FakeQuant)) else FakeQuant(quant)


def _classes():
    if _CLASSES:
        return _CLASSES
    import torch
    from torch import nn

    def uniform_(t, fan_in, fan_out):
        a = math.sqrt(6.0 / (fan_in + fan_out))   # Glorot uniform (TF's default initialiser)
        with torch.no_grad():
            t.uniform_(-a, a)
        return t

    class KWSNet(nn.Module):
        """Base: holds the normalisation (mu, 1/sd per MFCC coefficient) folded by effective()."""
        arch = None

        def __init__(self, mu, sd, in_features, steps, classes, dropout):
            super().__init__()
            sd = np.maximum(np.asarray(sd, np.float64), 1e-3)
            self.register_buffer("mu", torch.as_tensor(np.asarray(mu, np.float64), dtype=torch.float32))
            self.register_buffer("inv_sd", torch.as_tensor(1.0 / sd, dtype=torch.float32))
            self.in_features, self.steps, self.classes = in_features, steps, classes
            self.drop = nn.Dropout(dropout)

        def fold(self, w, b, mu, inv_sd):
            """Weights for normalised inputs -> weights and bias for raw inputs."""
            w_raw = w * inv_sd.to(w.dtype)
            return w_raw, b - w_raw @ mu.to(w.dtype)

        def forward(self, x, quant=None):
            return self.run(self.effective(quant), x)

        def fc_head(self, p, h):
            return self.drop(h) @ p["fc.weight"].T + p["fc.bias"]

    class GRUNet(KWSNet):
        """TensorFlow GRUCell (reset before the recurrent matmul), gate blocks (r, u, c)."""
        arch = "gru"

        def __init__(self, mu, sd, in_features=10, steps=25, hidden=154, classes=12, dropout=0.1):
            super().__init__(mu, sd, in_features, steps, classes, dropout)
            H, I = hidden, in_features
            self.hidden = H
            self.w_x = nn.Parameter(torch.empty(3 * H, I))
            self.w_h = nn.Parameter(torch.empty(3 * H, H))
            for k in range(3):   # TF: gates kernel [I+H, 2H], candidate kernel [I+H, H]
                fo = 2 * H if k < 2 else H
                uniform_(self.w_x.data[k * H:(k + 1) * H], I + H, fo)
                uniform_(self.w_h.data[k * H:(k + 1) * H], I + H, fo)
            self.b = nn.Parameter(torch.cat([torch.ones(2 * H), torch.zeros(H)]))  # TF gate bias 1.0
            self.fc_w = nn.Parameter(uniform_(torch.empty(classes, H), H, classes))
            self.fc_b = nn.Parameter(torch.zeros(classes))

        def effective(self, quant=None):
            H = self.hidden
            w_x, b = self.fold(self.w_x, self.b, self.mu, self.inv_sd)
            w_h, fc_w = self.w_h, self.fc_w
            fq = _quantizer(quant)
            if fq is not None:
                blocks = [fq(f"gru.{k}", torch.cat([w_x[k * H:(k + 1) * H], w_h[k * H:(k + 1) * H]], 1))
                          for k in range(3)]   # the compiler's matrices: [W_x | W_h] per gate
                w_x = torch.cat([m[:, :self.in_features] for m in blocks])
                w_h = torch.cat([m[:, self.in_features:] for m in blocks])
                fc_w = fq("fc", fc_w)
            return {"w_x": w_x, "w_h": w_h, "b_x": b, "fc.weight": fc_w, "fc.bias": self.fc_b}

        def run(self, p, x):
            H = self.hidden
            gx = x @ p["w_x"].T + p["b_x"]
            wh_ru, wh_c = p["w_h"][:2 * H], p["w_h"][2 * H:]
            h = x.new_zeros(x.shape[0], H)
            for t in range(x.shape[1]):
                r, u = torch.sigmoid(gx[:, t, :2 * H] + h @ wh_ru.T).chunk(2, 1)
                c = torch.tanh(gx[:, t, 2 * H:] + (r * h) @ wh_c.T)
                h = u * h + (1.0 - u) * c
            return self.fc_head(p, h)

        def layers(self, p):
            cell = ir.GRUCell(p["w_x"], p["w_h"], p["b_x"], None, reset_after=False, name="gru")
            return [ir.Recurrent(cell, return_sequences=False, name="gru"),
                    ir.FC(p["fc.weight"], p["fc.bias"], name="fc")]

    class LSTMNet(KWSNet):
        """Basic LSTM (no peepholes, no projection), gate blocks (i, f, g, o)."""
        arch = "lstm"

        def __init__(self, mu, sd, in_features=10, steps=25, hidden=118, classes=12, dropout=0.1):
            super().__init__(mu, sd, in_features, steps, classes, dropout)
            H, I = hidden, in_features
            self.hidden = H
            self.w_x = nn.Parameter(uniform_(torch.empty(4 * H, I), I + H, 4 * H))
            self.w_h = nn.Parameter(uniform_(torch.empty(4 * H, H), I + H, 4 * H))
            b = torch.zeros(4 * H)
            b[H:2 * H] = 1.0      # TF BasicLSTMCell forget_bias=1.0, here a trainable bias
            self.b = nn.Parameter(b)
            self.fc_w = nn.Parameter(uniform_(torch.empty(classes, H), H, classes))
            self.fc_b = nn.Parameter(torch.zeros(classes))

        def effective(self, quant=None):
            H = self.hidden
            w_x, b = self.fold(self.w_x, self.b, self.mu, self.inv_sd)
            w_h, fc_w = self.w_h, self.fc_w
            fq = _quantizer(quant)
            if fq is not None:
                blocks = [fq(f"lstm.{k}", torch.cat([w_x[k * H:(k + 1) * H], w_h[k * H:(k + 1) * H]], 1))
                          for k in range(4)]
                w_x = torch.cat([m[:, :self.in_features] for m in blocks])
                w_h = torch.cat([m[:, self.in_features:] for m in blocks])
                fc_w = fq("fc", fc_w)
            return {"w_x": w_x, "w_h": w_h, "bias": b, "fc.weight": fc_w, "fc.bias": self.fc_b}

        def run(self, p, x):
            H = self.hidden
            gx = x @ p["w_x"].T + p["bias"]
            h = x.new_zeros(x.shape[0], H)
            c = x.new_zeros(x.shape[0], H)
            for t in range(x.shape[1]):
                i, f, g, o = (gx[:, t] + h @ p["w_h"].T).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            return self.fc_head(p, h)

        def layers(self, p):
            cell = ir.LSTMCell(p["w_x"], p["w_h"], p["bias"], name="lstm")
            return [ir.Recurrent(cell, return_sequences=False, name="lstm"),
                    ir.FC(p["fc.weight"], p["fc.bias"], name="fc")]

    class DNNNet(KWSNet):
        """Flatten [T, F] (time-major) -> FC ReLU x3 -> FC."""
        arch = "dnn"

        def __init__(self, mu, sd, in_features=10, steps=25, hidden=(144, 144, 144), classes=12, dropout=0.1):
            super().__init__(mu, sd, in_features, steps, classes, dropout)
            sizes = [in_features * steps] + list(hidden)
            self.ws = nn.ParameterList(nn.Parameter(uniform_(torch.empty(o, i), i, o))
                                       for i, o in zip(sizes[:-1], sizes[1:]))
            self.bs = nn.ParameterList(nn.Parameter(torch.zeros(o)) for o in sizes[1:])
            self.fc_w = nn.Parameter(uniform_(torch.empty(classes, sizes[-1]), sizes[-1], classes))
            self.fc_b = nn.Parameter(torch.zeros(classes))

        def effective(self, quant=None):
            w0, b0 = self.fold(self.ws[0], self.bs[0], self.mu.repeat(self.steps), self.inv_sd.repeat(self.steps))
            ws, bs = [w0] + list(self.ws[1:]), [b0] + list(self.bs[1:])
            fc_w = self.fc_w
            fq = _quantizer(quant)
            if fq is not None:
                ws = [fq(f"fc{i + 1}", w) for i, w in enumerate(ws)]
                fc_w = fq("fc", fc_w)
            p = {f"fc{i + 1}.weight": w for i, w in enumerate(ws)}
            p.update({f"fc{i + 1}.bias": b for i, b in enumerate(bs)})
            p.update({"fc.weight": fc_w, "fc.bias": self.fc_b})
            return p

        def run(self, p, x):
            y = x.reshape(x.shape[0], -1)
            for i in range(len(self.ws)):
                y = torch.relu(y @ p[f"fc{i + 1}.weight"].T + p[f"fc{i + 1}.bias"])
            return self.fc_head(p, y)

        def layers(self, p):
            out = [ir.Flatten(name="flatten")]
            for i in range(len(self.ws)):
                out.append(ir.FC(p[f"fc{i + 1}.weight"], p[f"fc{i + 1}.bias"], "relu", name=f"fc{i + 1}"))
            return out + [ir.FC(p["fc.weight"], p["fc.bias"], name="fc")]

    _CLASSES.update(gru=GRUNet, lstm=LSTMNet, dnn=DNNNet)
    return _CLASSES


def make_net(arch, mu, sd, dropout=0.1, frontend=FRONTEND):
    """A freshly initialised network (uses torch's global RNG: seed it first)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r} (choose from {', '.join(ARCHS)})")
    return _classes()[arch](mu, sd, in_features=frontend.dct_count, steps=frontend.frames,
                            classes=len(LABELS), dropout=dropout)


NAMES = {"gru": "gru_s", "lstm": "basic_lstm_s", "dnn": "dnn_s"}


def to_ir(net, name=None, meta=None, frontend=FRONTEND, labels=LABELS) -> ir.Model:
    """The trained network as an IR Model on raw MFCC (normalisation folded), labels and front end set."""
    import torch
    with torch.no_grad():
        p = {k: v.detach().double().cpu().numpy() for k, v in net.effective(None).items()}
    return ir.Model(net.layers(p), net.in_features, steps=net.steps, name=name or NAMES[net.arch],
                    labels=list(labels), frontend=frontend, meta=dict(meta or {}))


# --------------------------------------------------------------------------------------------------
# Model files: float .npz + JSON header (numpy only)
# --------------------------------------------------------------------------------------------------
_CELL_ARRAYS = {"GRUCell": ("w_x", "w_h", "b_x", "b_h"),
                "LSTMCell": ("w_x", "w_h", "bias", "p_i", "p_f", "p_o", "w_proj")}


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _cell_to_npz(cell, prefix, arrays):
    kind = type(cell).__name__
    d = {"type": kind, "name": cell.name}
    if isinstance(cell, ir.GRUCell):
        d["reset_after"] = bool(cell.reset_after)
    else:
        d["forget_bias"] = float(cell.forget_bias)
    for k in _CELL_ARRAYS[kind]:
        v = getattr(cell, k)
        if v is not None:
            arrays[f"{prefix}.{k}"] = np.asarray(v, np.float32)
    return d


def save_model(model: ir.Model, path) -> int:
    """Write an IR model as a float32 ``.npz`` with a JSON ``header`` (see the module docstring).
    Returns the file size in bytes."""
    arrays, layers = {}, []
    for i, layer in enumerate(model.layers):
        p = f"L{i}"
        if isinstance(layer, ir.FC):
            layers.append({"type": "FC", "name": layer.name, "activation": layer.activation})
            arrays[p + ".weight"] = layer.weight.astype(np.float32)
            arrays[p + ".bias"] = layer.bias.astype(np.float32)
        elif isinstance(layer, ir.Recurrent):
            d = {"type": "Recurrent", "name": layer.name, "reverse": bool(layer.reverse),
                 "return_sequences": bool(layer.return_sequences),
                 "cell": _cell_to_npz(layer.cell, p, arrays)}
            if layer.backward is not None:
                d["backward"] = _cell_to_npz(layer.backward, p + ".bwd", arrays)
            layers.append(d)
        elif isinstance(layer, ir.Flatten):
            layers.append({"type": "Flatten", "name": layer.name})
        else:
            raise ir.ModelError(f"{getattr(layer, 'name', layer)}: cannot save layer type {type(layer).__name__}")
    header = {"format": FILE_FORMAT, "version": FILE_VERSION, "name": model.name,
              "in_features": model.in_features, "steps": model.steps,
              "labels": list(model.labels) if model.labels is not None else None,
              "frontend": dataclasses.asdict(model.frontend) if model.frontend is not None else None,
              "layers": layers, "meta": model.meta}
    arrays["header"] = np.array(json.dumps(header, default=_json_default, sort_keys=True))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, path)
    return path.stat().st_size


def _cell_from_npz(d, prefix, z, where):
    kind = d.get("type")
    if kind not in _CELL_ARRAYS:
        raise ir.ModelError(f"{where}: unknown cell type {kind!r}")
    kw = {k: z[f"{prefix}.{k}"] for k in _CELL_ARRAYS[kind] if f"{prefix}.{k}" in z}
    if kind == "GRUCell":
        return ir.GRUCell(reset_after=bool(d.get("reset_after", False)), name=d.get("name", "gru"), **kw)
    return ir.LSTMCell(forget_bias=float(d.get("forget_bias", 0.0)), name=d.get("name", "lstm"), **kw)


def load_model_npz(path, name=None) -> ir.Model:
    """Read a model written by :func:`save_model` (``name`` overrides the stored name)."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise ir.ModelError(f"{path}: not a readable .npz file ({e})") from None
    with z:
        if "header" not in z:
            raise ir.ModelError(f"{path}: no 'header' entry: not an rnnaccel model file "
                                f"(written by rnnaccel.host.kws.train.save_model)")
        try:
            h = json.loads(str(z["header"]))
        except json.JSONDecodeError as e:
            raise ir.ModelError(f"{path}: header is not valid JSON ({e})") from None
        if h.get("format") != FILE_FORMAT:
            raise ir.ModelError(f"{path}: header format {h.get('format')!r}, expected {FILE_FORMAT!r}")
        if int(h.get("version", 0)) > FILE_VERSION:
            raise ir.ModelError(f"{path}: file version {h['version']} is newer than this reader "
                                f"({FILE_VERSION})")
        layers = []
        try:
            for i, d in enumerate(h["layers"]):
                p, where = f"L{i}", f"{path}: layer {i}"
                t = d.get("type")
                if t == "FC":
                    layers.append(ir.FC(z[p + ".weight"], z[p + ".bias"], d.get("activation", "none"),
                                        name=d.get("name", "fc")))
                elif t == "Recurrent":
                    bwd = _cell_from_npz(d["backward"], p + ".bwd", z, where) if d.get("backward") else None
                    layers.append(ir.Recurrent(_cell_from_npz(d["cell"], p, z, where), bwd,
                                               reverse=bool(d.get("reverse", False)),
                                               return_sequences=bool(d.get("return_sequences", True)),
                                               name=d.get("name", "rnn")))
                elif t == "Flatten":
                    layers.append(ir.Flatten(name=d.get("name", "flatten")))
                else:
                    raise ir.ModelError(f"{where}: unknown layer type {t!r}")
        except KeyError as e:
            raise ir.ModelError(f"{path}: missing entry {e} (file truncated or not written by save_model)") from None
    fe = ir.Frontend(**h["frontend"]) if h.get("frontend") else None
    meta = dict(h.get("meta") or {})
    meta.setdefault("path", str(path))
    return ir.Model(layers, int(h["in_features"]), steps=h.get("steps"), name=name or h.get("name", path.stem),
                    labels=h.get("labels"), frontend=fe, meta=meta)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def _fixed_point_accuracy(model, x, y, calib, modes):
    from .evaluate import predict
    return {str(b): float(np.mean(predict(model, x, b, calib) == y)) for b in modes}


def train(config=None, progress=True, log=None, cache_dir=None, features=None, threads=2):
    """Train one network. Returns ``(net, info)``; info holds the config, the per-epoch history
    and timings. ``features``: optional ``{"train": (x, y), "val": (x, y)}`` instead of loading.

    Deterministic for a given config (seeds) and thread count on CPU."""
    import torch
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    if cfg["arch"] not in ARCHS:
        raise ValueError(f"unknown architecture {cfg['arch']!r} (choose from {', '.join(ARCHS)})")
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    torch.set_num_threads(threads)
    t0 = time.time()
    if features is None:
        features = {"train": load_features("train", cfg["n_train"], cfg["data_seed"], cache_dir=cache_dir,
                                           progress=progress)}
        if cfg["n_val"]:
            features["val"] = load_features("val", cfg["n_val"], cfg["data_seed"], cache_dir=cache_dir,
                                            progress=progress)
    xtr, ytr = features["train"]
    xva, yva = features.get("val", (None, None))
    t_data = time.time() - t0

    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng([cfg["seed"], 0x6B7773])
    mu, sd = xtr.astype(np.float64).mean((0, 1)), xtr.astype(np.float64).std((0, 1))
    net = make_net(cfg["arch"], mu, sd, dropout=cfg["dropout"])
    decay = [p for p in net.parameters() if p.ndim == 2]      # weight matrices
    other = [p for p in net.parameters() if p.ndim != 2]      # biases
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": other, "weight_decay": 0.0}], lr=cfg["lr"])
    epochs, batch = int(cfg["epochs"]), int(cfg["batch"])
    qat_epochs = min(int(cfg["qat_epochs"]), max(0, epochs - 1))
    steps_per_epoch = -(-len(xtr) // batch)
    total = max(1, epochs * steps_per_epoch)
    warm = min(steps_per_epoch, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warm, 1)) *
                                              (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
    calib = xtr[:N_CALIB_TRAIN]
    xtr = np.ascontiguousarray(xtr, np.float32)
    augment = Augment(cfg)
    yt_all = torch.from_numpy(np.asarray(ytr, np.int64))
    quantizers = {int(b): FakeQuant(b, cfg["qat_refit"]) for b in cfg["qat_bits"]}
    history = []
    from tqdm import tqdm
    for epoch in range(epochs):
        qat = epoch >= epochs - qat_epochs
        net.train()
        perm = rng.permutation(len(xtr))
        qbits = rng.choice(np.asarray(cfg["qat_bits"]), steps_per_epoch) if qat else None
        tot_loss, correct = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg['arch']} epoch {epoch + 1}/{epochs}" + (" qat" if qat else ""),
                   unit="batch", disable=not progress, file=sys.stderr, leave=False)
        for s in bar:
            idx = perm[s * batch:(s + 1) * batch]
            xb = torch.from_numpy(augment(xtr[idx], rng))
            yb = yt_all[idx]
            out = net(xb, quantizers[int(qbits[s])] if qat else None)
            loss = torch.nn.functional.cross_entropy(out, yb, label_smoothing=cfg["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["clip_grad"]:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["clip_grad"])
            opt.step()
            sched.step()
            if cfg["max_abs_weight"]:
                with torch.no_grad():
                    for p in decay:
                        p.clamp_(-cfg["max_abs_weight"], cfg["max_abs_weight"])
            tot_loss += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            if s % 20 == 0:
                bar.set_postfix(loss=f"{tot_loss / ((s + 1) * batch):.3f}")
        bar.close()
        rec = {"epoch": epoch + 1, "qat": qat, "loss": tot_loss / len(xtr), "train_acc": correct / len(xtr),
               "lr": sched.get_last_lr()[0], "seconds": round(time.time() - t0, 1)}
        if xva is not None:
            net.eval()
            model = to_ir(net)
            rec["val"] = _fixed_point_accuracy(model, xva, yva, calib, ["float"] + list(cfg["val_bits"]))
        history.append(rec)
        log(f"epoch {epoch + 1:3d}/{epochs}{' qat' if qat else '    '} loss {rec['loss']:.4f} "
            f"train {100 * rec['train_acc']:.2f}%" +
            ("".join(f"  val[{k}] {100 * v:.2f}%" for k, v in rec.get("val", {}).items())) +
            f"  ({rec['seconds']:.0f} s)")
    net.eval()
    info = {"config": cfg, "history": history, "seconds_data": round(t_data, 1),
            "seconds_total": round(time.time() - t0, 1), "threads": threads,
            "torch": torch.__version__, "n_train": int(len(xtr)),
            "n_val": int(len(xva)) if xva is not None else 0}
    return net, info


N_CALIB_TRAIN = 300   # calibration features for the per-epoch fixed-point validation


def train_and_save(config=None, out=None, progress=True, evaluate_test=True, log=None, cache_dir=None):
    """Train, export to IR (header: config, history, val/test accuracy), save; returns (model, info)."""
    from .evaluate import N_TEST, TEST_SEED, evaluate
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    net, info = train(config, progress=progress, log=log, cache_dir=cache_dir)
    cfg = info["config"]
    meta = {"source": "rnnaccel.host.kws.train", "architecture": cfg["arch"],
            "training": {k: v for k, v in info.items() if k != "history"},
            "history": info["history"]}
    model = to_ir(net, meta=meta)
    if info["history"] and "val" in info["history"][-1]:
        meta["accuracy"] = {"val": info["history"][-1]["val"]}
    if evaluate_test:
        r = evaluate(model, N_TEST, TEST_SEED, modes=("float", 16, 8, 6, 4, 2), progress=progress,
                     cache_dir=cache_dir)
        meta.setdefault("accuracy", {})["test"] = {k: v["accuracy"] for k, v in r["results"].items()}
        meta["accuracy"]["test_set"] = {"split": "test", "n": N_TEST, "seed": TEST_SEED}
        log("test accuracy: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in meta["accuracy"]["test"].items()))
    model.meta = meta
    if out is not None:
        size = save_model(model, out)
        log(f"saved {out} ({size:,} bytes)")
    return model, info
