"""Register copies that yosys keeps apart, to split a net of high fan-out over several drivers."""
from migen import Replicate, Signal


def copy_reg(m, value, name, live):
    """`value` registered (one cycle later), as a copy that yosys does not merge with the other
    copies of it. The copy is `value ^ z` with z a flag of its own that stays 0 (z <= z & live,
    from 0) but that yosys' optimisations do not prove constant, so every copy has its own input
    cone. (Copies told apart only by their reset values merge bit by bit once the flip-flops are
    mapped: measured.) `live`: any non-constant 1-bit signal."""
    z = Signal(name=name + "_z")
    q = Signal(len(value), name=name)
    m.sync += z.eq(z & live), q.eq(value ^ Replicate(z, len(value)))
    return q
