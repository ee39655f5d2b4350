"""PWL activation unit: exactly `rnnaccel.host.activation.act_q`, fully pipelined.

One input per cycle, fixed latency (`ActivationUnit.latency`), no stall: `valid` only travels
alongside the data (registers capture whatever is on the inputs, valid or not). The function is
chosen per input by the 3-bit ISA activation code (`rnnaccel.host.isa.ACT_CODE`):

    none      out = z
    relu      out = max(z, 0)                       (input scale)
    tanh      out = act_q("tanh", z)                (Q3.12 in, Q1.14 out)
    sigmoid   out = act_q("sigmoid", z)
    softsign  out = act_q("softsign", z)
    other     out = z  (illegal: the instruction decoder rejects it with ERR_FIELD)

The integer algorithm is docs/activation.md; the stages below follow its numbered steps. The ROM
holds `tables()` of host/activation.py, read at elaboration time: that module is the single source
of truth for the segment contents and the field layout.

Pipeline (one register after each stage):

    1  sign/magnitude    neg, a = min(|z|, 32767), function decode
    2  index             v, segment address / fraction   (into the memory port's address register)
    3  ROM word          {S, C} (the block RAMs' output registers)
    4  operands          S and frac in the MULT18X18D's input registers, C in the fabric
    5  multiply          P = S * frac  (16 x 10 signed, the MULT18X18D's output register) || C + rounding constant
    6  add               R' = ((C + k) << 9) + P
    7  round, symmetry   u = R' >> r, out = u / -u / 16384 - u; none and relu pass-through mux
"""
from functools import reduce
from operator import or_

from migen import READ_FIRST, Case, Cat, If, Memory, Module, Signal

from rnnaccel.host import activation as pwl
from rnnaccel.host.isa import ACT_CODE, FIELDS
from rnnaccel.host.spec import ACT_BITS, ACT_MAX, ACT_MIN

from .bram import bram_width, registered_read
from .dsp import RegisteredMul

CODE_BITS = FIELDS["act"][2]   # width of the ISA's activation field


class ActivationUnit(Module):
    """Inputs:  z (int16, Q3.12), func (ISA activation code), valid.
    Outputs: out (int16; Q1.14 for the PWL functions, z's scale for none/relu), out_valid, both
    `latency` cycles after the input (an input presented in cycle t is on `out` in cycle
    t + latency)."""

    latency = 7

    def __init__(self):
        self.z = Signal((ACT_BITS, True))
        self.func = Signal(CODE_BITS)
        self.valid = Signal()
        self.out = Signal((ACT_BITS, True), reset_less=True)
        self.out_valid = Signal()

        # --- layout, all from host/activation.py ------------------------------------------------
        lay = pwl.tables()["tanh"]
        slope_bits, icpt_bits = lay["slope_bits"], lay["intercept_bits"]
        addr_bits, v_bits, split = lay["addr_bits"], lay["v_bits"], lay["split_bit"]
        ff, cf = lay["fine_frac_bits"], lay["coarse_frac_bits"]
        icpt_shift = lay["intercept_shift"]
        v_shift = lay["f_v"] - pwl.F_ACT_IN                 # tanh/softsign: v = a << 1
        # rnd(R, r) = (R + 2**(r-1)) >> r; sigmoid also adds 1.0 (2**F_CORE) before it.
        r_odd = pwl.F_CORE - pwl.F_ACT_OUT                   # tanh, softsign
        r_sig = pwl.F_CORE + 1 - pwl.F_ACT_OUT               # sigmoid
        k_odd = 1 << (r_odd - 1)
        k_sig = (1 << pwl.F_CORE) + (1 << (r_sig - 1))
        # Both constants are multiples of 2**icpt_shift, so they fold into the intercept before
        # its shift: ((C + (k >> 9)) << 9) + P == (C << 9) + P + k. This keeps the stage-6 adder
        # at two operands and makes the rounding a plain bit select.
        assert k_odd % (1 << icpt_shift) == 0 and k_sig % (1 << icpt_shift) == 0
        k_odd >>= icpt_shift
        k_sig >>= icpt_shift

        table_idx = {ACT_CODE[f]: pwl.TABLES.index(pwl.TABLE_OF[f]) for f in pwl.PWL_FUNCS}

        # =========================================================================================
        # ROM: both tables in 2**(addr_bits+1) words, table index as the address MSB, in slices
        # of one block RAM each (18 bits at this depth), each read through its output register
        # =========================================================================================
        assert len(pwl.TABLES) == 2
        depth = 1 << addr_bits
        init = [0] * (2 * depth)
        for t, tname in enumerate(pwl.TABLES):
            for i, w in enumerate(pwl.tables()[tname]["rom"]):
                init[t * depth + i] = int(w)
        sw = bram_width(2 * depth)
        slices = [Memory(min(sw, lay["word_bits"] - lo), 2 * depth, name=f"act_rom{lo // sw}",
                         init=[(w >> lo) & ((1 << min(sw, lay["word_bits"] - lo)) - 1) for w in init])
                  for lo in range(0, lay["word_bits"], sw)]
        self.specials += slices
        self.rom_slices = [(lo, m) for lo, m in zip(range(0, lay["word_bits"], sw), slices)]   # (bit offset, memory)
        reads = [registered_read(self, m, mode=READ_FIRST) for m in slices]   # (the read register in the port, as bram.py wants)
        rom_adr, rom_word = Signal(addr_bits + 1), Signal(lay["word_bits"])
        self.comb += [r.adr.eq(rom_adr) for r in reads] + [rom_word.eq(Cat(*[r.dat_r for r in reads]))]

        # =========================================================================================
        # Stage 1: sign and magnitude, function decode
        # =========================================================================================
        mag = Signal(ACT_BITS - 1)
        self.comb += If(self.z == ACT_MIN, mag.eq(ACT_MAX)   # -32768 reads as -32767
                        ).Elif(self.z < 0, mag.eq(-self.z)
                        ).Else(mag.eq(self.z))
        s1_a = Signal(ACT_BITS - 1, reset_less=True)
        s1_neg, s1_sig, s1_pwl, s1_relu, s1_tsel = (
            Signal(name=f"s1_{n}", reset_less=True) for n in ("neg", "sig", "pwl", "relu", "tsel"))
        s1_z = Signal.like(self.z, name="s1_z", reset_less=True)
        tsel = Signal(name="tsel")   # ROM table of the function (address MSB)
        self.comb += Case(self.func, {**{c: tsel.eq(t) for c, t in table_idx.items()},
                                      "default": tsel.eq(0)})
        self.sync += [
            s1_a.eq(mag),
            s1_neg.eq(self.z < 0),
            s1_sig.eq(self.func == ACT_CODE["sigmoid"]),
            s1_pwl.eq(reduce(or_, [self.func == ACT_CODE[f] for f in pwl.PWL_FUNCS])),
            s1_relu.eq(self.func == ACT_CODE["relu"]),
            s1_tsel.eq(tsel),
            s1_z.eq(self.z),
        ]

        # sigmoid flag aligned with each stage's registers: sig_at[k] goes with the stage-k values
        sig_at = [None, s1_sig, *self._delay(s1_sig, 5, "sig")]

        # =========================================================================================
        # Stage 2: core input v and the two-level index -> ROM address (the port registers it)
        # =========================================================================================
        # sigmoid evaluates tanh(x/2): v = a (no input LSB lost); tanh/softsign: v = a << 1.
        v = Signal(v_bits)
        self.comb += If(s1_sig, v.eq(s1_a)).Else(v.eq(s1_a << v_shift))
        fine = Signal()
        seg = Signal(addr_bits)
        s2_frac = Signal(cf, reset_less=True)
        self.comb += [
            fine.eq(v[split:] == 0),
            If(fine, seg.eq(v[ff:split])
               ).Else(seg.eq(v[cf:] + lay["coarse_base"])),
            rom_adr.eq(Cat(seg, s1_tsel)),
        ]
        self.sync += If(fine, s2_frac.eq(v[:ff])).Else(s2_frac.eq(v[:cf]))

        # =========================================================================================
        # Stage 3: ROM word {S, C} in the block RAMs' output registers (0.9 ns clock-to-out
        #          instead of 5.8: the word goes straight on to the multiplier's input registers)
        # Stage 4: S and frac in the multiplier block's input registers, C in the fabric
        # =========================================================================================
        s3_slope = Signal((slope_bits, True), name="s3_slope")
        s3_icpt = Signal((icpt_bits, True), name="s3_icpt")
        s4_icpt = Signal((icpt_bits, True), name="s4_icpt", reset_less=True)
        s3_frac = Signal((cf + 1, True), reset_less=True)   # frac >= 0: one zero sign bit
        self.comb += s3_slope.eq(rom_word[icpt_bits:icpt_bits + slope_bits]), s3_icpt.eq(rom_word[:icpt_bits])
        self.sync += [
            s3_frac.eq(s2_frac),
            s4_icpt.eq(s3_icpt),
        ]

        # =========================================================================================
        # Stage 5: the one multiply (16 x 10 signed, one MULT18X18D) || intercept + rounding const
        # (stage 4's S and frac are the multiplier block's input registers, the product its
        # output register: in fabric registers its 3.9 ns sat between two long routes)
        # =========================================================================================
        s5_prod = Signal((slope_bits + cf + 1, True))
        s5_base = Signal((icpt_bits + 2, True), reset_less=True)
        self.specials += RegisteredMul(s3_slope, s3_frac, s5_prod)
        self.sync += [
            If(sig_at[4], s5_base.eq(s4_icpt + k_sig)
               ).Else(s5_base.eq(s4_icpt + k_odd)),
        ]

        # =========================================================================================
        # Stage 6: add (R' = R + rounding constant, Q.27)
        # =========================================================================================
        s6_r = Signal((32, True), reset_less=True)
        self.sync += s6_r.eq((s5_base << icpt_shift) + s5_prod)

        # =========================================================================================
        # Stage 7: rounding shift (a bit select of R'), symmetry, pass-through functions
        # =========================================================================================
        sig = sig_at[6]
        neg, is_pwl, is_relu, z = (self._delay(s, 5, n)[-1] for s, n in (
            (s1_neg, "neg"), (s1_pwl, "pwl"), (s1_relu, "relu"), (s1_z, "z")))
        u = Signal((ACT_BITS + 1, True))    # output magnitude, [0, 16384]
        self.comb += If(sig, u.eq(s6_r[r_sig:r_sig + ACT_BITS])
                        ).Else(u.eq(s6_r[r_odd:r_odd + ACT_BITS]))
        self.sync += [
            If(is_pwl,
                If(~neg, self.out.eq(u)
                ).Elif(sig, self.out.eq(pwl.ONE - u)   # sigmoid(-x) = 1 - sigmoid(x)
                ).Else(self.out.eq(-u))                # tanh, softsign: odd
            ).Elif(is_relu & z[-1], self.out.eq(0)
            ).Else(self.out.eq(z)),
        ]

        # =========================================================================================
        # valid: a plain shift register of the pipeline's length
        # =========================================================================================
        self.comb += self.out_valid.eq(self._delay(self.valid, self.latency, "valid", True)[-1])

    def _delay(self, sig, n, name, reset=False):
        """n registers after `sig`; returns the list of their outputs (taps 1..n)."""
        taps = []
        for i in range(n):
            r = Signal.like(sig, name=f"{name}_d{i + 1}", reset_less=not reset)
            self.sync += r.eq(sig)
            taps.append(r)
            sig = r
        return taps
