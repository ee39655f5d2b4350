"""Keyword-spotting training, export, model files and the shipped GRU-S (tests/test_kws_train.py)."""
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnnaccel.host import cli, ir  # noqa: E402
from rnnaccel.host.importers import load_model  # noqa: E402
from rnnaccel.host.kws import evaluate as ev  # noqa: E402
from rnnaccel.host.kws import train as kt  # noqa: E402
from rnnaccel.host.kws.data import LABELS  # noqa: E402
from rnnaccel.host.reference import run_float  # noqa: E402

N_TINY = 240          # 20 blocks of the 12 classes
N_SHIPPED_TEST = 360  # held-out-voice sample for the shipped model: 1 point = 3.6 clips
SHIPPED_TEST_SEED = 1  # not the model card's test set (seed 0)
TINY = dict(arch="gru", epochs=2, qat_epochs=1, batch=64, n_val=0)


def _require_espeak():
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run `make setup`", pytrace=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("kws_cache")


@pytest.fixture(scope="module")
def tiny(cache):
    _require_espeak()
    return kt.load_features("train", N_TINY, 0, cache_dir=cache, progress=False)


def _train(tiny, **kw):
    # one thread: with two, torch's float reductions differed between runs on a loaded machine
    return kt.train({**TINY, **kw}, progress=False, log=lambda s: None, features={"train": tiny}, threads=1)


@pytest.fixture(scope="module")
def trained(tiny):
    return _train(tiny)


def test_features_cached_and_shaped(tiny, cache):
    x, y = tiny
    assert x.shape == (N_TINY, 25, 10) and x.dtype == np.float32
    assert kt.FRONTEND.frames == 25
    assert sorted(np.bincount(y, minlength=12)) == [20] * 12
    assert kt.feature_cache_path("train", N_TINY, 0, cache_dir=cache).is_file()
    x2, y2 = kt.load_features("train", N_TINY, 0, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(x, x2)


def test_training_is_deterministic(tiny, trained):
    """Same seed -> bit-identical weights (float epoch + a fake-quantised epoch); another seed differs."""
    net1, info1 = trained
    net2, info2 = _train(tiny)
    s1, s2 = net1.state_dict(), net2.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    assert [h["loss"] for h in info1["history"]] == [h["loss"] for h in info2["history"]]
    net3, _ = _train(tiny, seed=1, epochs=1, qat_epochs=0)
    assert not torch.equal(net3.w_h, net1.w_h)
    assert info1["history"][-1]["qat"] and not info1["history"][0]["qat"]


@pytest.mark.parametrize("arch", kt.ARCHS)
def test_to_ir_matches_torch(tiny, trained, arch):
    x = tiny[0][:48]
    if arch == "gru":
        net = trained[0]
    else:
        torch.manual_seed(0)
        net = kt.make_net(arch, x.mean((0, 1)), x.std((0, 1)))
    net.eval()
    with torch.no_grad():
        y_torch = net(torch.from_numpy(x)).double().numpy()
    model = kt.to_ir(net)
    y_ir = run_float(model, x)
    assert y_ir.shape == (48, 12)
    assert np.max(np.abs(y_ir - y_torch)) < 1e-5
    assert model.labels == list(LABELS) and model.frontend == kt.FRONTEND and model.steps == 25
    if arch == "gru":
        cell = model.layers[0].cell
        assert isinstance(cell, ir.GRUCell) and not cell.reset_after
        assert not np.any(cell.b_h)


@pytest.mark.parametrize("arch", kt.ARCHS)
def test_save_load_round_trip(tmp_path, tiny, arch):
    torch.manual_seed(0)
    x = tiny[0][:16]
    net = kt.make_net(arch, x.mean((0, 1)), x.std((0, 1)))
    model = kt.to_ir(net, meta={"note": "round trip", "config": {"bits": (8, 4)}})
    path = tmp_path / f"{arch}.npz"
    kt.save_model(model, path)
    for loaded in (kt.load_model_npz(path), load_model(path)):
        assert loaded.name == model.name and loaded.labels == model.labels
        assert loaded.frontend == model.frontend and loaded.steps == model.steps
        assert loaded.summary() == model.summary()
        assert loaded.meta["note"] == "round trip" and loaded.meta["config"] == {"bits": [8, 4]}
        np.testing.assert_array_equal(run_float(loaded, x), run_float(model, x))


def test_load_rejects_foreign_npz(tmp_path):
    p = tmp_path / "features.npz"
    np.savez(p, mfcc=np.zeros((1, 25, 10)))
    with pytest.raises(ir.ModelError, match="header"):
        load_model(p)


def test_shipped_model(cache):
    """The shipped GRU-S: shape, size, and accuracy on a held-out-voice sample, float and 8-bit."""
    _require_espeak()
    path = kt.SHIPPED_MODEL
    assert path.is_file() and path.stat().st_size < 400_000
    m = load_model(path)
    assert [type(l).__name__ for l in m.layers] == ["Recurrent", "FC"]
    rnn, fc = m.layers
    assert isinstance(rnn.cell, ir.GRUCell) and not rnn.cell.reset_after
    assert (rnn.cell.in_features, rnn.cell.hidden) == (10, 154) and not rnn.return_sequences
    assert not rnn.bidirectional and not rnn.reverse
    assert (fc.in_features, fc.out_features, fc.activation) == (154, 12, "none")
    assert m.param_count == 78_090          # the Hello Edge GRU_S
    assert m.labels == list(LABELS) and m.frontend == kt.FRONTEND and m.frontend.frames == 25
    assert m.meta["architecture"] == "gru" and "accuracy" in m.meta
    x, y = ev.test_features(m, N_SHIPPED_TEST, SHIPPED_TEST_SEED, progress=False, cache_dir=cache)
    calib = ev.calib_features(m, progress=False, cache_dir=cache)
    acc = {b: float(np.mean(ev.predict(m, x, b, calib) == y)) for b in ("float", 8)}
    assert acc["float"] >= 0.90, acc
    assert acc[8] >= acc["float"] - 0.01, acc


def test_cli_kws_eval(monkeypatch, capsys, cache):
    _require_espeak()
    monkeypatch.setenv("RNNACCEL_KWS_CACHE", str(cache))
    assert cli.main(["kws", "eval", "--n", "120"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    res = json.loads(out[-1])
    assert res["n"] == 120 and res["bits"] == 8 and res["model"].endswith("gru_s.npz")
    assert 0.0 <= res["accuracy"] <= 1.0 and res["correct"] == round(res["accuracy"] * 120)


def test_cli_kws_errors(capsys):
    assert cli.main(["kws", "eval", "--model", "/nonexistent/model.npz"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli.main(["kws", "train", "--epochs", "0"]) == 2


def test_recorded_model_paths_are_portable(tmp_path):
    """Results written to docs/ never carry this machine's absolute paths."""
    from rnnaccel.host.kws.evaluate import REPO, portable_path
    assert portable_path(REPO / "host" / "kws" / "models" / "gru_s.npz") == "host/kws/models/gru_s.npz"
    assert portable_path(REPO.parent / "shared" / "m.pb") == "../shared/m.pb"
    assert portable_path(None) is None
    assert not portable_path(tmp_path / "x.npz").startswith("/") or str(REPO.parent) == "/"
