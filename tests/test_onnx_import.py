"""ONNX importer: imported models must match onnxruntime (and PyTorch for exported models)."""
import io
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rnnaccel.host.importers import from_onnx, load_model  # noqa: E402
from rnnaccel.host.ir import FC, Flatten, GRUCell, LSTMCell, ModelError, Recurrent  # noqa: E402
from rnnaccel.host.reference import run_float  # noqa: E402

from .torch_modules import KWS, KWSState, Seq, data  # noqa: E402

TOL = 1e-5


def run_ort(proto, x):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def to_ir(y, layout):
    """Framework output with axes `layout` (e.g. "T1BF", "TDBF", "BF") -> run_float's layout."""
    keep = [i for i, c in enumerate(layout) if c != "1"]
    y = y.reshape([y.shape[i] for i in keep])
    layout = "".join(layout[i] for i in keep)
    y = y.transpose([layout.index(c) for c in "BTDF" if c in layout])
    return y.reshape(*y.shape[:-2], -1) if "D" in layout else y


def run_imported(model, x):
    """Imported model on framework-layout input x, output in run_float's layout."""
    xi = x.transpose(1, 0, 2) if model.meta["input_layout"] == "TBF" else x
    return run_float(model, xi)


def check(proto, x, ref=None):
    """Import proto, compare with onnxruntime (and ref, e.g. PyTorch in float64); returns diffs."""
    model = from_onnx(proto)
    y = run_imported(model, x)
    diffs = []
    for r in [run_ort(proto, x)] + ([ref] if ref is not None else []):
        r = to_ir(r, model.meta["output_layout"])
        assert y.shape == r.shape
        diffs.append(float(np.max(np.abs(y - r))))
    assert max(diffs) < TOL, diffs
    return model, diffs


# --------------------------------------------------------------------------------------------------
# Models exported by PyTorch
# --------------------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
nn = torch.nn


def export(module, x):
    """TorchScript ONNX exporter (the dynamo one needs onnxscript); returns (proto, torch float64 output)."""
    module = module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), buf, dynamo=False, opset_version=14,
                          input_names=["x"], output_names=["y"])
    with torch.no_grad():
        ref = module.double()(torch.from_numpy(x).double()).numpy()
    module.float()
    return onnx.load_from_string(buf.getvalue()), ref


def shape_for(batch_first, B=3, T=7, F=6):
    return (B, T, F) if batch_first else (T, B, F)


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("layers,bidir", [(1, False), (2, False), (1, True), (2, True)])
@pytest.mark.parametrize("head", [Seq, KWS])
def test_torch_export_rnn(cls, batch_first, layers, bidir, head):
    torch.manual_seed(0)
    rnn = cls(6, 9, num_layers=layers, bidirectional=bidir, batch_first=batch_first)
    x = data(shape_for(batch_first))
    proto, ref = export(head(rnn), x)
    model, _ = check(proto, x, ref)
    rec = [layer for layer in model.layers if isinstance(layer, Recurrent)]
    assert len(rec) == layers and all(r.bidirectional == bidir for r in rec)
    assert rec[-1].return_sequences == (head is Seq)
    assert isinstance(rec[0].cell, GRUCell if cls is nn.GRU else LSTMCell)
    if cls is nn.GRU:
        assert rec[0].cell.reset_after
    assert model.meta["input_layout"] == ("BTF" if batch_first else "TBF")
    assert model.steps == 7


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("layers", [1, 2])
def test_torch_export_final_state(cls, layers):
    """h_n[-1] is exported as the RNN's Y_h (concatenated over layers, then gathered)."""
    torch.manual_seed(1)
    x = data((2, 5, 6))
    proto, ref = export(KWSState(cls(6, 7, num_layers=layers, batch_first=True), nn.functional.softsign), x)
    model, _ = check(proto, x, ref)
    assert not model.layers[-2].return_sequences


@pytest.mark.parametrize("shape", [(5, 10), (2, 5, 10)])  # 2-D: Gemm; 3-D: MatMul + Add
def test_torch_export_mlp(shape):
    torch.manual_seed(2)
    mlp = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3),
                        nn.Sigmoid())
    x = data(shape)
    proto, ref = export(mlp, x)
    model, _ = check(proto, x, ref)
    assert [layer.activation for layer in model.layers] == ["relu", "tanh", "sigmoid"]
    if len(shape) == 2:
        assert model.meta["input_layout"] == "TF"  # [N, F] runs as one unbatched sequence


def test_torch_export_dnn_flatten():
    torch.manual_seed(3)
    dnn = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4, 12), nn.ReLU(), nn.Linear(12, 3), nn.Softsign())
    x = data((2, 6, 4))
    proto, ref = export(dnn, x)
    model, _ = check(proto, x, ref)
    assert isinstance(model.layers[0], Flatten) and model.steps == 6 and model.in_features == 4


def test_file_and_load_model(tmp_path):
    torch.manual_seed(4)
    x = data((2, 5, 6))
    proto, ref = export(KWS(nn.GRU(6, 8, batch_first=True)), x)
    path = tmp_path / "kws.onnx"
    onnx.save(proto, str(path))
    for model in (from_onnx(path, name="kws"), load_model(path)):
        assert np.max(np.abs(run_imported(model, x) - ref)) < TOL
    assert from_onnx(str(path), name="kws").name == "kws"


# --------------------------------------------------------------------------------------------------
# Hand-built RNN nodes (TensorFlow-style GRU, peepholes, reverse: things PyTorch does not export)
# --------------------------------------------------------------------------------------------------

T, B, I, H = 6, 3, 5, 4


def rnn_proto(op, direction="forward", outputs=("Y",), layout=0, peepholes=False, initial=False,
              seed=0, **attrs):
    rng = np.random.default_rng(seed)
    nd = 2 if direction == "bidirectional" else 1
    g = 3 if op == "GRU" else 4
    inits = {"W": rng.standard_normal((nd, g * H, I)) * 0.5, "R": rng.standard_normal((nd, g * H, H)) * 0.5,
             "B": rng.standard_normal((nd, 2 * g * H)) * 0.5}
    names = ["x", "W", "R", "B", "", "h0" if initial else ""]
    if initial:
        inits["h0"] = np.zeros((nd, B, H))
    if op == "LSTM":
        names += ["c0" if initial else "", "P" if peepholes else ""]
        if initial:
            inits["c0"] = np.zeros((nd, B, H))
        if peepholes:
            inits["P"] = rng.standard_normal((nd, 3 * H))
    while names[-1] == "":
        names.pop()
    outs = [o if o in outputs else "" for o in ("Y", "Y_h")]
    while outs[-1] == "":
        outs.pop()
    node = helper.make_node(op, names, outs, name=f"my_{op.lower()}", hidden_size=H, direction=direction,
                            **({"layout": layout} if layout else {}), **attrs)
    shape = [B, T, I] if layout else [T, B, I]
    graph = helper.make_graph(
        [node], "rnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_gru_node(lbr, direction):
    x = data((T, B, I))
    model, _ = check(rnn_proto("GRU", direction, linear_before_reset=lbr, initial=lbr == 1), x)
    rec = model.layers[0]
    assert rec.cell.reset_after == bool(lbr)  # 0 is TensorFlow's GRU (reset before the matmul)
    assert rec.reverse == (direction == "reverse") and rec.bidirectional == (direction == "bidirectional")
    assert model.meta["output_layout"] == ("TDBF" if direction == "bidirectional" else "T1BF")


@pytest.mark.parametrize("peepholes", [False, True])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_lstm_node(peepholes, direction):
    x = data((T, B, I))
    model, _ = check(rnn_proto("LSTM", direction, peepholes=peepholes, initial=True), x)
    assert model.layers[0].cell.peephole == peepholes


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
def test_final_state_node(op):
    x = data((T, B, I))
    model, _ = check(rnn_proto(op, outputs=("Y_h",)), x)
    assert not model.layers[0].return_sequences and model.meta["output_layout"] == "1BF"


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
def test_batch_major_layout(op):
    """layout=1 ([B, T, F]); onnxruntime lacks it, so compare with the layout=0 twin."""
    x = data((B, T, I))
    model = from_onnx(rnn_proto(op, "bidirectional", layout=1))
    assert model.meta["input_layout"] == "BTF" and model.meta["output_layout"] == "BTDF"
    ref = to_ir(run_ort(rnn_proto(op, "bidirectional"), x.transpose(1, 0, 2)), "TDBF")
    assert np.max(np.abs(run_float(model, x) - ref)) < TOL


def mlp_proto(extra_nodes=(), out="z"):
    """Gemm (transB=0, alpha, beta) -> Relu -> MatMul -> Add -> Softsign (+ extra nodes)."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in [("w1", (I, 7)), ("b1", (1, 7)), ("w2", (7, 3)), ("b2", (3,))]]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["a"], name="gemm", alpha=0.5, beta=2.0),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["m"], name="matmul"),
             helper.make_node("Add", ["b2", "m"], ["s"], name="add"),
             helper.make_node("Softsign", ["s"], ["z"], name="softsign"), *extra_nodes]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", I])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def test_gemm_alpha_beta():
    model, _ = check(mlp_proto(), data((8, I)))
    assert [type(x) for x in model.layers] == [FC, FC]
    assert [x.activation for x in model.layers] == ["relu", "softsign"]


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

def test_unsupported_op():
    proto = mlp_proto([helper.make_node("Softmax", ["z"], ["p"], name="my_softmax", axis=-1)], out="p")
    with pytest.raises(ModelError, match=r"my_softmax \(Softmax\).*supported ops: GRU, LSTM"):
        from_onnx(proto)


def test_unsupported_conv(tmp_path):
    torch.manual_seed(6)
    x = data((2, 4, 9))
    proto, _ = export(nn.Sequential(nn.Conv1d(4, 4, 3), nn.ReLU()), x)
    with pytest.raises(ModelError, match=r"Conv"):
        from_onnx(proto)


@pytest.mark.parametrize("op,attrs,msg", [
    ("GRU", {"clip": 3.0}, "clip"),
    ("GRU", {"activations": ["Relu", "Tanh"]}, "activations"),
    ("LSTM", {"input_forget": 1}, "input_forget"),
])
def test_unsupported_rnn_attrs(op, attrs, msg):
    with pytest.raises(ModelError, match=f"my_{op.lower()}.*{msg}"):
        from_onnx(rnn_proto(op, **attrs))


def test_unexpressible_final_state():
    with pytest.raises(ModelError, match="my_gru.*Y_h"):
        from_onnx(rnn_proto("GRU", "reverse", outputs=("Y_h",)))


def test_malformed_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf \xff\xfe")
    with pytest.raises(ModelError, match="broken.onnx"):
        from_onnx(bad)
    with pytest.raises(ModelError, match="broken.onnx"):
        load_model(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty.onnx"):
        from_onnx(empty)


def test_dangling_input():
    proto = mlp_proto()
    proto.graph.node[2].input[0] = "nowhere"
    with pytest.raises(ModelError, match="matmul.*nowhere"):
        from_onnx(proto)
