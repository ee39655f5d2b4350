"""Epilogue: a finished row's accumulator -> the value written to the vector pool.

docs/arithmetic.md steps 2-5, bit for bit as `rnnaccel.host.simulator.row_preact/row_output`:

    acc' = wrap48(acc + shift(DA*DB, diag_shift))          (diag instructions only)
    z    = sat16(round_shift(acc', out_shift))
    a    = act(z)                                          (ActivationUnit)
    y    = combine(a, P, Q)                                (mul, gru, mac, mulact)

One row enters per cycle (`valid`); its operands (DA, DB, P, Q, already read from the vector pool
by the caller) and its instruction's settings (shifts, codes) enter with it and travel down the
pipeline beside it, so rows of consecutive instructions can follow each other back to back. `tag`
travels alongside too (the caller's destination address); the result comes out `latency` cycles
later with `out_valid`.
"""
from migen import C, Cat, If, Module, Signal

from rnnaccel.host import isa
from rnnaccel.host.spec import ACC_BITS, ACT_BITS, F_ACT_OUT

from .activation import ActivationUnit
from .dsp import RegisteredMul
from .regs import copy_reg, drop_resets

SHIFT_BITS = 8  # signed shift fields of the instruction (aux bytes, out_shift)


def _sat16(m, value, name):
    """value saturated to int16. The overflow tests look at bits, not at a compare: above the
    range <=> sign 0 and a bit >= 15 set, below <=> sign 1 and a bit >= 15 clear (OR/AND trees
    of the wide value, no carry chain behind the adder that usually computes it)."""
    lo, hi = -(1 << (ACT_BITS - 1)), (1 << (ACT_BITS - 1)) - 1
    res = Signal((ACT_BITS, True), name=name)
    v = Signal.like(value, name=name + "_v")
    top = Signal(len(value) - ACT_BITS + 1, name=name + "_top")    # bits 15 .. sign
    m.comb += v.eq(value), top.eq(v[ACT_BITS - 1:])
    sign = v[-1]
    m.comb += If(~sign & (top != 0), res.eq(hi)).Elif(sign & (top != (1 << len(top)) - 1), res.eq(lo)) \
        .Else(res.eq(v[:ACT_BITS]))
    return res


def _round_sat16(m, t, right, name):
    """sat16(right ? (t + 1) >> 1 : t): the second half of round_shift and the saturation in one,
    without a carry chain through the full width of t, over two cycles (the result is a cycle
    late: the caller registers it, two registers after t). With s = t + right, the result is
    s >> 1 (or s) if s fits (bits 16.. of s, 15.. without the rounding, all equal), else the
    bound of s's sign. Only the low 17 bits are added; the rest of s is t's upper part plus that
    add's carry, which is tested for 0 or -1 (AND trees), not computed. First cycle: the add,
    the in-range value picked, the AND trees over t's upper part, registered; second: the fit
    (two LUT levels from registers) and the pick."""
    L = ACT_BITS + 1
    lo, hi_v = -(1 << (ACT_BITS - 1)), (1 << (ACT_BITS - 1)) - 1
    H = t[L:]
    s = Signal(L + 1, name=name + "_s")                 # t[:17] + right, bit 17 the carry
    m.comb += s.eq(t[:L] + right)
    hz, hm1 = Signal(name=name + "_hz"), Signal(name=name + "_hm1")   # t's upper part 0, -1
    c, s16 = Signal(name=name + "_c"), Signal(name=name + "_s16")
    t_top = Signal(2, name=name + "_ttop")             # t[15], t[16]
    val = Signal(ACT_BITS, name=name + "_val")         # the result if it fits
    right_r, sign = Signal(name=name + "_rr"), Signal(name=name + "_sign")
    m.sync += c.eq(s[L]), s16.eq(s[L - 1]), t_top.eq(t[L - 2:L]), right_r.eq(right), sign.eq(H[-1]), \
        hz.eq(H == 0), hm1.eq(H == (1 << len(H)) - 1), \
        If(right, val.eq(s[1:L])).Else(val.eq(t[:ACT_BITS]))
    # (then s[:17] == 0 with a carry: bit 16 clear)
    s_zero = (hz & ~c) | (hm1 & c)                      # upper part of s == 0
    s_ones = hm1 & ~c                                   # upper part of s == -1 (with bit 16 set)
    fits = Signal(name=name + "_fits")
    m.comb += If(right_r, fits.eq((s_zero & ~s16) | (s_ones & s16))) \
        .Else(fits.eq((hz & ~t_top[1] & ~t_top[0]) | (hm1 & t_top[1] & t_top[0])))
    res = Signal((ACT_BITS, True), name=name)
    # out of range: s's sign is t's (a carry into the upper part makes it 0 only from -1, which fits)
    m.comb += If(fits, res.eq(val)).Elif(sign, res.eq(lo)).Else(res.eq(hi_v))
    return res


SHIFT_GROUP = 16   # output bits of a shifter served by one register copy of its amount


def _shift_stage(m, value, amount_2ahead, out_width, name, negated=False):
    """First half of round_shift(value, amount), in two register stages (t two cycles after
    value): for r > 0 the value shifted right by r - 1, for r <= 0 the value shifted left by -r,
    first by the amount's multiple of 8, then by the rest. Returns (t, right). The amount comes
    two cycles ahead of value (`amount_2ahead`: the setting two registers earlier in its delay
    line): decoded into one register (r > 0, r - 1, -r), then copied, one copy per SHIFT_GROUP
    output bits for each stage (each amount bit selects in every output bit's mux tree: one
    register for all of them was a net of some 300 sinks), so only a shifter's half stands
    between the copies and its register, and no decode between the delay line and the copies.
    `negated`: the amount is -amount_2ahead (r > 0 is then a sign bit, r - 1 a complement, -r the
    value itself: no adder in the decode)."""
    t1 = Signal((out_width + 1, True), name=name + "_t1")
    t = Signal((out_width + 1, True), name=name + "_t")
    right = Signal(name=name + "_right")
    dec = Signal(13, name=name + "_dec")
    r1, left = Signal(6, name=name + "_r1"), Signal(6, name=name + "_l")
    if negated:
        m.comb += r1.eq(~amount_2ahead), left.eq(amount_2ahead)
        m.sync += dec.eq(Cat(amount_2ahead < 0, r1, left))
    else:
        m.comb += r1.eq(amount_2ahead - 1), left.eq(-amount_2ahead)
        m.sync += dec.eq(Cat(amount_2ahead > 0, r1, left))
    right1, right2 = Signal(name=name + "_right1"), Signal(name=name + "_right2")
    m.sync += right1.eq(dec[0]), right2.eq(right1), right.eq(right2)
    v = Signal.like(t, name=name + "_v")         # the value sign-extended to t's width
    m.comb += v.eq(value)
    for lo in range(0, len(t), SHIFT_GROUP):
        hi = min(lo + SHIFT_GROUP, len(t))
        cp = copy_reg(m, dec, f"{name}_amt{lo // SHIFT_GROUP}")        # the coarse stage's copy
        cp2 = copy_reg(m, cp, f"{name}_amtf{lo // SHIFT_GROUP}")       # the fine stage's, a cycle later
        m.sync += If(cp[0], t1[lo:hi].eq((v >> Cat(C(0, 3), cp[4:7]))[lo:hi])) \
            .Else(t1[lo:hi].eq((v << Cat(C(0, 3), cp[10:13]))[lo:hi]))
        m.sync += If(cp2[0], t[lo:hi].eq((t1 >> cp2[1:4])[lo:hi])).Else(t[lo:hi].eq((t1 << cp2[7:10])[lo:hi]))
    return t, right


class Epilogue(Module):
    """Pipeline (a register after each stage; `latency` = 23 = EPILOGUE_LATENCY):

        1  inputs registered (the operands come straight from the vector pool's read port, its
           block RAMs' output registers; the bias comes a cycle later, from a register of the
           core's, straight into stage 2)
        2  acc + bias, DA * DB (one MULT18X18D, its input and output registers stages 1 and 2)
        3, 4  diag product shifted (first half of its round_shift: by the multiple of 8, the rest)
        5  acc + rounded diag product (wrap 48)
        6, 7  requantisation shift (first half, two stages) || P's act2 input shift (the same)
        8  the rounding add, the saturation's AND trees || the same for P
        9  fit and pick -> z (int16) || the same for P
        10..16  activation of z || act2 of P (ActivationUnit, 7)
        17 Q - a, Q << s_q, the combine's operands (act2(P) or P picked; the multipliers' input registers)
        18 the combine's products: a * (P or act2(P)), P * (Q - a) (two MULT18X18D)
        19 mac: + (Q << s_q); gru: a + round(P * (Q - a) >> 14)
        20, 21 the combine's shift by s_c (first half, two stages)
        22 the rounding add, the AND trees
        23 fit, pick by combine, saturate -> y
    """

    def __init__(self, tag_bits=16):
        # ---- per-instruction settings ------------------------------------------------------------
        self.diag = Signal()
        self.diag_shift = Signal((SHIFT_BITS, True))
        self.out_shift = Signal((SHIFT_BITS, True))
        self.act = Signal(3)
        self.act2 = Signal(3)
        self.combine = Signal(3)
        self.s_c = Signal((SHIFT_BITS, True))
        self.s_q = Signal((SHIFT_BITS, True))
        self.s_p = Signal((SHIFT_BITS, True))
        # ---- per row ------------------------------------------------------------------------------
        self.valid = Signal()
        self.acc = Signal((ACC_BITS, True))
        self.bias = Signal((32, True))          # added to acc (0 if unused); one cycle after its row
        self.da = Signal((ACT_BITS, True))
        self.db = Signal((ACT_BITS, True))
        self.p = Signal((ACT_BITS, True))
        self.q = Signal((ACT_BITS, True))
        self.tag = Signal(tag_bits)
        self.out_valid = Signal()
        self.y = Signal((ACT_BITS, True))
        self.out_tag = Signal(tag_bits)

        # every per-row input travels down the pipeline as a delay line; at(sig, k) is `sig` as
        # seen by stage k + 1 (k registers after the input)
        taps = {}

        def at(sig, k):
            lst = taps.setdefault(id(sig), [sig])
            while len(lst) <= k:
                nxt = Signal.like(lst[-1], name=f"epi{len(taps)}_d{len(lst)}")
                self.sync += nxt.eq(lst[-1])
                lst.append(nxt)
            return lst[k]

        v = self.valid
        # ---- stage 2: acc + bias, DA * DB -----------------------------------------------------------
        acc2, d2 = Signal((ACC_BITS, True)), Signal((2 * ACT_BITS, True))
        # (DA * DB in a multiplier block with its own input and output registers: the inputs are
        # the stage-1 registers, the product stage 2's; in fabric registers, the block's 3.9 ns
        # sat between two long routes)
        self.sync += acc2.eq(at(self.acc, 1) + self.bias)
        self.specials += RegisteredMul(self.da, self.db, d2)
        # ---- stages 3..5: + round_shift(d, diag_shift), wrap to 48 bits ------------------------------
        dt, dright = _shift_stage(self, d2, self.diag_shift, ACC_BITS, "dsh", negated=True)
        acc3 = at(acc2, 2)
        # acc3 + ((dt + 1) >> 1) == (2 acc3 + 1 + dt) >> 1: one adder, the rounding 1 in the free
        # low bit of 2 acc3 (wrapped to 48 bits either way)
        acc3_x2 = Signal((ACC_BITS + 1, True))
        up, plain = Signal((ACC_BITS + 3, True)), Signal((ACC_BITS + 2, True))
        self.comb += acc3_x2.eq(Cat(C(1, 1), acc3)), up.eq(acc3_x2 + dt), plain.eq(acc3 + dt)
        acc4 = Signal((ACC_BITS, True))
        self.sync += If(at(self.diag, 4), If(dright, acc4.eq(up >> 1)).Else(acc4.eq(plain))).Else(acc4.eq(acc3))
        # ---- stages 6..9: requantise to int16 || act2's input P (shifted by s_p) -------------------
        rt, rright = _shift_stage(self, acc4, at(self.out_shift, 3), ACC_BITS + 32, "req")
        z9 = Signal((ACT_BITS, True))
        self.sync += z9.eq(_round_sat16(self, rt, rright, "z"))
        pt, pright = _shift_stage(self, at(self.p, 5), at(self.s_p, 3), ACT_BITS + 32, "pconv")
        pconv9 = Signal((ACT_BITS, True))
        self.sync += pconv9.eq(_round_sat16(self, pt, pright, "pconv"))
        # ---- stages 10..16: activation; act2 of P in parallel (mulact) -----------------------------
        self.submodules.act_unit = au = ActivationUnit()
        self.submodules.act2_unit = au2 = ActivationUnit()
        self.comb += [
            au.z.eq(z9), au.func.eq(at(self.act, 9)), au.valid.eq(at(v, 9)),
            au2.z.eq(pconv9), au2.func.eq(at(self.act2, 9)), au2.valid.eq(at(v, 9)),
        ]
        L = au.latency
        k = 9 + L                      # registers from the input to the activation's output
        a, t2 = au.out, au2.out
        # ---- stages 17, 18: the combine's products: a * (P or act2(P)), P * (Q - a) ----------------
        # (two MULT18X18D with their input registers (stage 17) and output registers (18): in
        # fabric registers the block's 3.9 ns sat between two long routes; a's partner picked by
        # a flag decoded a cycle ahead)
        W = 2 * ACT_BITS + 24
        b_in, diff_in = Signal((ACT_BITS, True)), Signal((ACT_BITS + 1, True))
        mulact = Signal()
        self.sync += mulact.eq(at(self.combine, k - 1) == isa.COMB_MULACT)
        self.comb += If(mulact, b_in.eq(t2)).Else(b_in.eq(at(self.p, k))), diff_in.eq(at(self.q, k) - a)
        m15, g15 = Signal((2 * ACT_BITS, True)), Signal((2 * ACT_BITS + 1, True))
        self.specials += RegisteredMul(a, b_in, m15), RegisteredMul(at(self.p, k), diff_in, g15)
        qs14 = Signal((W, True))
        sq = Signal(5)  # the Q alignment is a left shift (docs/arithmetic.md)
        self.comb += sq.eq(at(self.s_q, k))
        self.sync += qs14.eq(at(self.q, k) << sq)
        a15, qs15 = at(a, 2), at(qs14, 1)
        # ---- stage 19: mac sum; gru: a + round(P * (Q - a) >> F_ACT_OUT) ---------------------------
        val16 = Signal((W, True))
        gru16 = Signal((W, True))
        self.sync += If(at(self.combine, k + 2) == isa.COMB_MAC, val16.eq(m15 + qs15)).Else(val16.eq(m15)), \
            gru16.eq(a15 + ((g15 >> (F_ACT_OUT - 1)) + 1 >> 1))
        # ---- stages 20..23: round_shift by s_c, pick, saturate -------------------------------------
        # (each candidate saturated on its own, then picked: no adder or compare behind the pick)
        ct, cright = _shift_stage(self, val16, at(self.s_c, k + 1), W, "cmb")
        r19 = _round_sat16(self, ct, cright, "cmb_r")
        a18, gru18, sel17 = at(a15, 4), at(gru16, 3), at(self.combine, k + 5)
        g19 = _sat16(self, gru18, "gsat")
        # the pick decoded a cycle ahead into one flag per candidate: an AND-OR behind the
        # saturations, not a decode of the combine code
        pick_r, pick_g = Signal(name="pick_r"), Signal(name="pick_g")
        self.sync += pick_r.eq((sel17 == isa.COMB_MUL) | (sel17 == isa.COMB_MAC) | (sel17 == isa.COMB_MULACT)), \
            pick_g.eq(sel17 == isa.COMB_GRU)
        y = Signal((ACT_BITS, True))
        self.comb += If(pick_r, y.eq(r19)).Elif(pick_g, y.eq(g19)).Else(y.eq(a18))
        # (out_valid_next: out_valid's next value, for the consumer's register copies of it)
        self.out_valid_next = at(au.out_valid, 6)
        self.sync += self.out_valid.eq(self.out_valid_next), self.y.eq(y), self.out_tag.eq(at(self.tag, k + 6))
        self.latency = k + 7
        # only the valid bits keep a reset (the activation units handle their own registers)
        drop_resets(self, keep=taps.get(id(v), []) + taps.get(id(au.out_valid), []) + [self.out_valid])
