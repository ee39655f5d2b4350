"""Cycle model: the exact cycle count of the gateware core for any image, N and step count.

No Migen here: the host, the driver and the benchmarks use it without the gateware installed.
The gateware imports its timing constants from this file (one source), and the RTL tests check
the core's cycle counter against `run_cycles` on every case.

The controller (gateware/core.py) runs one instruction at a time:

    every instruction   FETCH 17 cycles (16 words + the read latency), DECODE 1
    LOOP, ENDLOOP, HALT nothing more
    MATVEC              OPERANDS 8 (one address check per operand), LOAD ceil(KA/4) + ceil(KB/4),
                        LOADED 1 (the weight stream starts), then STREAM until the last row is
                        written: the stream's cycles, plus the pipeline from the last stream cycle
                        to the vector-pool write, plus any feeder queueing (rows whose epilogue
                        operands take longer to read than the rows take to stream).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import isa
from .spec import CODEBOOK_BITS, CODEBOOK_MODES

# ---- controller phases ------------------------------------------------------------------------
FETCH_CYCLES = isa.INSTR_WORDS + 1
DECODE_CYCLES = 1
OPERAND_CYCLES = 8                    # a, b, da, db, p, q, dst, dst2
LOAD_WIDTH = 4                        # vector-pool words per loader cycle
LOADED_CYCLES = 1

# ---- datapath latencies (the gateware asserts its structure matches) ----------------------------
XBUF_LATENCY = 2                      # window position -> x lanes
EPILOGUE_LATENCY = 11                 # 3 stages + the activation unit (7) + the combine register
ACT_LATENCY = 7


def mac_latency(n_lanes):
    """MAC array input -> finished row: shift, multiply, mask, log2(N) tree levels, accumulator."""
    return 3 + max(1, (n_lanes - 1).bit_length()) + 1


# ---- weight stream (gateware/weights.py) ------------------------------------------------------------
CB_PER_WORD = 32 // CODEBOOK_BITS     # codebook entries per parameter-memory word
PRIME_CYCLES = 2                      # start -> first word in the gearbox -> second word on the port
PIPE_STAGES = 2                       # field extraction, lookup
FILL_TURNAROUND = 3                   # crossing into a group -> refill of the file two groups back


def n_eff(n_lanes, mode):
    """Weights per cycle: N, or N/2 for 16-bit weights (lane pairs fuse)."""
    return n_lanes // 2 if mode == 16 else n_lanes


def codebook_words(mode):
    """Parameter-memory words per codebook (0 for the plain modes)."""
    return (1 << mode) // CB_PER_WORD if mode in CODEBOOK_MODES else 0


def first_output_latency(mode):
    """Cycles from the stream's `start` to its first valid output."""
    return max(PRIME_CYCLES, codebook_words(mode) + 2) + PIPE_STAGES


def group_issue(n_lanes, mode, rows, k_stored, group_log2):
    """[(x_h, t_h)]: stream cycle x_h where row group h begins and the cycle t_h (relative to the
    first output) in which it is issued; t_h - x_h is the codebook-refill stall before it."""
    ne = n_eff(n_lanes, mode)
    out = [(0, 0)]
    if mode not in CODEBOOK_MODES:
        return out
    W = codebook_words(mode)
    G = 1 << group_log2
    x = t = 0
    for h in range(1, -(-rows // G)):
        xh = h * G * k_stored // ne
        t = max(t + xh - x, t + (W if h == 1 else W + FILL_TURNAROUND))
        x = xh
        out.append((x, t))
    return out


def stream_cycles(n_lanes, mode, rows, k_stored, group_log2):
    """Cycles from the first to the last output of a stream (inclusive):
    ceil(rows * k_stored / N_eff) plus the codebook-refill stalls."""
    total = -(-rows * k_stored // n_eff(n_lanes, mode))
    x, t = group_issue(n_lanes, mode, rows, k_stored, group_log2)[-1]
    return total + t - x


# ---- one MATVEC ------------------------------------------------------------------------------------
def feeder_interval(ins: isa.Instr):
    """Cycles the feeder spends per row: one per epilogue operand read, two when the row is
    written twice, at least one."""
    n_ops = 2 * int(ins.diag) + int(ins.combine != isa.COMB_NONE) + \
        int(ins.combine in (isa.COMB_GRU, isa.COMB_MAC))
    if n_ops > 1:
        return n_ops
    return 2 if ins.dst2.used else 1


def row_emit_cycles(ins: isa.Instr, n_lanes):
    """Stream cycle (relative to the first output) in which each row leaves the weight stream's
    view of the array: where its last weight is, or the next cycle when the row ends exactly at a
    cycle's end (the boundary is seen at weight 0 of the next cycle); the final row ends with
    the stream. Codebook stalls shift everything after them."""
    ne = n_eff(n_lanes, ins.mode)
    k, R = ins.k_stored, ins.rows
    groups = group_issue(n_lanes, ins.mode, R, k, ins.group_log2)

    def issue(x):
        shift = 0
        for xh, th in groups:
            if x >= xh:
                shift = th - xh
        return x + shift

    last = (R * k - 1) // ne
    out = []
    for j in range(R):
        f_end = (j + 1) * k - 1
        x = f_end // ne
        if j < R - 1 and (f_end + 1) % ne == 0:
            x += 1
        out.append(issue(min(x, last)) if j < R - 1 else issue(last))
    return out


def matvec_cycles(ins: isa.Instr, n_lanes):
    """Cycles the controller spends on a MATVEC after its fetch (DECODE through STREAM)."""
    load = -(-ins.a_len // LOAD_WIDTH) + (-(-ins.b_len // LOAD_WIDTH) if ins.b_len else 0)
    fol = first_output_latency(ins.mode)
    to_fifo = XBUF_LATENCY + mac_latency(n_lanes)   # stream cycle -> row in the row FIFO
    interval = feeder_interval(ins)
    emits = row_emit_cycles(ins, n_lanes)
    pop = None
    finish = 0
    for j, e in enumerate(emits):
        w = fol + e + to_fifo
        if j == len(emits) - 1 and len(emits) > 1 and emits[j - 1] == e:
            w += 1                                  # two rows ended in one cycle: the second waits
        ready = w + 1
        pop = ready if pop is None else max(ready, pop + interval)
        finish = pop + interval + 1 + EPILOGUE_LATENCY + (1 if ins.dst2.used else 0)
    stream_state = finish + 1                        # STREAM sees the last write one cycle later
    return DECODE_CYCLES + OPERAND_CYCLES + load + LOADED_CYCLES + stream_state


@dataclass
class RunCycles:
    cycles: int
    macs: int                       # useful multiply-accumulates (16-bit weights count twice:
    lane_ops: int                   # one 16x16 MAC is two lane operations)

    def utilisation(self, n_lanes):
        return self.lane_ops / (n_lanes * self.cycles) if self.cycles else 0.0


def run_cycles(img, steps, n_lanes) -> RunCycles:
    """Busy cycles of one run of `steps` steps, and the array work done in them."""
    prog, T = img.program, int(steps)
    cyc = macs = lane_ops = 0
    pc, loop = 0, None
    cost = {}
    while True:
        ins = prog[pc]
        cyc += FETCH_CYCLES + DECODE_CYCLES
        if ins.opcode == isa.OP_HALT:
            return RunCycles(cyc, macs, lane_ops)
        if ins.opcode == isa.OP_LOOP:
            loop = [pc + 1, ins.count or T, 0]
            pc += 1
        elif ins.opcode == isa.OP_ENDLOOP:
            loop[2] += 1
            if loop[2] < loop[1]:
                pc = loop[0]
            else:
                loop, pc = None, pc + 1
        else:
            if pc not in cost:
                cost[pc] = matvec_cycles(ins, n_lanes) - DECODE_CYCLES
            cyc += cost[pc]
            macs += ins.rows * ins.k
            lane_ops += ins.rows * ins.k * (2 if ins.mode == 16 else 1)
            pc += 1


def ideal_cycles(img, steps, n_lanes):
    """Array cycles if every lane did useful work every cycle."""
    r = run_cycles(img, steps, n_lanes)
    return -(-r.lane_ops // n_lanes)
