"""Vector pool: the accelerator's local memory of 16-bit words, and the segment loader.

One physical word space holds every vector space of the layer program (IN, OUT, STATE contexts,
SCRATCH, CONST); the controller turns a space-relative address into a physical one with the
space's base register. The pool is `width` interleaved banks (host.cycles.load_width: 8, at most
N), so the loader reads `width` consecutive words per cycle from any address (per-bank addresses,
one rotator) and fills the X buffer `width` positions per cycle. Single words are read (epilogue operands, the bus) and
written (results, the bus) through separate ports. Each bank is two memories written alike: one
for the single-word read port, one for the wide read, the latter in slices of one block RAM
each with the block's output register (`bram.registered_read`: the wide words leave the block
RAMs from a register, 0.9 ns instead of 5.8 ns clock-to-out on ECP5).
"""
from migen import READ_FIRST, Array, Cat, If, Memory, Module, Signal

from rnnaccel.host.spec import ACT_BITS

from .bram import bram_width, collision_free, registered_read
from .regs import copy_reg, delay



class VectorPool(Module):
    """`words` 16-bit words in `width` banks.

    Ports:
        wide read:  wide_adr (any word address) -> `wide_latency` (4) cycles later the banks' words
                    in bank order: mem[wide_adr + j] = wide_bank[(wide_rot + j) mod width]
                    (the consumer rotates them: the X buffer within its own write rotation),
                    and wide_dat0 = mem[wide_adr]
        word read:  rd_adr -> rd_dat, `rd_latency` (5) cycles later (through an address register,
                    a copy of it per bank, the block RAMs' output registers and the registered
                    bank pick)
        word write: we, wr_adr, wr_dat, into the bank `wr_latency` (1) cycle later (a register per bank)
    """

    def __init__(self, words, width):
        B = self.width = width
        assert words % B == 0
        aw = (words - 1).bit_length()
        self.words = words
        self.wide_adr = Signal(aw)
        self.wide_bank = [Signal((ACT_BITS, True), name=f"wide{j}") for j in range(B)]
        self.wide_rot = Signal(max(1, (B - 1).bit_length()))
        self.wide_dat0 = Signal((ACT_BITS, True))
        self.rd_adr = Signal(aw)
        self.rd_dat = Signal((ACT_BITS, True))
        self.we = Signal()
        self.wr_adr = Signal(aw)
        self.wr_dat = Signal((ACT_BITS, True))

        depth = words // B
        sw = min(ACT_BITS, bram_width(depth))       # bits per wide-read slice: one block RAM deep
        if sw == 0:
            raise ValueError(f"vector pool banks of {depth} words exceed one block RAM's depth")
        banks = [Memory(ACT_BITS, depth, name=f"vbank{b}") for b in range(B)]
        slices = [[Memory(min(sw, ACT_BITS - lo), depth, name=f"vwide{b}_{lo // sw}") for lo in range(0, ACT_BITS, sw)]
                  for b in range(B)]
        self.specials += banks + [m for ms in slices for m in ms]
        # READ_FIRST (no transparency bypass logic behind the block RAMs), and no read-first
        # emulation either (`collision_free`): no used read meets a write to its word in the same
        # cycle. The core: an instruction reads what an older one writes only after WAIT /
        # WAIT_EPI (at least a cycle after the write), a row's operands are read before its own
        # result is written, and the rows of one instruction read and write words of different
        # rows; reads the core does not use (a slot without operand, the wide port outside LOAD)
        # do not count. The bit-exact RTL tests would see a used read that did meet a write: in
        # simulation it returns the old word where the host model has the new one. The host: it
        # uses the pool only while the core is idle, its write lands two cycles after the bus
        # strobe (the core's write register, the bank's), and its next bus request comes after
        # the write's acknowledge, a cycle later: its read then reaches the block RAMs through
        # the bank's address register, a cycle after that.
        collision_free(*banks, *[m for ms in slices for m in ms])
        wide_s = [[registered_read(self, m, mode=READ_FIRST) for m in ms] for ms in slices]
        self.rd_latency = 5
        self.wr_latency = 1
        word = [registered_read(self, m, mode=READ_FIRST) for m in banks]
        wr = [[m.get_port(write_capable=True) for m in [banks[b], *slices[b]]] for b in range(B)]
        self.specials += [p for ps in wr for p in ps]
        lg = B.bit_length() - 1

        # ---- wide read: bank b serves element (b - a) mod B of the run starting at a ------------
        # the address registered where it arrives (from afar: the loader, the bus; behind the
        # port's owner mux), then each bank's address (q or q + 1) in a register of its own
        # beside the bank, so the block RAM's address setup stays local
        self.wide_latency = 4
        # (a copy of the arriving address per bank: one register reaching all eight banks' compare
        # and increment took 12 ns of routing)
        r = Signal(lg)                           # the run's first bank, for the rotation
        self.sync += r.eq(self.wide_adr[:lg])
        for b in range(B):
            a_b = copy_reg(self, self.wide_adr, f"wadr_in{b}")
            adr = Signal(aw - lg, name=f"wadr{b}")
            self.sync += If(b >= a_b[:lg], adr.eq(a_b >> lg)).Else(adr.eq((a_b >> lg) + 1))
            self.comb += [p.adr.eq(adr) for p in wide_s[b]]
        r3 = delay(self, r, self.wide_latency - 1, "wrot")
        for b in range(B):
            self.comb += self.wide_bank[b].eq(Cat(*[p.dat_r for p in wide_s[b]]))
        self.comb += self.wide_rot.eq(r3), self.wide_dat0.eq(Array(self.wide_bank)[r3])

        # ---- single-word read and write ------------------------------------------------------------
        # the bank pick registered: the banks' block RAMs lie apart, their outputs meet at the pick;
        # the read address registered where it arrives (behind the reader's picks and the owner
        # mux), then a copy of it per bank beside its block RAM: one net reaching every bank took
        # 5.6 ns of routing, the copies straight behind the picks 13 ns)
        rsel = delay(self, self.rd_adr[:lg], self.rd_latency - 1, "rsel")
        rd_adr_r = Signal(aw - lg, name="rd_adr_r")
        self.sync += rd_adr_r.eq(self.rd_adr[lg:])
        words_r = Array(Signal((ACT_BITS, True), name=f"rb{b}") for b in range(B))
        for b in range(B):
            radr = copy_reg(self, rd_adr_r, f"radr{b}")      # (copies: not merged into one)
            self.comb += word[b].adr.eq(radr), words_r[b].eq(word[b].dat_r)
            # the write registered per bank as well (wr_latency: one register reaching the banks'
            # data and address pins took 9.9 ns)
            we = Signal(name=f"vwe{b}")
            w_b = copy_reg(self, Cat(self.wr_adr[lg:], self.wr_dat), f"vw{b}")
            self.sync += we.eq(self.we & (self.wr_adr[:lg] == b))
            for p, lo in zip(wr[b], [0] + list(range(0, ACT_BITS, sw))):
                self.comb += p.adr.eq(w_b[:aw - lg]), p.dat_w.eq(w_b[aw - lg + lo:aw - lg + lo + len(p.dat_w)]), p.we.eq(we)
        self.sync += self.rd_dat.eq(words_r[rsel])
