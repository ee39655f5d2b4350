"""The SoC on the simulated board (Verilator, UART bridge over TCP on 127.0.0.1), on a Wishbone and on
an AXI-Lite bus: identification and capability registers, the windows, a valid run bit-exact with the
behaviour simulator, a malformed program reported through `status.error`, soft reset; the board's
lifecycle and command line; the PYNQ-Z2 project generation and the ECP5 SoC generation.

Every address comes from the exported register map (csr.csv), as in the driver. Each bus
configuration is built once per session (cached under build/soc/ across sessions).
"""
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("litex")
pytest.importorskip("migen")

from rnnaccel.gateware.rtlrun import layout  # noqa: E402
from rnnaccel.host import cycles, isa  # noqa: E402
from rnnaccel.host import image as image_format  # noqa: E402
from rnnaccel.host.compiler import compile_model  # noqa: E402
from rnnaccel.host.simulator import Simulator  # noqa: E402
from rnnaccel.host.spec import WEIGHT_MODES, quantize  # noqa: E402
from rnnaccel.soc import regmap  # noqa: E402
from rnnaccel.soc.simboard import SIM_CORE, SimBoard  # noqa: E402

from .models import families, inputs  # noqa: E402

N_TEST = 8                 # lanes of the test boards (quick to build; the default board is larger)
BUSES = ("wishbone", "axi-lite")


# ---- a minimal UARTBone client (LiteX protocol over the TCP socket), addresses from csr.csv -------------
class CsrMap:
    def __init__(self, csr_csv):
        self.regs, self.mems, self.bases = {}, {}, {}
        with open(csr_csv) as f:
            for row in csv.reader(f):
                if not row or row[0].startswith("#"):
                    continue
                if row[0] == "csr_register":
                    self.regs[row[1]] = (int(row[2], 0), int(row[3]))
                elif row[0] == "memory_region":
                    self.mems[row[1]] = (int(row[2], 0), int(row[3]))
                elif row[0] == "csr_base":
                    self.bases[row[1]] = int(row[2], 0)

    def csr(self, name):
        return self.regs[f"{regmap.CSR_PREFIX}_{name}"]

    def win(self, name):
        return self.mems[f"{regmap.CSR_PREFIX}_{name}"][0]


class Bridge(CsrMap):
    WRITE, READ = 0x01, 0x02

    def __init__(self, host, port, csr_csv, timeout=20):
        CsrMap.__init__(self, csr_csv)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        self.sock.close()

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the board closed the connection")
            buf += chunk
        return buf

    def read(self, addr, n=1):
        out = []
        while n:
            k = min(n, 255)
            self.sock.sendall(bytes([self.READ, k]) + (addr // 4).to_bytes(4, "big"))
            data = self._recv(4 * k)
            out += [int.from_bytes(data[4 * j:4 * j + 4], "big") for j in range(k)]
            addr, n = addr + 4 * k, n - k
        return out

    def write(self, addr, words):
        words = [int(w) & 0xFFFFFFFF for w in words]
        msg = bytearray()
        for k in range(0, len(words), 255):
            part = words[k:k + 255]
            msg += bytes([self.WRITE, len(part)]) + (addr // 4 + k).to_bytes(4, "big")
            for w in part:
                msg += w.to_bytes(4, "big")
        self.sock.sendall(bytes(msg))

    def rd(self, name):
        addr, nwords = self.csr(name)
        v = 0
        for w in self.read(addr, nwords):       # most significant word first
            v = v << 32 | w
        return v

    def wr(self, name, value):
        addr, nwords = self.csr(name)
        self.write(addr, [(value >> 32 * (nwords - 1 - k)) & 0xFFFFFFFF for k in range(nwords)])

    def status(self):
        s = self.rd("status")
        return {f: regmap.field(s, regmap.STATUS_FIELDS, f) for f in regmap.STATUS_FIELDS}

    def wait(self, timeout=30):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            st = self.status()
            if not st["busy"] and (st["done"] or st["error"]):
                return st
            time.sleep(0.005)
        raise TimeoutError(f"the core did not finish within {timeout} s: {self.status()}")


@pytest.fixture(scope="session", params=BUSES)
def board(request):
    with SimBoard(n_lanes=N_TEST, bus=request.param) as b:
        yield b


@pytest.fixture
def bridge(board):
    br = Bridge(board.host, board.port, board.csr_csv)
    yield br
    br.close()


# ---- loading a small image the way the driver does (the driver's own tests cover whole images) --------
def load_image(br, img, n_lanes):
    lay = layout(img, SimpleNamespace(vmem_words=SIM_CORE["vmem_words"]))
    prog = np.frombuffer(isa.encode_program(img.program), "<u4")
    br.write(br.win("prog"), prog)
    br.write(br.win("param"), np.frombuffer(img.params + bytes(-len(img.params) % 4), "<u4"))
    w = img.weights + bytes(-len(img.weights) % n_lanes)
    br.write(br.win("wmem"), np.frombuffer(w, "<u4"))
    total = sum(max(s, 1) for s in lay.size)
    br.write(br.win("vmem"), [0] * total)
    consts = np.frombuffer(img.consts, "<i2").astype(np.int64) & 0xFFFF
    br.write(br.win("vmem") + 4 * lay.base[isa.SPACE_CONST], consts)
    br.wr("prog_len", len(img.program))
    for name in ("prog_base", "weight_base", "param_base"):
        br.wr(name, 0)
    br.wr("pp_dist", img.pp_dist)
    for s, sname in enumerate(regmap.SPACE_NAMES):
        br.wr(f"base_{sname}", lay.base[s])
        br.wr(f"size_{sname}", lay.size[s])
    return lay


def run_frames(br, lay, x_q, parity=0):
    br.write(br.win("vmem") + 4 * lay.base[isa.SPACE_IN], np.asarray(x_q).reshape(-1).astype(np.int64) & 0xFFFF)
    br.wr("steps", len(x_q))
    br.wr("ev_pending", 1)                                     # clear a stale `done` event
    br.wr("ctrl", regmap.pack(regmap.CTRL_FIELDS, start=1, parity_in=parity))
    st = br.wait()
    out = br.read(br.win("vmem") + 4 * lay.base[isa.SPACE_OUT], lay.size[isa.SPACE_OUT])
    out = np.array([v - (1 << 32) if v & 0x8000_0000 else v for v in out])
    return st, out


@pytest.fixture(scope="module")
def small_image():
    m = families()["gru_tf"]
    img = compile_model(m, inputs(m, 8), bits=8)
    x = quantize(inputs(m, 1, seed=3)[0], img.in_frac)[:4]
    y = Simulator(img, 1).run_q(x[None], reset=True).reshape(-1)
    return img, x, y


# ---- identification and capabilities -----------------------------------------------------------------
def test_register_map_comes_from_regmap(board):
    br = CsrMap(board.csr_csv)
    names = {f"{regmap.CSR_PREFIX}_{n}" for n, *_ in regmap.CSRS}
    assert names <= set(br.regs), f"missing CSRs: {names - set(br.regs)}"
    for name, bits, access, _ in regmap.CSRS:
        _, nwords = br.csr(name)
        assert nwords == (bits + 31) // 32, name
    for e in ("ev_status", "ev_pending", "ev_enable"):
        assert f"{regmap.CSR_PREFIX}_{e}" in br.regs
    for w, _ in regmap.WINDOWS:
        assert f"{regmap.CSR_PREFIX}_{w}" in br.mems
    import json
    j = json.loads(Path(board.csr_json).read_text())
    assert j["csr_registers"][f"{regmap.CSR_PREFIX}_id"]["addr"] == br.csr("id")[0]
    assert j["memories"][f"{regmap.CSR_PREFIX}_vmem"]["base"] == br.win("vmem")


def test_id_version_and_caps(board, bridge):
    br = bridge
    assert br.rd("id") == regmap.ID_VALUE
    v = br.rd("version")
    assert regmap.field(v, regmap.VERSION_FIELDS, "hw") == regmap.HW_VERSION
    assert regmap.field(v, regmap.VERSION_FIELDS, "image") == image_format.VERSION
    caps = br.rd("caps")
    assert regmap.field(caps, regmap.CAPS_FIELDS, "n_lanes") == board.n_lanes == N_TEST
    assert regmap.modes_from_mask(regmap.field(caps, regmap.CAPS_FIELDS, "modes")) == WEIGHT_MODES
    assert regmap.field(caps, regmap.CAPS_FIELDS, "n_spaces") == len(regmap.SPACE_NAMES)
    assert br.rd("prog_words") == SIM_CORE["prog_words"]
    assert br.rd("param_words") == SIM_CORE["param_words"]
    assert br.rd("wmem_bytes") == SIM_CORE["wmem_bytes"]
    assert br.rd("vmem_words") == SIM_CORE["vmem_words"]
    # each window is as large as the memory behind it
    assert br.mems["rnnaccel_vmem"][1] >= 4 * SIM_CORE["vmem_words"]
    assert br.mems["rnnaccel_wmem"][1] >= SIM_CORE["wmem_bytes"]
    st = br.status()
    assert st["busy"] == 0 and st["error"] == 0


# ---- windows and registers -------------------------------------------------------------------------------
def test_vmem_window_reads_back_sign_extended(bridge):
    br = bridge
    rng = np.random.default_rng(5)
    vals = rng.integers(-32768, 32768, 700)
    base = br.win("vmem") + 4 * 1000
    br.write(base, vals.astype(np.int64) & 0xFFFF)
    back = br.read(base, len(vals))
    assert back == [int(v) & 0xFFFFFFFF for v in vals]      # 16-bit words sign-extended to 32 bits
    # the last word of the pool, then a single-word rewrite
    last = br.win("vmem") + 4 * (SIM_CORE["vmem_words"] - 1)
    br.write(last, [0x1234])
    br.write(base + 8, [0xFFFF])
    assert br.read(last) == [0x1234]
    assert br.read(base, 3)[2] == 0xFFFFFFFF


def test_storage_registers_read_back(bridge):
    br = bridge
    for k, name in enumerate(["steps", "prog_len", "pp_dist"] + [f"size_{s}" for s in regmap.SPACE_NAMES]):
        br.wr(name, 17 + 3 * k)
    for k, name in enumerate(["steps", "prog_len", "pp_dist"] + [f"size_{s}" for s in regmap.SPACE_NAMES]):
        assert br.rd(name) == 17 + 3 * k, name


# ---- runs: valid, malformed, soft reset ---------------------------------------------------------------
def test_valid_run_is_bit_exact_and_counts(board, bridge, small_image):
    """prog/param/wmem/vmem writes through the windows, one run, outputs against the simulator."""
    br = bridge
    img, x, y = small_image
    lay = load_image(br, img, board.n_lanes)
    st, out = run_frames(br, lay, x)
    assert st["error"] == 0 and st["done"] == 1
    assert np.array_equal(out[:y.size], y), (out[:y.size], y)
    pred = cycles.run_cycles(img, len(x), board.n_lanes)
    assert br.rd("cycles") == pred.cycles
    assert br.rd("mac_ops") == pred.lane_ops
    assert br.rd("ev_pending") & 1, "the done event must be pending after a run"
    br.wr("ev_pending", 1)
    assert br.rd("ev_pending") & 1 == 0


def test_malformed_program_reports_error_and_soft_reset_recovers(board, bridge, small_image):
    br = bridge
    img, x, y = small_image
    lay = load_image(br, img, board.n_lanes)
    rng = np.random.default_rng(11)
    garbage = rng.integers(0, 1 << 32, 4 * isa.INSTR_WORDS, dtype=np.uint64)
    garbage[0] = (int(garbage[0]) & ~0xFF) | 0xEF            # opcode 0xEF: no such instruction
    br.write(br.win("prog"), garbage)
    br.wr("prog_len", 4)
    br.wr("ev_pending", 1)
    br.wr("steps", 1)
    br.wr("ctrl", regmap.pack(regmap.CTRL_FIELDS, start=1))
    st = br.wait()
    assert st["busy"] == 0 and st["done"] == 0
    assert st["error"] == isa.ERR_OPCODE and st["error_pc"] == 0
    assert br.rd("ev_pending") & 1, "a run that ends in an error raises the done event too"
    # soft reset: a clean status, memories and registers kept
    br.wr("ctrl", regmap.pack(regmap.CTRL_FIELDS, soft_reset=1))
    st = br.status()
    assert st == {"busy": 0, "done": 0, "parity": 0, "error": 0, "error_pc": 0}
    assert br.rd("size_in") == lay.size[isa.SPACE_IN]
    # the valid program again (the garbage overwrote it): the next run is exact
    br.write(br.win("prog"), np.frombuffer(isa.encode_program(img.program), "<u4"))
    br.wr("prog_len", len(img.program))
    br.write(br.win("vmem") + 4 * lay.base[isa.SPACE_STATE], [0] * lay.size[isa.SPACE_STATE])
    st, out = run_frames(br, lay, x)
    assert st["error"] == 0 and st["done"] == 1
    assert np.array_equal(out[:y.size], y)


# ---- the board's lifecycle and command line -------------------------------------------------------------
def _port_closed(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_board_binds_loopback_only_and_stops_cleanly(board):
    with SimBoard(n_lanes=N_TEST, bus=board.bus, quiet=True) as b:
        pid, port = b.proc.pid, b.port
        assert b.host == "127.0.0.1"
        out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout if \
            subprocess.run(["which", "ss"], capture_output=True).returncode == 0 else ""
        if out:
            lines = [ln for ln in out.splitlines() if f":{port} " in ln]
            assert lines and all("127.0.0.1:" in ln for ln in lines), lines
        br = Bridge(b.host, port, b.csr_csv)
        assert br.rd("id") == regmap.ID_VALUE
        br.close()
        br = Bridge(b.host, port, b.csr_csv)                  # a second client after the first left
        assert br.rd("id") == regmap.ID_VALUE
        br.close()
    assert not Path(f"/proc/{pid}").exists(), "the simulator process must be gone (no zombie)"
    assert _port_closed(port)


def test_cli_board_sim(board):
    from rnnaccel.soc.simboard import free_port
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "rnnaccel.host.cli", "board", "sim", "--macs", str(N_TEST),
                          "--bus", board.bus, "--port", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        line = p.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in line and "csr map" in line, line
        csv_path = line.split("csr map: ")[1].split(",")[0]
        br = Bridge("127.0.0.1", port, csv_path)
        assert br.rd("id") == regmap.ID_VALUE
        br.close()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert _port_closed(port)


# ---- other targets: generation only (fast); the full ULX3S bitstream with RNNACCEL_SLOW=1 ----------------
def _read_map(path):
    regs, mems = {}, {}
    with open(path) as f:
        for row in csv.reader(f):
            if row and row[0] == "csr_register":
                regs[row[1]] = int(row[2], 0)
            elif row and row[0] == "memory_region":
                mems[row[1]] = (int(row[2], 0), int(row[3]))
    return regs, mems


def test_pynq_z2_project_generation(tmp_path, board):
    from rnnaccel.soc import targets
    rep = targets.build_pynq_z2(out_dir=tmp_path, vivado=False, say=lambda m: None, build_dir=tmp_path / "build")
    assert rep["board"] == "pynq-z2" and rep["bitstream"] is None
    tcl = (tmp_path / "vivado" / "rnnaccel_pynq_z2.tcl").read_text()
    assert "processing_system7" in tcl and "write_bitstream" in tcl and "synth_design" in tcl
    assert (tmp_path / "vivado" / "rnnaccel_pynq_z2.v").exists()
    assert (tmp_path / "vivado" / "rnnaccel_pynq_z2.xdc").exists()
    regs, mems = _read_map(tmp_path / "csr.csv")
    assert (tmp_path / "csr.json").exists()
    for name, *_ in regmap.CSRS:
        a = regs[f"rnnaccel_{name}"]
        assert 0x4000_0000 <= a < 0x8000_0000, f"{name} at {a:#x}: outside the GP0 window"
    for w, _ in regmap.WINDOWS:
        base, size = mems[f"rnnaccel_{w}"]
        assert 0x4000_0000 <= base and base + size <= 0x8000_0000
    # the same address map as the simulated board
    sim_regs, sim_mems = _read_map(board.csr_csv)
    for name, *_ in regmap.CSRS:
        assert regs[f"rnnaccel_{name}"] == sim_regs[f"rnnaccel_{name}"], name
    for w, _ in regmap.WINDOWS:
        assert mems[f"rnnaccel_{w}"][0] == sim_mems[f"rnnaccel_{w}"][0]


def test_ulx3s_soc_generation(tmp_path, board):
    from rnnaccel.soc import targets
    rep = targets.build_ecp5("ulx3s", out_dir=tmp_path, compile_gateware=False, say=lambda m: None,
                             build_dir=tmp_path / "build")
    assert rep["board"] == "ulx3s" and rep["sys_clk_mhz"] > 0
    regs, mems = _read_map(tmp_path / "csr.csv")
    sim_regs, sim_mems = _read_map(board.csr_csv)
    for name, *_ in regmap.CSRS:
        assert regs[f"rnnaccel_{name}"] == sim_regs[f"rnnaccel_{name}"], name
    for w, _ in regmap.WINDOWS:
        assert mems[f"rnnaccel_{w}"][0] == sim_mems[f"rnnaccel_{w}"][0]


@pytest.mark.skipif(not os.environ.get("RNNACCEL_SLOW"), reason="the full ULX3S bitstream takes ~10 min; "
                    "set RNNACCEL_SLOW=1 (or run `make bitstream BOARD=ulx3s`)")
def test_ulx3s_bitstream(tmp_path):
    from rnnaccel.soc import targets
    rep = targets.build_ecp5("ulx3s", out_dir=tmp_path)
    assert (tmp_path / rep["bitstream"]).stat().st_size > 100_000
    assert rep["timing_met"], rep
