"""PyTorch nn.Module -> rnnaccel IR.

nn.Sequential (and a bare supported module) is walked child by child; any other module is traced
with torch.fx and its graph interpreted on abstract values (see ``importers.Act``), so
``out, _ = self.gru(x); out = out[:, -1]; self.fc(out)`` becomes a last-step Recurrent + FC.

The model input is assumed to be 3-D with features last: [B, T, F] or [T, B, F] (the RNNs'
batch_first decides; Model.meta["input_layout"] says which). Dropout (modules, F.dropout and
nn.GRU/LSTM's inter-layer dropout) is ignored, which is only right in eval mode: a module in
training mode with active dropout is rejected.
"""
from __future__ import annotations

import operator

from ..ir import GRUCell, LSTMCell, ModelError, Recurrent
from .graph import Act, Bad, Tracer, layer_name

SUPPORTED = ("nn.GRU", "nn.LSTM", "nn.Linear", "nn.ReLU", "nn.Sigmoid", "nn.Tanh", "nn.Softsign",
             "nn.Flatten", "nn.Dropout (eval)", "nn.Identity", "nn.Sequential",
             "a custom module whose forward() chains these (traced with torch.fx) with "
             "relu/sigmoid/tanh/softsign, flatten/view/reshape/transpose/permute/squeeze/unsqueeze, "
             "out[:, -1] / out[-1] (last step), h_n[-1]")


def _f64(t):
    return t.detach().cpu().double().numpy()


def from_torch(module, in_features=None, steps=None, name=None):
    """Import a torch module. in_features/steps are only needed when the modules don't tell
    (e.g. nn.Flatten over time needs steps; the input width then follows from the next Linear)."""
    tr = Tracer(in_features, steps)
    x = tr.input(3)
    name = name or type(module).__name__
    out = _run_sequential(tr, module, x, "")
    if isinstance(out, tuple):  # a bare RNN: (output, state)
        out = out[0]
    if isinstance(out, Bad):
        raise ModelError(f"{name}: {out.reason}")
    return tr.model(out, name, meta={"source": "torch"})


def load_torch(path, in_features=None, steps=None, name=None):
    """Load a .pt/.pth holding a full pickled nn.Module, or a TorchScript module (via ONNX export)."""
    import os
    import warnings

    import torch

    name = name or os.path.splitext(os.path.basename(str(path)))[0]
    with warnings.catch_warnings():  # torch.load warns when it hands a TorchScript file to jit.load
        warnings.simplefilter("ignore")
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as e:
            raise ModelError(f"{path}: cannot load a torch module ({type(e).__name__}: {e})") from None
    if isinstance(obj, torch.jit.ScriptModule):
        return _from_script(obj, in_features, steps, name)
    if not isinstance(obj, torch.nn.Module):
        raise ModelError(f"{path}: holds a {type(obj).__name__}, not a module (a state_dict needs the "
                         f"model class: build the module, load_state_dict, then from_torch)")
    return from_torch(obj.eval(), in_features, steps, name)


def _from_script(module, in_features, steps, name):
    """TorchScript cannot be traced with fx; its graph goes through the ONNX exporter instead."""
    import io
    import warnings

    import torch

    from .onnx_import import from_onnx

    if in_features is None:  # the first input-side weight tells the width
        for pname, p in module.named_parameters():
            if pname.endswith("weight_ih_l0") or (pname.endswith("weight") and p.dim() == 2):
                in_features = p.shape[1]
                break
    if in_features is None:
        raise ModelError(f"{name}: TorchScript module: pass in_features")
    buf = io.BytesIO()
    dyn = {0: "d0"} if steps else {0: "d0", 1: "d1"}  # a fixed dim 1 lets a flatten over time export
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and batch-size notes
            torch.onnx.export(module.eval(), (torch.zeros(2, steps or 3, in_features),), buf,
                              dynamo=False, opset_version=14, input_names=["x"], dynamic_axes={"x": dyn})
    except Exception as e:
        raise ModelError(f"{name}: TorchScript module could not be exported to ONNX ({e})") from None
    import onnx

    model = from_onnx(onnx.load_from_string(buf.getvalue()), name=name)
    if steps and "T" in model.meta["input_layout"]:
        model.steps = steps
    return model


# ---- modules ------------------------------------------------------------------------------------

def _kind(mod):
    import torch.nn as nn

    table = [((nn.GRU, nn.LSTM), "rnn"), (nn.Linear, "linear"), (nn.Flatten, "flatten"),
             ((nn.Dropout, nn.Dropout1d, nn.AlphaDropout), "dropout"), (nn.Identity, "identity"),
             (nn.ReLU, "relu"), (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"), (nn.Softsign, "softsign")]
    for types, kind in table:
        if isinstance(mod, types):
            return kind
    return None


def _run_sequential(tr, module, x, prefix):
    """Sequential: child by child; torch.nn modules: directly; a user's module: torch.fx."""
    import torch.nn as nn

    if not isinstance(module, nn.Sequential):
        if _kind(module) is None and not type(module).__module__.startswith("torch."):
            return _run_fx(tr, module, x)
        return _apply_module(tr, x, module, prefix or type(module).__name__.lower())
    for child_name, child in module.named_children():
        full = f"{prefix}.{child_name}" if prefix else child_name
        if isinstance(x, tuple):  # an RNN inside Sequential feeds its output sequence on
            x = x[0]
        x = _run_sequential(tr, child, x, full)
    return x


def _apply_module(tr, x, mod, path):
    """One module on one value; RNNs return (output, final state) like torch."""
    kind = _kind(mod)
    what = f"{_clean(path, kind)} ({type(mod).__name__})"
    if kind is None:
        raise ModelError(f"{path} ({type(mod).__name__}): module not supported; supported: "
                         f"{', '.join(SUPPORTED)}")
    if isinstance(x, Bad):
        raise ModelError(f"{what}: {x.reason}")
    if not isinstance(x, Act):
        raise ModelError(f"{what}: input is a {type(x).__name__}, not the data tensor")
    if kind == "rnn":
        return _rnn(tr, x, mod, what)
    if kind == "linear":
        return tr.linear(x, _f64(mod.weight), None if mod.bias is None else _f64(mod.bias), what)
    if kind == "flatten":
        return tr.flatten(x, mod.start_dim, mod.end_dim, what)
    if kind == "dropout":
        _check_dropout(mod.training, mod.p, what)
        return x
    if kind == "identity":
        return x
    return tr.activation(x, kind, what)


def _clean(path, kind):
    """Sequential children are named "0", "1": give them their kind instead, e.g. "fc1"."""
    last = path.rsplit(".", 1)[-1]
    if last.isdigit():
        return path[:-len(last)] + ("fc" if kind == "linear" else kind or "layer") + last
    return path


def _check_dropout(training, p, what):
    if training and p > 0:
        raise ModelError(f"{what}: dropout in training mode; call module.eval() before importing")


def _rnn(tr, x, mod, what):
    """nn.GRU/nn.LSTM: one Recurrent per layer; bidirectional layers output [fwd, bwd] per step."""
    import torch.nn as nn

    name = layer_name(what)
    if mod.num_layers > 1:
        _check_dropout(mod.training, mod.dropout, what)
    nd = 2 if mod.bidirectional else 1
    want = "BTF" if mod.batch_first else "TBF"
    for k in range(mod.num_layers):
        cells = [_cell(mod, k, sfx, f"{name}.l{k}{'.bwd' if sfx else ''}") for sfx in ("", "_reverse")[:nd]]
        layer = Recurrent(cells[0], backward=cells[1] if nd == 2 else None,
                          name=name if mod.num_layers == 1 else f"{name}.l{k}")
        x = tr.recurrent(x, layer, want, what)
    # h_n [layers*dirs, B, H]: h_n[-1] is the last layer's final state = its last output step,
    # when that layer runs forward only.
    if nd == 1:
        h = _State(tr.last_step(x, want.index("T"), keep=False, what=what), mod.num_layers)
    else:
        h = Bad(f"{what}: the final state of a bidirectional RNN is not expressible (use the output)")
    if isinstance(mod, nn.LSTM):
        h = (h, Bad(f"{what}: the final cell state c_n is not expressible"))
    return (x, h)


def _cell(mod, k, sfx, name):
    import torch.nn as nn

    def p(n):
        t = getattr(mod, f"{n}_l{k}{sfx}", None)
        return None if t is None else _f64(t)

    if isinstance(mod, nn.GRU):  # PyTorch gate order (r, z, n) is (r, u, c)
        return GRUCell(p("weight_ih"), p("weight_hh"), p("bias_ih"), p("bias_hh"), reset_after=True,
                       name=name)
    bias = None if not mod.bias else p("bias_ih") + p("bias_hh")
    return LSTMCell(p("weight_ih"), p("weight_hh"), bias, w_proj=p("weight_hr") if mod.proj_size else None,
                    name=name)


class _State:
    """An RNN's h_n: only its last entry (the last layer's final state) is expressible."""

    def __init__(self, last, n):
        self.last, self.n = last, n


# ---- torch.fx -----------------------------------------------------------------------------------

def _run_fx(tr, module, x):
    import torch.fx

    cls = type(module).__name__
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as e:
        raise ModelError(f"{cls}: torch.fx cannot trace forward() ({type(e).__name__}: {e}); "
                         f"supported: {', '.join(SUPPORTED)}") from None
    env, seen_input, out = {}, False, None
    for node in gm.graph.nodes:
        what = f"{node.name} ({node.op} {_target_name(node.target)})"
        if node.op == "placeholder":
            if seen_input and not node.args:
                raise ModelError(f"{cls}: forward() takes several inputs ({node.name}); "
                                 f"only one is supported")
            env[node] = node.args[0] if seen_input else x  # extra args keep their default (e.g. h0=None)
            seen_input = True
            continue
        args = torch.fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "output":
            out = args[0]
        elif node.op == "call_module":
            env[node] = _call_module(tr, gm.get_submodule(node.target), node.target, args, kwargs)
        elif node.op in ("call_function", "call_method"):
            env[node] = _call(tr, node.op, node.target, args, kwargs, what)
        else:
            raise ModelError(f"{cls}: node {what}: direct use of parameters/buffers is not supported; "
                             f"supported: {', '.join(SUPPORTED)}")
    return out


def _target_name(t):
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def _call_module(tr, mod, path, args, kwargs):
    extra = list(args[1:]) + list(kwargs.values())
    if any(v is not None for v in extra):
        raise ModelError(f"{path} ({type(mod).__name__}): extra arguments (e.g. an initial state) "
                         f"are not supported")
    return _apply_module(tr, args[0], mod, path)


_METHODS = {"relu", "sigmoid", "tanh", "flatten", "contiguous", "view", "reshape", "transpose",
            "permute", "squeeze", "unsqueeze", "size"}


def _op_kind(op, target):
    """Which supported tensor operation a call_function/call_method node is (None: unsupported)."""
    import torch
    import torch.nn.functional as F

    if op == "call_method":
        return target if target in _METHODS else None
    table = {torch.relu: "relu", F.relu: "relu", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
             torch.tanh: "tanh", F.tanh: "tanh", F.softsign: "softsign", F.dropout: "dropout",
             torch.flatten: "flatten", torch.reshape: "reshape", torch.transpose: "transpose",
             torch.permute: "permute", torch.squeeze: "squeeze", torch.unsqueeze: "unsqueeze",
             operator.getitem: "getitem", getattr: "getattr"}
    try:
        return table.get(target)
    except TypeError:  # unhashable target
        return None


def _call(tr, op, target, args, kwargs, what):
    kind = _op_kind(op, target)
    if kind is None or kind == "getattr" and args[1] != "shape":
        raise ModelError(f"{what}: operation not supported; supported: {', '.join(SUPPORTED)}")
    for v in list(args) + list(kwargs.values()):
        if isinstance(v, Bad):
            raise ModelError(f"{what}: {v.reason}")
    x = args[0]
    if kind == "getitem":
        return _getitem(tr, x, args[1], what)
    if not isinstance(x, Act):
        raise ModelError(f"{what}: expects the data tensor, got a {type(x).__name__}")
    if kind in ("getattr", "size"):  # x.shape / x.size(): symbolic sizes for view()
        shape = tr.shape(x)
        dim = args[1] if len(args) > 1 and kind == "size" else kwargs.get("dim")
        return tuple(shape) if dim is None else shape[dim]
    if kind in ("relu", "sigmoid", "tanh", "softsign"):
        return tr.activation(x, kind, what)
    if kind == "dropout":
        _check_dropout(kwargs.get("training", args[2] if len(args) > 2 else True),
                       kwargs.get("p", args[1] if len(args) > 1 else 0.5), what)
        return x
    if kind == "contiguous":
        return x
    if kind == "flatten":
        start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
        end = kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
        return tr.flatten(x, start, end, what)
    if kind in ("view", "reshape"):
        sizes = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
        return tr.reshape(x, list(sizes), what, zero_copies=False)
    if kind == "transpose":
        perm = list(range(len(x.axes)))
        i, j = (int(a) % len(perm) for a in args[1:3])
        perm[i], perm[j] = perm[j], perm[i]
        return tr.permute(x, perm)
    if kind == "permute":
        dims = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
        return tr.permute(x, [int(d) % len(x.axes) for d in dims])
    if kind == "squeeze":
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        return tr.squeeze(x, None if dim is None else [dim], what)
    return tr.unsqueeze(x, [kwargs.get("dim", args[1] if len(args) > 1 else 0)])


def _getitem(tr, x, idx, what):
    if isinstance(x, tuple):
        return x[idx]
    if isinstance(x, _State):
        if idx in (-1, x.n - 1):
            return x.last
        raise ModelError(f"{what}: only h_n[-1] (the last layer's final state) is supported")
    if isinstance(x, Act):
        return _index(tr, x, idx, what)
    raise ModelError(f"{what}: indexing a {type(x).__name__} value")


def _index(tr, x, idx, what):
    """Tensor indexing: full slices pass, -1 / [-1:] on the time axis take the last step."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (len(x.axes) - len(idx) + 1) + idx[k + 1:]
    axis = 0
    for it in idx:
        if isinstance(it, slice) and it == slice(None):
            axis += 1
        elif isinstance(it, slice) and it.start == -1 and it.stop is None and it.step in (None, 1):
            x = tr.last_step(x, axis, keep=True, what=what)
            axis += 1
        elif isinstance(it, int) and it == -1:
            x = tr.last_step(x, axis, keep=False, what=what)
        else:
            raise ModelError(f"{what}: index {it!r} on axis {axis} is not expressible; only full "
                             f"slices and the last time step (-1) are supported")
    return x
