"""The driver against the register-level host board (driver/fake.py): API, cross-check, faults.

Fast (no Verilator): the same C core and Device code as on hardware, over callbacks (host://,
uart:// to the host board served on 127.0.0.1) and over mapped pointers (mem:// on a file).
The simulated SoC is covered by tests/test_driver_simboard.py.
"""
import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnaccel.driver import (CsrMap, DeviceFault, DeviceTimeout, DriverError, ImageDoesNotFit, MismatchError,
                             open_device)
from rnnaccel.driver.fake import FakeBoard, serve_uartbone
from rnnaccel.driver.transport import DevMem
from rnnaccel.host import isa
from rnnaccel.host.compiler import compile_model
from rnnaccel.host.simulator import Simulator
from rnnaccel.host.spec import quantize

from .models import families, inputs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images():
    fam = families()
    out = {}
    for name, bits in (("gru_tf", 8), ("lstm_peep_proj", 8), ("dnn", 4), ("bidir_seq", 6)):
        m = fam[name]
        x = inputs(m, 8)
        img = compile_model(m, x, bits=bits)
        out[name] = (img, quantize(x, img.in_frac))
    return out


def test_core_is_the_compiled_extension():
    from rnnaccel.driver import _core
    assert Path(_core.__file__).suffix == ".so"
    for fn in ("rna_run", "rna_write_bytes", "rna_wait", "rna_read_i16"):
        assert hasattr(_core.lib, fn)


def test_csr_map_csv_and_json():
    b = FakeBoard(n_lanes=8)
    m = CsrMap.parse(b.csr_csv)
    assert m.reg("mac_ops") == b.csr.reg("mac_ops") and m.reg("mac_ops")[1] == 2
    js = {"csr_registers": {n: {"addr": a, "size": w, "type": "rw"} for n, (a, w) in b.csr.regs.items()},
          "memories": {n: {"base": a, "size": s, "type": "io"} for n, (a, s) in b.csr.mems.items()}}
    m2 = CsrMap.parse(json.dumps(js))
    assert m2.regs == m.regs and m2.mems == m.mems
    with pytest.raises(DriverError, match="rnnaccel_ctrl"):
        CsrMap.parse("csr_register,foo_ctrl,0x0,1,rw\n").reg("ctrl")


def test_two_images_resident_alternating_runs_keep_their_state(images):
    """Two streamable models loaded together, runs interleaved: each matches its own simulator,
    whose state carries over between its runs only."""
    (ga, xa), (lb, xb) = images["gru_tf"], images["lstm_peep_proj"]
    with open_device("host://?lanes=8") as dev:
        a, b = dev.load(ga, name="a"), dev.load(lb, name="b")
        assert a.base[0] != b.base[0] and a.weight_base != b.weight_base and a.prog_base != b.prog_base
        sa, sb = Simulator(ga, 1), Simulator(lb, 1)
        for k in range(3):
            ya = a.run_q(xa[k][:5], reset=(k == 0))
            assert np.array_equal(ya, sa.run_q(xa[k][:5], reset=(k == 0)))
            yb = b.run_q(xb[k][:7], reset=(k == 0))
            assert np.array_equal(yb, sb.run_q(xb[k][:7], reset=(k == 0)))
            assert a.last.cycles == a.last.predicted_cycles and b.last.cycles == b.last.predicted_cycles
        assert a.inferences == 3 and b.inferences == 3 and not a.mismatches and not b.mismatches
        assert np.array_equal(a.read_state(), sa.mem[isa.SPACE_STATE][0])
        assert np.array_equal(b.read_state(), sb.mem[isa.SPACE_STATE][0])


def test_streaming_equals_a_whole_sequence_and_reset_clears(images):
    img, x = images["gru_tf"]
    with open_device("host://?lanes=16") as dev:
        m = dev.load(img)
        whole = Simulator(img, 1).run_q(x[0], reset=True)
        m.reset()
        outs = list(m.stream(x[0], quantized=True))
        assert len(outs) == len(x[0]) and np.array_equal(outs[-1], whole)
        assert m.inferences == len(x[0]) and not m.mismatches
        m.reset()
        assert not m.read_state().any()
        assert np.array_equal(m.run_q(x[0], reset=False), whole)


def test_non_streamable_images_run_whole_sequences(images):
    img, x = images["dnn"]
    assert not img.streamable
    with open_device("host://") as dev:
        m = dev.load(img)
        sim = Simulator(img, len(x))
        ref = sim.run_q(x, reset=True)
        for k in range(3):
            assert np.array_equal(m.run_q(x[k]), ref[k])
        with pytest.raises(DriverError, match="not streamable"):
            m.step(x[0][0])
        ys = list(m.stream(x[0], quantized=True))
        assert len(ys) == 1 and np.array_equal(ys[0], ref[0])     # one full window of max_steps frames


def test_float_api_and_input_errors(images):
    img, x = images["gru_tf"]
    with open_device("host://") as dev:
        m = dev.load(img)
        feats = inputs(families()["gru_tf"], 2)
        y = m.run(feats, reset=True)
        assert y.shape == (2, img.out_features) and y.dtype == np.float64
        bad = feats[0].copy()
        bad[3, 2] = np.nan
        with pytest.raises(ValueError, match=r"NaN/Inf \(first at index \(3, 2\)\)"):
            m.run(bad)
        with pytest.raises(ValueError, match=r"expected \[T, 10\]"):
            m.run_q(np.zeros((4, 11), np.int16))
        with pytest.raises(ValueError, match="accepts 1..12"):
            m.run_q(np.zeros((13, 10), np.int16))
        with pytest.raises(ValueError, match="int16"):
            m.run_q(np.full((2, 10), 40000))


def test_flipped_weight_is_caught_with_the_differing_word(images):
    img, x = images["gru_tf"]
    board = FakeBoard(n_lanes=8)
    with open_device(transport=board, csr=board.csr) as dev:
        m = dev.load(img)
        m.run_q(x[0], reset=True)
        ins = next(i for i in img.program if i.opcode == isa.OP_MATVEC)
        board.inject_weight_fault(m.weight_base * 8 + ins.weight_off, 0x40)     # behind the driver's back
        with pytest.raises(MismatchError) as e:
            m.run_q(x[1], reset=True)
        mm = e.value.mismatch
        exp = Simulator(img, 1).run_q(x[1], reset=True)
        assert not np.array_equal(mm.device, exp) and np.array_equal(mm.expected, exp)
        first = int(np.flatnonzero(mm.device != exp)[0])
        assert mm.word == first
        msg = str(e.value)
        assert f"output word {first} is {mm.device[first]} on the device but {exp[first]}" in msg
        assert "input  12 frames x 10 features" in msg and "host" in msg
        # record mode: keeps running, every mismatch listed
        m.check = "record"
        m.run_q(x[2], reset=True)
        assert len(m.mismatches) == 2


def test_hang_times_out_resets_and_recovers(images):
    img, x = images["gru_tf"]
    board = FakeBoard(n_lanes=8)
    with open_device(transport=board, csr=board.csr, timeout=0.2) as dev:
        m = dev.load(img)
        m.run_q(x[0], reset=True)
        board.hang = True
        with pytest.raises(DeviceTimeout, match=r"did not finish .* within 0.2 s .* soft-reset"):
            m.run_q(x[1])
        assert dev.status()["busy"] == 0, "the driver soft-resets a hung device"
        board.hang = False
        y = m.run_q(x[1])             # state cleared after the reset: equals a fresh run
        assert np.array_equal(y, Simulator(img, 1).run_q(x[1], reset=True))


def test_device_error_is_reported_with_its_code(images):
    img, x = images["gru_tf"]
    board = FakeBoard(n_lanes=8)
    with open_device(transport=board, csr=board.csr) as dev:
        m = dev.load(img)
        pc = 1
        dev.bus.write(dev.windows["prog"][0] + 4 * (m.prog_base + isa.INSTR_WORDS * pc), [0xFFFFFFFF])
        with pytest.raises(DeviceFault, match=r"error 1 \(illegal opcode\) at instruction 1"):
            m.run_q(x[0])
        dev.unload(m)
        m = dev.load(img)             # a fresh copy runs again
        assert np.array_equal(m.run_q(x[0]), Simulator(img, 1).run_q(x[0], reset=True))


def test_capabilities_refuse_images_that_do_not_fit(images):
    img, _ = images["gru_tf"]
    with open_device("host://?lanes=8&wmem_bytes=4096") as dev:
        with pytest.raises(ImageDoesNotFit, match=r"needs [\d,]+ weight words of 8 bytes; the device has 512"):
            dev.load(img, name="big")
    dimg, _ = images["dnn"]           # 4-bit codebooks
    with open_device("host://?modes=16,8") as dev:
        with pytest.raises(ImageDoesNotFit, match="uses 4-bit weights; this device supports 16, 8-bit: recompile"):
            dev.load(dimg)
    with open_device("host://?lanes=8&vmem_words=1024") as dev:
        dev.load(img, name="one")
        with pytest.raises(ImageDoesNotFit, match=r"needs \d+ vector words; the device has 1,024 and \d+ are "
                                                  r"free with \d+ image\(s\) resident \(one, more0"):
            for k in range(20):
                dev.load(img, name=f"more{k}")
        n = len(dev.models)
        dev.unload(dev.models[-1])          # unloading frees the space again
        dev.load(img, name="again")
        assert len(dev.models) == n


def test_wrong_device_and_bad_uris():
    b = FakeBoard()
    b.reg["id"] = 0x12345678
    with pytest.raises(DriverError, match="reads 0x12345678, expected 0x524e4e41"):
        open_device(transport=b, csr=b.csr)
    with pytest.raises(DriverError, match="unknown scheme 'tcp'"):
        open_device("tcp://127.0.0.1:1")
    with pytest.raises(DriverError, match=r"\?csr=PATH"):
        open_device("uart://127.0.0.1:1")
    with pytest.raises(DriverError, match="cannot connect to the UART bridge"):
        open_device("uart://127.0.0.1:1?csr=" + str(REPO / "pyproject.toml"))


def test_uart_transport_against_the_host_board(images, tmp_path):
    """uart:// (UARTBone over TCP on 127.0.0.1) to the host board: the remote path with bursts."""
    img, x = images["bidir_seq"]
    board = FakeBoard(n_lanes=8)
    th, port = serve_uartbone(board)
    (tmp_path / "csr.csv").write_text(board.csr_csv)
    try:
        with open_device(f"uart://127.0.0.1:{port}?csr={tmp_path}/csr.csv&timeout=5") as dev:
            m = dev.load(img)
            sim = Simulator(img, 1)
            for k in range(2):
                assert np.array_equal(m.run_q(x[k]), sim.run_q(x[k], reset=True))
            st = dev.bus.stats
            assert st["words_written"] > 1000 and st["transactions"] < st["words_written"] / 20, st
    finally:
        th.stop()


def test_mapped_windows_through_pointers(tmp_path):
    """mem:// maps only the ranges it is given; the C core then uses direct pointers and refuses any
    address outside them (a file stands in for /dev/mem, the CSR range mapped at file offset 0)."""
    b = FakeBoard()
    csr_lo, csr_size = b.csr.accel_ranges()[0]
    f = tmp_path / "mem"
    f.write_bytes(bytes(2 * mmap.PAGESIZE))
    t = DevMem([(csr_lo, csr_size)], path=str(f), offset=-csr_lo)
    from rnnaccel.driver.device import Bus, TransportError
    bus = Bus(t)
    assert bus.direct
    bus.write(csr_lo + 8, [0xDEADBEEF, 7])
    assert list(bus.read(csr_lo + 8, 2)) == [0xDEADBEEF, 7]
    assert list(np.frombuffer(f.read_bytes()[8:16], "<u4")) == [0xDEADBEEF, 7]
    with pytest.raises(TransportError, match="outside the mapped windows"):
        bus.read(csr_lo + csr_size, 1)
    with pytest.raises(TransportError, match="outside the mapped windows"):
        bus.write(b.csr.window("vmem")[0], [1])
    t.close()


def test_interrupt_wait_on_a_uio_style_descriptor(images):
    """irq=1: the C core enables the interrupt (writes 1 to the fd), poll()s it instead of spinning on
    status, then acknowledges ev_pending. A socket pair plays the uio device file."""
    import socket
    import threading
    import time
    img, x = images["gru_tf"]
    board = FakeBoard(n_lanes=8, run_delay=0.05)
    drv, irq = socket.socketpair()
    board.irq_fd = drv.fileno()
    seen = []

    def uio():
        while True:
            data = irq.recv(4)                  # the driver enabling the interrupt
            if not data:
                return
            seen.append(int.from_bytes(data, "little"))
            time.sleep(0.06)                    # the run ends, the interrupt fires
            irq.sendall((len(seen)).to_bytes(4, "little"))

    th = threading.Thread(target=uio, daemon=True)
    th.start()
    with open_device(transport=board, csr=board.csr, irq=True) as dev:
        m = dev.load(img)
        y = m.run_q(x[0], reset=True)
        assert np.array_equal(y, Simulator(img, 1).run_q(x[0], reset=True))
        assert seen and seen[0] == 1
        assert m.last.polls <= 3 and m.last.seconds >= 0.05
        assert board.reg["ev_pending"] == 0, "the done event is acknowledged"
    drv.close()
    irq.close()


def test_cross_check_keeps_streaming_real_time(shared_dir):
    """The Hello Edge GRU-S streamed frame by frame on the host board with the cross-check on:
    far below the 40 ms a frame covers (the check is one simulator step)."""
    import time
    from rnnaccel.host.cli import load_any_model
    from rnnaccel.host.refcheck import load_reference
    he = shared_dir / "models" / "hello-edge"
    _, _, feats, _ = load_reference(he / "reference", "GRU_S")
    img = compile_model(load_any_model(he / "GRU_S.pb"), feats[::2], bits=8)
    with open_device("host://") as dev:
        m = dev.load(img)
        list(m.stream(feats[0][:2]))
        t = time.perf_counter()
        outs = list(m.stream(feats[1]))
        per_frame = (time.perf_counter() - t) / len(outs)
        assert m.inferences == 2 + len(feats[1]) and not m.mismatches
        assert per_frame < 0.010, f"{1e3 * per_frame:.1f} ms per frame with the cross-check"


def test_missing_compiler_gives_a_clear_message(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path), CC="no-such-cc")
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-temp", str(tmp_path / "t"),
                        "--build-lib", str(tmp_path / "l")], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "needs a C compiler" in r.stderr + r.stdout, r.stderr[-2000:]


def test_validate_cli_on_the_host_board(images, tmp_path):
    from rnnaccel.host.cli import main
    img, x = images["lstm_peep_proj"]
    img.save(tmp_path / "m.rnna")
    np.save(tmp_path / "x.npy", inputs(families()["lstm_peep_proj"], 5))
    out = subprocess.run([sys.executable, "-m", "rnnaccel.host.cli", "validate", "--device", "host://?lanes=8",
                          "--model", str(tmp_path / "m.rnna"), "--data", str(tmp_path / "x.npy")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["inferences"] == 5 and res["mismatches"] == 0 and res["cycle_mismatches"] == 0
    assert res["models"]["m"]["cycles_per_inference"] > 0
    assert main(["validate", "--device", "host://", "--model", str(tmp_path / "m.rnna"),
                 "--data", str(tmp_path / "missing.npy")]) == 2


def test_litex_server_transport(images, tmp_path):
    """litex:// through LiteX's litex_server (Etherbone over TCP) bridging to a UART (the host board)."""
    pytest.importorskip("litex")
    import socket
    import time
    img, x = images["gru_tf"]
    board = FakeBoard(n_lanes=8)
    th, port = serve_uartbone(board)
    (tmp_path / "csr.csv").write_text(board.csr_csv)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    lport = s.getsockname()[1]
    s.close()
    server = Path(sys.executable).with_name("litex_server")
    p = subprocess.Popen([str(server), "--uart", "--uart-port", f"socket://127.0.0.1:{port}", "--bind-ip", "127.0.0.1",
                          "--bind-port", str(lport)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", lport), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        with open_device(f"litex://127.0.0.1:{lport}?csr={tmp_path}/csr.csv") as dev:
            m = dev.load(img)
            assert np.array_equal(m.run_q(x[0], reset=True), Simulator(img, 1).run_q(x[0], reset=True))
            assert m.last.cycles == m.last.predicted_cycles
    finally:
        p.terminate()
        p.wait(timeout=10)
        th.stop()
