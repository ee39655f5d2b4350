"""PyTorch importer: imported models must match PyTorch (run in float64) through run_float."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from rnnaccel.host.importers import from_torch, load_model  # noqa: E402
from rnnaccel.host.ir import FC, Flatten, ModelError, Recurrent  # noqa: E402
from rnnaccel.host.reference import run_float  # noqa: E402

from .torch_modules import KWS, KWSState, data  # noqa: E402

TOL = 1e-5


def torch_ref(module, x):
    """PyTorch output in float64 (the importer's weights are float32, the executor runs float64)."""
    with torch.no_grad():
        y = module.double().eval()(torch.as_tensor(x, dtype=torch.float64))
    return (y[0] if isinstance(y, tuple) else y).numpy()


def to_btf(model, x):
    """Framework input -> run_float's [B, T, F]."""
    return x.transpose(1, 0, 2) if model.meta["input_layout"] == "TBF" else x


def check(module, x, **kw):
    module = module.eval()
    model = from_torch(module, **kw)
    ref = torch_ref(module, x)
    y = run_float(model, to_btf(model, x))
    if model.sequence_output and model.meta["input_layout"] == "TBF":
        y = y.transpose(1, 0, 2)  # torch time-major output
    assert y.shape == ref.shape
    diff = float(np.max(np.abs(y - ref)))
    assert diff < TOL, diff
    return model


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("layers,bidir", [(1, False), (2, False), (1, True), (2, True)])
def test_rnn_sequence(cls, batch_first, layers, bidir):
    torch.manual_seed(0)
    rnn = cls(6, 9, num_layers=layers, bidirectional=bidir, batch_first=batch_first)
    model = check(rnn, data((3, 7, 6)))
    assert model.meta["input_layout"] == ("BTF" if batch_first else "TBF")
    rec = [layer for layer in model.layers if isinstance(layer, Recurrent)]
    assert len(rec) == layers and all(r.bidirectional == bidir for r in rec)
    assert all(r.return_sequences for r in rec)


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("layers,bidir", [(1, False), (2, True)])
def test_kws_module_graph(cls, batch_first, layers, bidir):
    torch.manual_seed(1)
    model = check(KWS(cls(5, 8, num_layers=layers, bidirectional=bidir, batch_first=batch_first)),
                  data((4, 6, 5)))
    assert [type(x) for x in model.layers] == [Recurrent] * layers + [FC]
    assert not model.layers[-2].return_sequences
    assert model.layers[-1].name == "fc"


def test_gru_reset_after():
    torch.manual_seed(2)
    model = from_torch(nn.GRU(4, 5))
    assert model.layers[0].cell.reset_after


@pytest.mark.parametrize("bidir", [False, True])
def test_lstm_proj(bidir):
    torch.manual_seed(3)
    lstm = nn.LSTM(5, 10, num_layers=2, proj_size=4, batch_first=True, bidirectional=bidir)
    model = check(KWS(lstm), data((2, 6, 5)))
    cell = model.layers[0].cell
    assert cell.w_proj.shape == (4, 10) and cell.out_features == 4


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("layers", [1, 2])
def test_final_state(cls, layers):
    torch.manual_seed(4)
    check(KWSState(cls(5, 7, num_layers=layers, batch_first=True)), data((3, 5, 5)))


def test_lstm_no_bias():
    torch.manual_seed(5)
    check(nn.LSTM(3, 4, bias=False), data((5, 2, 3)))
    check(nn.GRU(3, 4, bias=False, batch_first=True), data((2, 5, 3)))


@pytest.mark.parametrize("last", [nn.Sigmoid, nn.Tanh, nn.Softsign])
def test_mlp(last):
    torch.manual_seed(6)
    mlp = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3), last())
    model = check(mlp, data((2, 5, 10)))
    assert [x.activation for x in model.layers] == ["relu", last.__name__.lower()]
    check(mlp, data((8, 10)))  # [N, F]: N acts as time (FCs are per step)


def test_dnn_flatten():
    """Hello Edge DNN: flatten the [T, F] features, then FCs."""
    torch.manual_seed(7)
    dnn = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4, 12), nn.ReLU(), nn.Linear(12, 3))
    model = check(dnn, data((2, 6, 4)), steps=6)
    assert isinstance(model.layers[0], Flatten) and model.in_features == 4 and model.steps == 6
    with pytest.raises(ModelError, match="steps"):
        from_torch(dnn)


def test_custom_module_in_sequential():
    torch.manual_seed(13)
    model = check(nn.Sequential(KWS(nn.LSTM(4, 6, batch_first=True)), nn.Tanh()), data((2, 5, 4)))
    assert model.layers[-1].activation == "tanh" and not model.layers[0].return_sequences


def test_activation_after_rnn():
    """An activation with no Linear before it is carried by an identity FC."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(3, 4, batch_first=True)
            self.fc = nn.Linear(5 * 4, 2)

        def forward(self, x):
            y = torch.relu(self.gru(x)[0])
            return self.fc(y.flatten(1))  # flatten over (T, F)

    torch.manual_seed(8)
    model = check(M(), data((2, 5, 3)), steps=5)
    assert model.layers[1].activation == "relu"
    assert np.array_equal(model.layers[1].weight, np.eye(4))


def test_functional_graph():
    """Functional activations, transpose to time-major, view(size(0), -1)."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(3, 4, bidirectional=True)
            self.fc1 = nn.Linear(8, 6)
            self.fc2 = nn.Linear(6, 2)

        def forward(self, x):                # x [B, T, F]
            out, _ = self.gru(x.transpose(0, 1).contiguous())
            last = out[-1].view(x.size(0), -1)
            return torch.tanh(self.fc2(nn.functional.relu(self.fc1(last))))

    torch.manual_seed(9)
    model = check(M(), data((3, 6, 3)))
    assert model.meta["input_layout"] == "BTF"
    assert [x.activation for x in model.layers[1:]] == ["relu", "tanh"]


def test_unsupported_module():
    seq = nn.Sequential(nn.Conv1d(4, 4, 3), nn.Linear(4, 2))
    with pytest.raises(ModelError, match=r"0 \(Conv1d\).*supported.*nn.GRU"):
        from_torch(seq)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 4, 3)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ModelError, match="conv.*Conv1d"):
        from_torch(M())
    with pytest.raises(ModelError, match="Conv1d.*not supported"):
        from_torch(nn.Conv1d(4, 4, 3))


def test_unsupported_graph_op():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) * 2.0

    with pytest.raises(ModelError, match="mul"):
        from_torch(M())

    class Loop(nn.Module):  # data-dependent control flow: fx cannot trace it
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ModelError, match="Loop.*torch.fx"):
        from_torch(Loop())


def test_inexpressible():
    class FirstStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(3, 4, batch_first=True)

        def forward(self, x):
            return self.gru(x)[0][:, 0]

    with pytest.raises(ModelError, match="last time step"):
        from_torch(FirstStep())

    class BiState(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(3, 4, bidirectional=True)

        def forward(self, x):
            return self.gru(x)[1][-1]

    with pytest.raises(ModelError, match="bidirectional"):
        from_torch(BiState())


def test_training_dropout_rejected():
    torch.manual_seed(10)
    seq = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    with pytest.raises(ModelError, match="eval"):
        from_torch(seq.train())
    with pytest.raises(ModelError, match="eval"):
        from_torch(nn.GRU(3, 3, num_layers=2, dropout=0.2).train())
    from_torch(nn.GRU(3, 3, num_layers=2, dropout=0.2).eval())


def test_load_model_pt(tmp_path):
    torch.manual_seed(11)
    seq = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2)).eval()
    torch.save(seq, tmp_path / "mlp.pt")
    model = load_model(tmp_path / "mlp.pt")
    x = data((4, 5))
    assert np.max(np.abs(run_float(model, x) - torch_ref(seq, x))) < TOL
    torch.save(seq.state_dict(), tmp_path / "sd.pth")
    with pytest.raises(ModelError, match="state_dict"):
        load_model(tmp_path / "sd.pth")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script itself is deprecated
def test_load_model_torchscript(tmp_path):
    torch.manual_seed(12)
    kws = KWS(nn.GRU(5, 8, batch_first=True)).eval()
    torch.jit.script(kws).save(str(tmp_path / "kws.pt"))
    model = load_model(tmp_path / "kws.pt")
    x = data((2, 6, 5))
    assert model.steps is None
    assert np.max(np.abs(run_float(model, x) - torch_ref(kws, x))) < TOL


def test_load_model_unknown(tmp_path):
    with pytest.raises(ModelError, match="xyz"):
        load_model(tmp_path / "m.xyz")


def test_importers_lazy():
    code = ("import sys, rnnaccel.host.importers as m; m.load_model; "
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
