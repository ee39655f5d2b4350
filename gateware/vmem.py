"""Vector pool: the accelerator's local memory of 16-bit words, and the segment loader.

One physical word space holds every vector space of the layer program (IN, OUT, STATE contexts,
SCRATCH, CONST); the controller turns a space-relative address into a physical one with the
space's base register. The pool is RD_WIDTH (4) interleaved banks, so the loader reads RD_WIDTH
consecutive words per cycle from any address (per-bank addresses, one rotator) and fills the X
buffer RD_WIDTH positions per cycle. Single words are read (epilogue operands, the bus) and
written (results, the bus) through separate ports; yosys replicates the banks for the extra read
port.
"""
from migen import READ_FIRST, Array, If, Memory, Module, Signal

from rnnaccel.host.spec import ACT_BITS

RD_WIDTH = 4


class VectorPool(Module):
    """`words` 16-bit words in RD_WIDTH banks.

    Ports:
        wide read:  wide_adr (any word address) -> wide_dat[j] = mem[wide_adr + j], 1 cycle later
        word read:  rd_adr -> rd_dat, 1 cycle later
        word write: we, wr_adr, wr_dat
    """

    def __init__(self, words):
        B = RD_WIDTH
        assert words % B == 0
        aw = (words - 1).bit_length()
        self.words = words
        self.wide_adr = Signal(aw)
        self.wide_dat = [Signal((ACT_BITS, True), name=f"wide{j}") for j in range(B)]
        self.rd_adr = Signal(aw)
        self.rd_dat = Signal((ACT_BITS, True))
        self.we = Signal()
        self.wr_adr = Signal(aw)
        self.wr_dat = Signal((ACT_BITS, True))

        banks = [Memory(ACT_BITS, words // B, name=f"vbank{b}") for b in range(B)]
        self.specials += banks
        # READ_FIRST (no transparency bypass logic behind the block RAMs): the core never reads a
        # word in the cycle it writes it (WAIT / WAIT_EPI order them by at least a cycle)
        wide = [m.get_port(mode=READ_FIRST) for m in banks]
        word = [m.get_port(mode=READ_FIRST) for m in banks]
        wr = [m.get_port(write_capable=True) for m in banks]
        self.specials += wide + word + wr
        lg = B.bit_length() - 1

        # ---- wide read: bank b serves element (b - a) mod B of the run starting at a ------------
        q, r = Signal(aw), Signal(lg)
        self.comb += q.eq(self.wide_adr >> lg), r.eq(self.wide_adr[:lg])
        for b in range(B):
            self.comb += If(b >= r, wide[b].adr.eq(q)).Else(wide[b].adr.eq(q + 1))
        r1 = Signal(lg)
        self.sync += r1.eq(r)
        outs = Array(Signal((ACT_BITS, True), name=f"wb{b}") for b in range(B))
        for b in range(B):
            self.comb += outs[b].eq(wide[b].dat_r)
        for j in range(B):
            self.comb += self.wide_dat[j].eq(outs[(r1 + j) & (B - 1)])

        # ---- single-word read and write ------------------------------------------------------------
        rsel = Signal(lg)
        self.sync += rsel.eq(self.rd_adr[:lg])
        words_r = Array(Signal((ACT_BITS, True), name=f"rb{b}") for b in range(B))
        for b in range(B):
            self.comb += word[b].adr.eq(self.rd_adr >> lg), words_r[b].eq(word[b].dat_r)
            self.comb += wr[b].adr.eq(self.wr_adr >> lg), wr[b].dat_w.eq(self.wr_dat), \
                wr[b].we.eq(self.we & (self.wr_adr[:lg] == b))
        self.comb += self.rd_dat.eq(words_r[rsel])
