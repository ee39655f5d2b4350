"""MAC array: N multiply lanes on the flat weight stream, reduced into finished rows.

Every cycle the array takes N (x, w) pairs of the flat stream (docs/gateware-design.md). At most
one row boundary falls inside a cycle (the image pads rows to >= 64 columns, N <= 64): lanes
before `bnd` finish the row being accumulated, lanes from `bnd` start the next one. Two adder
trees, over every lane (T) and over the lanes before `bnd` (L), give both partial sums (L and
T - L); the row accumulator adds the first and restarts with the second. Arithmetic is exactly docs/arithmetic.md step 1 (48-bit two's complement).

Segment alignment: one of the two input segments is shifted left by `shift` (the compiler gives
the other segment shift 0). The array shifts the lane's *weight* (9 bits -> <= 18 bits) instead
of the 34-bit product, so each lane is one 16x18 multiplier (one ECP5 MULT18X18D) plus a small
shifter; the result is identical because (x * (w << s)) == (x * w) << s.

16-bit weights: lane pairs fuse. The weight stream puts the low byte (unsigned) on even lanes and
the high byte (signed) on odd lanes, both lanes see the same x, and the odd product is weighted by
2^8 before the reduction: x * w16 == x * lo + (x * hi << 8).
"""
from migen import Cat, If, Module, Signal

from rnnaccel.host.spec import ACC_BITS, ACT_BITS, MAX_SEG_SHIFT

from .dsp import RegisteredMul
from .regs import copy_reg, delay, drop_resets

MASK_COPIES = 4                 # copies of a lane's row-boundary mask bit (each a part of its adder)
LANES_PER_COPY = 4               # lanes served by one register copy of a lane control
W_BITS = 9                       # lane weight: int8, or an unsigned/signed byte of an int16
WS_BITS = W_BITS + MAX_SEG_SHIFT  # weight after the segment shift (fits an 18-bit multiplier)
P_BITS = ACT_BITS + WS_BITS      # lane product


def _tree(m, values, width, max_width):
    """Pipelined adder tree: a register after every level, each level a bit wider than the one
    before (up to `max_width`). Returns (sum, latency)."""
    level, lat = list(values), 0
    while len(level) > 1:
        width = min(width + 1, max_width)
        nxt = []
        for i in range(0, len(level), 2):
            s = Signal((width, True), reset_less=True)
            if i + 1 < len(level):
                m.sync += s.eq(level[i] + level[i + 1])
            else:
                m.sync += s.eq(level[i])
            nxt.append(s)
        level, lat = nxt, lat + 1
    if lat == 0:  # a single value: still register once for a uniform pipeline
        s = Signal((width, True), reset_less=True)
        m.sync += s.eq(level[0])
        level, lat = [s], 1
    return level[0], lat


class MacArray(Module):
    """N lanes, 48-bit row accumulator.

    Inputs (one stream cycle when `valid`):
        x[i]       int16 activation for lane i
        bnd        lanes < bnd finish the current row, lanes >= bnd start the next; bnd = N: none
        first      first cycle of an instruction's stream (accumulator starts from 0)
        last       last cycle: the row in progress ends with it
        mode16     pair fusion
    and, one cycle before the input cycle they belong to (the weights are masked and picked in
    a register stage of their own, so that a multiplier's inputs come straight from registers):
        shifted_ahead[i] lane belongs to the shifted segment
        zero_ahead[i]    lane idle (padding column, or beyond the stream's end): product 0
    two cycles before (each weight is registered as it is and shifted, in a stage of its own):
        w_ahead2[i]      9-bit signed lane weight (see module docstring for 16-bit mode)
    and three cycles before (it is registered per lane group):
        shift_ahead3     left shift of the shifted segment (0..MAX_SEG_SHIFT)
    Outputs (`latency` cycles later), in stream order:
        row0_valid/row0: the row that ended at `bnd` (wrapped to 48 bits)
        row1_valid/row1: the row that ended at `last` (both may be valid in one cycle)
    """

    def __init__(self, n_lanes):
        N = self.n_lanes = n_lanes
        assert N >= 2 and N % 2 == 0, "lanes come in pairs (the trees' first level, 16-bit mode)"
        self.x = [Signal((ACT_BITS, True), name=f"x{i}") for i in range(N)]
        self.w_ahead2 = [Signal((W_BITS, True), name=f"w{i}") for i in range(N)]
        self.shifted_ahead = Signal(N)
        self.zero_ahead = Signal(N)
        self.bnd = Signal(max=N + 1)
        self.valid = Signal()
        self.first = Signal()
        self.last = Signal()
        self.shift_ahead3 = Signal(max=MAX_SEG_SHIFT + 1)   # `shift`, three cycles before its input cycle
        self.mode16 = Signal()

        self.row0_valid, self.row1_valid = Signal(), Signal()
        self.row0 = Signal((ACC_BITS, True), reset_less=True)
        self.row1 = Signal((ACC_BITS, True), reset_less=True)

        # Data registers have no reset (a valid bit travels beside them): the reset net then
        # reaches only the control registers. The lane controls (shift, mode16, the row-boundary
        # masks) are registered once per group of LANES_PER_COPY lanes: no single net drives
        # every lane's shifter or mask mux.
        groups = range(-(-N // LANES_PER_COPY))

        def per_group(value, name):
            copies = [copy_reg(self, value, f"{name}_g{g}") for g in groups]
            return [copies[i // LANES_PER_COPY] for i in range(N)]

        # ---- stage -1: each weight registered as it is and shifted (two cycles ahead of the input
        # cycle; the shift amount registered per group before that) ----------------------------
        # ---- stage 0: the shifted or plain weight, idle lanes to zero, registered --------------
        # (a cycle ahead: the X buffer's lane masks meet a 2:1 pick, not the shifter's mux tree)
        shift_l = per_group(self.shift_ahead3, "shift")
        ws = [Signal((WS_BITS, True), name=f"ws{i}", reset_less=True) for i in range(N)]
        for i in range(N):
            w1 = Signal((W_BITS, True), name=f"wp{i}", reset_less=True)
            wsh = Signal((WS_BITS, True), name=f"wsh{i}", reset_less=True)
            self.sync += w1.eq(self.w_ahead2[i]), wsh.eq(self.w_ahead2[i] << shift_l[i])
            self.sync += If(self.zero_ahead[i], ws[i].eq(0)) \
                .Elif(self.shifted_ahead[i], ws[i].eq(wsh)).Else(ws[i].eq(w1))
        # ---- stages 1-2: multiply (one DSP per lane: its input registers, its product register) --
        prod = [Signal((P_BITS, True), name=f"p{i}", reset_less=True) for i in range(N)]
        for i in range(N):
            self.specials += RegisteredMul(self.x[i], ws[i], prod[i], lane=i)
        # ---- stages 3-4: the products registered twice more, in the fabric, as they are --------
        # (a LUT and a carry chain straight behind a DSP's output took 14 ns of routing, a LUT
        # alone 10-11 ns, one plain register by the trees 10-11 ns: the nets leaving the
        # multipliers are the die's most crowded; so one register by the DSP, one by the trees).
        # The odd lane's product is weighted (16-bit mode: << 8) in the LUTs in front of the
        # trees' first adders, beside the lane masks.
        pr0 = [Signal((P_BITS, True), name=f"pr0_{i}", reset_less=True) for i in range(N)]
        pr = [Signal((P_BITS, True), name=f"pr{i}", reset_less=True) for i in range(N)]
        self.sync += [pr0[i].eq(prod[i]) for i in range(N)], [pr[i].eq(pr0[i]) for i in range(N)]
        # (mode16 four cycles late, through a copy per lane group, then one per odd lane and use:
        # T's weighting and each half of L's masked weighting; a copy per group reached its four
        # lanes' LUTs in front of both trees in 10.2 ns, one per lane its 66 LUTs in 11.0 ns)
        m16_g = per_group(delay(self, self.mode16, 2, "m16", reset_less=True), "m16")
        LW = P_BITS + 8                                  # a weighted lane product

        def weighted(i, use):
            if i % 2 == 0:
                return pr[i]
            w = Signal((LW, True), name=f"pw{i}_{use}")
            self.comb += If(copy_reg(self, m16_g[i], f"m16_{use}{i}"), w.eq(pr[i] << 8)).Else(w.eq(pr[i]))
            return w
        pw = [weighted(i, "t") for i in range(N)]
        # ---- stage 5: the trees' first level ------------------------------------------------------
        # Two trees: T sums every lane, L the lanes before the row boundary (every lane when the
        # cycle has none); the accumulator forms the rest as T - L. The first level adds lane
        # pairs, the odd lane's weighting and L's lane masks as LUTs in front of its adders (one register per product bit
        # before them, not a masked 48-bit register per lane and tree). The products of an input
        # cycle are in `pr` four cycles later: its bnd follows, the lane masks i < bnd compared
        # a stage ahead and registered per group (no comparator in front of a lane's mask).
        # (bnd's second register a copy per lane group: the groups' compares sit by their lanes,
        # all over the die; one register reaching them all took 13.6 ns)
        # (and each lane's mask bit in MASK_COPIES copies, one per part of the product's bits: a
        # mask register reaching a whole adder's column of LUTs took 7.6 ns of routing, one per
        # half 10.7 ns in a placement)
        bnd1 = delay(self, self.bnd, 2, "bnd", reset_less=True)
        masked = []
        for g in groups:
            bnd2 = copy_reg(self, bnd1, f"bnd2_g{g}")
            for i in range(g * LANES_PER_COPY, min((g + 1) * LANES_PER_COPY, N)):
                mk = Signal.like(pw[i], name=f"pm{i}")
                cuts = [len(mk) * q // MASK_COPIES for q in range(MASK_COPIES + 1)]
                for h, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
                    low = copy_reg(self, i < bnd2, f"low{i}_{h}")
                    self.comb += If(low, mk[lo:hi].eq(weighted(i, f"l{h}_")[lo:hi])).Else(mk[lo:hi].eq(0))
                masked.append(mk)
        t1 = [Signal((LW + 1, True), name=f"t1_{j}", reset_less=True) for j in range(N // 2)]
        l1 = [Signal((LW + 1, True), name=f"l1_{j}", reset_less=True) for j in range(N // 2)]
        for j in range(N // 2):
            self.sync += t1[j].eq(pw[2 * j] + pw[2 * j + 1]), l1[j].eq(masked[2 * j] + masked[2 * j + 1])
        # ---- stages 6..: the rest of both trees ------------------------------------------------
        sum_t, tlat = _tree(self, t1, LW + 1, ACC_BITS)
        sum_l, _ = _tree(self, l1, LW + 1, ACC_BITS)
        # control travels beside the data
        depth = 5 + tlat
        ctl = Cat(self.valid, self.first, self.last, self.bnd != N)
        pipe = [ctl]
        for _ in range(depth - 1):
            r = Signal(len(ctl))
            self.sync += r.eq(pipe[-1])
            pipe.append(r)
        # the last stage in three copies (the accumulator's base, its update, the row outputs):
        # each reaches some fifty registers or LUTs, not all 150
        ctl_base, ctl_acc, ctl_out = (copy_reg(self, pipe[-1], f"mctl_{n}", reset=True)
                                      for n in ("base", "acc", "out"))
        first = ctl_base[1]
        # ---- row accumulator ---------------------------------------------------------------------
        # the adder works on the registers (acc + sum_l); `first` then picks sum_l alone in the
        # last LUT before the register, so no control net stands before the carry chain
        acc = Signal((ACC_BITS, True), reset_less=True)      # `first` restarts it
        acc_sum, total = Signal((ACC_BITS, True)), Signal((ACC_BITS, True))
        self.comb += acc_sum.eq(acc + sum_l), If(first, total.eq(sum_l)).Else(total.eq(acc_sum))
        sum_hi = Signal((ACC_BITS, True))        # the lanes from the boundary on: T - L
        self.comb += sum_hi.eq(sum_t - sum_l)
        self.sync += [
            If(ctl_acc[0], If(ctl_acc[3], acc.eq(sum_hi)).Else(acc.eq(total))),
            self.row0_valid.eq(0), self.row1_valid.eq(0),
            If(ctl_out[0],
                If(ctl_out[3],
                    self.row0_valid.eq(1),
                    self.row0.eq(total),
                    self.row1.eq(sum_hi),
                ).Else(
                    self.row1.eq(total),
                ),
                self.row1_valid.eq(ctl_out[2]),
            )
        ]
        self.latency = depth + 1
        drop_resets(self, keep=pipe[1:] + [ctl_base, ctl_acc, ctl_out, self.row0_valid, self.row1_valid])
