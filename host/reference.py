"""Float reference executor for the model IR (numpy, float64 internally).

This is the mathematical definition of every layer in the IR; importers are tested against the
source frameworks through it and the fixed-point compiler calibrates with it (``trace=True`` records
every intermediate vector the hardware will hold).
"""
from __future__ import annotations

import numpy as np

from .ir import FC, Flatten, GRUCell, LSTMCell, Model, ModelError, Recurrent


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softsign(x):
    return x / (1.0 + np.abs(x))


ACT_FN = {
    "none": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "softsign": softsign,
}


class Tracer:
    """Collects max |value| per named tensor (for calibration)."""

    def __init__(self):
        self.absmax = {}

    def __call__(self, name, value):
        m = float(np.max(np.abs(value))) if np.size(value) else 0.0
        self.absmax[name] = max(self.absmax.get(name, 0.0), m)
        return value


def _noop(name, value):
    return value


def gru_step(cell: GRUCell, x, h, tr=_noop, p=""):
    H = cell.hidden
    gx = x @ cell.w_x.T.astype(np.float64)  # [B, 3H]
    wh = cell.w_h.astype(np.float64)
    bx, bh = cell.b_x.astype(np.float64), cell.b_h.astype(np.float64)
    ru_pre = gx[:, :2 * H] + h @ wh[:2 * H].T + bx[:2 * H] + bh[:2 * H]
    tr(p + "ru_pre", ru_pre)
    r, u = np.split(sigmoid(ru_pre), 2, axis=1)
    if cell.reset_after:
        hn = h @ wh[2 * H:].T + bh[2 * H:]
        tr(p + "hn", hn)
        c_pre = gx[:, 2 * H:] + bx[2 * H:] + r * hn
    else:
        rh = r * h
        c_pre = gx[:, 2 * H:] + rh @ wh[2 * H:].T + bx[2 * H:] + bh[2 * H:]
    tr(p + "c_pre", c_pre)
    c = np.tanh(c_pre)
    h = u * h + (1.0 - u) * c
    return tr(p + "h", h)


def lstm_step(cell: LSTMCell, x, h, c, tr=_noop, p=""):
    H = cell.hidden
    z = x @ cell.w_x.T.astype(np.float64) + h @ cell.w_h.T.astype(np.float64) + cell.bias
    zi, zf, zg, zo = (z[:, k * H:(k + 1) * H] for k in range(4))
    zf = zf + cell.forget_bias
    if cell.peephole:
        zi = zi + cell.p_i * c
        zf = zf + cell.p_f * c
    tr(p + "gate_pre", np.concatenate([zi, zf, zg], axis=1))
    c = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zg)
    tr(p + "c", c)
    if cell.peephole:
        zo = zo + cell.p_o * c
    tr(p + "o_pre", zo)
    m = sigmoid(zo) * np.tanh(c)
    if cell.w_proj is not None:
        h = m @ cell.w_proj.T.astype(np.float64)
    else:
        h = m
    return tr(p + "h", h), c


def zero_state(cell, batch):
    return {k: np.zeros((batch, n)) for k, n in cell.state_sizes().items()}


def run_cell(cell, xs, reverse=False, state=None, tr=_noop, p=""):
    """xs [B, T, I] -> outputs [B, T, out], final state dict."""
    B, T, _ = xs.shape
    st = dict(state) if state is not None else zero_state(cell, B)
    out = np.zeros((B, T, cell.out_features))
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        if isinstance(cell, GRUCell):
            st["h"] = gru_step(cell, xs[:, t], st["h"], tr, p)
        else:
            st["h"], st["c"] = lstm_step(cell, xs[:, t], st["h"], st["c"], tr, p)
        out[:, t] = st["h"]
    return out, st


def run_float(model: Model, x, state=None, trace: "Tracer | None" = None, return_state=False):
    """Run the model on x [T, F] or [B, T, F]; returns [B, ...] (or unbatched if x was 2-D).

    state: dict layer-name -> per-cell state dicts (from a previous call with return_state=True)
    lets streaming callers continue a sequence.
    """
    x = np.asarray(x, dtype=np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != model.in_features:
        raise ModelError(f"{model.name}: input must be [B, T, {model.in_features}] or [T, {model.in_features}], "
                         f"got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ModelError(f"{model.name}: input contains NaN or Inf")
    tr = trace if trace is not None else _noop
    tr("input", x)
    new_state = {}
    y = x
    for layer in model.layers:
        if isinstance(layer, Flatten):
            y = y.reshape(y.shape[0], -1)
        elif isinstance(layer, FC):
            y = ACT_FN[layer.activation](y @ layer.weight.T.astype(np.float64) + layer.bias)
            tr(layer.name, y)
        elif isinstance(layer, Recurrent):
            st = (state or {}).get(layer.name, [None, None])
            if layer.bidirectional:
                of, sf = run_cell(layer.cell, y, False, st[0], tr, layer.name + ".fwd.")
                ob, sb = run_cell(layer.backward, y, True, st[1], tr, layer.name + ".bwd.")
                y = np.concatenate([of, ob], axis=2)
                new_state[layer.name] = [sf, sb]
            else:
                y, s = run_cell(layer.cell, y, layer.reverse, st[0], tr, layer.name + ".")
                new_state[layer.name] = [s, None]
            if not layer.return_sequences:
                y = y[:, -1]
        else:
            raise ModelError(f"unknown layer {layer!r}")
    if squeeze:
        y = y[0]
    return (y, new_state) if return_state else y
