"""TensorFlow 1 frozen graph (GraphDef ``.pb``) -> model IR, without TensorFlow.

The protobuf is parsed with TensorBoard's copy of the TF protos and Const tensors are decoded with
numpy. The network is found by walking the graph backwards from the logits (the input of the
``Softmax``) to the ``Mfcc`` node (or a ``Placeholder`` of features), recognising:

* dense layers: ``MatMul`` [+ ``Add``/``BiasAdd`` of a constant] [+ ``Relu``/``Sigmoid``/``Tanh``/``Softsign``];
* ``Reshape`` of the ``[1, frames, coeffs]`` MFCC tensor to ``[-1, frames*coeffs]`` (a ``Flatten``) and
  back to ``[-1, frames, coeffs]`` (the RNN input);
* ``tf.nn.dynamic_rnn`` loops (TF1 ``Enter``/``Merge``/``Switch``/``NextIteration``/``Exit`` control
  flow over a ``TensorArray`` unstacked from the transposed ``[B, T, F]`` input) whose ``Exit`` is the
  final state h, i.e. the last time step's output. The loop body must be one TF cell: ``GRUCell``
  (``gates/kernel``, ``candidate/kernel``), ``BasicLSTMCell`` or ``LSTMCell`` (``kernel``, ``bias``,
  optional ``w_{i,f,o}_diag`` peepholes and ``projection/kernel``), built only from the ops those
  cells emit; the forget bias, the split index of each gate and the peephole wiring are read from
  the graph, not assumed.

The AudioSpectrogram/Mfcc attributes become ``ir.Frontend`` (see ``rnnaccel.host.mfcc``).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..ir import FC, Flatten, Frontend, GRUCell, LSTMCell, Model, ModelError, Recurrent

# Ops the importer understands, reported in errors.
FC_OPS = ("MatMul", "Add", "AddV2", "BiasAdd")
ACT_OPS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softsign": "softsign"}
PLUMBING_OPS = ("Identity", "Reshape", "Exit (tf.nn.dynamic_rnn)", "Softmax (output only)")
INPUT_OPS = ("Mfcc", "Placeholder")
CELL_OPS = ("ConcatV2", "MatMul", "BiasAdd", "Split", "Sigmoid", "Tanh", "Mul", "Add", "AddV2", "Sub",
            "Const", "Identity", "Enter", "TensorArrayReadV3")
SUPPORTED = ("network ops: " + ", ".join(FC_OPS + tuple(ACT_OPS) + PLUMBING_OPS + INPUT_OPS) +
             "; recurrent cells: GRUCell, BasicLSTMCell, LSTMCell (peepholes, projection) in tf.nn.dynamic_rnn")

_NP_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
              9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
# TensorProto repeated field holding the values of each dtype when tensor_content is empty.
_VAL_FIELD = {1: "float_val", 2: "double_val", 3: "int_val", 4: "int_val", 5: "int_val", 6: "int_val",
              9: "int64_val", 10: "bool_val", 17: "int_val", 19: "half_val", 22: "uint32_val",
              23: "uint64_val"}


def tensor_to_numpy(t, name="tensor") -> np.ndarray:
    """Decode a TensorProto (tensor_content bytes or the typed repeated field)."""
    if t.dtype not in _NP_DTYPES:
        raise ModelError(f"{name}: Const dtype {t.dtype} not supported")
    dt = np.dtype(_NP_DTYPES[t.dtype]).newbyteorder("<")  # TF serialises little-endian
    shape = tuple(d.size for d in t.tensor_shape.dim)
    n = int(np.prod(shape)) if shape else 1
    if t.tensor_content:
        a = np.frombuffer(t.tensor_content, dtype=dt)
    else:
        vals = list(getattr(t, _VAL_FIELD[t.dtype]))
        if t.dtype == 19:  # half_val carries the raw 16 bits in an int field
            vals = np.array(vals, np.uint16).view(np.float16)
        # TF fills the remaining elements with the last value given (zeros if none).
        a = np.array(vals, dtype=dt) if len(vals) else np.zeros(0, dt)
        if 0 < len(a) < n:
            a = np.concatenate([a, np.full(n - len(a), a[-1], dt)])
        elif len(a) == 0:
            a = np.zeros(n, dt)
    if a.size != n:
        raise ModelError(f"{name}: Const holds {a.size} values for shape {shape}")
    return a.astype(dt.newbyteorder("="), copy=True).reshape(shape)


def _split_ref(ref: str):
    """'node:1' -> ('node', 1); control inputs '^node' are not data refs."""
    name, _, port = ref.partition(":")
    return name, int(port) if port else 0


def _scope(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else name


class _Graph:
    def __init__(self, graph_def):
        self.nodes = {n.name: n for n in graph_def.node}
        self.consumers = defaultdict(list)  # (name, port) -> [consumer nodes]
        for n in graph_def.node:
            for ref in n.input:
                if not ref.startswith("^"):
                    self.consumers[_split_ref(ref)].append(n)

    def node(self, name):
        if name not in self.nodes:
            raise ModelError(f"graph: node {name!r} referenced but not defined")
        return self.nodes[name]

    def data_inputs(self, node):
        return [r for r in node.input if not r.startswith("^")]

    def resolve(self, ref, through=("Identity", "Snapshot", "StopGradient")):
        """Follow pass-through ops; returns (node, port)."""
        name, port = _split_ref(ref)
        n = self.node(name)
        while n.op in through:
            name, port = _split_ref(self.data_inputs(n)[0])
            n = self.node(name)
        return n, port

    def const(self, ref, through=("Identity", "Snapshot", "StopGradient", "Enter")):
        n, _ = self.resolve(ref, through)
        if n.op != "Const":
            return None
        return tensor_to_numpy(n.attr["value"].tensor, n.name)

    def attr(self, node, key, default=None):
        if key not in node.attr:
            return default
        a = node.attr[key]
        kind = a.WhichOneof("value")
        return getattr(a, kind) if kind else default

    def eval_int(self, ref):
        """Statically evaluate a small integer subgraph (shape/perm plumbing)."""
        n, port = self.resolve(ref)
        ins = self.data_inputs(n)
        if n.op == "Const":
            return self.const(ref)
        if n.op == "Range":
            return np.arange(*(int(self.eval_int(r)) for r in ins))
        if n.op == "ConcatV2":
            return np.concatenate([np.ravel(self.eval_int(r)) for r in ins[:-1]])
        if n.op == "Pack":
            return np.stack([self.eval_int(r) for r in ins], axis=self.attr(n, "axis", 0))
        raise ModelError(f"{n.name}: cannot evaluate {n.op} statically (expected a constant shape)")


CELL_SUPPORTED = ("cell ops: " + ", ".join(CELL_OPS) + " (TF GRUCell/BasicLSTMCell/LSTMCell with the default "
                  "tanh activation, no cell/projection clipping, no sequence_length masking)")


def _unsupported(node, where="network"):
    supported = CELL_SUPPORTED if where == "recurrent cell" else SUPPORTED
    hint = ""
    if node.op in ("While", "StatelessWhile", "PartitionedCall", "StatefulPartitionedCall"):
        hint = " (TF2 functional graph: export a TF1 frozen graph with tf.compat.v1 control flow)"
    return ModelError(f"node {node.name!r}: op {node.op} not supported in the {where}{hint}; "
                      f"supported {supported}")


# --------------------------------------------------------------------------------------------------
# Dense layers
# --------------------------------------------------------------------------------------------------

def _fc(g: _Graph, node, activation):
    """node is Add/AddV2/BiasAdd(MatMul, b) or a bare MatMul -> (FC, data ref of its input)."""
    bias = None
    if node.op != "MatMul":
        a, b = g.data_inputs(node)[:2]
        bias, mm_ref = g.const(b), a
        if bias is None:  # Add(b, MatMul) is legal too
            bias, mm_ref = g.const(a), b
        if bias is None:
            raise ModelError(f"node {node.name!r}: {node.op} of two non-constant tensors "
                             "(only a dense layer's bias add is supported)")
        mm, _ = g.resolve(mm_ref)
        if mm.op != "MatMul":
            raise ModelError(f"node {node.name!r}: {node.op} of {mm.op} {mm.name!r} (expected MatMul "
                             "+ bias); " + SUPPORTED)
    else:
        mm = node
    if g.attr(mm, "transpose_a", False):
        raise ModelError(f"node {mm.name!r}: MatMul with transpose_a not supported")
    x_ref, w_ref = g.data_inputs(mm)[:2]
    w = g.const(w_ref)
    if w is None or w.ndim != 2:
        raise ModelError(f"node {mm.name!r}: MatMul weight must be a 2-D constant")
    w = w if g.attr(mm, "transpose_b", False) else w.T  # IR layout [out, in]
    if bias is not None:
        if bias.size != w.shape[0]:
            raise ModelError(f"node {node.name!r}: bias of {bias.size} values for {w.shape[0]} outputs")
        bias = bias.reshape(-1)
    name = _scope(node.name) if "/" in node.name else g.resolve(w_ref)[0].name
    return FC(w, bias, activation, name=name), x_ref


# --------------------------------------------------------------------------------------------------
# dynamic_rnn loops and TF cells
# --------------------------------------------------------------------------------------------------

def _loop_body(g: _Graph, out_ref):
    """Walk the loop body backwards from the new state; returns (nodes, weights, loop vars, x reads)."""
    body, weights, loop_vars, reads = {}, {}, set(), set()
    stack = [out_ref]
    while stack:
        ref = stack.pop()
        n, _ = g.resolve(ref, through=())
        if n.name in body:
            continue
        prev = _prev_state(g, ref)
        if prev is not None:  # a loop variable's previous value: the walk stops here
            loop_vars.add(prev)
            continue
        if n.op not in CELL_OPS:
            raise _unsupported(n, "recurrent cell")
        body[n.name] = n
        if n.op == "Enter":  # loop invariant: a weight from outside the loop
            src, _ = g.resolve(g.data_inputs(n)[0])
            if src.op != "Const":
                raise ModelError(f"node {n.name!r}: loop input {src.name!r} ({src.op}) is not a constant")
            weights[src.name] = tensor_to_numpy(src.attr["value"].tensor, src.name)
            continue
        if n.op == "TensorArrayReadV3":  # x_t
            reads.add(n.name)
            continue
        stack.extend(g.data_inputs(n))
    return body, weights, loop_vars, reads


def _find(weights, suffix):
    hits = [k for k in weights if k == suffix or k.endswith("/" + suffix)]
    if suffix == "kernel":
        hits = [k for k in hits if not k.endswith(("projection/kernel", "gates/kernel", "candidate/kernel"))]
    elif suffix == "bias":
        hits = [k for k in hits if not k.endswith(("gates/bias", "candidate/bias"))]
    if len(hits) > 1:
        raise ModelError(f"recurrent loop holds {len(hits)} '{suffix}' weights ({', '.join(sorted(hits))}): "
                         "stacked cells (MultiRNNCell of several cells) in one dynamic_rnn are not supported")
    return hits[0] if hits else None


def _matmul_using(g, body, weight_name):
    """The body MatMul whose (Enter'd) right operand is the given weight."""
    for n in body.values():
        if n.op == "MatMul" and g.resolve(g.data_inputs(n)[1], ("Identity", "Enter"))[0].name == weight_name:
            if g.attr(n, "transpose_a", False) or g.attr(n, "transpose_b", False):
                raise ModelError(f"node {n.name!r}: transposed MatMul in a cell not supported")
            return n
    raise ModelError(f"weight {weight_name!r} is not used by a MatMul in the loop")


def _check_concat(g, mm, what):
    """A TF cell computes [x, h] @ W: check the MatMul's input is ConcatV2(x_t, h_prev)."""
    cat, _ = g.resolve(g.data_inputs(mm)[0], through=())
    ins = g.data_inputs(cat)
    if cat.op != "ConcatV2" or len(ins) != 3:
        raise ModelError(f"node {mm.name!r}: {what} input is {cat.op}, expected ConcatV2([x, h])")
    x, _ = g.resolve(ins[0], through=())
    if x.op != "TensorArrayReadV3":
        raise ModelError(f"node {cat.name!r}: first input {x.name!r} is not the time step x_t")
    return cat, ins[1]


def _prev_state(g, ref):
    """Switch name if ref is a loop variable's previous value (Identity(Switch:1)), else None."""
    n, _ = g.resolve(ref, through=())
    if n.op == "Identity":
        s, port = g.resolve(g.data_inputs(n)[0], through=())
        if s.op == "Switch" and port == 1:
            return s.name
    return None


def _split_port(g, ref, split_name, allow_const_add=True):
    """Which output of the Split ``ref`` comes from (through Add of a scalar constant); else None."""
    n, port = g.resolve(ref, through=())
    if n.op == "Split" and n.name == split_name:
        return port
    if allow_const_add and n.op in ("Add", "AddV2"):
        const, other = _const_operand(g, n)
        if const is not None:
            return _split_port(g, other, split_name, False)
    return None


def _const_operand(g, node):
    """(constant value, other input ref) of a binary op with one constant operand, else (None, None)."""
    a, b = g.data_inputs(node)[:2]
    for c, other in ((b, a), (a, b)):
        val = g.const(c)
        if val is not None:
            return val, other
    return None, None


def _gru(g, body, weights):
    names = {s: _find(weights, s) for s in ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias")}
    if not all(names.values()):
        raise ModelError(f"GRU loop is missing weights: {[s for s, k in names.items() if not k]}")
    if set(weights) - set(names.values()):
        raise ModelError(f"{names['gates/kernel']}: unrecognised weights in the GRU loop: "
                         f"{sorted(set(weights) - set(names.values()))}")
    gk, gb = weights[names["gates/kernel"]], weights[names["gates/bias"]]
    ck, cb = weights[names["candidate/kernel"]], weights[names["candidate/bias"]]
    H = ck.shape[1]
    I = ck.shape[0] - H
    if gk.shape != (I + H, 2 * H) or gb.shape != (2 * H,) or cb.shape != (H,):
        raise ModelError(f"{names['gates/kernel']}: GRU weight shapes {gk.shape}, {gb.shape}, {ck.shape}, "
                         f"{cb.shape} do not fit hidden size {H}")
    # Reset gate = the Split output multiplied into h before the candidate matmul (TF: r first).
    _, rh_ref = _check_concat(g, _matmul_using(g, body, names["candidate/kernel"]), "candidate")
    rh, _ = g.resolve(rh_ref, through=())
    ports = [g.resolve(r, through=())[1] for r in g.data_inputs(rh)
             if g.resolve(r, through=())[0].op == "Split"] if rh.op == "Mul" else []
    if len(ports) != 1:
        raise ModelError(f"node {rh.name!r}: expected r*h (Mul of a gate with the state) before the candidate")
    r_first = ports[0] == 0
    gx, gh = gk[:I].T, gk[I:].T  # [2H, I], [2H, H], blocks (r, u) if r_first
    order = [0, 1] if r_first else [1, 0]
    blocks = lambda a: np.concatenate([a[k * H:(k + 1) * H] for k in order])  # noqa: E731
    w_x = np.concatenate([blocks(gx), ck[:I].T])
    w_h = np.concatenate([blocks(gh), ck[I:].T])
    b_x = np.concatenate([blocks(gb), cb])
    # TF has one bias per gate: it goes in b_x, b_h stays zero.
    return GRUCell(w_x, w_h, b_x, np.zeros(3 * H), reset_after=False,
                   name=_scope(_scope(names["gates/kernel"])))


def _lstm(g, body, weights, meta):
    kname, bname = _find(weights, "kernel"), _find(weights, "bias")
    if not kname or not bname:
        raise ModelError(f"LSTM loop is missing kernel/bias (weights: {', '.join(sorted(weights))})")
    k, b = weights[kname], weights[bname]
    H = k.shape[1] // 4
    pname = _find(weights, "projection/kernel")
    proj = weights[pname] if pname else None
    R = proj.shape[1] if proj is not None else H
    I = k.shape[0] - R
    if k.shape[1] != 4 * H or b.shape != (4 * H,) or I < 1 or (proj is not None and proj.shape[0] != H):
        raise ModelError(f"{kname}: LSTM weight shapes {k.shape}, {b.shape}"
                         f"{'' if proj is None else ', ' + str(proj.shape)} are inconsistent")
    split = next((n for n in body.values() if n.op == "Split"
                  and g.resolve(g.data_inputs(n)[1], through=())[0].op == "BiasAdd"), None)
    if split is None or g.attr(split, "num_split") != 4:
        raise ModelError(f"{kname}: expected the gate pre-activations split in 4 (i, j, f, o)")
    # Forget bias: Add(split:2, scalar constant). TF gate order i, j, f, o: f must be output 2.
    forget_bias, fb_port = None, None
    for n in body.values():
        if n.op in ("Add", "AddV2"):
            val, other = _const_operand(g, n)
            if val is None:
                continue
            src, port = g.resolve(other, through=())
            if val.size == 1 and src.name == split.name:
                forget_bias, fb_port = float(val.reshape(())), port
    if forget_bias is None:
        forget_bias = 1.0  # TF's default for BasicLSTMCell/LSTMCell; not found as an Add in the graph
        meta["forget_bias"] = "default 1.0 (no Add of a constant to the forget gate found)"
    elif fb_port != 2:
        raise ModelError(f"{kname}: forget bias added to split output {fb_port}, expected 2 (TF order i, j, f, o)")
    else:
        meta["forget_bias"] = f"{forget_bias:g} (read from the graph)"
    # Peepholes: w_*_diag * c added to a gate's pre-activation; the gate is read from the wiring.
    peeps = {}
    for dname in [w for w in weights if w.rsplit("/", 1)[-1] in ("w_i_diag", "w_f_diag", "w_o_diag")]:
        gate = _peephole_gate(g, body, dname, split.name)
        if gate in peeps:
            raise ModelError(f"{dname}: two peepholes on gate {gate}")
        peeps[gate] = weights[dname]
    if peeps and set(peeps) != {0, 2, 3}:
        raise ModelError(f"{kname}: peepholes on gates {sorted(peeps)}, expected i, f, o (0, 2, 3)")
    known = {kname, bname, pname} | {w for w in weights if w.rsplit("/", 1)[-1].endswith("_diag")}
    if set(weights) - known:
        raise ModelError(f"{kname}: unrecognised weights in the LSTM loop: {sorted(set(weights) - known)}")
    # TF i, j, f, o -> IR i, f, g, o.
    W = k.T  # [4H, I+R]
    reorder = lambda a: np.concatenate([a[q * H:(q + 1) * H] for q in (0, 2, 1, 3)])  # noqa: E731
    return LSTMCell(reorder(W[:, :I]), reorder(W[:, I:]), reorder(b), forget_bias=forget_bias,
                    p_i=peeps.get(0), p_f=peeps.get(2), p_o=peeps.get(3),
                    w_proj=None if proj is None else proj.T, name=_scope(kname))


def _peephole_gate(g, body, dname, split_name):
    for n in body.values():
        if n.op == "Mul" and any(g.resolve(r, ("Identity", "Enter"))[0].name == dname for r in g.data_inputs(n)):
            for add in g.consumers[(n.name, 0)]:
                if add.op in ("Add", "AddV2"):
                    for r in g.data_inputs(add):
                        port = _split_port(g, r, split_name)
                        if port is not None:
                            return port
    raise ModelError(f"{dname}: peephole weight not added to a gate pre-activation")


def _recurrent(g: _Graph, exit_node, meta):
    """Exit of a dynamic_rnn loop -> (Recurrent(last step), data ref of the [B, T, F] input)."""
    switch, _ = g.resolve(g.data_inputs(exit_node)[0], through=())
    merge, _ = g.resolve(g.data_inputs(switch)[0], through=()) if switch.op == "Switch" else (switch, 0)
    if switch.op != "Switch" or merge.op != "Merge":
        raise ModelError(f"node {exit_node.name!r}: Exit not fed by Switch(Merge) of a while loop")
    ins = [g.resolve(r, through=())[0] for r in g.data_inputs(merge)]
    nxt = next((n for n in ins if n.op == "NextIteration"), None)
    init = next((n for n in ins if n.op == "Enter"), None)
    if nxt is None or init is None:
        raise ModelError(f"node {merge.name!r}: loop variable without Enter/NextIteration")
    init_val = _const_fill(g, g.data_inputs(init)[0])
    if init_val is None or np.any(init_val != 0):
        raise ModelError(f"node {init.name!r}: recurrent initial state must be zeros (cell.zero_state)")
    body, weights, loop_vars, reads = _loop_body(g, g.data_inputs(nxt)[0])
    if len(reads) != 1:
        raise ModelError(f"node {exit_node.name!r}: loop reads {len(reads)} input TensorArrays, expected 1")
    if switch.name not in loop_vars:
        raise ModelError(f"node {exit_node.name!r}: this loop output does not feed back into the cell "
                         "(expected the final hidden state h)")
    if _find(weights, "gates/kernel"):
        cell = _gru(g, body, weights)
        kernel = _find(weights, "gates/kernel")
    else:
        cell = _lstm(g, body, weights, meta)
        kernel = _find(weights, "kernel")
    # The state fed back into [x, h] must be the one leaving through this Exit (h, not LSTM's c).
    _, h_ref = _check_concat(g, _matmul_using(g, body, kernel), "gates")
    if _prev_state(g, h_ref) != switch.name:
        raise ModelError(f"node {exit_node.name!r}: the loop output read here is not the hidden state h "
                         "that the cell concatenates with x (e.g. LSTM cell state c)")
    x_ref = _rnn_input(g, body[next(iter(reads))])
    return Recurrent(cell, return_sequences=False, name=cell.name), x_ref


def _const_fill(g, ref):
    n, _ = g.resolve(ref)
    if n.op == "Fill":
        return g.const(g.data_inputs(n)[1])
    return g.const(ref)


def _rnn_input(g, read):
    """TensorArrayReadV3 -> the [B, T, F] tensor dynamic_rnn transposed to time-major and unstacked."""
    scatter, _ = g.resolve(g.data_inputs(read)[2], ("Identity", "Enter"))
    if scatter.op != "TensorArrayScatterV3":
        raise _unsupported(scatter, "recurrent layer input (expected TensorArrayScatterV3)")
    value, _ = g.resolve(g.data_inputs(scatter)[2])
    if value.op != "Transpose":
        raise ModelError(f"node {value.name!r}: dynamic_rnn input is {value.op}; only batch-major "
                         "input (time_major=False, transposed to time-major by dynamic_rnn) is supported")
    perm = [int(p) for p in g.eval_int(g.data_inputs(value)[1])]
    if perm != [1, 0, 2]:
        raise ModelError(f"node {value.name!r}: dynamic_rnn transpose perm {perm}, expected [1, 0, 2]")
    return g.data_inputs(value)[0]


# --------------------------------------------------------------------------------------------------
# Whole graph
# --------------------------------------------------------------------------------------------------

def _output_ref(g: _Graph, output):
    if output is not None:
        n, _ = g.resolve(output)
    else:
        soft = [n for n in g.nodes.values() if n.op == "Softmax"]
        if len(soft) == 1:
            n = soft[0]
        else:
            sinks = [n for n in g.nodes.values() if not g.consumers[(n.name, 0)] and n.op not in ("Const", "NoOp")]
            if len(sinks) != 1:
                raise ModelError(f"graph: cannot tell the output node ({len(soft)} Softmax, sinks: "
                                 f"{[s.name for s in sinks][:8]}); pass output=")
            n = sinks[0]
    if n.op == "Softmax":  # the IR produces logits
        return g.data_inputs(n)[0]
    return n.name


def _trace(g: _Graph, out_ref, meta):
    """Walk back from the logits; returns (input node, [entries in forward order])."""
    entries, ref, act, act_node = [], out_ref, "none", None
    while True:
        n, _ = g.resolve(ref)
        if act_node is not None and n.op not in FC_OPS:
            raise ModelError(f"node {act_node.name!r}: {act_node.op} after {n.op} {n.name!r}; activations are "
                             "supported only right after a dense layer (MatMul + bias)")
        if n.op in ACT_OPS:
            act, act_node, ref = ACT_OPS[n.op], n, g.data_inputs(n)[0]
        elif n.op in FC_OPS:
            fc, ref = _fc(g, n, act)
            entries.append(("layer", fc))
            act, act_node = "none", None
        elif n.op == "Exit":
            rnn, ref = _recurrent(g, n, meta)
            entries.append(("layer", rnn))
        elif n.op == "Reshape":
            entries.append(("reshape", n))
            ref = g.data_inputs(n)[0]
        elif n.op in INPUT_OPS:
            return n, entries[::-1]
        else:
            raise _unsupported(n)


def _frontend(g: _Graph, mfcc, sample_rate):
    spec, _ = g.resolve(g.data_inputs(mfcc)[0])
    if spec.op != "AudioSpectrogram":
        raise _unsupported(spec, "feature front end (expected AudioSpectrogram -> Mfcc)")
    if not g.attr(spec, "magnitude_squared", False):
        raise ModelError(f"node {spec.name!r}: Mfcc needs magnitude_squared=True (it takes the square root)")
    sr = g.const(g.data_inputs(mfcc)[1])  # usually DecodeWav's sample_rate output, known only at run time
    if sr is not None:
        sample_rate = int(sr)
    window, stride = int(g.attr(spec, "window_size")), int(g.attr(spec, "stride"))
    clip = sample_rate
    src, _ = g.resolve(g.data_inputs(spec)[0])
    if src.op == "DecodeWav":
        if g.attr(src, "desired_channels", -1) not in (1, -1):
            raise ModelError(f"node {src.name!r}: only mono audio (desired_channels=1) is supported")
        if g.attr(src, "desired_samples", -1) > 0:
            clip = int(g.attr(src, "desired_samples"))
    fft = 1 << (window - 1).bit_length()  # TF: next power of two >= window
    return Frontend(sample_rate=sample_rate, window_size=window, stride=stride, fft_size=fft,
                    num_channels=int(g.attr(mfcc, "filterbank_channel_count", 40)),
                    lower_hz=float(g.attr(mfcc, "lower_frequency_limit", 20.0)),
                    upper_hz=float(g.attr(mfcc, "upper_frequency_limit", 4000.0)),
                    dct_count=int(g.attr(mfcc, "dct_coefficient_count", 13)), clip_samples=clip)


def _input_shape(g, inp, frontend):
    """Static shape of the network input: Mfcc [1, frames, coeffs] or the Placeholder's shape."""
    if inp.op == "Mfcc":
        return [1, frontend.frames, frontend.dct_count]
    dims = [d.size for d in g.attr(inp, "shape").dim] if "shape" in inp.attr else []
    if len(dims) not in (2, 3) or dims[-1] < 1 or (len(dims) == 3 and dims[1] < 1):
        raise ModelError(f"node {inp.name!r}: Placeholder shape {dims} must be [B, T, F] or [B, F]")
    return [1] + dims[1:]


def _build_layers(g, entries, shape):
    """Replay reshapes/layers forward on static shapes; returns (layers, steps, in_features)."""
    in_shape = list(shape)
    layers = []
    for kind, item in entries:
        if kind == "reshape":
            shape = _reshape(g, item, shape, in_shape, layers)
        elif isinstance(item, Recurrent):
            if len(shape) != 3:
                raise ModelError(f"{item.name}: recurrent layer needs a [B, T, F] input, got {shape}")
            shape = [shape[0], item.out_features]
            layers.append(item)
        else:
            if len(shape) != 2:  # TF MatMul is 2-D only
                raise ModelError(f"{item.name}: dense layer on a {shape} tensor")
            shape = [shape[0], item.out_features]
            layers.append(item)
    steps = in_shape[1] if len(in_shape) == 3 else None
    return layers, steps, in_shape[-1]


def _reshape(g, node, shape, in_shape, layers):
    """Only a flatten of the [B, T, F] input sequence, or its exact inverse, is meaningful here."""
    tgt = [int(v) for v in g.eval_int(g.data_inputs(node)[1])]
    total = int(np.prod(shape))
    if tgt.count(-1) == 1:
        tgt[tgt.index(-1)] = total // max(1, -int(np.prod(tgt)))
    if int(np.prod(tgt)) != total or tgt[0] != shape[0]:
        raise ModelError(f"node {node.name!r}: Reshape {shape} -> {tgt} does not keep the batch "
                         "dimension and element count (the graph expects a different number of frames?)")
    if tgt == shape:
        return tgt
    if len(in_shape) == 3 and shape == in_shape and tgt == [shape[0], shape[1] * shape[2]]:
        layers.append(Flatten(name=node.name))
        return tgt
    if len(in_shape) == 3 and tgt == in_shape and layers and isinstance(layers[-1], Flatten):
        layers.pop()  # un-flatten straight after a flatten: the pair is a no-op
        return tgt
    raise ModelError(f"node {node.name!r}: Reshape {shape} -> {tgt} is neither a flatten of the "
                     f"{in_shape[1:]} frame sequence nor its inverse")


def _read_labels(path: Path):
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def parse_graph_def(data: bytes):
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import graph_pb2

    gd = graph_pb2.GraphDef()
    try:
        gd.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelError(f"not a TensorFlow GraphDef protobuf: {e}") from None
    if not gd.node:
        raise ModelError("not a TensorFlow GraphDef protobuf: no nodes")
    return gd


def load_tf_graph(path, name=None, labels=None, output=None, sample_rate=16000) -> Model:
    """Import a TF1 frozen graph ``.pb`` as an IR Model.

    labels: list of class names; by default ``labels.txt`` beside the .pb is read if present.
    output: logits node name (default: the input of the graph's Softmax).
    sample_rate: audio rate for the Mfcc front end (in the graph it comes from the WAV at run time).
    """
    path = Path(path)
    return graph_def_to_model(parse_graph_def(path.read_bytes()), name=name or path.stem,
                              labels=labels if labels is not None else _default_labels(path),
                              output=output, sample_rate=sample_rate, source=str(path))


def _default_labels(path: Path):
    f = path.with_name("labels.txt")
    return _read_labels(f) if f.is_file() else None


def graph_def_to_model(gd, name="model", labels=None, output=None, sample_rate=16000, source=None) -> Model:
    try:
        return _to_model(gd, name, labels, output, sample_rate, source)
    except (IndexError, KeyError, TypeError) as e:  # a node missing inputs/attrs the walk relies on
        raise ModelError(f"{name}: malformed or unexpected graph structure ({type(e).__name__}: {e})") from e


def _to_model(gd, name, labels, output, sample_rate, source):
    g = _Graph(gd)
    meta = {"source": "tensorflow-graphdef"}
    if source:
        meta["path"] = source
    out_ref = _output_ref(g, output)
    inp, entries = _trace(g, out_ref, meta)
    frontend = _frontend(g, inp, sample_rate) if inp.op == "Mfcc" else None
    if frontend is not None and frontend.frames < 1:
        raise ModelError(f"node {inp.name!r}: clip of {frontend.clip_samples} samples is shorter than a window")
    layers, steps, in_features = _build_layers(g, entries, _input_shape(g, inp, frontend))
    meta.update(input_node=inp.name, output_node=_split_ref(out_ref)[0])
    model = Model(layers, in_features, steps=steps, name=name, frontend=frontend, meta=meta)
    if labels is not None:
        labels = list(labels)
        if len(labels) != model.out_features:
            raise ModelError(f"{name}: {len(labels)} labels for {model.out_features} outputs")
        model.labels = labels
    return model
