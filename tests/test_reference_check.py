"""Acceptance: the four Hello Edge models end to end from audio (numpy MFCC -> compile -> bit-accurate
simulation) against TensorFlow's own features and logits, through the command line."""
import json

import pytest

from rnnaccel.host.cli import main

MODELS = ["GRU_S", "Basic_LSTM_S", "LSTM_S", "DNN_S"]


def run_cli(capsys, *args):
    assert main(list(map(str, args))) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("model", MODELS)
def test_reference_check_8bit(shared_dir, capsys, model):
    he = shared_dir / "models" / "hello-edge"
    res = run_cli(capsys, "reference-check", he / f"{model}.pb", he / "reference", "--bits", "8")
    print(res)
    assert res["bits"] == 8
    assert res["mfcc_max_abs_diff"] < 0.01
    assert res["float_max_abs_diff"] < 1e-3
    assert res["float_top1_agreement"] == 1.0
    assert res["fixed_top1_agreement"] >= 0.98


@pytest.mark.parametrize("bits", [16, 6, 4, 2])
def test_reference_check_other_modes_run(shared_dir, capsys, bits):
    he = shared_dir / "models" / "hello-edge"
    res = run_cli(capsys, "reference-check", he / "GRU_S.pb", he / "reference", "--bits", bits)
    assert res["bits"] == bits and 0.0 <= res["fixed_top1_agreement"] <= 1.0
    if bits == 16:
        assert res["fixed_top1_agreement"] == 1.0 and res["fixed_max_abs_diff"] < 0.1


def test_reference_check_missing_dir(shared_dir, tmp_path):
    from rnnaccel.host.refcheck import RefCheckError, reference_check
    with pytest.raises(RefCheckError, match="missing"):
        reference_check(shared_dir / "models" / "hello-edge" / "GRU_S.pb", tmp_path)
