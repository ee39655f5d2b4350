"""Model IR: the small, typed description every importer produces and the compiler consumes.

A model is a list of layers applied to an input sequence ``x[T, F]`` (or a batch ``[B, T, F]``).
Weights are float32 numpy arrays in one canonical convention, whatever framework they came from:

* matrices are ``[out, in]`` (PyTorch ``nn.Linear`` layout);
* GRU gate blocks are ordered (r, u, c): reset, update, candidate (PyTorch calls u "z" and c "n");
* LSTM gate blocks are ordered (i, f, g, o): input, forget, cell candidate, output.

Layers see either a sequence ``[T, F]`` or a single vector ``[F]``; ``FC`` applies per time step to a
sequence (time-distributed), recurrent layers need a sequence, ``Flatten`` turns ``[T, F]`` into
``[T*F]`` (the Hello Edge DNN).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

ACTIVATIONS = ("none", "relu", "sigmoid", "tanh", "softsign")


class ModelError(ValueError):
    """A model that cannot be represented or run: the message names the layer/node and the reason."""


def _f32(a, name, shape=None):
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float32)
    if shape is not None and a.shape != tuple(shape):
        raise ModelError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ModelError(f"{name}: contains NaN or Inf")
    return a


# --------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------

@dataclass
class FC:
    """y = act(W x + b); W [out, in]."""
    weight: np.ndarray
    bias: Optional[np.ndarray] = None
    activation: str = "none"
    name: str = "fc"

    def __post_init__(self):
        self.weight = _f32(self.weight, f"{self.name}.weight")
        if self.weight.ndim != 2:
            raise ModelError(f"{self.name}.weight: expected 2-D [out, in], got {self.weight.shape}")
        if self.bias is None:
            self.bias = np.zeros(self.weight.shape[0], np.float32)
        self.bias = _f32(self.bias, f"{self.name}.bias", (self.weight.shape[0],))
        if self.activation not in ACTIVATIONS:
            raise ModelError(f"{self.name}: activation {self.activation!r} not supported "
                             f"(supported: {', '.join(ACTIVATIONS)})")

    @property
    def in_features(self):
        return self.weight.shape[1]

    @property
    def out_features(self):
        return self.weight.shape[0]


@dataclass
class GRUCell:
    """GRU cell, gate blocks (r, u, c) in w_x [3H, I], w_h [3H, H], b_x [3H], b_h [3H].

    reset_after=False (TensorFlow GRUCell, ONNX linear_before_reset=0):
        c = tanh(Wx_c x + Wh_c (r*h) + bx_c + bh_c)
    reset_after=True (PyTorch nn.GRU, ONNX linear_before_reset=1):
        c = tanh(Wx_c x + bx_c + r*(Wh_c h + bh_c))
    both: r = sig(Wx_r x + Wh_r h + b_r), u likewise, h' = u*h + (1-u)*c.
    """
    w_x: np.ndarray
    w_h: np.ndarray
    b_x: Optional[np.ndarray] = None
    b_h: Optional[np.ndarray] = None
    reset_after: bool = False
    name: str = "gru"

    def __post_init__(self):
        self.w_x = _f32(self.w_x, f"{self.name}.w_x")
        H3 = self.w_x.shape[0]
        if self.w_x.ndim != 2 or H3 % 3:
            raise ModelError(f"{self.name}.w_x: expected [3H, I], got {self.w_x.shape}")
        H = H3 // 3
        self.w_h = _f32(self.w_h, f"{self.name}.w_h", (3 * H, H))
        self.b_x = _f32(np.zeros(3 * H) if self.b_x is None else self.b_x, f"{self.name}.b_x", (3 * H,))
        self.b_h = _f32(np.zeros(3 * H) if self.b_h is None else self.b_h, f"{self.name}.b_h", (3 * H,))

    @property
    def hidden(self):
        return self.w_h.shape[1]

    @property
    def in_features(self):
        return self.w_x.shape[1]

    @property
    def out_features(self):
        return self.hidden

    state_names = ("h",)

    def state_sizes(self):
        return {"h": self.hidden}


@dataclass
class LSTMCell:
    """LSTM cell, gate blocks (i, f, g, o) in w_x [4H, I], w_h [4H, R], bias [4H].

    R = H, or P with a projection w_proj [P, H] (TensorFlow LSTMCell num_proj).
    forget_bias is added to the f pre-activation at run time (TensorFlow's forget_bias=1.0).
    Peepholes (TensorFlow use_peepholes): p_i, p_f see the previous cell state, p_o the new one.
        i = sig(.. + p_i*c)   f = sig(.. + forget_bias + p_f*c)   g = tanh(..)
        c' = f*c + i*g        o = sig(.. + p_o*c')                m = o*tanh(c')
        h' = w_proj m (projection) or m
    """
    w_x: np.ndarray
    w_h: np.ndarray
    bias: Optional[np.ndarray] = None
    forget_bias: float = 0.0
    p_i: Optional[np.ndarray] = None
    p_f: Optional[np.ndarray] = None
    p_o: Optional[np.ndarray] = None
    w_proj: Optional[np.ndarray] = None
    name: str = "lstm"

    def __post_init__(self):
        self.w_x = _f32(self.w_x, f"{self.name}.w_x")
        H4 = self.w_x.shape[0]
        if self.w_x.ndim != 2 or H4 % 4:
            raise ModelError(f"{self.name}.w_x: expected [4H, I], got {self.w_x.shape}")
        H = H4 // 4
        self.w_proj = _f32(self.w_proj, f"{self.name}.w_proj")
        if self.w_proj is not None and (self.w_proj.ndim != 2 or self.w_proj.shape[1] != H):
            raise ModelError(f"{self.name}.w_proj: expected [P, {H}], got {self.w_proj.shape}")
        R = H if self.w_proj is None else self.w_proj.shape[0]
        self.w_h = _f32(self.w_h, f"{self.name}.w_h", (4 * H, R))
        self.bias = _f32(np.zeros(4 * H) if self.bias is None else self.bias, f"{self.name}.bias", (4 * H,))
        peeps = [self.p_i, self.p_f, self.p_o]
        if any(p is not None for p in peeps) and not all(p is not None for p in peeps):
            raise ModelError(f"{self.name}: peepholes need all three of p_i, p_f, p_o")
        self.p_i = _f32(self.p_i, f"{self.name}.p_i", (H,))
        self.p_f = _f32(self.p_f, f"{self.name}.p_f", (H,))
        self.p_o = _f32(self.p_o, f"{self.name}.p_o", (H,))
        self.forget_bias = float(self.forget_bias)

    @property
    def hidden(self):
        return self.w_x.shape[0] // 4

    @property
    def peephole(self):
        return self.p_i is not None

    @property
    def in_features(self):
        return self.w_x.shape[1]

    @property
    def out_features(self):
        return self.w_h.shape[1]

    state_names = ("h", "c")

    def state_sizes(self):
        return {"h": self.out_features, "c": self.hidden}


Cell = Union[GRUCell, LSTMCell]


@dataclass
class Recurrent:
    """A recurrent layer over a sequence: one cell (forward or reverse) or two (bidirectional).

    Output per step is the cell output h (forward), or [h_fwd, h_bwd] for bidirectional.
    return_sequences=False keeps the last time step's output only (out[T-1], as PyTorch's out[:, -1]).
    """
    cell: Cell
    backward: Optional[Cell] = None
    reverse: bool = False
    return_sequences: bool = True
    name: str = "rnn"

    def __post_init__(self):
        if self.backward is not None:
            if type(self.backward) is not type(self.cell) or \
                    self.backward.in_features != self.cell.in_features or \
                    self.backward.out_features != self.cell.out_features:
                raise ModelError(f"{self.name}: bidirectional cells must have the same type and sizes")
            if self.reverse:
                raise ModelError(f"{self.name}: reverse=True and a backward cell are exclusive")

    @property
    def bidirectional(self):
        return self.backward is not None

    @property
    def in_features(self):
        return self.cell.in_features

    @property
    def out_features(self):
        return self.cell.out_features * (2 if self.bidirectional else 1)

    def cells(self):
        return [self.cell] + ([self.backward] if self.backward is not None else [])


@dataclass
class Flatten:
    """[T, F] -> [T*F] (time-major), e.g. the Hello Edge DNN's input."""
    name: str = "flatten"


Layer = Union[FC, Recurrent, Flatten]


@dataclass
class Frontend:
    """Audio feature front end the model was trained with (TensorFlow AudioSpectrogram + Mfcc)."""
    sample_rate: int = 16000
    window_size: int = 640
    stride: int = 320
    fft_size: int = 1024
    num_channels: int = 40
    lower_hz: float = 20.0
    upper_hz: float = 4000.0
    dct_count: int = 10
    clip_samples: int = 16000

    @property
    def frames(self):
        return 1 + (self.clip_samples - self.window_size) // self.stride


@dataclass
class Model:
    layers: list
    in_features: int
    steps: Optional[int] = None  # fixed sequence length, or None (any / streaming)
    name: str = "model"
    labels: Optional[list] = None
    frontend: Optional[Frontend] = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        # Layer names key calibration and state: make them unique (fc, fc_1, fc_2, ...).
        seen = set()
        for layer in self.layers:
            base, k = layer.name, 0
            while layer.name in seen:
                k += 1
                layer.name = f"{base}_{k}"
            seen.add(layer.name)
        self.validate()

    def validate(self):
        """Check that the layer sizes chain; raises ModelError naming the offending layer."""
        feat, seq = self.in_features, True
        for layer in self.layers:
            if isinstance(layer, Flatten):
                if not seq:
                    raise ModelError(f"{layer.name}: Flatten needs a sequence input")
                if self.steps is None:
                    raise ModelError(f"{layer.name}: Flatten needs a fixed number of steps (Model.steps)")
                feat, seq = feat * self.steps, False
                continue
            if layer.in_features != feat:
                raise ModelError(f"{layer.name}: expects {layer.in_features} inputs, "
                                 f"previous layer gives {feat}")
            if isinstance(layer, Recurrent):
                if not seq:
                    raise ModelError(f"{layer.name}: recurrent layer needs a sequence input")
                seq = layer.return_sequences
            elif not isinstance(layer, FC):
                raise ModelError(f"{getattr(layer, 'name', layer)}: unknown layer type {type(layer).__name__}")
            feat = layer.out_features
        self.out_features, self.sequence_output = feat, seq

    @property
    def streamable(self):
        """Can run one step at a time with persistent state (no backward pass, no flatten)."""
        for layer in self.layers:
            if isinstance(layer, Flatten):
                return False
            if isinstance(layer, Recurrent) and (layer.bidirectional or layer.reverse):
                return False
        return True

    def summary(self):
        rows = []
        for layer in self.layers:
            if isinstance(layer, FC):
                n = layer.weight.size + layer.bias.size
                rows.append((layer.name, f"FC {layer.in_features}->{layer.out_features} {layer.activation}", n))
            elif isinstance(layer, Recurrent):
                c = layer.cell
                kind = type(c).__name__.replace("Cell", "")
                extra = []
                if isinstance(c, GRUCell):
                    extra.append("reset-after" if c.reset_after else "reset-before")
                else:
                    if c.peephole:
                        extra.append("peephole")
                    if c.w_proj is not None:
                        extra.append(f"proj {c.w_proj.shape[0]}")
                    if c.forget_bias:
                        extra.append(f"forget_bias {c.forget_bias:g}")
                if layer.bidirectional:
                    extra.append("bidirectional")
                if layer.reverse:
                    extra.append("reverse")
                if not layer.return_sequences:
                    extra.append("last step")
                n = sum(cell_param_count(cc) for cc in layer.cells())
                rows.append((layer.name, f"{kind} {c.in_features}->{c.hidden} " + " ".join(extra), n))
            else:
                rows.append((layer.name, "Flatten", 0))
        return rows

    @property
    def param_count(self):
        return sum(r[2] for r in self.summary())


def cell_param_count(cell):
    """Parameters the source framework stores: a GRU's second bias counts only when it is used
    (TensorFlow's GRUCell has one bias, PyTorch's nn.GRU two)."""
    arrays = [getattr(cell, k, None) for k in ("w_x", "w_h", "b_x", "bias", "p_i", "p_f", "p_o", "w_proj")]
    b_h = getattr(cell, "b_h", None)
    if isinstance(b_h, np.ndarray) and np.any(b_h):
        arrays.append(b_h)
    return int(sum(a.size for a in arrays if isinstance(a, np.ndarray)))
