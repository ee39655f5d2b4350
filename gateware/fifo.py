"""The row FIFO: first-word-fall-through over a block RAM read through its output register.

Interface and timing as Migen's `SyncFIFO(width, depth)` (fwft) where the core uses it: `we`/`din`
(one write per cycle), `readable`/`dout`/`re` (a word written in cycle t can be read from t + 1;
`readable` is a register).
`level` counts the words written and not yet read a cycle late (from registered write and read
strobes: the read strobe's logic stays off its adder). What differs is inside: the reader sees a small ring of
registers (the skid), so `dout` is a 4:1 mux of registers and `re` reaches only registers; the
block RAM behind it has its output register (bram.py: 0.9 ns instead of 5.8 ns clock-to-out on
ECP5) and a read decision made on registers only.

A word goes straight into the skid when every older word is there or on its way (none waits in
the block RAM) and the skid has a free slot; otherwise into the block RAM. The block RAM's words
are fetched in order, each into a slot reserved at its fetch, as soon as a slot is free: a fetch
takes three cycles to show, and a word waits in the block RAM only behind SKID older words, so
the reader never waits for one (one read per cycle at most: the fourth of those older words is
read no earlier than three cycles after the slot freed by the first).
"""
from migen import Array, If, Module, Mux, Signal

from .bram import SlicedMemory

SKID = 4            # slots of the register ring (see the module docstring: 4 covers the fetch)


class RowFifo(Module):
    def __init__(self, width, depth):
        self.we, self.din = Signal(), Signal(width)
        self.re, self.readable, self.dout = Signal(), Signal(), Signal(width)
        self.level = Signal(max=depth + SKID + 1)
        self.level_next = Signal.like(self.level)     # `level` of the next cycle (a test on it can be a register)
        self.readable_next = Signal()                 # `readable` of the next cycle (for register copies)

        # ---- skid: slots, the read pointer, reservations, filled slots ----------------------------
        slots = Array(Signal(width, name=f"skid{k}", reset_less=True) for k in range(SKID))
        rd, resv = Signal(max=SKID), Signal(max=SKID)     # ring pointers: read, next to reserve
        filled = Signal(max=SKID + 1)     # slots holding a word (the reader's)
        flight = Signal(max=SKID + 1)     # slots reserved by a fetch whose word has not arrived
        pop = Signal()
        # (`readable` == filled != 0, a register of its own from filled's next value: the reader's
        # pop decision then starts from flip-flops)
        self.comb += self.dout.eq(slots[rd]), pop.eq(self.re & self.readable)
        direct, arrive = Signal(), Signal()

        # ---- block RAM: words behind the skid --------------------------------------------------------
        # (a word is fetched at least a cycle after its write, and the writes never wrap onto an
        # unfetched word: no used read meets a write to its word)
        self.submodules.mem = mem = SlicedMemory("rowfifo", width, depth, registered=True, no_collisions=True)
        produce, consume = Signal(max=depth), Signal(max=depth)
        waiting = Signal(max=depth + 1)   # words in the block RAM not yet fetched
        none_waiting = Signal(reset=1)    # waiting == 0, a register from waiting's next value
        room = Signal()                   # a free slot (registers only: this cycle's pop not counted)
        occ = Signal(max=SKID + 1)        # filled + flight, kept as a register of its own: the
        self.comb += room.eq(occ < SKID)  # test before the slots' 4 x width enables is one bit
        fetch = Signal()
        self.we_d, self.pop_d = we_d, pop_d = Signal(), Signal()    # the strobes a cycle late: level_next's terms
        self.comb += self.level_next.eq(self.level + we_d - pop_d)
        waiting_nx = Signal(max=depth + 1)
        self.comb += [
            direct.eq(self.we & none_waiting & room),
            fetch.eq(~none_waiting & room),             # never together with `direct`
            waiting_nx.eq(waiting + (self.we & ~direct) - fetch),
            mem.wadr.eq(produce), mem.wdat.eq(self.din), mem.we.eq(self.we & ~direct),
            mem.adr.eq(consume),
        ]
        # a fetch one and two cycles ago, with the slot it reserved: its word is then on mem.dat_r
        f1, arrive = Signal(), Signal()
        slot1, slot2 = Signal(max=SKID), Signal(max=SKID)
        self.sync += f1.eq(fetch), arrive.eq(f1), slot1.eq(resv), slot2.eq(slot1)
        self.comb += self.readable_next.eq(direct | arrive | Mux(pop, filled > 1, filled != 0))
        self.sync += [
            If(self.we & ~direct, produce.eq(produce + 1) if depth & (depth - 1) == 0 else
               If(produce == depth - 1, produce.eq(0)).Else(produce.eq(produce + 1))),
            If(fetch, consume.eq(consume + 1) if depth & (depth - 1) == 0 else
               If(consume == depth - 1, consume.eq(0)).Else(consume.eq(consume + 1))),
            waiting.eq(waiting_nx), none_waiting.eq(waiting_nx == 0),
            If(direct | fetch, resv.eq(resv + 1)),
            If(direct, slots[resv].eq(self.din)),
            If(arrive, slots[slot2].eq(mem.dat_r)),
            flight.eq(flight + fetch - arrive),
            occ.eq(occ + (direct | fetch) - pop),
            filled.eq(filled + direct + arrive - pop),
            self.readable.eq(self.readable_next),
            If(pop, rd.eq(rd + 1)),
            we_d.eq(self.we), pop_d.eq(pop),
            self.level.eq(self.level_next),
        ]
