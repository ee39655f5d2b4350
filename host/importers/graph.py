"""What the ONNX and PyTorch importers share: an abstract interpreter value
(:class:`Act`) for "a tensor computed from the model input", which records the IR layers that
produce it and what each of its axes means (batch, time, direction, features). Framework graphs
shuffle axes around recurrent layers (transpose to time-major, merge directions, take the last
step); following those operations on :class:`Act` values, instead of matching node names, is what
lets an importer accept any equivalent spelling and reject what the IR cannot express.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from ..ir import FC, Flatten, Model, ModelError, Recurrent


# --------------------------------------------------------------------------------------------------
# Shared graph-interpretation machinery
# --------------------------------------------------------------------------------------------------

# Axis roles. Input axes start as "?0", "?1" (role unknown) and are bound to B or T by the first
# operation that needs to know (a recurrent layer, a flatten over time).
BATCH, TIME, FEAT, DIR, UNIT = "B", "T", "F", "D", "1"


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity (holds numpy arrays)
class Act:
    """A tensor computed from the model input.

    layers: IR layers that produce it; axes: one label per tensor axis (raw, resolve with
    Tracer.role); feat: IR features per step (None until the first layer fixes the input width);
    ndir: size of the D axis, which is the major part of the IR feature index when present.
    """
    layers: tuple
    axes: tuple
    feat: Optional[int]
    ndir: int = 1


@dataclasses.dataclass(frozen=True)
class Bad:
    """A value the IR cannot represent (e.g. a backward RNN's final state); an error only if used."""
    reason: str


class Tracer:
    """Builds the IR layer chain while a framework graph is interpreted on Act values."""

    def __init__(self, in_features=None, steps=None):
        self.in_features = in_features
        self.steps = steps
        self.bind = {}      # "?k" -> B or T
        self.static = {}    # "?k" -> static size from the framework, if known
        self.rank = 0

    # ---- axes ------------------------------------------------------------------------------------

    def input(self, rank, static=()):
        """The model input: rank 2 ([T, F] or [B, F]) or 3 ([B, T, F] or [T, B, F]), features last."""
        if rank not in (2, 3):
            raise ModelError(f"model input must be 2-D or 3-D with features last, got rank {rank}")
        self.rank = rank
        axes = tuple(f"?{i}" for i in range(rank - 1)) + (FEAT,)
        for i, s in enumerate(static[:rank - 1]):
            self.static[f"?{i}"] = s
        return Act((), axes, self.in_features)

    def role(self, label):
        return self.bind.get(label, label)

    def roles(self, a):
        return [self.role(x) for x in a.axes]

    def _bind(self, label, role, what):
        if self.role(label) == role:
            return
        if not label.startswith("?") or label in self.bind or role in self.bind.values():
            raise ModelError(f"{what}: axis {self.role(label)} used as {role}")
        self.bind[label] = role
        if role == TIME and self.steps is None:
            self.steps = self.static.get(label)

    def size(self, a, label):
        role = self.role(label)
        if role == UNIT:
            return 1
        if role == DIR:
            return a.ndir
        if role == FEAT:
            return None if a.feat is None else a.feat // a.ndir
        if label.startswith("?"):
            return self.static.get(label)
        return self.steps if role == TIME else None

    def shape(self, a):
        """Shape of an Act: ints where known, else the raw axis label (a symbolic size)."""
        out = []
        for x in a.axes:
            s = self.size(a, x)
            out.append(x if s is None or x.startswith("?") or self.role(x) in (BATCH, TIME) else s)
        return out

    def permute(self, a, perm):
        return dataclasses.replace(a, axes=tuple(a.axes[p] for p in perm))

    def unsqueeze(self, a, axes):
        out = list(a.axes)
        for ax in sorted(_norm_axes(axes, len(out) + len(axes))):
            out.insert(ax, UNIT)
        return dataclasses.replace(a, axes=tuple(out))

    def squeeze(self, a, axes, what):
        if axes is None:
            axes = [i for i, x in enumerate(a.axes) if self.role(x) == UNIT]
        axes = _norm_axes(axes, len(a.axes))
        for ax in axes:
            if self.role(a.axes[ax]) != UNIT:
                raise ModelError(f"{what}: cannot squeeze axis {ax} ({self.role(a.axes[ax])}), "
                                 f"it is not size 1")
        return dataclasses.replace(a, axes=tuple(x for i, x in enumerate(a.axes) if i not in axes))

    def flatten(self, a, start, end, what):
        """Merge axes start..end (inclusive), as torch.flatten."""
        n = len(a.axes)
        start, end = _norm_axes([start, end], n)
        groups = [[x] for x in a.axes[:start]] + [list(a.axes[start:end + 1])] + \
            [[x] for x in a.axes[end + 1:]]
        return self._regroup(a, groups, what)

    def reshape(self, a, target, what, zero_copies=True):
        """Reshape to target (ints, -1, 0 = copy when zero_copies, or axis labels from a shape)."""
        roles = self.roles(a)
        tgt = []
        for i, t in enumerate(target):
            if isinstance(t, str):
                t = self.role(t)
            elif int(t) == 0 and zero_copies:
                if i >= len(roles):
                    raise ModelError(f"{what}: reshape copies axis {i} of a rank-{len(roles)} tensor")
                t = a.axes[i] if roles[i] != UNIT else 1
                t = self.role(t) if isinstance(t, str) else t
            else:
                t = int(t)
            tgt.append(UNIT if t == 1 else t)
        src = [(x, self.size(a, x)) for x in a.axes if self.role(x) != UNIT]  # size-1 axes carry nothing
        if tgt.count(-1) > 1:
            raise ModelError(f"{what}: reshape target {list(target)} has several -1")
        k = tgt.index(-1) if -1 in tgt else len(tgt)
        left, src = self._match(tgt[:k], src, what, target)
        right, src = self._match(tgt[k + 1:][::-1], src[::-1], what, target)
        src = src[::-1]
        if k == len(tgt) and src:
            raise ModelError(f"{what}: reshape to {list(target)} drops axes {[self.role(x) for x, _ in src]}")
        middle = [[x for x, _ in src]] if k < len(tgt) else []
        return self._regroup(a, left + middle + right[::-1], what)

    def _match(self, targets, src, what, target):
        """Consume src axes left to right for each target size; returns (groups, rest)."""
        groups, i = [], 0
        for t in targets:
            if t == UNIT:
                groups.append([])
            elif isinstance(t, str):
                if i < len(src) and self.role(src[i][0]) == t:
                    groups.append([src[i][0]])
                    i += 1
                else:
                    raise ModelError(f"{what}: cannot map reshape to {list(target)} onto axes "
                                     f"{[self.role(x) for x, _ in src]}")
            else:
                g, n = [], 1
                while n < t and i < len(src) and src[i][1] is not None:
                    g.append(src[i][0])
                    n *= src[i][1]
                    i += 1
                if n != t:
                    raise ModelError(f"{what}: cannot map reshape to {list(target)} onto axes "
                                     f"{[self.role(x) for x, _ in src]}")
                groups.append(g)
        return groups, src[i:]

    def _regroup(self, a, groups, what):
        """Each group of consecutive axes becomes one axis; merging is only allowed where the IR has
        a meaning for it: [D, F] -> F (directions concatenated), [T, (D,) F] -> Flatten layer."""
        axes, layers, feat, ndir = [], a.layers, a.feat, a.ndir
        for g in groups:
            g = [x for x in g if self.role(x) != UNIT]
            roles = [self.role(x) for x in g]
            if len(g) <= 1:
                axes.append(g[0] if g else UNIT)
                continue
            if roles[-1] != FEAT:
                raise ModelError(f"{what}: merging axes {''.join(roles)} is not expressible "
                                 f"(only [D,F] directions and [T,F] flatten)")
            rest = roles[:-1]
            if rest and rest[-1] == DIR:
                ndir, rest = 1, rest[:-1]
            if len(rest) == 1:
                if rest[0] not in (TIME,) and not rest[0].startswith("?"):
                    raise ModelError(f"{what}: merging axes {''.join(roles)} is not expressible "
                                     f"(only [D,F] directions and [T,F] flatten)")
                self._bind(g[0], TIME, what)
                if self.steps is None:
                    raise ModelError(f"{what}: flattening time needs a fixed number of steps")
                layers = layers + (Flatten(name=layer_name(what, "flatten")),)
                feat = None if feat is None else feat * self.steps  # None: the next layer's width tells
            elif rest:
                raise ModelError(f"{what}: merging axes {''.join(roles)} is not expressible")
            axes.append(FEAT)
        return Act(layers, tuple(axes), feat, ndir)

    def bind_roles(self, a, want, what):
        """Require a's axes to be want (e.g. "TBF"), binding unknown input axes; returns raw labels."""
        roles = self.roles(a)
        if len(roles) != len(want):
            raise ModelError(f"{what}: expects a {len(want)}-D input ({want}), got axes {''.join(roles)}")
        for x, r, w in zip(a.axes, roles, want):
            if r != w:
                if not r.startswith("?"):
                    raise ModelError(f"{what}: expects input axes {want}, got {''.join(roles)}")
                self._bind(x, w, what)
        return a.axes

    # ---- layers ----------------------------------------------------------------------------------

    def _fix_feat(self, a, n, what):
        """The first layer fixes the model input width; later ones must match."""
        if a.feat is None:
            flat = [x for x in a.layers if not isinstance(x, Flatten)]
            if flat:
                raise ModelError(f"{what}: input width unknown")
            width = n
            if a.layers:  # input -> Flatten -> this layer
                if self.steps is None or n % self.steps:
                    raise ModelError(f"{what}: {n} inputs after flatten is not a multiple of "
                                     f"steps={self.steps}")
                width = n // self.steps
            self.in_features = width
            return dataclasses.replace(a, feat=n)
        if a.feat != n:
            raise ModelError(f"{what}: expects {n} input features, got {a.feat}")
        return a

    def _features_last(self, a, what):
        roles = self.roles(a)
        if roles[-1] != FEAT or DIR in roles:
            raise ModelError(f"{what}: needs the features on the last axis, got axes {''.join(roles)}")

    def linear(self, a, w, b, what):
        """y = x W^T + b over the last axis; W [out, in]."""
        self._features_last(a, what)
        w = np.asarray(w, np.float32)
        a = self._fix_feat(a, w.shape[1], what)
        fc = FC(w, b, name=layer_name(what, "fc"))
        return dataclasses.replace(a, layers=a.layers + (fc,), feat=fc.out_features)

    def add_bias(self, a, c, what):
        """x + c, c broadcast along the features: folded into the preceding FC's bias."""
        c = np.asarray(c, np.float32)
        if c.size == 1:
            vec = np.full(a.feat, c.item(), np.float32)
        else:
            self._features_last(a, what)
            if c.ndim > len(a.axes) or c.shape[-1] != a.feat or any(s != 1 for s in c.shape[:-1]):
                raise ModelError(f"{what}: can only add a per-feature constant, got shape {c.shape}")
            vec = c.reshape(-1)
        last = a.layers[-1] if a.layers else None
        if isinstance(last, FC) and last.activation == "none":
            fc = dataclasses.replace(last, bias=last.bias + vec)
            return dataclasses.replace(a, layers=a.layers[:-1] + (fc,))
        return self._identity(a, vec, "none", what)

    def activation(self, a, kind, what):
        """Elementwise activation: fused into the preceding FC, else an identity FC carries it."""
        last = a.layers[-1] if a.layers else None
        if isinstance(last, FC) and last.activation == "none":
            fc = dataclasses.replace(last, activation=kind)
            return dataclasses.replace(a, layers=a.layers[:-1] + (fc,))
        return self._identity(a, None, kind, what)

    def _identity(self, a, bias, kind, what):
        if a.feat is None:
            raise ModelError(f"{what}: {kind} on the raw input needs in_features")
        fc = FC(np.eye(a.feat, dtype=np.float32), bias, kind, name=layer_name(what, "identity"))
        return dataclasses.replace(a, layers=a.layers + (fc,))

    def recurrent(self, a, layer, want, what):
        """Append a Recurrent layer; want is its input layout ("TBF" or "BTF")."""
        self.bind_roles(a, want, what)
        a = self._fix_feat(a, layer.in_features, what)
        return dataclasses.replace(a, layers=a.layers + (layer,), feat=layer.out_features)

    def last_step(self, a, axis, keep, what):
        """Index the last time step on axis: the last Recurrent returns its last step only (the FCs
        after it act per step, so they commute with the indexing)."""
        axis = _norm_axes([axis], len(a.axes))[0]
        if self.role(a.axes[axis]) != TIME:
            raise ModelError(f"{what}: indexes axis {axis} ({self.role(a.axes[axis])}); only the last "
                             f"time step of a recurrent layer's output can be selected")
        layers = a.layers
        for k in range(len(layers) - 1, -1, -1):
            layer = layers[k]
            if isinstance(layer, Recurrent) and layer.return_sequences:
                layers = layers[:k] + (dataclasses.replace(layer, return_sequences=False),) + layers[k + 1:]
                break
            if not isinstance(layer, FC):
                raise ModelError(f"{what}: cannot take the last step after {layer.name}")
        else:
            raise ModelError(f"{what}: taking the last time step needs a recurrent layer before it")
        axes = list(a.axes)
        if keep:
            axes[axis] = UNIT
        else:
            del axes[axis]
        return dataclasses.replace(a, layers=layers, axes=tuple(axes))

    # ---- result ----------------------------------------------------------------------------------

    def layout(self, axes):
        """Axis roles as a string, unknown input axes defaulting to [B, T, F] / [T, F]."""
        default = {"?0": BATCH, "?1": TIME} if self.rank == 3 else {"?0": TIME}
        unbound = [x for x in default if x not in self.bind]
        taken = set(self.bind.values())
        if len(unbound) == 1 and taken:  # the one left is whatever role is free
            default[unbound[0]] = ({BATCH, TIME} - taken).pop()
        return "".join(self.role(x) if not self.role(x).startswith("?") else default[x] for x in axes)

    def model(self, a, name, meta=None):
        if not isinstance(a, Act):
            raise ModelError(f"{name}: the model output is not computed from the input")
        if self.in_features is None:
            raise ModelError(f"{name}: cannot tell the input width; pass in_features")
        layers = _unique_names(a.layers)
        inp = self.layout([f"?{i}" for i in range(self.rank - 1)] + [FEAT])
        steps = self.steps if TIME in inp else None
        meta = dict(meta or {}, input_layout=inp, output_layout=self.layout(a.axes))
        return Model(list(layers), self.in_features, steps=steps, name=name, meta=meta)


def _norm_axes(axes, rank):
    out = []
    for ax in axes:
        ax = int(ax)
        if not -rank <= ax < rank:
            raise ModelError(f"axis {ax} out of range for rank {rank}")
        out.append(ax % rank)
    return out


def layer_name(what, kind="layer"):
    """Layer name from an importer's description "<node or module name> (<op>)": "/fc/Gemm (Gemm)"
    -> "fc/Gemm". Every Tracer method takes such a `what` for both naming and error messages."""
    n = str(what).rsplit(" (", 1)[0].strip("/")
    return n or kind


def _unique_names(layers):
    seen, out = {}, []
    for layer in layers:
        n = layer.name
        if n in seen:
            seen[n] += 1
            layer = dataclasses.replace(layer, name=f"{n}_{seen[n]}")
        else:
            seen[n] = 0
        out.append(layer)
    return out
