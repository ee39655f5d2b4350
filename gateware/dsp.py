"""A registered multiplier: p = a * b two cycles after a, b (input and output registers).

`RegisteredMul` is a Migen special. Lowered by default (simulation, Verilator, any FPGA) it is
plain logic: two input registers, a product register. `ECP5_OVERRIDES` maps it onto one
MULT18X18D with its own input and output registers (REG_INPUTA/B, REG_OUTPUT on CLK0), which
yosys does not infer: the multiplier's 3.4 ns A/B -> P delay then sits between two registers inside
the DSP block instead of between fabric registers on either side, with routing added to it (pass
them to Migen's `convert(..., special_overrides=ECP5_OVERRIDES)`). Both compute the same function:
the product of two signed values of at most 18 bits, the low `len(p)` bits of it.
"""
from migen import ClockSignal, Instance, Module, Signal
from migen.fhdl.specials import SPECIAL_INPUT, SPECIAL_OUTPUT, Special
from migen.fhdl.structure import wrap

DSP_BITS = 18        # MULT18X18D operand width (signed)
P_BITS = 36          # its product width


class RegisteredMul(Special):
    """p <= a_r * b_r, a_r <= a, b_r <= b (all in `sys`). a, b signed, <= 18 bits; p signed.
    `lane`: the MAC lane this multiplier serves (the ECP5 lowering tags its MULT18X18D with
    `LANE_ATTR` = lane, so that the synthesis flow can give the lanes their DSP sites)."""

    def __init__(self, a, b, p, lane=None):
        Special.__init__(self)
        self.a, self.b, self.p = wrap(a), wrap(b), p
        self.lane = lane
        assert len(self.a) <= DSP_BITS and len(self.b) <= DSP_BITS and len(p) <= P_BITS
        assert self.a.signed and self.b.signed and p.signed

    def iter_expressions(self):
        yield self, "a", SPECIAL_INPUT
        yield self, "b", SPECIAL_INPUT
        yield self, "p", SPECIAL_OUTPUT

    @staticmethod
    def lower(dr):
        return _MulLogic(dr)


class _MulLogic(Module):
    def __init__(self, dr):
        a_r = Signal.like(dr.a, reset_less=True)
        b_r = Signal.like(dr.b, reset_less=True)
        self.sync += a_r.eq(dr.a), b_r.eq(dr.b), dr.p.eq(a_r * b_r)


class _MulECP5(Module):
    def __init__(self, dr):
        a, b = Signal((DSP_BITS, True)), Signal((DSP_BITS, True))
        p = Signal((P_BITS, True))
        self.comb += a.eq(dr.a), b.eq(dr.b), dr.p.eq(p[:len(dr.p)])
        pins = {f"i_A{k}": a[k] for k in range(DSP_BITS)}
        pins.update({f"i_B{k}": b[k] for k in range(DSP_BITS)})
        pins.update({f"i_C{k}": 0 for k in range(DSP_BITS)})    # as yosys' own mapping; the cascade
        pins.update({f"o_P{k}": p[k] for k in range(P_BITS)})     # inputs (SRIA/SRIB) stay open
        pins.update(i_CLK0=ClockSignal(), i_CE0=1, i_RST0=0)
        # no parameters here: ECP5_YOSYS_PASSES sets them after synthesis (see there)
        attr = {ECP5_MARK} | ({(LANE_ATTR, str(dr.lane))} if dr.lane is not None else set())
        self.specials += Instance("MULT18X18D", attr=attr, i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
                                  **pins)


class _ECP5Lowering:
    @staticmethod
    def lower(dr):
        return _MulECP5(dr)


ECP5_OVERRIDES = {RegisteredMul: _ECP5Lowering}
ECP5_MARK = "rnnaccel_regmul"      # attribute of the MULT18X18D instances above
LANE_ATTR = "rnnaccel_lane"        # and, on a MAC lane's, its lane number (synth.lane_sites)
# The registers of those instances, set on the synthesised netlist (yosys commands to run after
# synth_ecp5): yosys 0.70 elaborates the top module once more when the module it derives for a
# parameterised black-box instance appears, at the end of synth_ecp5, and the unsynthesised
# processes then reach the JSON backend. Instances without parameters are not re-derived.
ECP5_PARAMS = {"REG_INPUTA_CLK": "CLK0", "REG_INPUTB_CLK": "CLK0", "REG_OUTPUT_CLK": "CLK0", "GSR": "DISABLED"}
ECP5_YOSYS_PASSES = "setparam " + " ".join(f'-set {k} "{v}"' for k, v in ECP5_PARAMS.items()) + f" a:{ECP5_MARK}"
