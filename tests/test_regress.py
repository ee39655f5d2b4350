"""`rnnaccel regress` on the register-level host board: every case agrees, reports are written."""
import json

from rnnaccel.host import regress


def test_regress_zoo_subset_on_host_board(tmp_path, capsys):
    rc = regress.main(["--device", "host://?lanes=8", "--modes", "8,2", "--n", "2",
                       "--families", "gru_tf,lstm_peep_proj,bidir_seq", "--hello-edge", "", "--out", str(tmp_path)])
    out = capsys.readouterr().out.strip().splitlines()
    total = json.loads(out[-1])
    assert rc == 0
    assert total["cases"] == 6 and total["inferences"] == 12
    assert total["mismatches"] == 0 and total["cycle_mismatches"] == 0 and not total["failed"]
    table = (tmp_path / "regress.md").read_text()
    assert "| bidir_seq | 2 | 2 | 0 | 0 |" in table
    rows = json.loads((tmp_path / "regress.json").read_text())["rows"]
    assert all(0 < r["utilisation"] <= 1 for r in rows)


def test_regress_reports_images_that_do_not_fit(tmp_path, capsys):
    rc = regress.main(["--device", "host://?lanes=8&wmem_bytes=1024", "--modes", "16", "--n", "1",
                       "--families", "gru_wide", "--hello-edge", "", "--out", str(tmp_path)])
    total = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and total["not_fitting"] == ["gru_wide@16"] and total["inferences"] == 0


def test_regress_rejects_unknown_mode(capsys):
    assert regress.main(["--modes", "3"]) == 2
    assert "weight modes" in capsys.readouterr().err
