"""The accelerator as a LiteX core: CSRs, an interrupt and four memory windows, all built from
`soc/regmap.py` (the contract with the driver).

`RNNAccel(n_lanes, ...)` wraps `gateware.core.RNNAccelCore` (the soft reset resets the core's logic,
the memories keep their contents). Add it to a SoC with
`add_rnnaccel(soc, ...)` (soc/soc.py), which registers it as `rnnaccel` (so every CSR is exported as
`rnnaccel_<name>`) and adds the windows as bus slaves `rnnaccel_<window>`.

Windows (32-bit Wishbone slaves; LiteX converts them when the SoC bus is AXI-Lite):
  prog, param  one 32-bit word per bus word; write only (reads return 0)
  wmem         32-bit sub-words of the 8N-bit weight words (regmap.WINDOWS); write only
  vmem         one signed 16-bit word per bus word, sign-extended on read
The core itself is converted to Verilog by Migen's own converter (module `rnnaccel_core`, the exact
Verilog the RTL tests verify) and instantiated as a black box: LiteX's Verilog backend prints some of
the core's signed arithmetic differently, and the core computed wrong results through it (found on
the simulated board: outputs saturated, cycles exact). The soft reset drives the instance's
`sys_rst` together with the system reset.

Host writes are dropped while the core is busy (the core owns its memories then); vmem reads while
busy return whatever the pool's read port shows.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from migen import Cat, ClockSignal, If, Instance, Module, ResetSignal, Signal

from litex.gen import LiteXModule
from litex.soc.interconnect import wishbone
from litex.soc.interconnect.csr import CSRStatus, CSRStorage
from litex.soc.interconnect.csr_eventmanager import EventManager, EventSourcePulse

from rnnaccel.gateware.core import CORE_DEFAULTS, N_SPACES, RNNAccelCore
from rnnaccel.host import image as image_format
from rnnaccel.host.spec import WEIGHT_MODES

from . import regmap

VMEM_READ_SLACK = 1       # cycles beyond the core's vector-pool read latency before the data is sampled


def pow2(x: int) -> int:
    return 1 << max(int(x) - 1, 1).bit_length()


class _Window(Module):
    """A 32-bit Wishbone slave with a one-cycle write strobe and an optional delayed read."""

    def __init__(self, words, busy, read_wait=None):
        self.words = words
        self.size = pow2(words * 4)                    # bytes on the bus (power of two for the decoder)
        self.bus = bus = wishbone.Interface(data_width=32, address_width=32, addressing="word")
        aw = max((words - 1).bit_length(), 1)
        self.adr = Signal(aw)                          # word offset in the window
        self.dat_w = Signal(32)
        self.we = Signal()                             # one-cycle write strobe (dropped while busy)
        self.rdat = Signal(32)                         # data to return (sampled `read_wait` cycles in)
        req = Signal()
        self.comb += [self.adr.eq(bus.adr[:aw]), self.dat_w.eq(bus.dat_w), req.eq(bus.cyc & bus.stb & ~bus.ack)]
        if read_wait is None:
            self.sync += bus.ack.eq(req)
            self.comb += self.we.eq(req & bus.we & ~busy)
            self.sync += bus.dat_r.eq(0)
        else:
            cnt = Signal(max(read_wait, 1).bit_length() + 1)
            self.comb += self.we.eq(req & bus.we & (cnt == 0) & ~busy)
            self.sync += [
                bus.ack.eq(0),
                If(req & bus.we & (cnt == 0),
                    bus.ack.eq(1))
                .Elif(req & ~bus.we,
                    If(cnt == read_wait,
                        bus.dat_r.eq(self.rdat), bus.ack.eq(1), cnt.eq(0))
                    .Else(cnt.eq(cnt + 1))),
            ]


# the core's ports: attribute name -> direction (space_base/space_size are lists, see below)
CORE_INPUTS = ("prog_we", "prog_adr", "prog_dat", "param_we", "param_adr", "param_dat", "wmem_we", "wmem_adr",
               "wmem_dat", "vmem_we", "vmem_adr", "vmem_wdat", "start", "steps", "prog_len", "parity_in",
               "prog_base", "weight_base", "param_base", "pp_dist")
CORE_OUTPUTS = ("vmem_rdat", "busy", "done", "error", "error_pc", "parity_out", "cycles", "mac_ops", "stalls")


class CoreVerilog:
    """RNNAccelCore(n_lanes, **kw) as Verilog module `rnnaccel_core` (Migen's converter), with
    `ports`: name -> (direction, width, signed) and `data_files` (ROM contents read by $readmemh)."""

    def __init__(self, n_lanes, **kw):
        from migen.fhdl.verilog import convert
        core = RNNAccelCore(n_lanes=n_lanes, **kw)
        self.prog_words, self.param_words = core.prog_words, core.param_words
        self.wmem_words, self.vmem_words = core.wmem_words, core.vmem_words
        self.vmem_read_latency = core.vmem_read_latency
        sigs = {}
        for name in CORE_INPUTS:
            sigs[name] = ("i", getattr(core, name))
        for name in CORE_OUTPUTS:
            sigs[name] = ("o", getattr(core, name))
        for s, sname in enumerate(regmap.SPACE_NAMES):
            sigs[f"base_{sname}"] = ("i", core.space_base[s])
            sigs[f"size_{sname}"] = ("i", core.space_size[s])
        for name, (_, sig) in sigs.items():
            sig.name_override = name
        conv = convert(core, ios={sig for _, sig in sigs.values()}, name="rnnaccel_core")
        src = conv.main_source
        self.data_files = {}
        for fname, content in conv.data_files.items():
            new = f"rnnaccel_core_{fname}"
            src = src.replace(f'"{fname}"', f'"{new}"')
            self.data_files[new] = content
        self.source = src
        self.ports = {}
        for name, (d, sig) in sigs.items():
            got = conv.ns.get_name(sig)
            if got != name:
                raise RuntimeError(f"core port {name} was named {got} by the converter")
            self.ports[name] = (d, len(sig), sig.signed)

    def write(self, directory) -> Path:
        """Write the Verilog and its data files into `directory`; returns the .v path."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        v = d / "rnnaccel_core.v"
        if not v.exists() or v.read_text() != self.source:
            v.write_text(self.source)
        for fname, content in self.data_files.items():
            (d / fname).write_text(content)
        return v

    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:12]


class RNNAccel(LiteXModule):
    """CSRs (regmap.CSRS), EventManager `ev` (regmap.EVENTS) and windows (regmap.WINDOWS) around the
    core. `self.windows[name]` holds each window's Wishbone interface and size in bytes;
    `add_sources(platform, directory)` writes the core's Verilog there and adds it to the platform
    (its .init files must also be in the directory the simulator/toolchain runs from:
    `copy_data_files(gateware_dir)`)."""

    def __init__(self, n_lanes=32, **core_kwargs):
        kw = dict(CORE_DEFAULTS, **core_kwargs)
        self.n_lanes = N = n_lanes
        assert N >= 4 and N & (N - 1) == 0, "n_lanes: a power of two >= 4"
        self.core_kwargs = kw
        self.params = {"n_lanes": N, **kw}
        self.verilog = cv = CoreVerilog(N, **kw)
        soft_reset = Signal()

        # wrapper-side signals, one per core port; `core` namespace mirrors RNNAccelCore's attributes
        class _Ports:
            pass
        core = _Ports()
        core.prog_words, core.param_words = cv.prog_words, cv.param_words
        core.wmem_words, core.vmem_words = cv.wmem_words, cv.vmem_words
        core.vmem_read_latency = cv.vmem_read_latency
        inst = {}
        for name, (d, width, signed) in cv.ports.items():
            sig = Signal((width, signed), name=f"core_{name}")
            setattr(core, name, sig)
            inst[f"{d}_{name}"] = sig
        core.space_base = [getattr(core, f"base_{s}") for s in regmap.SPACE_NAMES]
        core.space_size = [getattr(core, f"size_{s}") for s in regmap.SPACE_NAMES]
        self.specials += Instance("rnnaccel_core", i_sys_clk=ClockSignal("sys"),
                                  i_sys_rst=ResetSignal("sys") | soft_reset, **inst)
        self.core = core

        # ---- CSRs, straight from the table ----------------------------------------------------------
        self.csr_objs = {}
        for name, bits, access, desc in regmap.CSRS:
            csr = (CSRStatus if access == "ro" else CSRStorage)(bits, name=name, description=desc)
            setattr(self, name, csr)
            self.csr_objs[name] = csr
        c = self.csr_objs

        def field_of(fields, fname):
            lsb, width = fields[fname]
            return slice(lsb, lsb + width)

        # constants
        consts = {
            "id": regmap.ID_VALUE,
            "version": regmap.pack(regmap.VERSION_FIELDS, hw=regmap.HW_VERSION, image=image_format.VERSION),
            "caps": regmap.pack(regmap.CAPS_FIELDS, n_lanes=N, modes=regmap.modes_mask(WEIGHT_MODES),
                                n_spaces=N_SPACES),
            "prog_words": core.prog_words, "param_words": core.param_words,
            "wmem_bytes": core.wmem_words * N, "vmem_words": core.vmem_words,
        }
        for name, v in consts.items():
            self.comb += c[name].status.eq(v)

        # control
        ctrl = c["ctrl"]
        self.comb += [
            core.start.eq(ctrl.re & ctrl.storage[field_of(regmap.CTRL_FIELDS, "start")]),
            soft_reset.eq(ctrl.re & ctrl.storage[field_of(regmap.CTRL_FIELDS, "soft_reset")]),
            core.parity_in.eq(ctrl.storage[field_of(regmap.CTRL_FIELDS, "parity_in")]),
        ]
        ports = {"steps": core.steps, "prog_len": core.prog_len, "prog_base": core.prog_base,
                 "weight_base": core.weight_base, "param_base": core.param_base, "pp_dist": core.pp_dist}
        for s, sname in enumerate(regmap.SPACE_NAMES):
            ports[f"base_{sname}"] = core.space_base[s]
            ports[f"size_{sname}"] = core.space_size[s]
        missing = {n for n, _, a, _ in regmap.CSRS if a == "rw"} - set(ports) - {"ctrl"}
        assert not missing, f"regmap CSRs not wired: {missing}"
        for name, port in ports.items():
            self.comb += port.eq(c[name].storage)

        # status and counters
        status = c["status"].status
        values = {"busy": core.busy, "done": core.done, "parity": core.parity_out, "error": core.error,
                  "error_pc": core.error_pc}
        assert set(values) == set(regmap.STATUS_FIELDS)
        for fname, sig in values.items():
            self.comb += status[field_of(regmap.STATUS_FIELDS, fname)].eq(sig)
        self.comb += [c["cycles"].status.eq(core.cycles), c["mac_ops"].status.eq(core.mac_ops),
                      c["stalls"].status.eq(core.stalls)]

        # ---- interrupt: `done` pulses when a run ends (busy falls: done, error or soft reset) -----------
        self.ev = EventManager()
        for e in regmap.EVENTS:
            setattr(self.ev, e, EventSourcePulse(name=e, description="a run ended (done or error)"))
        self.ev.finalize()
        busy_d = Signal()
        self.sync += busy_d.eq(core.busy)
        self.comb += getattr(self.ev, "done").trigger.eq(busy_d & ~core.busy)

        # ---- windows ---------------------------------------------------------------------------------
        busy = core.busy
        subs = N // 4                                   # 32-bit sub-words per weight word
        sub_bits = subs.bit_length() - 1
        words = {"prog": core.prog_words, "param": core.param_words, "wmem": core.wmem_words * subs,
                 "vmem": core.vmem_words}
        assert set(words) == {w for w, _ in regmap.WINDOWS}
        win = {}
        for name in words:
            w = _Window(words[name], busy,
                        read_wait=core.vmem_read_latency + VMEM_READ_SLACK if name == "vmem" else None)
            setattr(self.submodules, f"win_{name}", w)
            win[name] = w
        self.windows = {name: (w.bus, w.size) for name, w in win.items()}
        p, q, wm, v = win["prog"], win["param"], win["wmem"], win["vmem"]
        self.comb += [
            core.prog_we.eq(p.we), core.prog_adr.eq(p.adr), core.prog_dat.eq(p.dat_w),
            core.param_we.eq(q.we), core.param_adr.eq(q.adr), core.param_dat.eq(q.dat_w),
            core.vmem_we.eq(v.we), core.vmem_adr.eq(v.adr), core.vmem_wdat.eq(v.dat_w[:16]),
        ]
        vm = Signal((32, True))
        self.comb += vm.eq(core.vmem_rdat), v.rdat.eq(vm)
        stage = [Signal(32, name=f"wstage{j}") for j in range(subs - 1)]
        j = Signal(max(sub_bits, 1))
        self.comb += j.eq(wm.adr[:sub_bits] if sub_bits else 0)
        for k, st in enumerate(stage):
            self.sync += If(wm.we & (j == k), st.eq(wm.dat_w))
        self.comb += [core.wmem_we.eq(wm.we & (j == subs - 1)), core.wmem_adr.eq(wm.adr[sub_bits:]),
                      core.wmem_dat.eq(Cat(*stage, wm.dat_w))]

    def add_sources(self, platform, directory):
        """Write the core's Verilog into `directory`; the Builder copies it into the gateware dir."""
        platform.add_source(str(self.verilog.write(directory)), copy=True)

    def copy_data_files(self, gateware_dir):
        for fname in self.verilog.data_files:
            (Path(gateware_dir) / fname).write_text(self.verilog.data_files[fname])
