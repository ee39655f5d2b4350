"""TF1 frozen-graph importer: the four Hello Edge graphs against TensorFlow's own outputs."""
import numpy as np
import pytest
from tensorboard.compat.proto import graph_pb2

from rnnaccel.host.importers.tf_graph import load_tf_graph, parse_graph_def
from rnnaccel.host.ir import FC, Flatten, GRUCell, LSTMCell, ModelError, Recurrent
from rnnaccel.host.mfcc import mfcc
from rnnaccel.host.reference import run_float

MODELS = ["GRU_S", "Basic_LSTM_S", "LSTM_S", "DNN_S"]
LABELS = "_silence_ _unknown_ yes no up down left right on off stop go".split()


@pytest.fixture(scope="module")
def hello_edge(shared_dir):
    return shared_dir / "models" / "hello-edge"


@pytest.fixture(scope="module")
def models(hello_edge):
    return {m: load_tf_graph(hello_edge / f"{m}.pb") for m in MODELS}


def _reference(hello_edge, model):
    return np.load(hello_edge / "reference" / f"{model}.npz")


def test_structure(models):
    gru, blstm, lstm, dnn = (models[m] for m in MODELS)
    for m in models.values():
        assert m.in_features == 10 and m.out_features == 12 and m.labels == LABELS
        assert m.frontend.window_size == 640 and m.frontend.fft_size == 1024
        assert (m.frontend.num_channels, m.frontend.lower_hz, m.frontend.upper_hz) == (40, 20.0, 4000.0)
        assert m.steps == m.frontend.frames
        assert isinstance(m.layers[-1], FC) and m.layers[-1].activation == "none"
    assert gru.steps == 25 and blstm.steps == 49 and blstm.frontend.stride == 320
    cell = gru.layers[0].cell
    assert isinstance(cell, GRUCell) and not cell.reset_after and cell.hidden == 154
    assert not gru.layers[0].return_sequences
    cell = blstm.layers[0].cell
    assert isinstance(cell, LSTMCell) and cell.hidden == 118 and cell.forget_bias == 1.0 and not cell.peephole
    cell = lstm.layers[0].cell
    assert cell.hidden == 144 and cell.peephole and cell.w_proj.shape == (98, 144) and cell.forget_bias == 1.0
    assert isinstance(dnn.layers[0], Flatten)
    assert [lay.activation for lay in dnn.layers[1:]] == ["relu", "relu", "relu", "none"]
    assert [lay.out_features for lay in dnn.layers[1:]] == [144, 144, 144, 12]
    assert all(isinstance(m.layers[0], Recurrent) for m in (gru, blstm, lstm))


@pytest.mark.parametrize("model", MODELS)
def test_logits_match_tensorflow(hello_edge, models, model):
    ref = _reference(hello_edge, model)
    logits = run_float(models[model], ref["mfcc"])
    assert logits.shape == ref["logits"].shape
    assert np.abs(logits - ref["logits"]).max() < 1e-3
    np.testing.assert_array_equal(logits.argmax(1), ref["logits"].argmax(1))


@pytest.mark.parametrize("model", MODELS)
def test_audio_to_logits(hello_edge, models, model):
    """End to end from int16 audio with the imported front end."""
    m = models[model]
    clips = np.load(hello_edge / "reference" / "clips.npz")
    ref = _reference(hello_edge, model)
    logits = run_float(m, mfcc(clips["audio"], m.frontend))
    assert np.abs(logits - ref["logits"]).max() < 1e-3
    np.testing.assert_array_equal(logits.argmax(1), ref["logits"].argmax(1))
    assert m.labels[int(logits[list(clips["names"]).index("repo/right")].argmax())] == "right"


def test_labels_argument(hello_edge):
    m = load_tf_graph(hello_edge / "DNN_S.pb", name="dnn", labels=[f"c{i}" for i in range(12)])
    assert m.name == "dnn" and m.labels[0] == "c0"
    with pytest.raises(ModelError, match="3 labels for 12 outputs"):
        load_tf_graph(hello_edge / "DNN_S.pb", labels=["a", "b", "c"])


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

def test_garbage_file(tmp_path):
    p = tmp_path / "junk.pb"
    p.write_bytes(b"this is not a graph \x00\xff\xfe\x13\x37" * 10)
    with pytest.raises(ModelError, match="not a TensorFlow GraphDef"):
        load_tf_graph(p)
    p.write_bytes(b"")
    with pytest.raises(ModelError, match="no nodes"):
        load_tf_graph(p)


def _node(gd, name, op, inputs=(), **attrs):
    n = gd.node.add(name=name, op=op)
    n.input.extend(inputs)
    for k, v in attrs.items():
        if isinstance(v, bool):
            n.attr[k].b = v
        elif isinstance(v, int):
            n.attr[k].i = v
    return n


def _const(gd, name, arr, as_content=True):
    arr = np.asarray(arr, np.float32)
    n = _node(gd, name, "Const")
    n.attr["dtype"].type = 1
    t = n.attr["value"].tensor
    t.dtype = 1
    for d in arr.shape:
        t.tensor_shape.dim.add(size=d)
    if as_content:
        t.tensor_content = arr.astype("<f4").tobytes()
    else:
        t.float_val.extend(np.unique(arr).tolist())  # a single repeated value fills the tensor
    return n


def _tiny_graph(act_op="Relu"):
    """features [B, 10] -> dense 10->4 -> act -> dense 4->3 -> Softmax."""
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(10, 4)), rng.normal(size=4), rng.normal(size=(4, 3))
    gd = graph_pb2.GraphDef()
    x = _node(gd, "features", "Placeholder")
    x.attr["shape"].shape.dim.add(size=-1)
    x.attr["shape"].shape.dim.add(size=10)
    _const(gd, "d1/W", w1)
    _const(gd, "d1/b", b1)
    _node(gd, "d1/W/read", "Identity", ["d1/W"])
    _node(gd, "d1/MatMul", "MatMul", ["features", "d1/W/read"])
    _node(gd, "d1/add", "Add", ["d1/MatMul", "d1/b"])
    _node(gd, "d1/act", act_op, ["d1/add"])
    _const(gd, "d2/W", w2)
    _const(gd, "d2/b", np.full(3, 0.5), as_content=False)
    _node(gd, "d2/MatMul", "MatMul", ["d1/act", "d2/W"])
    _node(gd, "d2/add", "BiasAdd", ["d2/MatMul", "d2/b"])
    _node(gd, "prob", "Softmax", ["d2/add"])
    return gd, (w1, b1, w2)


def test_tiny_graph_imports(tmp_path):
    gd, (w1, b1, w2) = _tiny_graph()
    p = tmp_path / "tiny.pb"
    p.write_bytes(gd.SerializeToString())
    m = load_tf_graph(p)
    assert m.labels is None and m.frontend is None and m.steps is None
    x = np.random.default_rng(1).normal(size=(5, 10))
    want = np.maximum(x @ w1 + b1, 0) @ w2 + 0.5
    np.testing.assert_allclose(run_float(m, x), want, atol=1e-5)


def test_unsupported_op(tmp_path):
    gd, _ = _tiny_graph(act_op="Relu6")
    p = tmp_path / "relu6.pb"
    p.write_bytes(gd.SerializeToString())
    with pytest.raises(ModelError) as e:
        load_tf_graph(p)
    msg = str(e.value)
    assert "'d1/act'" in msg and "Relu6" in msg and "supported" in msg and "MatMul" in msg


def _mutated(hello_edge, tmp_path, model, fn):
    gd = parse_graph_def((hello_edge / f"{model}.pb").read_bytes())
    fn(gd, {n.name: n for n in gd.node})
    p = tmp_path / f"{model}_mutated.pb"
    p.write_bytes(gd.SerializeToString())
    return p


def test_unsupported_op_inside_cell(hello_edge, tmp_path):
    tanh = "rnn/while/rnn/multi_rnn_cell/cell_0/cell_0/gru_cell/Tanh"
    p = _mutated(hello_edge, tmp_path, "GRU_S", lambda gd, n: setattr(n[tanh], "op", "Relu"))
    with pytest.raises(ModelError, match=f"{tanh}.*Relu.*recurrent cell"):
        load_tf_graph(p)


def test_lstm_cell_state_is_not_an_output(hello_edge, tmp_path):
    """Reading c (Exit of the other state variable) instead of h must not import silently."""
    def use_c(gd, n):
        _node(gd, "LSTM-Layer/lstm/rnn/while/Exit_2", "Exit", ["LSTM-Layer/lstm/rnn/while/Switch_2"])
        n["Output-Layer/MatMul"].input[0] = "LSTM-Layer/lstm/rnn/while/Exit_2"
    p = _mutated(hello_edge, tmp_path, "Basic_LSTM_S", use_c)
    with pytest.raises(ModelError, match="not the hidden state h"):
        load_tf_graph(p, labels=LABELS)


def test_frame_count_mismatch(hello_edge, tmp_path):
    """A graph whose Reshape expects another number of frames than its front end makes."""
    p = _mutated(hello_edge, tmp_path, "GRU_S",
                 lambda gd, n: n["AudioSpectrogram"].attr["stride"].__setattr__("i", 320))
    with pytest.raises(ModelError, match="Reshape"):
        load_tf_graph(p)
