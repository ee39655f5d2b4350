"""Register helpers for timing: data registers without a reset, delay lines, register copies for fan-out."""
from migen import If, Replicate, Signal
from migen.fhdl.tools import list_targets


def drop_resets(m, keep=()):
    """Make every register that `m`'s own sync statements assign reset-less, except `keep` (its
    control registers: valid bits, positions, states). Call at the end of the module's
    constructor. The data registers of a pipeline need no reset (a valid bit travels beside
    them), and leaving them out keeps the reset net's fan-out to the control registers: fewer
    sinks to route, and flip-flops with different resets no longer stand in the way of packing.
    Simulation starts them from their initial value as before."""
    kept = {id(k) for k in keep}
    for s in list_targets(m._fragment.sync.get("sys", [])):
        if id(s) not in kept:
            s.reset_less = True


def delay(m, sig, n, name, reset_less=False):
    """sig delayed by n cycles (`reset_less`: a data line, its registers without reset)."""
    cur = sig
    for k in range(n):
        nxt = Signal.like(cur, name=f"{name}_d{k}", reset_less=reset_less)
        m.sync += nxt.eq(cur)
        cur = nxt
    return cur


def copy_reg(m, value, name, ce=None, reset=False):
    """`value` registered (one cycle later) as a copy that yosys keeps apart from the other copies
    of it, to split a net of high fan-out over several drivers. Plain copies have the same input
    and merge into one flip-flop (opt_merge); this one is `value ^ z` with `z` a flag of its own
    that stays 0 (z <= z & q[0], from 0) but that the optimiser does not prove constant. The flag
    looks only at its own copy: no net between the copies (a shared `live` register reaching every
    flag of a unit took 16 ns of routing in a placement). `ce`: a clock enable (the copy then
    loads only with it); `reset`: the copy is cleared by the reset (a control input whose register
    twin has a reset)."""
    z = Signal(name=name + "_z")
    q = Signal(len(value), name=name, reset_less=not reset)
    load = q.eq(value ^ Replicate(z, len(value)))
    m.sync += z.eq(z & q[0]), load if ce is None else If(ce, load)
    return q


class InputCopies:
    """Copies of a 1-bit control input (`master`), one per group of registers that uses it, so
    that no one net reaches all of them. A unit asks for a copy per group (`get`). Alone, the
    copies are `master` itself; with `external` the parent drives every copy in `copies` with a
    register (`copy_reg`) loaded from the master's value one cycle ahead, so each copy is a
    flip-flop with a few dozen sinks, equal to `master` in every cycle."""

    def __init__(self, m, master, external):
        self.m, self.master, self.external, self.copies = m, master, external, []

    def get(self, name):
        s = Signal(name=name)
        self.copies.append(s)
        if not self.external:
            self.m.comb += s.eq(self.master)
        return s


def drive_copies(m, copies, value_next, name):
    """Drive `copies` (InputCopies.copies of external units) from registers of `value_next`, the
    value the input has in the next cycle. Cleared by the reset, as a control input."""
    for k, s in enumerate(copies):
        m.comb += s.eq(copy_reg(m, value_next, f"{name}{k}", reset=True))
