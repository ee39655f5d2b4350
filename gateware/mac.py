"""MAC array: N multiply lanes on the flat weight stream, reduced into finished rows.

Every cycle the array takes N (x, w) pairs of the flat stream (docs/gateware-design.md). At most
one row boundary falls inside a cycle (the image pads rows to >= 64 columns, N <= 64): lanes
before `bnd` finish the row being accumulated, lanes from `bnd` start the next one. Two masked
adder trees give both partial sums; the row accumulator adds the first and restarts with the
second. Arithmetic is exactly docs/arithmetic.md step 1 (48-bit two's complement).

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

W_BITS = 9                       # lane weight: int8, or an unsigned/signed byte of an int16
WS_BITS = W_BITS + MAX_SEG_SHIFT  # weight after the segment shift (fits an 18-bit multiplier)
P_BITS = ACT_BITS + WS_BITS      # lane product


def _tree(m, values, width, stages):
    """Pipelined adder tree: a register after every level. Returns (sum, latency)."""
    level, lat = list(values), 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            s = Signal((width, True))
            if i + 1 < len(level):
                m.sync += s.eq(level[i] + level[i + 1])
            else:
                m.sync += s.eq(level[i])
            nxt.append(s)
        level, lat = nxt, lat + 1
    if lat == 0:  # a single lane: still register once for a uniform pipeline
        s = Signal((width, True))
        m.sync += s.eq(level[0])
        level, lat = [s], 1
    return level[0], lat


class MacArray(Module):
    """N lanes, 48-bit row accumulator.

    Inputs (one stream cycle when `valid`):
        x[i]       int16 activation for lane i
        w[i]       9-bit signed lane weight (see module docstring for 16-bit mode)
        shifted[i] lane belongs to the shifted segment
        zero[i]    lane idle (padding column, or beyond the stream's end): product 0
        bnd        lanes < bnd finish the current row, lanes >= bnd start the next; bnd = N: none
        first      first cycle of an instruction's stream (accumulator starts from 0)
        last       last cycle: the row in progress ends with it
        shift      left shift of the shifted segment (0..MAX_SEG_SHIFT), mode16: pair fusion
    Outputs (`latency` cycles later), in stream order:
        row0_valid/row0: the row that ended at `bnd` (wrapped to 48 bits)
        row1_valid/row1: the row that ended at `last` (both may be valid in one cycle)
        busy_lanes: number of non-idle lanes in the input cycle (for the utilisation counter)
    """

    def __init__(self, n_lanes):
        N = self.n_lanes = n_lanes
        self.x = [Signal((ACT_BITS, True), name=f"x{i}") for i in range(N)]
        self.w = [Signal((W_BITS, True), name=f"w{i}") for i in range(N)]
        self.shifted = Signal(N)
        self.zero = Signal(N)
        self.bnd = Signal(max=N + 1)
        self.valid = Signal()
        self.first = Signal()
        self.last = Signal()
        self.shift = Signal(max=MAX_SEG_SHIFT + 1)
        self.mode16 = Signal()

        self.row0_valid, self.row1_valid = Signal(), Signal()
        self.row0 = Signal((ACC_BITS, True))
        self.row1 = Signal((ACC_BITS, True))

        # ---- stage 1: segment shift of the weights, idle lanes to zero ----------------------
        ws = [Signal((WS_BITS, True), name=f"ws{i}") for i in range(N)]
        xs = [Signal((ACT_BITS, True), name=f"xs{i}") for i in range(N)]
        for i in range(N):
            self.sync += [
                xs[i].eq(self.x[i]),
                If(self.zero[i], ws[i].eq(0))
                .Elif(self.shifted[i], ws[i].eq(self.w[i] << self.shift))
                .Else(ws[i].eq(self.w[i])),
            ]
        # ---- stage 2: multiply (one DSP per lane) --------------------------------------------
        prod = [Signal((P_BITS, True), name=f"p{i}") for i in range(N)]
        for i in range(N):
            self.sync += prod[i].eq(xs[i] * ws[i])
        # ---- stage 3: pair weighting (16-bit mode) and the row-boundary masks -----------------
        lo = [Signal((ACC_BITS, True), name=f"lo{i}") for i in range(N)]
        hi = [Signal((ACC_BITS, True), name=f"hi{i}") for i in range(N)]
        # the products of an input cycle are ready two cycles later: delay its bnd/mode to match
        bnd1, bnd2 = Signal.like(self.bnd), Signal.like(self.bnd)
        mode16_1, mode16_2 = Signal(), Signal()
        self.sync += bnd1.eq(self.bnd), bnd2.eq(bnd1), mode16_1.eq(self.mode16), mode16_2.eq(mode16_1)
        for i in range(N):
            scaled = Signal((ACC_BITS, True), name=f"ps{i}")
            if i % 2:
                self.comb += If(mode16_2, scaled.eq(prod[i] << 8)).Else(scaled.eq(prod[i]))
            else:
                self.comb += scaled.eq(prod[i])
            self.sync += [
                If(i < bnd2, lo[i].eq(scaled), hi[i].eq(0)).Else(lo[i].eq(0), hi[i].eq(scaled)),
            ]
        # ---- stages 4..: two adder trees -------------------------------------------------------
        sum_lo, tlat = _tree(self, lo, ACC_BITS, 1)
        sum_hi, _ = _tree(self, hi, ACC_BITS, 1)
        # control travels beside the data
        depth = 3 + tlat
        ctl = Cat(self.valid, self.first, self.last, self.bnd != N)
        pipe = [ctl]
        for _ in range(depth):
            r = Signal(len(ctl))
            self.sync += r.eq(pipe[-1])
            pipe.append(r)
        v, first, last, has_bnd = (pipe[-1][k] for k in range(4))
        # ---- row accumulator ---------------------------------------------------------------------
        acc = Signal((ACC_BITS, True))
        base = Signal((ACC_BITS, True))
        self.comb += If(first, base.eq(0)).Else(base.eq(acc))
        self.sync += [
            self.row0_valid.eq(0), self.row1_valid.eq(0),
            If(v,
                If(has_bnd,
                    self.row0_valid.eq(1),
                    self.row0.eq(base + sum_lo),
                    acc.eq(sum_hi),
                    self.row1.eq(sum_hi),
                ).Else(
                    acc.eq(base + sum_lo),
                    self.row1.eq(base + sum_lo),
                ),
                self.row1_valid.eq(last),
            )
        ]
        self.latency = depth + 1

        # ---- utilisation: busy lanes of the input cycle -----------------------------------------
        self.busy_lanes = Signal(max=N + 1)
        self.comb += self.busy_lanes.eq(sum(~self.zero[i] for i in range(N)))
