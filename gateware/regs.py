"""Register helpers for timing: data registers without a reset, register copies for fan-out."""
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


def copy_reg(m, value, name, live, ce=None):
    """`value` registered (one cycle later) as a copy that yosys keeps apart from the other copies
    of it, to split a net of high fan-out over several drivers. Plain copies have the same input
    and merge into one flip-flop (opt_merge); this one is `value ^ z` with `z` a flag of its own
    that stays 0 (z <= z & live, from 0) but that the optimiser does not prove constant. `live`:
    any 1-bit signal that is not constant; `ce`: a clock enable (the copy then loads only with it)."""
    z = Signal(name=name + "_z")
    q = Signal(len(value), name=name, reset_less=True)
    load = q.eq(value ^ Replicate(z, len(value)))
    m.sync += z.eq(z & live), load if ce is None else If(ce, load)
    return q
