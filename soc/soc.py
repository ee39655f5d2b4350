"""The one SoC description every target uses (simulated board, ULX3S and other ECP5 boards, PYNQ-Z2).

`RNNAccelSoC(platform, sys_clk_freq, n_lanes=..., bus_standard=..., cpu_type=None, ...)` is a LiteX
`SoCCore` (no CPU by default: the host is the bus master through a UART bridge; `cpu_type="zynq7000"`
on the PYNQ-Z2, where the ARM reaches the bus through AXI GP0) with the accelerator core `rnnaccel`
(soc/accel.py) and its four windows. The address map is the same on every target (it fits the
Zynq's GP0 window 0x4000_0000-0x7FFF_FFFF):

    0x4000_0000  CSRs (csr.csv / csr.json: every `rnnaccel_<name>` register, the event manager)
    0x4100_0000  rnnaccel_prog    program memory window
    0x4200_0000  rnnaccel_param   parameter memory window
    0x4300_0000  rnnaccel_wmem    weight memory window (32-bit sub-words)
    0x4400_0000  rnnaccel_vmem    vector pool window

The core's Verilog (module `rnnaccel_core`, soc/accel.py) is written to `core_dir` (default
build/soc/core-<digest>/) and copied into the gateware directory with its ROM .init files
(`soc.rnnaccel.copy_data_files(gateware_dir)` after `Builder.build`).

The driver must not rely on these numbers: it reads them from csr.csv / csr.json (regmap.py).
"""
from __future__ import annotations

from pathlib import Path

from litex.soc.integration.soc import SoCRegion
from litex.soc.integration.soc_core import SoCCore

from . import regmap
from .accel import RNNAccel

REPO = Path(__file__).resolve().parents[1]
CSR_BASE = 0x4000_0000
WINDOW_BASE = {"prog": 0x4100_0000, "param": 0x4200_0000, "wmem": 0x4300_0000, "vmem": 0x4400_0000}
BUS_STANDARDS = ("wishbone", "axi-lite")


class RNNAccelSoC(SoCCore):
    mem_map = {**SoCCore.mem_map, "csr": CSR_BASE}

    def __init__(self, platform, sys_clk_freq, n_lanes=16, bus_standard="wishbone", cpu_type=None,
                 core_kwargs=None, ident="rnnaccel", core_dir=None, **soc_kwargs):
        if bus_standard not in BUS_STANDARDS:
            raise ValueError(f"bus_standard: one of {BUS_STANDARDS}")
        kw = dict(cpu_type=cpu_type, ident=ident, bus_standard=bus_standard, bus_data_width=32,
                  csr_data_width=32, integrated_rom_size=0, integrated_sram_size=0, with_uart=False,
                  with_timer=False, with_ctrl=False)
        kw.update(soc_kwargs)
        SoCCore.__init__(self, platform, sys_clk_freq, **kw)
        self.add_rnnaccel(n_lanes, core_dir, **(core_kwargs or {}))

    def add_rnnaccel(self, n_lanes, core_dir=None, **core_kwargs):
        self.rnnaccel = RNNAccel(n_lanes, **core_kwargs)
        d = Path(core_dir) if core_dir else REPO / "build" / "soc" / f"core-{self.rnnaccel.verilog.digest()}"
        self.rnnaccel.add_sources(self.platform, d)
        assert regmap.CSR_PREFIX == "rnnaccel"
        for name, (bus, size) in self.rnnaccel.windows.items():
            self.bus.add_slave(name=f"{regmap.CSR_PREFIX}_{name}", slave=bus,
                               region=SoCRegion(origin=WINDOW_BASE[name], size=size, cached=False))
        if self.irq.enabled:
            self.irq.add(regmap.CSR_PREFIX, use_loc_if_exists=True)
