"""Cycle model: the exact cycle count of the gateware core for any image, N and step count.

No Migen here: the host, the driver and the benchmarks use it without the gateware installed.
The gateware imports its timing constants from this file (one source), and the RTL tests check
the core's cycle counter against `run_cycles` on every case.

The core (gateware/core.py) overlaps three parts, modelled as such in `_Core`:

    front end   FETCH 17 cycles (16 words + the read latency), DECODE 1; a MATVEC then CHECK 4 (the
                operand and weight checks, pipelined),
                [WAITSEG until the instructions it depends on have retired], LOAD
                ceil(KA/W) + ceil(KB/W) (W = load_width: 8, at most N) + LOADED 1 (skipped when
                the X buffer already holds the segments), START a cycle after the previous
                stream has finished and a context slot is free (START_SEEN); the next FETCH
                follows at once, while the stream runs.
    stream      starts STREAM_START_DELAY after START's decision; first_output_latency +
                stream_cycles (codebook stalls included).
    back end    rows reach the row FIFO XBUF_LATENCY + mac_latency + FIFO_IN_LATENCY after their
                stream cycle; the feeder takes one per `feeder_interval` cycles in order (WAIT_EPI: an
                instruction's first row only once every older one has retired) and hands it to
                the epilogue FEED_LATENCY after its last operand slot (the pool's read latency);
                the epilogue takes EPILOGUE_LATENCY; the write queue writes one word per cycle, WQ_LATENCY
                after the epilogue's output.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import isa
from .spec import CODEBOOK_BITS, CODEBOOK_MODES, MAX_ROWS

# ---- controller phases ------------------------------------------------------------------------
FETCH_CYCLES = isa.INSTR_WORDS + 1
DECODE_CYCLES = 1
CHECK_CYCLES = 4                      # CHECK0..3: the operand/weight check pipeline
OPERAND_CYCLES = 8                    # a, b, da, db, p, q, dst, dst2
LOAD_WIDTH = 8                        # vector-pool words per loader cycle, at most (load_width)
LOADED_CYCLES = 1
WS_RELEASE = 0                        # weight stream busy -> idle after its last output
START_SEEN = 1                        # START acts on the stream's and context queue's state a cycle late
STREAM_START_DELAY = 1                # START's decision -> the weight stream and X buffer start (two register levels of copies)

# ---- queues ----------------------------------------------------------------------------------------
ROW_FIFO_DEPTH = MAX_ROWS             # finished rows waiting for the feeder
CTX_DEPTH = 4                         # instructions between stream start and their last write

# ---- datapath latencies (the gateware asserts its structure matches) ----------------------------
XBUF_LATENCY = 8                      # window position -> bank read (block RAM, output register, a fabric register) -> wrap pick -> rotator (three stages) -> pair pick -> x lanes (by the multipliers)
FIFO_IN_LATENCY = 1                   # a finished row registered on its way into the row FIFO
FEED_LATENCY = 5                      # the feeder's last operand slot -> the row into the epilogue (pool read latency)
WQ_LATENCY = 3                        # an epilogue output -> its pool write (a queue entry, the queue's output register, the bank's register)
EPILOGUE_LATENCY = 23                 # 9 stages + the activation unit (7) + 7 combine stages
ACT_LATENCY = 7


def mac_latency(n_lanes):
    """MAC array input -> finished row: weight shift, multiply (2), two product registers (one by
    the DSP, one by the trees), the trees' first level (masks and pair weighting in front of its
    adders), log2(N) - 1 more levels, accumulator."""
    return 5 + max(1, (n_lanes - 1).bit_length() - 1) + 1


# ---- weight stream (gateware/weights.py) ------------------------------------------------------------
CB_PER_WORD = 32 // CODEBOOK_BITS     # codebook entries per parameter-memory word
PRIME_CYCLES = 4                      # start -> the address copy -> first word on the port (read latency 2) -> in the FIFO
PIPE_STAGES = 5                       # window's word pair, window, lane candidates, field pick, lookup
CB_READ_CYCLES = 3                    # a codebook's last word issued -> its group may issue (read latency 2, the count)
FILL_TURNAROUND = 7                   # crossing into a group -> refill of the file two groups back


def n_eff(n_lanes, mode):
    """Weights per cycle: N, or N/2 for 16-bit weights (lane pairs fuse)."""
    return n_lanes // 2 if mode == 16 else n_lanes


def codebook_words(mode):
    """Parameter-memory words per codebook (0 for the plain modes)."""
    return (1 << mode) // CB_PER_WORD if mode in CODEBOOK_MODES else 0


def first_output_latency(mode):
    """Cycles from the stream's `start` to its first valid output."""
    return max(PRIME_CYCLES, codebook_words(mode) + CB_READ_CYCLES) + PIPE_STAGES


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


@dataclass
class RunCycles:
    cycles: int
    macs: int                       # useful multiply-accumulates (16-bit weights count twice:
    lane_ops: int                   # one 16x16 MAC is two lane operations)
    starts: list = None             # (pc, stream start cycle) per executed MATVEC

    def utilisation(self, n_lanes):
        return self.lane_ops / (n_lanes * self.cycles) if self.cycles else 0.0


def load_width(n_lanes):
    """Vector-pool words the loader moves per cycle (the pool's banks): LOAD_WIDTH, at most N (the X
    buffer takes each of them into a bank of its own)."""
    return min(LOAD_WIDTH, n_lanes)


def load_cycles(ins: isa.Instr, n_lanes):
    lw = load_width(n_lanes)
    return -(-ins.a_len // lw) + (-(-ins.b_len // lw) if ins.b_len else 0)


class _Core:
    """Cycle-level model of the core (gateware/core.py): a front end walking the program, the
    weight stream, and the back end (row FIFO, feeder, epilogue, write queue), all timed from the
    first FETCH cycle (cycle 0)."""

    def __init__(self, n_lanes):
        self.n = n_lanes
        self.fe = 0                 # cycle the next FETCH starts
        self.ws_free = 0            # first cycle a new stream may start
        self.retired = []           # retire cycle of every started MATVEC, in order
        self.pop = None             # feeder: cycle of the last pop, and that row's interval
        self.pop_interval = 0
        self.last_write = -1
        self.last_buf = None        # (segments) held by the most recently started stream's buffer
        self.starts = []            # (pc, stream start cycle) of every MATVEC

    def retire_before(self, k):
        """Cycle after which every MATVEC started before index k has retired (-1: none)."""
        return max(self.retired[:k], default=-1)

    def matvec(self, ins, key, pc=None):
        D = self.fe + FETCH_CYCLES                      # DECODE
        k = len(self.retired)                           # this instruction's index
        seg_wait = ins.flags & (isa.FLAG_WAIT | isa.FLAG_WAIT_OLDER)
        reuse = not seg_wait and self.last_buf == key
        if seg_wait:
            older = k if ins.flags & isa.FLAG_WAIT else k - 1
            w = max(D + 1 + CHECK_CYCLES, self.retire_before(older) + 1)   # WAITSEG: leaves in the cycle it sees it
            s0 = w + 1 + load_cycles(ins, self.n) + LOADED_CYCLES
        elif reuse:
            s0 = D + 1 + CHECK_CYCLES
        else:
            s0 = D + 1 + CHECK_CYCLES + load_cycles(ins, self.n) + LOADED_CYCLES
        ctx_free = self.retired[k - CTX_DEPTH] + 1 if k >= CTX_DEPTH else 0
        s = max(s0, self.ws_free + START_SEEN, ctx_free + START_SEEN)   # START: the stream starts
        self.starts.append((pc, s))
        st = s + STREAM_START_DELAY                     # the weight stream's and X buffer's start
        fol = first_output_latency(ins.mode)
        sc = stream_cycles(self.n, ins.mode, ins.rows, ins.k_stored, ins.group_log2)
        self.ws_free = st + fol + sc + WS_RELEASE
        self.last_buf = key
        # back end
        to_fifo = XBUF_LATENCY + mac_latency(self.n) + FIFO_IN_LATENCY
        interval = feeder_interval(ins)
        emits = row_emit_cycles(ins, self.n)
        epi_floor = self.retire_before(k) + 1 if ins.flags & isa.FLAG_WAIT_EPI else 0
        for j, e in enumerate(emits):
            w = st + fol + e + to_fifo
            if j == len(emits) - 1 and len(emits) > 1 and emits[j - 1] == e:
                w += 1                                  # two rows ended in one cycle: the second waits
            pop = w + 1
            if self.pop is not None:
                pop = max(pop, self.pop + self.pop_interval)
            if j == 0:
                pop = max(pop, epi_floor)
            self.pop, self.pop_interval = pop, interval
            out = pop + interval + FEED_LATENCY + EPILOGUE_LATENCY
            for _ in range(2 if ins.dst2.used else 1):
                self.last_write = max(out + WQ_LATENCY, self.last_write + 1)
        self.retired.append(self.last_write)
        self.fe = s + 1

    def halt(self):
        d = max(self.fe + FETCH_CYCLES + DECODE_CYCLES, self.retire_before(len(self.retired)) + 1)
        return d + 1


def run_cycles(img, steps, n_lanes) -> RunCycles:
    """Busy cycles of one run of `steps` steps, and the array work done in them."""
    prog, T = img.program, int(steps)
    core = _Core(n_lanes)
    macs = lane_ops = 0
    pc, loop, t, parity = 0, None, T - 1, 0
    while True:
        ins = prog[pc]
        if ins.opcode == isa.OP_HALT:
            return RunCycles(core.halt(), macs, lane_ops, core.starts)
        if ins.opcode == isa.OP_LOOP:
            loop = [pc + 1, ins.count or T, 0, ins.reverse]
            core.fe += FETCH_CYCLES + DECODE_CYCLES
            pc += 1
        elif ins.opcode == isa.OP_ENDLOOP:
            core.fe += FETCH_CYCLES + DECODE_CYCLES
            parity ^= 1
            loop[2] += 1
            if loop[2] < loop[1]:
                pc = loop[0]
            else:
                loop, pc = None, pc + 1
        else:
            t = (loop[1] - 1 - loop[2] if loop[3] else loop[2]) if loop else T - 1
            core.matvec(ins, _segments(ins, t, parity, img.pp_dist), pc)
            macs += ins.rows * ins.k
            lane_ops += ins.rows * ins.k * (2 if ins.mode == 16 else 1)
            pc += 1


def _segments(ins, t, parity, pp_dist):
    """What the X buffer holds for an instruction (the core reuses a buffer holding the same)."""
    def where(o):
        a = o.addr + o.stride * t
        if o.pp:
            a += pp_dist * (parity ^ (o.pp == isa.PP_NEXT))
        return (o.space, a)
    return (where(ins.a), where(ins.b) if ins.b_len else None, ins.a_len, ins.b_len, ins.mode == 16)


def layer_report(img, steps, n_lanes):
    """Per MATVEC: MACs, cycles from its stream start to the next one's (the last: to the end of
    the run), averaged over its executions, and its MAC utilisation; plus the whole run."""
    r = run_cycles(img, steps, n_lanes)
    spans = {}
    ends = [s for _, s in r.starts[1:]] + [r.cycles]
    for (pc, s), e in zip(r.starts, ends):
        spans.setdefault(pc, []).append(e - s)
    rows = []
    for pc, sp in spans.items():
        ins = img.program[pc]
        lane = ins.rows * ins.k * (2 if ins.mode == 16 else 1)
        span = sum(sp) / len(sp)
        rows.append({"pc": pc, "note": ins.note, "rows": ins.rows, "k": ins.k, "macs": ins.rows * ins.k,
                     "cycles": span, "utilisation": lane / (n_lanes * span)})
    return rows, r


def ideal_cycles(img, steps, n_lanes):
    """Array cycles if every lane did useful work every cycle."""
    r = run_cycles(img, steps, n_lanes)
    return -(-r.lane_ops // n_lanes)
