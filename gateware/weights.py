"""Weight stream: the decompression unit that feeds N MAC lanes from the packed weight memory.

A MATVEC's weights are one flat stream (docs/gateware-design.md): `rows * k_stored` fields of
`mode` bits, row-major, packed LSB-first into little-endian bytes (docs/image-format.md,
host/compression.py). This unit reads that stream from the weight memory (N-byte words) and puts
N_eff weights per cycle on the N lanes, together with the row-boundary information of the cycle.
`rnnaccel.host.simulator.decode_weights` is its bit-exact reference.

Lanes
-----
    modes 8, 6, 4, 2   N_eff = N:   lane i = weight i of the cycle, int8 sign-extended to 9 bits
                                    (codebook modes: the int8 entry its index selects)
    mode 16            N_eff = N/2: lane 2i = low byte of weight i, zero-extended (0..255),
                                    lane 2i+1 = high byte, sign-extended; the MAC array fuses the
                                    pair: x * w = x * lo + (x * hi << 8)

Per cycle also `first`, `last`, `n_valid` (weights valid: N_eff, the last cycle may have fewer) and
`bnd`: the weight index at which the next row starts in this cycle, N_eff if none. `bnd`,
`n_valid` count *weights*, so in mode 16 they are in 0..N/2 (lanes = 2 * weights). A row that
starts at weight 0 of a cycle (the previous row filled the previous cycle exactly) gives bnd = 0,
except in the first cycle; the last cycle has bnd = N_eff (no next row). Since every stored row
has k_stored >= 64 >= N columns there is at most one boundary per cycle (docs/isa.md).

Structure
---------
    _Gearbox      a 5-word prefetch FIFO in registers, filled from a read-address register that
                  runs ahead; the stream advances by 2N-bit units (4, 4, 3, 2, 1 units per cycle
                  in modes 16, 8, 6, 4, 2; a word is 4 units), so the window of a cycle starts at
                  unit 0..3 of the FIFO's first two words: a 4:1 mux, no barrel shifter, and at
                  most one new word per cycle, which the read-ahead always has ready.
    _RowTracker   where rows end: d = columns left in the row at weight 0 (k_stored - column
                  position), decremented by N_eff per cycle, so bnd = d if d < N_eff.
    _Codebooks    two int8 codebook files (entries of group g live in file g & 1; every lane has
                  a copy of both in a small LUT RAM, written a word at a time) and the filler
                  that loads them from the parameter memory, one 32-bit word (4 entries) per
                  cycle: groups 0 and 1 right after `start`, then group g + 2 as soon as the
                  output stage has finished with group g.
    WeightStream  stage P: the window's two ring words registered (the ring mux alone in its
                  cycle); stage A: the window within them; stage B: each lane's candidate
                  fields, registered beside the lane; stage 1: the mode's field (raw byte or
                  codebook index); stage 2: codebook lookup / sign extension -> the output
                  registers.
                  In a cycle that crosses into a new group, weights before `bnd` use the file of
                  the current group, weights from `bnd` the file of the next one.

Handshake: `valid`/`ready`. The whole unit stands still in every cycle in which `ready` is low
(one clock enable for both stages, straight from the consumer's `ready` register: no logic between
it and the unit's registers), so the output registers hold while `valid & ~ready`, and timing does
not depend on the consumer beyond the cycles it stalls. `start` (one cycle) latches the instruction fields; only start when `busy`
is low. The stream reads the weight memory a few words beyond its end (harmless).

Timing (exact, with `ready` held high)
--------------------------------------
Let `start` be high in cycle S.

* First valid output: cycle S + ``first_output_latency(mode)`` =
  S + 7 in modes 16 and 8, S + 7 + W in the codebook modes, with W = 2**bits / 4 parameter words
  per codebook (W = 16, 4, 1 for modes 6, 4, 2: group 0 must be loaded; the prefetch FIFO
  primes in parallel).
* Then ``stream_cycles(n_lanes, mode, rows, k_stored, group_log2)`` consecutive cycles carry the
  stream; `valid` is high in all of them except codebook stalls, `last` marks the final one:

      stream_cycles = ceil(rows * k_stored / N_eff) + codebook stalls

  Codebook stalls: with G = 2**group_log2 rows per group, group h >= 1 starts in stream cycle
  x_h = floor(h * G * k_stored / N_eff). Its codebook is ready for the cycle that needs it (the
  crossing cycle) at the earliest W cycles after stream cycle 0 (h = 1: it loads right after
  group 0) or W + 6 (FILL_TURNAROUND) cycles after the crossing into group h - 1 (h >= 2: the
  filler may only overwrite group h - 2's file once the output stage has passed that crossing,
  then needs W cycles plus the memory latency, 2). With t_h the cycle (relative to stream cycle 0) in which the
  crossing into h is issued:

      t_0 = x_0 = 0,  t_1 = max(x_1, W),  t_h = max(t_{h-1} + x_h - x_{h-1}, t_{h-1} + W + 6)
      stalls = t_last - x_last     (last = the final group; 0 with one group or no codebooks)

  So groups lasting at least W + 6 cycles (22 in mode 6; the compiler's groups last hundreds)
  never stall. With backpressure, every cycle in which the unit is frozen (`valid & ~ready`)
  delays the last output by at most one cycle (refills go on meanwhile); results are the same.
"""
from functools import reduce
from operator import or_

from migen import C, Array, Case, Cat, If, Memory, Module, Mux, Signal

from rnnaccel.host.isa import FIELDS
from rnnaccel.host.cycles import CB_PER_WORD, codebook_words
from rnnaccel.host.spec import CODEBOOK_BITS, CODEBOOK_MODES, MAX_LANES, WEIGHT_MODE_CODE

from .mac import LANES_PER_COPY, W_BITS
from .regs import InputCopies, copy_reg

ROW_BITS = FIELDS["rows"][2]            # rows of one MATVEC
K_BITS = FIELDS["a_len"][2] + 1         # k_stored = KA + KB + pad (pad only when K < 64)
GL_BITS = FIELDS["group_log2"][2]
MODE_BITS = FIELDS["mode"][2]

CB_ENTRIES = 1 << max(CODEBOOK_MODES)   # one register file: entries of the widest codebook mode
FIFO_CHUNKS = 16                        # the FIFO's write enables: one copy per 1/16 of the word (an address group at N = 32)
UNITS_PER_WORD = 4                      # the gearbox works in 2N-bit units, a word is 8N bits
FIFO_WORDS = 5                          # the gearbox's prefetch FIFO (two words + the three in flight)
PORTS_PER_ADDR = 4                      # weight-memory ports (block RAMs) per read-address copy
CB_WORD_BITS = (CB_ENTRIES // CB_PER_WORD - 1).bit_length()   # word within one file
CB_ADR_BITS = CB_WORD_BITS + 1          # {file, word}: both files in one lane memory


# Timing (first_output_latency, stream_cycles, ...) lives in rnnaccel.host.cycles, shared with the
# host's cycle model; the structure below implements it.


def units_per_cycle(mode):
    """2N-bit units of the stream consumed per cycle (N_eff * bits / 2N)."""
    return UNITS_PER_WORD if mode == 16 else mode // 2


# --------------------------------------------------------------------------------------------------
# Gearbox
# --------------------------------------------------------------------------------------------------
def _ring_next(ptr, depth):
    """ptr + 1 modulo depth (a ring of any depth)."""
    return Mux(ptr == depth - 1, 0, ptr + 1)


class _Gearbox(Module):
    """A small prefetch FIFO over the weight memory and the lane fields of the current stream cycle.

    The memory's address comes from a register (`ra`), which runs ahead of the stream, through
    a copy of it per group of ports (beside their block RAMs): the words it reads land, three
    cycles later (the copy, then the ports' read latency: the block RAMs' output registers), in a
    circular FIFO of FIFO_WORDS registers, so the window reads registers only
    and neither the memory's clock-to-out nor the stream's advance decision stands before the
    other (the advance only moves a 2-bit read pointer). A read is issued whenever the words held
    plus those in flight leave room, not counting the current cycle's pop (so the read decision
    sees registers only, not the advance), so the FIFO never overflows and, once primed, keeps
    one word per cycle flowing (a window at unit 0 needs one word; the modes that need two
    words for a window consume less than a word per cycle). While no stream runs, `ra` follows
    `base` (so `base` must be valid a cycle before `start`): the first word is addressed in
    the start cycle, and the first window is ready four cycles after `start`. `off` (in 2N-bit units) is
    where the cycle's window starts in the FIFO's first two words; it advances by `units` and
    wraps into a pop.

    `ports`: the weight memory as one or more read ports side by side (the word's bits split in
    order); every PORTS_PER_ADDR of them have their own copy of the address register, so no net
    reaches every block RAM (the copies lie along the die: `ra` itself, with the logic that
    advances it, in one place, a copy per group a register away from it; copies that each
    advanced themselves needed the advance decision all along the die, 10.4-12.1 ns)."""

    def __init__(self, n, ports, external_start=False):
        ports = list(ports)
        aw = len(ports[0].adr)
        self.start = Signal()
        self.starts = InputCopies(self, self.start, external_start)
        start = self.starts.get("gstart")
        self.active = Signal()                # a stream runs (the parent's row tracker)
        self.active_next = Signal()           # its value in the next cycle
        self.base = Signal(aw)                # first word of the next stream (a cycle before start)
        self.units_next = Signal(3)           # units per cycle, its value in the next cycle (latched by the parent)
        self.advance = Signal()               # the current cycle is consumed
        self.have = Signal()                  # the words of the current window are in the FIFO
        dat_r = Cat(*[p.dat_r for p in ports])
        assert len(dat_r) == 8 * n

        # ---- reads ahead: address registers, words in flight and held -------------------------
        D = FIFO_WORDS
        occ = Signal(max=D + 1)               # words held + the ones in flight
        cnt = Signal(max=D + 1)               # words held
        rd, arr, pop = Signal(), Signal(), Signal()
        off = Signal(2)
        total = Signal(3)
        rp, wp = Signal(max=D), Signal(max=D)  # read and write pointers of the FIFO
        self.comb += [
            pop.eq(self.advance & total[2]),
            rd.eq(start | (self.active & (occ < D))),   # start empties the FIFO; no pop needed
            # the window spans the second word only when it needs more units than the first has left
            self.have.eq((cnt >= 2) | ((cnt != 0) & (total <= UNITS_PER_WORD))),
        ]
        # The address register: ra + inc while a stream runs or starts, else base. At start ra ==
        # base (it followed base), and the increment is 1 there, so the increment (a register
        # from its next value: `active` and the FIFO's room) needs no `start`; `start` only
        # selects in the last LUT before the register. The room is computed for both outcomes of
        # the cycle's pop, which selects last.
        occ_nx = Signal(max=D + 1)
        self.comb += If(start, occ_nx.eq(1)).Else(occ_nx.eq(occ + rd - pop))
        rd_run = Signal()
        room_pop, room_keep, inc_nx = Signal(), Signal(), Signal()
        self.comb += [
            rd_run.eq(self.active & (occ < D)),
            room_keep.eq(occ + rd_run < D), room_pop.eq(occ + rd_run - 1 < D),
            inc_nx.eq(start | ~self.active_next | Mux(pop, room_pop, room_keep)),
        ]
        # (`ra` in two copies, each with its increment and serving half of the groups: one
        # register reaching all the groups' copies took 11 ns; each copy feeds back on itself,
        # so yosys keeps them apart)
        groups = range(0, len(ports), PORTS_PER_ADDR)
        ra_h = []
        for h in range(2):
            ra, inc = Signal(aw, name=f"wra_h{h}"), copy_reg(self, inc_nx, f"winc_h{h}")
            self.sync += If(self.active | start, ra.eq(ra + inc)).Else(ra.eq(self.base))
            ra_h.append(ra)
        for k, g in enumerate(groups):
            ra_g = copy_reg(self, ra_h[2 * k // len(groups)], f"wra{g}")
            self.comb += [port.adr.eq(ra_g) for port in ports[g:g + PORTS_PER_ADDR]]
        # the window's position in units of the FIFO ring: {rp, off}, with copies (below). A start
        # restarts the ring where it is (wp = rp, no word held), so the read pointer moves on pops
        # alone (no stream runs, and so no pop, in the start cycle): its copies count by
        # themselves
        off_nx, rp_nx = Signal(2), Signal(max=D)
        self.comb += If(start, off_nx.eq(0)).Else(If(self.advance, off_nx.eq(total[:2])).Else(off_nx.eq(off))), \
            If(pop, rp_nx.eq(_ring_next(rp, D))).Else(rp_nx.eq(rp))
        wp_nx = Signal(max=D)
        self.comb += If(start, wp_nx.eq(rp)).Elif(arr, wp_nx.eq(_ring_next(wp, D))).Else(wp_nx.eq(wp))
        arr2, arr1 = Signal(), Signal()       # words read one and two cycles ago (the address copy, the ports' latency 2)
        # total = off + units, a register from their next values: `have`, and so the issue
        # decision, start from registers, not from an adder
        cnt_nx, total_nx = Signal(max=D + 1), Signal(3)
        self.comb += If(start, cnt_nx.eq(0)).Else(cnt_nx.eq(cnt + arr - pop)), \
            total_nx.eq(off_nx + self.units_next)
        self.have_next = Signal()             # `have` in the next cycle
        self.comb += self.have_next.eq((cnt_nx >= 2) | ((cnt_nx != 0) & (total_nx <= UNITS_PER_WORD)))
        self.sync += [
            arr2.eq(rd), arr1.eq(arr2), arr.eq(arr1), off.eq(off_nx), rp.eq(rp_nx), total.eq(total_nx),
            If(start,
                occ.eq(1),
            ).Else(
                occ.eq(occ_nx),
            ),
            cnt.eq(cnt_nx),
            wp.eq(wp_nx),
        ]
        # the ring's write enables (arr & wp == k) as registers from their next values, one copy
        # per chunk of the word (each reaches 8N / FIFO_CHUNKS clock enables, not 8N), loaded from
        # a register per slot that holds the next value a cycle ahead (arr2 and wp's next value
        # advanced by arr1: wp moves on arrivals only, and a start meets no read in flight), so
        # the copies along the die load from registers (wp -> compare -> 80 copies: 11.0 ns)
        e = [Signal(8 * n, name=f"wfifo{k}", reset_less=True) for k in range(D)]
        cw = 8 * n // FIFO_CHUNKS
        wp_nx2 = Signal(max=D)
        self.comb += If(arr1, wp_nx2.eq(_ring_next(wp_nx, D))).Else(wp_nx2.eq(wp_nx))
        slot_en = [Signal(name=f"wslot{k}", reset=0) for k in range(D)]
        self.sync += [slot_en[k].eq(arr2 & (wp_nx2 == k)) for k in range(D)]
        for c in range(FIFO_CHUNKS):
            for k in range(D):
                en = copy_reg(self, slot_en[k], f"wfe{c}_{k}", reset=True)
                self.sync += If(en, e[k][c * cw:(c + 1) * cw].eq(dat_r[c * cw:(c + 1) * cw]))

        # ---- the window's two words: ring words rp and rp + 1 (a 5:1 word mux) -------------------
        # The window (4 units from unit {rp, off}) is cut in two registered muxes instead of
        # one: here the pair of words the window lies in, by rp (a 5:1 word mux); the parent registers it
        # (stage P) together with `off` and picks the window from it (stage A, a 4:1 mux). Each
        # ring bit feeds 2 muxes here. The select is a register per chunk of the pair, each
        # counting the pops itself (no net drives every mux, no logic stands between the copies).
        self.pair = Signal(16 * n)            # ring words rp, rp + 1
        self.off = off                        # the window's first unit within the pair
        words = [e[k] for k in range(D)]
        chunks = self.chunks = 16 if n >= 16 else 8
        width = 8 * n // chunks
        for c in range(chunks):
            sel = Signal(max=D, name=f"wrp{c}")          # == rp
            self.sync += If(pop, sel.eq(_ring_next(sel, D)))
            for w in range(2):
                lo = w * 8 * n + c * width
                src = [words[(v + w) % D][c * width:(c + 1) * width] for v in range(D)]
                self.comb += self.pair[lo:lo + width].eq(Array(src)[sel])


# --------------------------------------------------------------------------------------------------
# Row tracker
# --------------------------------------------------------------------------------------------------
class _RowTracker(Module):
    """Row boundaries of the flat stream, tracked incrementally (no division by k_stored).

    d is the number of weights from weight 0 of the current cycle to the end of the row that
    weight belongs to (1..k_stored): the column position is k_stored - d. The row ends in this
    cycle when d <= N_eff; the next row then starts at weight d (d < N_eff) or at weight 0 of the
    next cycle (d == N_eff: `fresh`, reported as bnd = 0 there)."""

    def __init__(self, n, external_start=False):
        self.start = Signal()
        self.starts = InputCopies(self, self.start, external_start)
        start, start_run = self.starts.get("tstart"), self.starts.get("tstart_run")
        self.rows = Signal(ROW_BITS)
        self.k_stored = Signal(K_BITS)
        self.half = Signal()                  # mode 16: N_eff = N/2
        self.mask = Signal(ROW_BITS)          # G - 1 (latched by the parent)
        self.advance = Signal()

        self.running = Signal()               # stream cycles remain
        self.bnd = Signal(max=n + 1)
        self.has_bnd = Signal()
        self.new_group = Signal()             # the row starting at bnd opens a codebook group
        self.first = Signal()
        self.last = Signal()
        self.n_valid = Signal(max=n + 1)

        ne = Signal(max=n + 1)                # N_eff
        k_step = Signal(K_BITS)               # k_stored - N_eff
        k_step2m1 = Signal((K_BITS + 2, True))   # k_stored - 2 N_eff - 1
        ne2 = Signal(max=2 * n + 1)           # 2 N_eff
        rows_m2 = Signal(ROW_BITS)
        d = Signal(K_BITS)
        fresh = Signal()
        ends, last_row = Signal(), Signal()   # d <= N_eff, row == rows - 1 (registers: see below)
        row = Signal(ROW_BITS)                # row of weight 0
        row1, row2 = Signal(ROW_BITS), Signal(ROW_BITS)   # row + 1, row + 2 (no adders ahead)
        # the tests the next state needs, kept as registers of the current state (each updated
        # with the state from one compare on d against a constant of the stream): the issue
        # decision behind new_group_next starts at flip-flops, not at an adder's carry chain
        # (d + k_stored - 2 N_eff < 0 there reached the issue copies in 10.8 ns)
        lt_e = Signal()                       # d + k_stored - 2 N_eff < 0
        lt_m = Signal()                       # d < 2 N_eff
        eq_ne = Signal()                      # d == N_eff
        nl2 = Signal()                        # row != rows - 2
        c_e, c_m, c_eq = (Signal((K_BITS + 3, True), name=f"c_{x}") for x in ("e", "m", "eq"))  # 3 N_eff - 2 k, 3 N_eff - k, 2 N_eff - k
        ne3 = Signal(max=3 * n + 1)           # 3 N_eff
        self.sync += If(start,
            ne.eq(Mux(self.half, n // 2, n)), ne2.eq(Mux(self.half, n, 2 * n)),
            k_step.eq(self.k_stored - Mux(self.half, n // 2, n)),
            rows_m2.eq(self.rows - 2),
            d.eq(self.k_stored), fresh.eq(0), row.eq(0), row1.eq(1), row2.eq(2),
            ends.eq(self.k_stored <= Mux(self.half, n // 2, n)), last_row.eq(self.rows == 1),
            k_step2m1.eq(self.k_stored - Mux(self.half, n, 2 * n) - 1),
            # the next state's tests (below) at d = k_stored, row = 0
            lt_e.eq(self.k_stored < Mux(self.half, n // 2, n)), lt_m.eq(self.k_stored < Mux(self.half, n, 2 * n)),
            eq_ne.eq(self.k_stored == Mux(self.half, n // 2, n)), nl2.eq(self.rows != 2),
            c_e.eq(Mux(self.half, 3 * n // 2, 3 * n) - 2 * self.k_stored),
            c_m.eq(Mux(self.half, 3 * n // 2, 3 * n) - self.k_stored),
            c_eq.eq(Mux(self.half, n, 2 * n) - self.k_stored), ne3.eq(Mux(self.half, 3 * n // 2, 3 * n)),
        )
        self.sync += If(start_run, self.first.eq(1), self.running.eq(1))

        # `ends` (d <= N_eff: the row ends in this cycle) and `last_row` (row == rows - 1) are
        # registers, computed with the next state (below): `last`, and so the parent's issue
        # decision and everything behind it, starts from registers, not from a comparator
        mid = Signal()                        # the next row starts inside this cycle
        self.comb += [
            mid.eq(~fresh & (d < ne) & ~last_row),
            self.has_bnd.eq(fresh | mid),
            If(fresh, self.bnd.eq(0)).Elif(mid, self.bnd.eq(d)).Else(self.bnd.eq(ne)),
            self.last.eq(last_row & ends),
            self.n_valid.eq(Mux(self.last, d, ne)),
        ]
        # the state after an advance, and `new_group` of that state computed ahead and registered
        # (it gates the parent's `advance`: no adder or comparator between it and the advance).
        # The next state's tests are registers of this state, and `ends` only selects:
        #   ends:  d' = d + k_step, row' = row + 1, d' < N_eff <=> lt_e, d' == N_eff <=> eq_ne
        #   else:  d' = d - N_eff,  row' = row,     d' < N_eff <=> lt_m
        # Those registers load with the state, each from one compare of d with a constant of the
        # stream (k = k_stored):
        #   d' + k - 2 N_eff < 0 <=> d < 3 N_eff - 2 k (end) | d < 3 N_eff - k
        #   d' < 2 N_eff         <=> d < 3 N_eff - k (end)   | d < 3 N_eff
        #   d' == N_eff          <=> d == 2 N_eff - k (end)  | d == 2 N_eff
        d_nx, row_nx, fresh_nx = Signal(K_BITS), Signal(ROW_BITS), Signal()
        self.comb += If(ends, d_nx.eq(d + k_step), row_nx.eq(row1), fresh_nx.eq(eq_ne)) \
            .Else(d_nx.eq(d - ne), row_nx.eq(row), fresh_nx.eq(0))
        lt_nx, notlast_nx = Signal(), Signal()    # d' < N_eff, row' != rows - 1
        self.comb += If(ends, lt_nx.eq(lt_e), notlast_nx.eq(nl2)) \
            .Else(lt_nx.eq(lt_m), notlast_nx.eq(~last_row))
        # the next row (the one starting at the boundary): row' if fresh', else row' + 1
        g1, g2 = Signal(), Signal()           # row + 1, row + 2 open a group
        self.comb += g1.eq((row1 & self.mask) == 0), g2.eq((row2 & self.mask) == 0)
        bnd_nx = Signal()
        self.comb += bnd_nx.eq(fresh_nx | (lt_nx & notlast_nx))
        # d' <= N_eff: after a row end d + k_stored - 2 N_eff - 1 < 0, else d <= 2 N_eff
        s_end1 = Signal((K_BITS + 3, True))
        ends_nx = Signal()
        self.comb += s_end1.eq(d + k_step2m1), ends_nx.eq(Mux(ends, s_end1[-1], d <= ne2))
        # at start the first cycle has no boundary: k_stored >= N_eff
        self.new_group_next = Signal()        # `new_group` in the next cycle
        self.comb += If(start_run, self.new_group_next.eq(0)).Elif(self.advance,
            self.new_group_next.eq(bnd_nx & Mux(ends & ~fresh_nx, g2, g1))).Else(self.new_group_next.eq(self.new_group))
        self.sync += self.new_group.eq(self.new_group_next)
        self.sync += If(~start_run & self.advance,
            self.first.eq(0),
            If(self.last, self.running.eq(0)),
            d.eq(d_nx), row.eq(row_nx), fresh.eq(fresh_nx), ends.eq(ends_nx), last_row.eq(~notlast_nx),
            If(ends, row1.eq(row2), row2.eq(row2 + 1),
               lt_e.eq(d < c_e), lt_m.eq(d < c_m), eq_ne.eq(d == c_eq), nl2.eq(row1 != rows_m2),
            ).Else(
               lt_e.eq(d < c_m), lt_m.eq(d < ne3), eq_ne.eq(d == ne2)),
        )


# --------------------------------------------------------------------------------------------------
# Codebooks
# --------------------------------------------------------------------------------------------------
class _Codebooks(Module):
    """Two codebook files (in every lane's LUT RAM, see WeightStream) and their filler.

    Group g's entries live in file g & 1. The filler reads the codebooks in order (they are
    consecutive in the parameter memory, group 0 first), one word per cycle, and may load group
    g while `held` < 2, i.e. while the output stage still uses fewer than two files. Two counters
    give the stall rule: `ahead` = groups loaded minus the group in effect at stage 1 (a cycle
    crossing into a new group needs ahead == 2), `held` = groups loaded or loading minus the
    group in effect at the output stage."""

    def __init__(self, port, external_start=False):
        self.start = Signal()
        self.starts = InputCopies(self, self.start, external_start)
        start = self.starts.get("cstart")
        self.base = Signal(len(port.adr) + 2)   # byte address, 4-byte aligned (valid with start)
        self.enable = Signal()                  # codebook mode (latched by the parent)
        self.words = Signal(max=CB_ENTRIES // CB_PER_WORD + 1)   # words per codebook (latched)
        self.rows = Signal(ROW_BITS)            # (sampled with start)
        self.mask = Signal(ROW_BITS)            # G - 1 (latched)
        self.take = Signal()                    # stage 1 issued a cycle crossing into a new group
        self.release = Signal()                 # the output stage passed such a cycle

        self.ahead = Signal(2)

        # ---- filler: issue reads -----------------------------------------------------------------
        adr = Signal(len(port.adr))
        j = Signal(max=CB_ENTRIES // CB_PER_WORD)    # word within the codebook
        # rows - 1 - (first row of the group being filled): a group remains while it is >= 0, so
        # the issue test reads its sign bit (no comparator); a group's end subtracts G = mask + 1
        # as one add of ~mask
        left, minus_g = Signal((ROW_BITS + 2, True)), Signal((ROW_BITS + 2, True))
        self.comb += minus_g.eq(Cat(~self.mask, C(3, 2)))   # -G: the bits of ~mask, sign-extended with ones
        par = Signal()                               # the file being filled
        held = Signal(2)
        go = Signal()
        word_last = Signal()
        self.comb += [
            port.adr.eq(adr),
            word_last.eq(j == self.words - 1),
            # a codebook, once begun, is read to its end (held only decreases meanwhile)
            go.eq(self.enable & ((j != 0) | (~held[1] & ~left[-1]))),
        ]
        self.sync += If(start,
            adr.eq(self.base[2:]), j.eq(0), left.eq(self.rows - 1), par.eq(0), held.eq(0),
        ).Else(
            held.eq(held + (go & word_last) - self.release),
            If(go,
                adr.eq(adr + 1),
                If(word_last,
                    j.eq(0), par.eq(~par), left.eq(left + minus_g),
                ).Else(
                    j.eq(j + 1),
                ),
            ),
        )

        # ---- filler: write the words the memory returns one cycle later --------------------------
        # (the parameter memory reads through its block RAMs' output registers: the word of a
        # read issued in cycle c is on port.dat_r in c + 2, so the write follows go by two
        # registers; a start, which no fill of the previous stream outlives, cancels both)
        wr1, wr_j1, wr_par1, wr_last1 = Signal(), Signal.like(j), Signal(), Signal()
        wr, wr_j, wr_par, wr_last = Signal(), Signal.like(j), Signal(), Signal()
        self.sync += [
            wr1.eq(go & ~start), wr_j1.eq(j), wr_par1.eq(par), wr_last1.eq(go & word_last),
            wr.eq(wr1 & ~start), wr_j.eq(wr_j1), wr_par.eq(wr_par1), wr_last.eq(wr_last1),
        ]
        self.ahead_next = Signal(2)           # `ahead` in the next cycle
        self.comb += If(start, self.ahead_next.eq(0)).Else(self.ahead_next.eq(self.ahead + (wr & wr_last) - self.take))
        self.sync += self.ahead.eq(self.ahead_next)
        # the words go to every lane's copy (WeightStream stage 2): word wr_j of file wr_par, two
        # cycles after `wr`, through a register (the block RAMs' output registers lie in their
        # row, the lanes all over the die), a register per half of the lanes, per lane group and
        # per lane (`write_replicas`): it lands in the lanes' LUT RAMs at the end of the fourth
        # cycle after `wr`, in time for the earliest lookup of its file, in the fifth (`ahead`
        # lets the issue follow `wr` of the file's last word by a cycle; stages P, A, B, 1)
        w_we, w_adr, w_dat = Signal(), Signal(len(Cat(wr_j, wr_par))), Signal(32, reset_less=True)
        self.sync += w_we.eq(wr), w_adr.eq(Cat(wr_j, wr_par)), w_dat.eq(port.dat_r)
        self.wr, self.wr_adr, self.wr_dat = w_we, w_adr, w_dat


def write_replicas(m, cb, n_lanes):
    """The codebook write (we, address, data) for each lane: registered once per half of the lanes,
    once per lane group, then once per lane (`copy_reg`), so that neither the block RAM's output
    nor one register drives every lane's LUT RAM (plain copies merge into one register, which
    yosys then absorbs into the block RAM: measured; a copy per group of four lanes reached its
    lanes' LUT RAMs in 11-15 ns, the filler's register the eight group copies in 10.6 ns)."""
    n_groups = -(-n_lanes // LANES_PER_COPY)
    halves = [copy_reg(m, Cat(cb.wr, cb.wr_adr, cb.wr_dat), f"cbw_h{h}") for h in range(2)]
    groups = [copy_reg(m, halves[2 * g // n_groups], f"cbw{g}") for g in range(n_groups)]
    out = []
    for i in range(n_lanes):
        rep = copy_reg(m, groups[i // LANES_PER_COPY], f"cbw_l{i}")
        out.append((rep[0], rep[1:1 + CB_ADR_BITS], rep[1 + CB_ADR_BITS:]))
    return out


# --------------------------------------------------------------------------------------------------
# Weight stream
# --------------------------------------------------------------------------------------------------
class WeightStream(Module):
    """N lanes of decompressed weights per cycle (module docstring).

    Constructor: n_lanes (power of two, 4..64), wport = read port of the weight memory with read
    latency 2 (`bram.registered_read`; 8*N-bit words; or a list of ports, the word's bits split
    in order over memories that share the address space), pport = read port of the parameter memory with read latency 2 (32-bit words,
    little-endian bytes). Both ports are driven only by this unit.

    Control (sampled in the `start` cycle): rows, k_stored (>= N_eff), group_log2, cb_base (byte
    address, 4-byte aligned); mode (ISA code, spec.WEIGHT_MODE_CODE) is decoded into registers
    and must hold from the cycle before `start`; word_base is sampled a cycle before `start`
    (the read-address register follows it while idle).
    Output stream: valid, ready_d (input: ready of the next cycle; `ready` is it registered, the
    handshake's ready), w[0..N-1] (9-bit signed), first, last, n_valid, bnd.
    busy: from start until the last output has been accepted; busy_next: its value in the next cycle;
    valid_next: `valid` in the next cycle (`valid_next & ready_d` is the next cycle's take).
    """

    def __init__(self, n_lanes, wport, pport, external_start=False):
        n = self.n_lanes = n_lanes
        if n & (n - 1) or not 4 <= n <= MAX_LANES:
            raise ValueError(f"n_lanes must be a power of two in 4..{MAX_LANES}, got {n}")
        wports = list(wport) if isinstance(wport, (list, tuple)) else [wport]
        if sum(len(p.dat_r) for p in wports) != 8 * n or len(pport.dat_r) != 32:
            raise ValueError("weight port(s) must be 8*N bits wide together, parameter port 32 bits")

        # ---- interface ---------------------------------------------------------------------------
        self.start = Signal()
        self.word_base = Signal(len(wports[0].adr))
        self.mode = Signal(MODE_BITS)
        self.rows = Signal(ROW_BITS)
        self.k_stored = Signal(K_BITS)
        self.group_log2 = Signal(GL_BITS)
        self.cb_base = Signal(len(pport.adr) + 2)

        self.valid = Signal()
        self.ready_d = Signal()                 # input: `ready` of the next cycle (see below)
        self.ready = Signal()                   # ready_d registered: the consumer's ready
        self.w = [Signal((W_BITS, True), name=f"w{i}", reset_less=True) for i in range(n)]
        self.first = Signal()
        self.last = Signal()
        self.n_valid = Signal(max=n + 1)
        self.bnd = Signal(max=n + 1)
        self.busy = Signal()
        self.busy_next = Signal()               # `busy` in the next cycle
        self.valid_next = Signal()              # `valid` in the next cycle

        self.submodules.gearbox = gb = _Gearbox(n, wports, external_start)
        self.submodules.tracker = tr = _RowTracker(n, external_start)
        self.submodules.codebooks = cb = _Codebooks(pport, external_start)
        # `start` reaches a few hundred registers: with `external_start` the parent drives a
        # register copy per group of them instead (`start_copies`, all equal to `start`)
        starts = InputCopies(self, self.start, external_start)
        start, start_pipe = starts.get("sstart"), starts.get("sstart_pipe")
        self.start_copies = starts.copies + gb.starts.copies + tr.starts.copies + cb.starts.copies

        # ---- latched mode ------------------------------------------------------------------------
        code = WEIGHT_MODE_CODE
        m16, m6, m4, m2, cbm = Signal(), Signal(), Signal(), Signal(), Signal()
        units, words, mask = Signal(3), Signal.like(cb.words), Signal(ROW_BITS)
        # the mode decoded into registers every cycle (`mode` is valid a cycle before `start`:
        # the decode behind the parent's mode register reached the start latches in 11.8 ns)
        is_ = {b: Signal(name=f"is_m{b}") for b in code}
        is_cbm = Signal()
        units_m, words_m = Signal(3), Signal.like(cb.words)
        self.sync += [is_[b].eq(self.mode == code[b]) for b in code]
        self.sync += is_cbm.eq(reduce(or_, (self.mode == code[b] for b in CODEBOOK_MODES)))
        self.sync += Case(self.mode, {**{code[b]: [units_m.eq(units_per_cycle(b)), words_m.eq(codebook_words(b))]
                                         for b in code},
                                      "default": [units_m.eq(UNITS_PER_WORD), words_m.eq(0)]})   # (illegal: rejected)
        # units per cycle from its next value (the gearbox registers off + units)
        units_nx = Signal(3)
        self.comb += If(start, units_nx.eq(units_m)).Else(units_nx.eq(units))
        self.sync += units.eq(units_nx)
        self.sync += If(start,
            m16.eq(is_[16]), m6.eq(is_[6]), m4.eq(is_[4]), m2.eq(is_[2]),
            cbm.eq(is_cbm),
            words.eq(words_m),
            # G - 1, saturated at the row counter's width (one group then)
            mask.eq(Cat(*[self.group_log2 > b for b in range(ROW_BITS)])),
        )
        # all pipeline stages move together whenever `ready` is high (also while the output is
        # empty: it is low only when the consumer's queue fills). The consumer gives it a cycle
        # ahead (`ready_d`); the unit registers it as `ready` and once more per stage and group of
        # lanes (or chunk of the window), so every data register's clock enable comes from a
        # register near it (a copy per group for all stages reached a few hundred enables, up to
        # 16 ns)
        ce = Signal()
        self.sync += self.ready.eq(self.ready_d)
        n_groups = -(-n // LANES_PER_COPY)
        ce_g = {name: [copy_reg(self, self.ready_d, f"ce_{name}{g}") for g in range(n_groups)]
                for name in ("p", "a", "b", "s1", "out")}
        # and once per pipeline stage's control registers (valid, row information): P, A, B, 1, out
        ce_st = [copy_reg(self, self.ready_d, f"ce_{name}", reset=True) for name in ("p", "a", "b", "s1", "out")]
        run_nx = Signal()                       # tr.running in the next cycle
        cross = Signal()
        # a stream cycle may issue: running, its words in the FIFO, its codebook loaded (ahead <=
        # cross spelt out on the two bits: a comparator would become a carry chain). The issue
        # `gen` (ready & may) is itself a register, from the next values of both, in three
        # copies (this unit's stage P and codebooks, the gearbox, the row tracker's hundred
        # registers): every clock enable behind it starts at a flip-flop of few sinks
        may_nx, cbm_nx = Signal(), Signal()
        self.comb += If(start, cbm_nx.eq(is_cbm)).Else(cbm_nx.eq(cbm))
        self.comb += may_nx.eq(run_nx & gb.have_next & ~(cbm_nx & ~cb.ahead_next[1] &
                                                         (~cb.ahead_next[0] | (cbm_nx & tr.new_group_next))))
        gen, gen_gb, gen_tr = (copy_reg(self, self.ready_d & may_nx, f"gen_{name}", reset=True)
                               for name in ("p", "gb", "tr"))
        self.comb += [
            ce.eq(self.ready),
            cross.eq(cbm & tr.new_group),

            gb.start.eq(self.start) if not external_start else [], gb.active.eq(tr.running), gb.active_next.eq(run_nx), gb.base.eq(self.word_base), gb.units_next.eq(units_nx),
            gb.advance.eq(gen_gb),

            tr.start.eq(self.start) if not external_start else [], tr.rows.eq(self.rows), tr.k_stored.eq(self.k_stored),
            tr.half.eq(is_[16]), tr.mask.eq(mask), tr.advance.eq(gen_tr),

            cb.start.eq(self.start) if not external_start else [], cb.base.eq(self.cb_base), cb.enable.eq(cbm),
            cb.words.eq(words), cb.rows.eq(self.rows), cb.mask.eq(mask), cb.take.eq(gen & cross),
        ]

        # ---- stage P: the window's two words and the cycle's row information, registered --------
        meta = [Signal(), Signal(), Signal(), Signal.like(self.bnd), Signal(), Signal(), Signal.like(self.n_valid)]
        p_valid, p_cross, p_par, p_bnd, p_first, p_last, p_nvalid = meta
        par = Signal()                          # file of the group in effect at issue
        self.sync += [
            If(start_pipe,
                par.eq(0), p_valid.eq(0),
            ).Elif(ce_st[0],
                p_valid.eq(gen),
                If(gen,
                    p_cross.eq(cross), p_par.eq(par), p_bnd.eq(tr.bnd),
                    p_first.eq(tr.first), p_last.eq(tr.last), p_nvalid.eq(tr.n_valid),
                    If(cross, par.eq(~par)),
                ),
            )
        ]
        # the data load in every enabled cycle (data of a cycle without `gen` is not valid and not
        # used): only the clock enable, not the issue decision, stands before it: a copy per
        # chunk of the gearbox's pair mux (whose chunks sit by their block RAMs, along the die;
        # a copy per 64 bits of the pair reached its registers in 13.8 ns)
        p_pair = Signal(16 * n, name="p_pair", reset_less=True)
        cw = 8 * n // gb.chunks
        for c in range(gb.chunks):
            ce_c = copy_reg(self, self.ready_d, f"ce_pp{c}")
            self.sync += If(ce_c, *[p_pair[w * 8 * n + c * cw:w * 8 * n + (c + 1) * cw].eq(
                gb.pair[w * 8 * n + c * cw:w * 8 * n + (c + 1) * cw]) for w in range(2)])
        # (the window's unit offset in a copy per lane's byte, as stage A's clock enable: a copy
        # per group reached its 4:1 muxes, whose inputs lie along the pair's chunks, in 11.2 ns)
        p_off = [[copy_reg(self, gb.off, f"woff{g}_{b}", ce=ce_g["p"][g]) for b in range(LANES_PER_COPY)]
                 for g in range(n_groups)]

        # ---- stage A: the window (4 units from unit `off` of the pair), registered ---------------
        a_meta = [Signal.like(x) for x in meta]
        a_valid, a_cross, a_par, a_bnd, a_first, a_last, a_nvalid = a_meta
        self.sync += If(start_pipe, a_valid.eq(0)).Elif(ce_st[1], *[a.eq(x) for a, x in zip(a_meta, meta)])
        a_window = Signal(8 * n, name="a_window", reset_less=True)
        u = 2 * n
        chunk = 8 * n // n_groups
        for g in range(n_groups):
            lo, hi = g * chunk, (g + 1) * chunk
            for b in range(LANES_PER_COPY):
                blo, bhi = lo + b * chunk // LANES_PER_COPY, lo + (b + 1) * chunk // LANES_PER_COPY
                src = [p_pair[blo + v * u:bhi + v * u] for v in range(UNITS_PER_WORD)]
                self.sync += If(copy_reg(self, self.ready_d, f"ce_a{g}_{b}"), a_window[blo:bhi].eq(Array(src)[p_off[g][b]]))

        # ---- stage B: each lane's candidate fields, registered beside the lane --------------------
        # (field i of a b-bit stream is window[b*i : b*i + b]: a window bit belongs to lanes up to
        # four times apart, which lie along the die; window -> mode pick -> lane registers took
        # 11.6 ns. Here each lane takes its four candidates as they are, the pick is stage 1's)
        b_meta = [Signal.like(x) for x in meta]
        b_valid, b_cross, b_par, b_bnd, b_first, b_last, b_nvalid = b_meta
        self.sync += If(start_pipe, b_valid.eq(0)).Elif(ce_st[2], *[b.eq(a) for b, a in zip(b_meta, a_meta)])
        cand = {bits: [Signal(bits, name=f"b_c{bits}_{i}", reset_less=True) for i in range(n)] for bits in (8, 6, 4, 2)}
        for i in range(n):
            self.sync += If(ce_g["b"][i // LANES_PER_COPY],
                            *[cand[bits][i].eq(a_window[bits * i:bits * i + bits]) for bits in cand])

        # ---- stage 1: lane fields (the mode's candidate) -----------------------------------------
        s1_valid, s1_cross = Signal(), Signal()
        s1_first, s1_last = Signal(), Signal()
        s1_bnd, s1_nvalid = Signal.like(self.bnd), Signal.like(self.n_valid)
        s1_lanes = [Signal(8, name=f"s1_field{i}", reset_less=True) for i in range(n)]   # data: no reset
        self.sync += [
            If(start_pipe,
                s1_valid.eq(0),
            ).Elif(ce_st[3],
                s1_valid.eq(b_valid),
                s1_cross.eq(b_cross), s1_bnd.eq(b_bnd),
                s1_first.eq(b_first), s1_last.eq(b_last), s1_nvalid.eq(b_nvalid),
            )
        ]
        # the mode latches copied per lane group, then per lane: two cycles behind them, long
        # before a stream's first window reaches stage 1 (start + PRIME_CYCLES + 4; no stage holds
        # an earlier stream's window at a start). A copy per group reached its four lanes' field
        # picks and codebook addresses, 144 LUTs, in 13.2 ns.
        def per_lane(x, name):
            groups = [copy_reg(self, x, f"{name}_g{g}") for g in range(n_groups)]
            return [copy_reg(self, groups[i // LANES_PER_COPY], f"{name}_l{i}") for i in range(n)]
        m6_l, m4_l, m2_l, m16_l, cbm_l = (per_lane(x, name) for x, name in
                                          ((m6, "m6"), (m4, "m4"), (m2, "m2"), (m16, "m16"), (cbm, "cbm")))
        # and beside each field the lane's weight in the plain modes (the byte sign-extended; in
        # mode 16 the low byte of a weight unsigned), so stage 2 only picks it or the codebook's
        s1_raw = [Signal((W_BITS, True), name=f"s1_raw{i}", reset_less=True) for i in range(n)]
        # each lane's codebook read address (its field's word index and its file, decided here:
        # weights from bnd belong to the next row, which opened a new group if the cycle crosses
        # into one) in a register copy per byte of the codebook word, each reaching one byte's
        # LUT RAMs (one register reaching the lane's sixteen took 4.7 ns of routing)
        idx_bits = max(CODEBOOK_MODES)
        sub = (CB_PER_WORD - 1).bit_length()
        s1_cbadr = []
        # (the cycle's file information, par, cross and bnd, in a copy per lane group from stage A
        # on, loaded with a_meta and b_meta: one register reaching every lane's compare and 4 * N
        # address copies took 13 ns of routing in a placement, copies from the one stage-A
        # register 11 ns)
        # (and stage P's in a copy per half of the groups, loaded as p_par, p_cross and p_bnd:
        # stage P's one register reaching the eight group copies took 10.9 ns)
        p_file = [copy_reg(self, Cat(par, cross, tr.bnd), f"pfile{h}", ce=~start_pipe & ce_st[0] & gen)
                  for h in range(2)]
        a_file = [copy_reg(self, p_file[2 * g // n_groups], f"afile{g}", ce=ce_g["a"][g]) for g in range(n_groups)]
        b_file = [copy_reg(self, a_file[g], f"bfile{g}", ce=ce_g["b"][g]) for g in range(n_groups)]
        for i, lane in enumerate(s1_lanes):
            g = i // LANES_PER_COPY
            g_par, g_cross, g_bnd = b_file[g][0], b_file[g][1], b_file[g][2:]
            byte = cand[8][i]
            raw = Mux(m16_l[i], Cat(byte, C(0, 1)), Cat(byte, byte[7])) if i % 2 == 0 else Cat(byte, byte[7])
            field = Signal(8, name=f"s1_fnx{i}")
            self.comb += If(m6_l[i], field.eq(cand[6][i])) \
                .Elif(m4_l[i], field.eq(cand[4][i])) \
                .Elif(m2_l[i], field.eq(cand[2][i])) \
                .Else(field.eq(byte))      # modes 8 and 16: byte i
            self.sync += If(ce_g["s1"][g], lane.eq(field), s1_raw[i].eq(raw))
            file_nx = g_par ^ (g_cross & (i >= g_bnd))
            s1_cbadr.append([copy_reg(self, Cat(field[sub:idx_bits], file_nx), f"cbadr{i}_{b}", ce=ce_g["s1"][g])
                             for b in range(CB_PER_WORD)])

        # ---- stage 2: codebook lookup / sign extension -> outputs --------------------------------
        # Each lane has its own copy of both files: LUT RAMs (asynchronous read, so distributed
        # RAM, not a wide register-file mux), one per byte of a parameter word, written a word at
        # a time by the filler; the lane reads word {file, index >> 2} of each and picks byte
        # index & 3.
        copies = write_replicas(self, cb, n)
        for i in range(n):
            we, wadr, wdat = copies[i]
            byte_out = []
            for b in range(CB_PER_WORD):
                mem = Memory(8, 2 << CB_WORD_BITS, name=f"cbmem{i}_{b}")
                rp = mem.get_port(async_read=True)
                wp = mem.get_port(write_capable=True)
                self.specials += mem, rp, wp
                self.comb += wp.we.eq(we), wp.adr.eq(wadr), wp.dat_w.eq(wdat[8 * b:8 * b + 8]), \
                    rp.adr.eq(s1_cbadr[i][b])
                byte_out.append(rp.dat_r)
            entry = Signal((CODEBOOK_BITS, True), name=f"entry{i}")
            self.comb += entry.eq(Array(byte_out)[s1_lanes[i][:sub]])
            self.sync += If(ce_g["out"][i // LANES_PER_COPY],
                            If(cbm_l[i], self.w[i].eq(entry)).Else(self.w[i].eq(s1_raw[i])))
        self.sync += [
            If(start_pipe,
                self.valid.eq(0),
            ).Elif(ce_st[4],
                self.valid.eq(s1_valid),
                self.first.eq(s1_first), self.last.eq(s1_last),
                self.bnd.eq(s1_bnd), self.n_valid.eq(s1_nvalid),
            )
        ]
        self.comb += [
            cb.release.eq(ce & s1_valid & s1_cross),
            self.busy.eq(tr.running | p_valid | a_valid | b_valid | s1_valid | self.valid),
        ]
        # `busy` of the next cycle, from the next values of its five registers (the parent
        # registers it, so its start condition needs no logic behind these registers)
        pv_nx, av_nx, bv_nx, s1v_nx, v_nx = Signal(), Signal(), Signal(), Signal(), Signal()
        self.comb += [
            If(start_pipe, run_nx.eq(1), pv_nx.eq(0), av_nx.eq(0), bv_nx.eq(0), s1v_nx.eq(0), v_nx.eq(0)).Else(
                run_nx.eq(tr.running & ~(gen & tr.last)),
                If(ce, pv_nx.eq(gen), av_nx.eq(p_valid), bv_nx.eq(a_valid), s1v_nx.eq(b_valid), v_nx.eq(s1_valid))
                .Else(pv_nx.eq(p_valid), av_nx.eq(a_valid), bv_nx.eq(b_valid), s1v_nx.eq(s1_valid),
                      v_nx.eq(self.valid))),
            self.busy_next.eq(run_nx | pv_nx | av_nx | bv_nx | s1v_nx | v_nx),
            self.valid_next.eq(v_nx),
        ]
