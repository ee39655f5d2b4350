"""A block-RAM read port with its data registered once more: read latency two.

An ECP5 DP16KD's clock-to-out is 5.8 ns (speed 6, nextpnr's timing data) without its output
register and 0.9 ns with it, so a block RAM that feeds logic across the chip at 100 MHz wants the
register inside the block. `RegisteredRead` is a Migen special for that register. Lowered by
default (simulation, Verilator, any FPGA) it is a fabric register behind the port. With
`ECP5_OVERRIDES` it is a wire, and the block RAM's own output register does the work: yosys does
not infer it, so the synthesis flow sets REGMODE_A/B = OUTREG on the memory's DP16KD cells after
synth_ecp5 (`ecp5_yosys_passes`) and then checks that every such memory became exactly that:
one DP16KD (no cascade mux behind it, which would select with a register one cycle early), one
read port, the register set (`check_outreg_cells`). Both lowerings are the same function:
data two cycles after the address.
"""
import re

from migen import READ_FIRST, Cat, Memory, Module, Signal
from migen.fhdl.specials import SPECIAL_INPUT, SPECIAL_OUTPUT, Special

from .regs import copy_reg

class RegisteredRead(Special):
    """`dat_r` = `port.dat_r` one cycle later (`port`: a synchronous read port of `memory`)."""

    def __init__(self, memory, port):
        Special.__init__(self)
        self.memory, self.port = memory, port
        self.i = port.dat_r
        self.dat_r = Signal(len(port.dat_r), reset_less=True)
        self.adr = port.adr

    def iter_expressions(self):
        yield self, "i", SPECIAL_INPUT
        yield self, "dat_r", SPECIAL_OUTPUT

    @staticmethod
    def lower(dr):
        return _Register(dr)


class _Register(Module):
    def __init__(self, dr):
        self.sync += dr.dat_r.eq(dr.i)


def bram_width(depth):
    """The widest DP16KD configuration of at least `depth` words (0: none)."""
    for width, words in ((18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)):
        if depth <= words:
            return width
    return 0


class _Wire(Module):
    def __init__(self, dr):
        m = dr.memory
        name = m.name_override
        if m.width > bram_width(m.depth):
            raise ValueError(f"{name}: {m.depth} x {m.width} is not one block RAM (the output "
                             "register would stand before a cascade)")
        reads = [p for p in m.ports if p.we is None]
        if reads != [dr.port]:
            raise ValueError(f"{name}: the block RAM's output register needs exactly one read "
                             f"port, the memory has {len(reads)}")
        self.comb += dr.dat_r.eq(dr.i)


class _ECP5Lowering:
    @staticmethod
    def lower(dr):
        return _Wire(dr)


ECP5_OVERRIDES = {RegisteredRead: _ECP5Lowering}


def registered_read(module, memory, **port_kwargs):
    """A read port of `memory` with latency two, added to `module` (port and register): an object
    with `adr` and `dat_r` like a Migen port's."""
    port = memory.get_port(**port_kwargs)
    reg = RegisteredRead(memory, port)
    module.specials += port, reg
    return reg


def outreg_memories(fragment_specials):
    """The memories whose read port is a RegisteredRead, from a design's specials."""
    return [s.memory for s in fragment_specials if isinstance(s, RegisteredRead)]


def mark_block_rams(verilog, names, attribute='ram_style = "block"'):
    """`verilog` with the named memories' declarations marked `(* ram_style = "block" *)` (or
    `attribute`): a small memory would otherwise become LUT RAM, which has no output register to
    set."""
    for name in names:
        verilog, n = re.subn(rf"^(reg \[[^\]]+\] {re.escape(name)}\[)", rf"(* {attribute} *)\n\1",
                             verilog, count=1, flags=re.M)
        if n != 1:
            raise ValueError(f"memory {name}: no declaration in the Verilog")
    return verilog


def collision_free(*memories):
    """Declare that the design never uses a read of these memories that meets a write to the same
    word in the same cycle (the caller says why, beside the call). Their read ports are READ_FIRST
    in simulation; for synthesis they are marked `no_rw_check` (`collision_free_memories`), so
    yosys does not build the read-first behaviour between a block RAM's two ports out of fabric
    (a register per data bit, an address compare and a bypass mux behind the block RAM: some
    1,700 LUTs and as many flip-flops at N = 32, on paths that reached 11.3 ns)."""
    for m in memories:
        m.collision_free = True
    return list(memories)


def collision_free_memories(fragment_specials):
    """The memories declared `collision_free`, from a design's specials."""
    return [s for s in fragment_specials if isinstance(s, Memory) and getattr(s, "collision_free", False)]


def ecp5_yosys_passes(names):
    """yosys commands (after synth_ecp5) that set the output register of the named memories'
    DP16KD cells (yosys names them `<memory>.<i>.<j>`)."""
    if not names:
        return ""
    sel = " ".join(f"top/c:{name}.* top/t:DP16KD %i" for name in names)   # (other cells have such names)
    return f'setparam -set REGMODE_A "OUTREG" -set REGMODE_B "OUTREG" {sel}'


def check_outreg_cells(netlist, names):
    """Raise ValueError unless every named memory is implemented by one DP16KD with its output
    registers set (netlist: yosys' JSON). Returns the number of cells checked."""
    cells = netlist["modules"]["top"]["cells"]
    checked = 0
    for name in names:
        mine = {c: v for c, v in cells.items() if re.fullmatch(re.escape(name) + r"\.\d+\.\d+", c)}
        if len(mine) != 1:
            raise ValueError(f"memory {name} was mapped to {len(mine)} block RAMs, not one (its "
                             "output register would be missing or misplaced)")
        for c, v in mine.items():
            p = v.get("parameters", {})
            if v["type"] != "DP16KD" or p.get("REGMODE_B") != "OUTREG" or p.get("REGMODE_A") != "OUTREG":
                raise ValueError(f"{c}: {v['type']} without the output register")
        checked += len(mine)
    return checked


class SlicedMemory(Module):
    """A `width` x `depth` memory as block-RAM-deep slices side by side (no depth-cascade mux behind
    a block RAM), with one synchronous read port (`registered`: through the block RAMs' output
    registers, latency two; else latency one) and one write port, each like one memory's:
    read `adr` -> `dat_r`; write `we`, `wadr`, `wdat`. Memories of one slice's width or deeper
    than one block RAM stay one memory. `write_copies`: the write lands a cycle later, through a
    register copy of we/wadr/wdat per slice (no register of the write reaches every block RAM).
    `no_collisions`: the user never reads a word in the cycle it is written (`collision_free`)."""

    def __init__(self, name, width, depth, registered=False, write_copies=False, no_collisions=False):
        aw = max(1, (depth - 1).bit_length())
        self.adr, self.dat_r = Signal(aw), Signal(width)
        self.we, self.wadr, self.wdat = Signal(), Signal(aw), Signal(width)
        sw = bram_width(depth) or width
        self.memories = [Memory(min(sw, width - lo), depth, name=f"{name}{lo // sw}") for lo in range(0, width, sw)]
        self.specials += self.memories
        if no_collisions:
            collision_free(*self.memories)
        reads, lo = [], 0
        self.read_latency = 2 if registered else 1
        for m in self.memories:
            if registered:
                reads.append(registered_read(self, m, mode=READ_FIRST))
            else:
                port = m.get_port(mode=READ_FIRST)
                self.specials += port
                reads.append(port)
            w = m.get_port(write_capable=True)
            self.specials += w
            ctl = Cat(self.we, self.wadr, self.wdat[lo:lo + m.width])
            lo += m.width
            if write_copies:
                ctl = copy_reg(self, ctl, f"{m.name_override}_w")
            self.comb += w.we.eq(ctl[0]), w.adr.eq(ctl[1:1 + len(self.wadr)]), w.dat_w.eq(ctl[1 + len(self.wadr):])
        self.comb += [r.adr.eq(self.adr) for r in reads] + [self.dat_r.eq(Cat(*[r.dat_r for r in reads]))]
