"""ONNX -> rnnaccel IR.

The graph is interpreted node by node on abstract values (see ``importers.Act``): constants are
folded with onnx's reference evaluator, shapes of the data tensor are symbolic, and every op on the
data tensor either maps to IR layers or is rejected. So the shape glue exporters put around RNNs
(PyTorch's Transpose/Reshape to merge directions, Gather to take the last step, Expand of a zero
initial state) is understood by what it computes, not by its node names.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import GRUCell, LSTMCell, ModelError, Recurrent
from .graph import DIR, FEAT, UNIT, Act, Bad, Tracer, layer_name

SUPPORTED = ("GRU", "LSTM", "Gemm", "MatMul", "Add", "Sub", "Relu", "Sigmoid", "Tanh", "Softsign",
             "Div/Abs (as softsign x/(1+|x|))", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
             "Gather", "Slice", "Shape", "Concat", "Constant", "ConstantOfShape", "Expand", "Cast",
             "Identity", "Dropout")
_ACT = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softsign": "softsign"}
_BIG = 2 ** 62  # Slice ends at or beyond this mean "to the end"


@dataclasses.dataclass(frozen=True)
class Sym:
    """A shape-like int vector (or scalar) with symbolic entries: axis labels of the data tensor."""
    items: tuple
    scalar: bool = False


@dataclasses.dataclass(frozen=True)
class Fill:
    """A tensor of one constant value whose shape depends on the input (e.g. a zero initial state)."""
    value: float


@dataclasses.dataclass(frozen=True)
class Stacked:
    """Data tensors concatenated along a size-1 axis (PyTorch's h_n of stacked RNNs): only
    gathering one of them back is expressible."""
    parts: tuple
    axis: int


@dataclasses.dataclass(frozen=True, eq=False)
class AbsPlus:
    """|x| + c for a data tensor x: half of softsign, which PyTorch exports as x / (1 + |x|)."""
    x: Act
    c: float


def from_onnx(model, name=None):
    """Import an ONNX model (path or ModelProto) into a Model.

    Model.meta records input_layout/output_layout ("BTF", "TBF", "BF", ...): how the ONNX input
    and output axes map to run_float's [B, T, F] / [B, F].
    """
    proto, label = _load(model)
    g = proto.graph
    from onnx import numpy_helper

    vals = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in vals]
    if len(inputs) != 1:
        raise ModelError(f"{label}: expected exactly one data input, got {[i.name for i in inputs]}")
    if len(g.output) != 1:
        raise ModelError(f"{label}: expected exactly one output, got {[o.name for o in g.output]}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if not dims:
        raise ModelError(f"{label}: input {inputs[0].name!r} has no shape")
    tr = Tracer(in_features=dims[-1])
    vals[inputs[0].name] = tr.input(len(dims), dims[:-1])
    opsets = {o.domain or "": o.version for o in proto.opset_import}
    for i, node in _live_nodes(g):
        what = f"{node.name or f'{node.op_type}_{i}'} ({node.op_type})"
        ins = []
        for x in node.input:
            if x and x not in vals:
                raise ModelError(f"ONNX node {what}: input {x!r} is not produced by any node")
            ins.append(vals[x] if x else None)
        outs = _run_node(tr, node, ins, what, opsets)
        for o, v in zip(node.output, outs):
            if o:
                vals[o] = v
    out = vals.get(g.output[0].name)
    if isinstance(out, Bad):
        raise ModelError(f"{label}: {out.reason}")
    return tr.model(out, name or g.name or "onnx_model", meta={"source": "onnx"})


def _load(model):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model, model.graph.name or "onnx model"
    try:
        proto = onnx.load(str(model))
    except Exception as e:  # protobuf raises DecodeError, onnx its own errors: all mean "not ONNX"
        raise ModelError(f"{model}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not proto.graph.node:
        raise ModelError(f"{model}: not a readable ONNX model (empty graph)")
    return proto, str(model)


def _live_nodes(g):
    """Nodes the graph output depends on (unused branches, e.g. an RNN's Y_h, are not interpreted)."""
    need = {o.name for o in g.output}
    live = []
    for i in range(len(g.node) - 1, -1, -1):
        node = g.node[i]
        if any(o in need for o in node.output):
            live.append((i, node))
            need.update(x for x in node.input if x)
    return live[::-1]


def _attrs(node):
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _run_node(tr, node, ins, what, opsets):
    if node.op_type == "Concat" and any(isinstance(v, Bad) for v in ins):
        return [next(v for v in ins if isinstance(v, Bad))]  # an error only if the result is used
    for v in ins:
        if isinstance(v, Bad):
            raise ModelError(f"ONNX node {what}: {v.reason}")
    if node.domain not in ("", "ai.onnx"):
        raise ModelError(f"ONNX node {what}: custom op domain {node.domain!r} not "
                         f"supported; supported ops: {', '.join(SUPPORTED)}")
    at = _attrs(node)
    if all(v is None or isinstance(v, np.ndarray) for v in ins) and node.op_type not in ("GRU", "LSTM"):
        return _fold(node, ins, what, opsets)
    handler = _HANDLERS.get(node.op_type)
    if handler is None:
        raise ModelError(f"ONNX node {what}: op not supported on the model's data path; "
                         f"supported ops: {', '.join(SUPPORTED)}")
    return handler(tr, ins, at, what)


def _fold(node, ins, what, opsets):
    """Constant folding: every input is known, so just evaluate the node."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{k}" if v is not None else "" for k, v in enumerate(ins)]
    n = helper.make_node(node.op_type, names, [f"out{k}" for k in range(len(node.output))],
                         domain=node.domain)
    n.attribute.extend(node.attribute)
    try:
        res = ReferenceEvaluator(n, opsets={"": opsets.get("", 13)}).run(
            None, {nm: v for nm, v in zip(names, ins) if nm})
    except Exception as e:
        raise ModelError(f"ONNX node {what}: cannot evaluate on constants ({e}); "
                         f"supported ops: {', '.join(SUPPORTED)}") from None
    return [np.asarray(r) for r in res]


# ---- helpers ------------------------------------------------------------------------------------

def _const(v, what, role):
    if not isinstance(v, np.ndarray):
        raise ModelError(f"{what}: {role} must be a constant (initializer)")
    return v


def _ints(v, what, role):
    return [int(x) for x in np.asarray(_const(v, what, role)).reshape(-1)]


def _arg(ins, k, at, key, what, default=None):
    """An operand that moved from attribute to input across opsets (axes, starts, ...)."""
    if len(ins) > k and ins[k] is not None:
        return _ints(ins[k], what, key)
    return at.get(key, default)


def _sym(items, scalar=False):
    """Back to a plain constant once every entry is known."""
    if all(isinstance(x, (int, np.integer)) for x in items):
        return np.array(items[0] if scalar else list(items), np.int64)
    return Sym(tuple(items), scalar)


def _sym_items(v, what):
    if isinstance(v, Sym):
        return list(v.items)
    return [int(x) for x in np.asarray(_const(v, what, "shape")).reshape(-1)]


# ---- shape glue ---------------------------------------------------------------------------------

def _identity(tr, ins, at, what):
    return [ins[0], Bad(f"{what}: the dropout mask is not supported")]


def _dropout(tr, ins, at, what):
    if len(ins) > 2 and ins[2] is not None and bool(np.asarray(_const(ins[2], what, "training_mode"))):
        raise ModelError(f"{what}: dropout in training mode")
    return _identity(tr, ins, at, what)


def _shape(tr, ins, at, what):
    x = ins[0]
    if not isinstance(x, Act):
        raise ModelError(f"{what}: shape of a {type(x).__name__} value")
    items = tr.shape(x)
    return [_sym(items[at.get("start", 0):at.get("end", len(items))])]


def _gather(tr, ins, at, what):
    x, idx = ins[0], _const(ins[1], what, "indices")
    axis = at.get("axis", 0)
    if isinstance(x, Sym):
        items = [x.items[int(i)] for i in idx.reshape(-1)]
        return [_sym(items, scalar=idx.ndim == 0)]
    if isinstance(x, Stacked) and axis % (len(x.parts[0].axes)) == x.axis and idx.size == 1:
        part = x.parts[int(idx.reshape(-1)[0])]
        return [part if idx.ndim else tr.squeeze(part, [x.axis], what)]
    if isinstance(x, Act):
        if tr.role(x.axes[axis]) == UNIT and idx.size == 1 and int(idx.reshape(-1)[0]) in (0, -1):
            return [x if idx.ndim else tr.squeeze(x, [axis], what)]
        return [_pick_last(tr, x, axis, idx, what)]
    raise ModelError(f"{what}: gather from a {type(x).__name__} value")


def _pick_last(tr, x, axis, idx, what):
    """Gather on the data tensor: only the last time step is expressible."""
    i = int(idx.reshape(-1)[0]) if idx.size == 1 else None
    last = i == -1 or (tr.steps is not None and i == tr.steps - 1)
    if idx.ndim > 1 or not last:
        raise ModelError(f"{what}: gathers indices {idx.tolist()} on axis {axis}; only the last "
                         f"time step (-1) of a recurrent layer's output is expressible")
    return tr.last_step(x, axis, keep=idx.ndim == 1, what=what)


def _unsqueeze(tr, ins, at, what):
    x, axes = ins[0], _arg(ins, 1, at, "axes", what)
    if isinstance(x, Sym):
        if not x.scalar or list(axes) != [0]:
            raise ModelError(f"{what}: unsqueeze of a shape vector")
        return [Sym(x.items)]
    if isinstance(x, Act):
        return [tr.unsqueeze(x, axes)]
    raise ModelError(f"{what}: unsqueeze of a {type(x).__name__} value")


def _squeeze(tr, ins, at, what):
    x, axes = ins[0], _arg(ins, 1, at, "axes", what)
    if isinstance(x, Sym):
        if len(x.items) != 1 or x.scalar:
            raise ModelError(f"{what}: squeeze of a shape vector")
        return [Sym(x.items, scalar=True)]
    if isinstance(x, Act):
        return [tr.squeeze(x, axes, what)]
    raise ModelError(f"{what}: squeeze of a {type(x).__name__} value")


def _concat(tr, ins, at, what):
    if all(isinstance(v, Act) for v in ins):
        axis = at.get("axis", 0)
        if all(tr.role(v.axes[axis]) == UNIT for v in ins):
            return [Stacked(tuple(ins), axis % len(ins[0].axes))]
    if any(isinstance(v, (Act, Fill, Stacked)) for v in ins):
        raise ModelError(f"{what}: concatenating data tensors is not expressible")
    items = []
    for v in ins:
        items += _sym_items(v, what)
    return [_sym(items)]


def _slice(tr, ins, at, what):
    x = ins[0]
    starts, ends = _arg(ins, 1, at, "starts", what), _arg(ins, 2, at, "ends", what)
    axes = _arg(ins, 3, at, "axes", what, list(range(len(starts))))
    steps = _arg(ins, 4, at, "steps", what, [1] * len(starts))
    if isinstance(x, Sym):
        if len(starts) != 1 or x.scalar:
            raise ModelError(f"{what}: slice of a shape vector")
        return [_sym(list(x.items)[slice(starts[0], None if ends[0] >= _BIG else ends[0], steps[0])])]
    if not isinstance(x, Act):
        raise ModelError(f"{what}: slice of a {type(x).__name__} value")
    for s, e, ax, st in zip(starts, ends, axes, steps):
        n = tr.size(x, x.axes[ax])
        if st == 1 and s == 0 and (e >= _BIG or (n is not None and e >= n)):
            continue  # the whole axis
        if st == 1 and e >= _BIG and (s == -1 or (n is not None and s == n - 1)):
            x = tr.last_step(x, ax, keep=True, what=what)
            continue
        raise ModelError(f"{what}: slice [{s}:{e}:{st}] on axis {ax} ({tr.role(x.axes[ax])}) is not "
                         f"expressible; only the last time step can be selected")
    return [x]


def _reshape(tr, ins, at, what):
    x = ins[0]
    if not isinstance(x, Act):
        raise ModelError(f"{what}: reshape of a {type(x).__name__} value")
    target = _sym_items(ins[1], what)
    return [tr.reshape(x, target, what, zero_copies=not at.get("allowzero", 0))]


def _transpose(tr, ins, at, what):
    x = ins[0]
    if not isinstance(x, Act):
        raise ModelError(f"{what}: transpose of a {type(x).__name__} value")
    perm = at.get("perm", list(range(len(x.axes)))[::-1])
    return [tr.permute(x, perm)]


def _flatten(tr, ins, at, what):
    x = ins[0]
    if not isinstance(x, Act):
        raise ModelError(f"{what}: flatten of a {type(x).__name__} value")
    axis = at.get("axis", 1)
    axis += len(x.axes) if axis < 0 else 0  # ONNX Flatten: axis in [-r, r]
    if axis == 0:
        return [tr.flatten(tr.unsqueeze(x, [0]), 1, -1, what)]
    x = tr.flatten(x, axis, -1, what) if axis < len(x.axes) else tr.unsqueeze(x, [len(x.axes)])
    return [tr.flatten(x, 0, -2, what) if axis > 1 else x]


def _expand(tr, ins, at, what):
    x, shape = ins[0], ins[1]
    if isinstance(x, np.ndarray) and isinstance(shape, Sym) and x.size and np.all(x == x.reshape(-1)[0]):
        return [Fill(float(x.reshape(-1)[0]))]
    raise ModelError(f"{what}: expand is only supported for a constant fill (an initial state)")


def _constant_of_shape(tr, ins, at, what):
    v = at.get("value")
    from onnx import numpy_helper

    return [Fill(float(numpy_helper.to_array(v).reshape(-1)[0]) if v is not None else 0.0)]


def _cast(tr, ins, at, what):
    return [ins[0]]


# ---- layers -------------------------------------------------------------------------------------

def _data_and_const(ins, what):
    """(data Act, constant, constant came first) for a binary op."""
    a, b = ins[0], ins[1]
    if isinstance(a, Act) and isinstance(b, np.ndarray):
        return a, b, False
    if isinstance(b, Act) and isinstance(a, np.ndarray):
        return b, a, True
    raise ModelError(f"{what}: needs one data input and one constant, got "
                     f"{type(a).__name__} and {type(b).__name__}")


def _gemm(tr, ins, at, what):
    x = ins[0]
    if not isinstance(x, Act) or at.get("transA", 0):
        raise ModelError(f"{what}: needs the data tensor as A with transA=0")
    if len(x.axes) != 2:
        raise ModelError(f"{what}: A must be 2-D, got axes {''.join(tr.roles(x))}")
    w = _const(ins[1], what, "B").astype(np.float64)
    w = (w if at.get("transB", 0) else w.T) * at.get("alpha", 1.0)
    x = tr.linear(x, w, None, what)
    if len(ins) > 2 and ins[2] is not None:
        x = tr.add_bias(x, _const(ins[2], what, "C") * at.get("beta", 1.0), what)
    return [x]


def _matmul(tr, ins, at, what):
    x, w, const_first = _data_and_const(ins, what)
    if const_first or w.ndim != 2:
        raise ModelError(f"{what}: only data @ W with a 2-D constant W is supported")
    return [tr.linear(x, w.T, None, what)]


def _add(tr, ins, at, what):
    a = next((v for v in ins if isinstance(v, AbsPlus)), None)
    c = next((v for v in ins if isinstance(v, np.ndarray)), None)
    if a is not None and c is not None and c.size and np.all(c == c.reshape(-1)[0]):
        return [AbsPlus(a.x, a.c + float(c.reshape(-1)[0]))]
    x, c, _ = _data_and_const(ins, what)
    return [tr.add_bias(x, c, what)]


def _abs(tr, ins, at, what):
    if not isinstance(ins[0], Act):
        raise ModelError(f"{what}: abs of a {type(ins[0]).__name__} value")
    return [AbsPlus(ins[0], 0.0)]


def _div(tr, ins, at, what):
    """x / (1 + |x|) on the same tensor x is softsign; nothing else divides the data."""
    x, d = ins[0], ins[1]
    if isinstance(d, AbsPlus) and d.x is x and d.c == 1.0:
        return [tr.activation(x, "softsign", what)]
    raise ModelError(f"{what}: division is only supported as softsign x / (1 + |x|)")


def _sub(tr, ins, at, what):
    x, c, const_first = _data_and_const(ins, what)
    if const_first:
        raise ModelError(f"{what}: constant - data is not supported")
    return [tr.add_bias(x, -c, what)]


def _activation(kind):
    def run(tr, ins, at, what):
        if not isinstance(ins[0], Act):
            raise ModelError(f"{what}: activation of a {type(ins[0]).__name__} value")
        return [tr.activation(ins[0], kind, what)]
    return run


def _blocks(a, order, H):
    """Reorder gate blocks of H rows (ONNX order -> canonical order)."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order], axis=0)


def _rnn_common(ins, at, what, n_states, default_acts):
    """Checks shared by GRU and LSTM; returns (x, W, R, B, H, directions)."""
    x = ins[0]
    if not isinstance(x, Act):
        raise ModelError(f"{what}: the input sequence must be the model's data tensor")
    W = _const(ins[1], what, "W").astype(np.float64)
    R = _const(ins[2], what, "R").astype(np.float64)
    B = ins[3] if len(ins) > 3 else None
    if len(ins) > 4 and ins[4] is not None:
        raise ModelError(f"{what}: sequence_lens is not supported")
    for k in range(5, 5 + n_states):
        v = ins[k] if len(ins) > k else None
        if v is not None and not (isinstance(v, Fill) and v.value == 0) and \
                not (isinstance(v, np.ndarray) and not np.any(v)):
            raise ModelError(f"{what}: only a zero initial state is supported")
    direction = at.get("direction", "forward")
    nd = 2 if direction == "bidirectional" else 1
    H = at.get("hidden_size", R.shape[-1])
    if "clip" in at:
        raise ModelError(f"{what}: clip is not supported")
    if "activation_alpha" in at or "activation_beta" in at:
        raise ModelError(f"{what}: activation_alpha/beta are not supported")
    acts = [s.lower() for s in at.get("activations", default_acts * nd)]
    if acts != [s.lower() for s in default_acts * nd]:
        raise ModelError(f"{what}: activations {at['activations']} not supported "
                         f"(only the default {default_acts})")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ModelError(f"{what}: unknown direction {direction!r}")
    if W.shape[0] != nd or R.shape[0] != nd:
        raise ModelError(f"{what}: W/R first dimension must be {nd} for direction {direction}")
    B = np.zeros((nd, 2 * W.shape[1])) if B is None else _const(B, what, "B").astype(np.float64)
    return x, W, R, B, H, direction


def _rnn_outputs(tr, x, layer, at, direction, what):
    """Y (all steps) and Y_h (final state; only expressible as the last step of a forward RNN)."""
    layout = at.get("layout", 0)
    y = tr.recurrent(x, layer, "BTF" if layout else "TBF", what)
    b, t = x.axes[:2] if layout else x.axes[1::-1]
    nd = 2 if layer.bidirectional else 1
    d = DIR if nd == 2 else UNIT
    y = dataclasses.replace(y, axes=(b, t, d, FEAT) if layout else (t, d, b, FEAT), ndir=nd)
    if direction == "forward":
        yh = tr.last_step(y, 1 if layout else 0, keep=False, what=what)
    else:
        yh = Bad(f"{what}: the final state Y_h of a {direction} RNN is not expressible")
    return y, yh


def _gru(tr, ins, at, what):
    x, W, R, B, H, direction = _rnn_common(ins, at, what, 1, ["Sigmoid", "Tanh"])
    zrh = [1, 0, 2]  # ONNX (z, r, h) -> (r, u, c)
    cells = [GRUCell(_blocks(W[d], zrh, H), _blocks(R[d], zrh, H), _blocks(B[d, :3 * H], zrh, H),
                     _blocks(B[d, 3 * H:], zrh, H), reset_after=bool(at.get("linear_before_reset", 0)),
                     name=f"{layer_name(what)}.{'bwd' if d else 'fwd'}")
             for d in range(W.shape[0])]
    y, yh = _rnn_outputs(tr, x, _recurrent(cells, direction, what), at, direction, what)
    return [y, yh]


def _lstm(tr, ins, at, what):
    x, W, R, B, H, direction = _rnn_common(ins, at, what, 2, ["Sigmoid", "Tanh", "Tanh"])
    if at.get("input_forget", 0):
        raise ModelError(f"{what}: input_forget=1 (coupled input/forget gates) is not supported")
    P = ins[7] if len(ins) > 7 else None
    P = None if P is None else _const(P, what, "P").astype(np.float64)
    iofc = [0, 2, 3, 1]  # ONNX (i, o, f, c) -> (i, f, g, o)
    cells = []
    for d in range(W.shape[0]):
        peep = {}
        if P is not None and np.any(P[d]):  # all-zero peepholes are the same as none
            peep = dict(p_i=P[d, :H], p_o=P[d, H:2 * H], p_f=P[d, 2 * H:])
        cells.append(LSTMCell(_blocks(W[d], iofc, H), _blocks(R[d], iofc, H),
                              _blocks(B[d, :4 * H] + B[d, 4 * H:], iofc, H),
                              name=f"{layer_name(what)}.{'bwd' if d else 'fwd'}", **peep))
    y, yh = _rnn_outputs(tr, x, _recurrent(cells, direction, what), at, direction, what)
    return [y, yh, Bad(f"{what}: the final cell state Y_c is not expressible")]


def _recurrent(cells, direction, what):
    name = layer_name(what)
    if direction == "bidirectional":
        return Recurrent(cells[0], backward=cells[1], name=name)
    return Recurrent(cells[0], reverse=direction == "reverse", name=name)




_HANDLERS = {
    "Identity": _identity, "Dropout": _dropout, "Cast": _cast, "Shape": _shape, "Gather": _gather,
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Concat": _concat, "Slice": _slice,
    "Reshape": _reshape, "Transpose": _transpose, "Flatten": _flatten, "Expand": _expand,
    "ConstantOfShape": _constant_of_shape, "Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Sub": _sub,
    "Abs": _abs, "Div": _div, "GRU": _gru, "LSTM": _lstm, **{op: _activation(k) for op, k in _ACT.items()},
}
