"""The pynq:// transport in PYNQ's Python (.venv-pynq, made by `make test`), against the host board
served over a UART bridge on 127.0.0.1 (the simulated board: tests/test_driver_simboard.py)."""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rnnaccel.driver.fake import FakeBoard, serve_uartbone
from rnnaccel.host.compiler import compile_model
from rnnaccel.host.spec import quantize

from .models import families, inputs

REPO = Path(__file__).resolve().parents[1]
PYNQ_PY = REPO / ".venv-pynq" / "bin" / "python"


def prepare_pynq_dir(d: Path, steps=6):
    """Two streamable images and int16 frames for tests/test_driver_pynq_board.py."""
    fam = families()
    for tag, name in (("a", "gru_tf"), ("b", "lstm_peep_proj")):
        m = fam[name]
        x = inputs(m, 8, seed=5)
        img = compile_model(m, x, bits=8)
        img.save(d / f"{tag}.rnna")
        np.save(d / f"x{tag}.npy", quantize(x[0][:steps], img.in_frac).astype(np.int16))


def run_pynq_board_test(host, port, csr_csv, d, timeout=600):
    if not PYNQ_PY.exists():
        pytest.skip(".venv-pynq is missing: `make test` (or `make .venv-pynq/.stamp`) creates it")
    env = dict(os.environ, RNNACCEL_PYNQ_BRIDGE=f"{host}:{port}", RNNACCEL_PYNQ_CSR=str(csr_csv),
               RNNACCEL_PYNQ_DIR=str(d))
    env.pop("PYTHONPATH", None)
    r = subprocess.run([str(PYNQ_PY), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(d),
                        str(REPO / "tests" / "test_driver_pynq_board.py")],
                       cwd=d, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout, r.stdout[-2000:]
    return r.stdout


def test_pynq_transport_in_pynq_python_against_the_host_board(tmp_path):
    prepare_pynq_dir(tmp_path)
    board = FakeBoard(n_lanes=8)
    th, port = serve_uartbone(board)
    (tmp_path / "csr.csv").write_text(board.csr_csv)
    try:
        run_pynq_board_test("127.0.0.1", port, tmp_path / "csr.csv", tmp_path)
    finally:
        th.stop()
