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
from migen import Case, If, Module, Signal

from rnnaccel.host import isa
from rnnaccel.host.spec import ACC_BITS, ACT_BITS, F_ACT_OUT

from .activation import ActivationUnit

SHIFT_BITS = 8  # signed shift fields of the instruction (aux bytes, out_shift)


def _shift_round(m, value, amount, out_width, name):
    """round_shift(value, amount) for a signed run-time amount (|amount| <= 63): for r > 0
    ((v >> (r-1)) + 1) >> 1, which equals (v + 2^(r-1)) >> r without a wide constant; v << -r
    for r <= 0. Returns a combinational signal of out_width bits (the caller saturates)."""
    res = Signal((out_width, True), name=name)
    r1 = Signal(6, name=name + "_r1")
    left = Signal(6, name=name + "_l")
    t = Signal((len(value) + 1, True), name=name + "_t")
    m.comb += [r1.eq(amount - 1), left.eq(-amount), t.eq(value >> r1)]
    m.comb += If(amount > 0, res.eq((t + 1) >> 1)).Else(res.eq(value << left))
    return res


def _sat16(m, value, name):
    lo, hi = -(1 << (ACT_BITS - 1)), (1 << (ACT_BITS - 1)) - 1
    res = Signal((ACT_BITS, True), name=name)
    m.comb += If(value > hi, res.eq(hi)).Elif(value < lo, res.eq(lo)).Else(res.eq(value))
    return res


def delay(m, sig, n, name):
    """sig delayed by n cycles."""
    cur = sig
    for k in range(n):
        nxt = Signal.like(cur, name=f"{name}_d{k}")
        m.sync += nxt.eq(cur)
        cur = nxt
    return cur


class Epilogue(Module):
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
        self.da = Signal((ACT_BITS, True))
        self.db = Signal((ACT_BITS, True))
        self.p = Signal((ACT_BITS, True))
        self.q = Signal((ACT_BITS, True))
        self.tag = Signal(tag_bits)
        self.out_valid = Signal()
        self.y = Signal((ACT_BITS, True))
        self.out_tag = Signal(tag_bits)

        # ---- stage 1: diagonal product ------------------------------------------------------------
        v1, acc1, d1 = Signal(), Signal((ACC_BITS, True)), Signal((2 * ACT_BITS, True))
        self.sync += v1.eq(self.valid), acc1.eq(self.acc), d1.eq(self.da * self.db)
        # ---- stage 2: + shift(d, diag_shift), wrap to 48 bits -------------------------------------
        diag1, dshift1 = delay(self, self.diag, 1, "diag"), delay(self, self.diag_shift, 1, "dshift")
        dsh = _shift_round(self, d1, -dshift1, ACC_BITS, "dsh")
        v2, acc2 = Signal(), Signal((ACC_BITS, True))
        self.sync += v2.eq(v1), If(diag1, acc2.eq(acc1 + dsh)).Else(acc2.eq(acc1))
        # ---- stage 3: requantise to int16 -----------------------------------------------------------
        wide = _shift_round(self, acc2, delay(self, self.out_shift, 2, "oshift"), ACC_BITS + 32, "req")
        z = _sat16(self, wide, "z")
        v3, z3 = Signal(), Signal((ACT_BITS, True))
        self.sync += v3.eq(v2), z3.eq(z)
        # ---- stages 4..: activation; act2 of P in parallel (mulact) --------------------------------
        self.submodules.act_unit = au = ActivationUnit()
        self.submodules.act2_unit = au2 = ActivationUnit()
        p3 = delay(self, self.p, 3, "p")
        q3 = delay(self, self.q, 3, "q")
        t3 = delay(self, self.tag, 3, "tag")
        sp3 = delay(self, self.s_p, 3, "sp")
        pconv = _sat16(self, _shift_round(self, p3, sp3, ACT_BITS + 32, "pconv_w"), "pconv")
        self.comb += [
            au.z.eq(z3), au.func.eq(delay(self, self.act, 3, "act")), au.valid.eq(v3),
            au2.z.eq(pconv), au2.func.eq(delay(self, self.act2, 3, "act2")), au2.valid.eq(v3),
        ]
        L = au.latency
        comb_sel = delay(self, self.combine, 3 + L, "comb")
        s_c = delay(self, self.s_c, 3 + L, "s_c")
        s_q = delay(self, self.s_q, 3 + L, "s_q")
        pa, qa, ta = (delay(self, s, L, n) for s, n in ((p3, "pa"), (q3, "qa"), (t3, "ta")))
        a, t2 = au.out, au2.out
        # ---- combine (registered) ------------------------------------------------------------------
        W = 2 * ACT_BITS + 24
        mul = Signal((W, True))
        gru = Signal((W, True))
        mac = Signal((W, True))
        mulact = Signal((W, True))
        qs = Signal((W, True))
        sq = Signal(5)  # the Q alignment is a left shift (docs/arithmetic.md)
        self.comb += sq.eq(s_q)
        self.comb += [
            mul.eq(a * pa),
            gru.eq(pa * (qa - a)),
            qs.eq(qa << sq),
            mac.eq(a * pa + qs),
            mulact.eq(a * t2),
        ]
        r_mul = _shift_round(self, mul, s_c, W, "r_mul")
        r_gru = _shift_round(self, gru, F_ACT_OUT, W, "r_gru")
        r_mac = _shift_round(self, mac, s_c, W, "r_mac")
        r_mulact = _shift_round(self, mulact, s_c, W, "r_mulact")
        gru_sum = Signal((W, True))
        self.comb += gru_sum.eq(a + r_gru)
        pick = Signal((W, True))
        self.comb += Case(comb_sel, {
            isa.COMB_NONE: pick.eq(a),
            isa.COMB_MUL: pick.eq(r_mul),
            isa.COMB_GRU: pick.eq(gru_sum),
            isa.COMB_MAC: pick.eq(r_mac),
            isa.COMB_MULACT: pick.eq(r_mulact),
            "default": pick.eq(a),
        })
        y = _sat16(self, pick, "ysat")
        self.sync += self.out_valid.eq(au.out_valid), self.y.eq(y), self.out_tag.eq(ta)
        self.latency = 3 + L + 1
