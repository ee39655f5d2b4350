"""Weight stream unit: the weights it emits are `decode_weights` bit for bit, `bnd` marks exactly
the row boundaries, and the cycle count is `stream_cycles` (+ `first_output_latency`).

One bench (weight and parameter memories with write ports, the unit) per lane count: memories
are loaded through the write ports at run time and every field is a run-time input, so one
Verilator build per N serves all modes and matrices. The Migen simulator runs a few tiny cases.
"""
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("migen")
from migen import Cat, Memory, Module, Signal  # noqa: E402
from migen.sim import run_simulation  # noqa: E402

from rnnaccel.gateware.bram import registered_read  # noqa: E402
from rnnaccel.gateware.weights import WeightStream  # noqa: E402
from rnnaccel.host.cycles import first_output_latency, n_eff, stream_cycles  # noqa: E402
from rnnaccel.host import isa  # noqa: E402
from rnnaccel.host.compiler import _pad_rows  # noqa: E402
from rnnaccel.host.compression import encode  # noqa: E402
from rnnaccel.host.simulator import decode_weights  # noqa: E402
from rnnaccel.host.spec import ALIGN, CODEBOOK_MODES, MAX_LANES, WEIGHT_MODE_CODE  # noqa: E402

WEIGHT_BYTES = 1 << 16      # weight memory of the Verilator bench (any N)
PARAM_WORDS = 1024


# --------------------------------------------------------------------------------------------------
# Bench
# --------------------------------------------------------------------------------------------------
class Bench(Module):
    """The unit between its two memories; write ports (32-bit chunks) load them at run time."""

    def __init__(self, n, wdepth, pdepth=PARAM_WORDS):
        wmem, pmem = Memory(8 * n, wdepth), Memory(32, pdepth)
        wwr, wrd = wmem.get_port(write_capable=True), registered_read(self, wmem)
        pwr, prd = pmem.get_port(write_capable=True), registered_read(self, pmem)
        self.specials += wmem, pmem, wwr, pwr
        self.we, self.wadr = Signal(), Signal(len(wwr.adr))
        self.wdat = [Signal(32, name=f"wdat{k}") for k in range(n // 4)]
        self.pwe, self.padr, self.pdat = Signal(), Signal(len(pwr.adr)), Signal(32)
        self.comb += [
            wwr.we.eq(self.we), wwr.adr.eq(self.wadr), wwr.dat_w.eq(Cat(*self.wdat)),
            pwr.we.eq(self.pwe), pwr.adr.eq(self.padr), pwr.dat_w.eq(self.pdat),
        ]
        self.submodules.dut = WeightStream(n, wrd, prd)


CONTROL = ("start", "word_base", "mode", "rows", "k_stored", "group_log2", "cb_base", "ready")
STATUS = ("valid", "first", "last", "n_valid", "bnd", "busy", "busy_next")


# --------------------------------------------------------------------------------------------------
# Test matrices
# --------------------------------------------------------------------------------------------------
@dataclass
class Case:
    n: int
    mode: int
    rows: int
    k: int
    group_rows: int = 0      # codebook modes; 0: the encoder's choice
    seed: int = 0
    backpressure: float = 0.0

    def build(self):
        rng = np.random.default_rng([self.seed, self.n, self.mode, self.rows, self.k])
        W = rng.standard_normal((self.rows, self.k)) * rng.uniform(0.2, 3.0, (self.rows, 1))
        enc = encode(W, self.mode, group_rows=self.group_rows or None) \
            if self.mode in CODEBOOK_MODES else encode(W, self.mode)
        pad = max(0, MAX_LANES - self.k)            # as the compiler stores short rows
        stream = _pad_rows(enc.packed, self.mode, self.rows, self.k, pad)
        woff = ALIGN * int(rng.integers(0, 4))
        cb_off = 8 * int(rng.integers(0, 16))
        junk = lambda m: rng.integers(0, 256, m, dtype=np.uint8).tobytes()  # noqa: E731
        # noise before and after: the unit reads a few words beyond the stream's end
        self.weights = junk(woff) + stream
        self.weights += junk(-len(self.weights) % self.n + 4 * self.n)
        self.params = junk(cb_off) + enc.codebook_blob
        self.params += junk(-len(self.params) % 4 + 8)
        G = enc.group_rows or 1
        self.group_log2 = G.bit_length() - 1
        self.ins = isa.Instr(isa.OP_MATVEC, rows=self.rows, a_len=self.k, pad=pad, mode=self.mode,
                             weight_off=woff, codebook_off=cb_off, group_log2=self.group_log2)
        self.k_stored = self.ins.k_stored
        self.ref = decode_weights(SimpleNamespace(weights=self.weights, params=self.params),
                                  self.ins)
        self.groups = -(-self.rows // G)
        return self

    def __str__(self):
        return (f"N={self.n} mode={self.mode} {self.rows}x{self.k_stored} G=2^{self.group_log2} "
                f"groups={self.groups} bp={self.backpressure}")


# --------------------------------------------------------------------------------------------------
# Schedule: per-cycle inputs for a sequence of cases (load memories, start, stream)
# --------------------------------------------------------------------------------------------------
def schedule(bench, cases, seed=0):
    """Inputs of run_verilator for loading and running `cases` one after the other, and the
    (case, first cycle, end) segment of each case (first cycle = its start pulse)."""
    n = bench.dut.n_lanes
    rng = np.random.default_rng(seed)
    parts, segments, t = [], [], 0
    for case in cases:
        wwords = np.frombuffer(case.weights, "<u4").reshape(-1, n // 4).astype(np.int64)
        pwords = np.frombuffer(case.params, "<u4").astype(np.int64)
        if len(wwords) > 2 ** len(bench.wadr) or len(pwords) > 2 ** len(bench.padr):
            raise ValueError(f"{case} does not fit the bench's memories")
        span = first_output_latency(case.mode) + stream_cycles(
            n, case.mode, case.rows, case.k_stored, case.group_log2)
        if case.backpressure:
            span = 2 * span + 50
        load = max(len(wwords), len(pwords)) + 1
        cyc = load + 1 + span + 8
        p = {k: np.zeros(cyc, np.int64) for k in ("we", "wadr", "pwe", "padr", "pdat", *CONTROL)}
        chunks = np.zeros((cyc, n // 4), np.int64)
        p["we"][:len(wwords)] = 1
        p["wadr"][:len(wwords)] = np.arange(len(wwords))
        chunks[:len(wwords)] = wwords
        p["pwe"][:len(pwords)] = 1
        p["padr"][:len(pwords)] = np.arange(len(pwords))
        p["pdat"][:len(pwords)] = pwords
        ins = case.ins
        for k, v in dict(start=1, word_base=ins.weight_off // n, mode=WEIGHT_MODE_CODE[case.mode],
                         rows=case.rows, k_stored=case.k_stored, group_log2=case.group_log2,
                         cb_base=ins.codebook_off).items():
            p[k][load] = v
        p["word_base"][:] = ins.weight_off // n     # sampled a cycle before start: held throughout
        p["mode"][:] = WEIGHT_MODE_CODE[case.mode]    # decoded a cycle before start: held throughout
        p["ready"][load:] = rng.random(cyc - load) >= case.backpressure
        p["ready"][load] = 1
        parts.append((p, chunks))
        segments.append((case, t + load, t + cyc))
        t += cyc
    inputs = {(f"dut.{k}" if k in CONTROL else k): np.concatenate([p[k] for p, _ in parts])
              for k in parts[0][0]}
    chunks = np.concatenate([c for _, c in parts])
    inputs.update({s: chunks[:, j] for j, s in enumerate(bench.wdat)})
    outputs = [f"dut.{k}" for k in STATUS] + list(bench.dut.w)
    return inputs, outputs, segments


def _signal(bench, key):
    if isinstance(key, Signal):
        return key
    obj = bench
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def run_migen(bench, inputs, outputs):
    """The Migen simulator with run_verilator's conventions (out[c] is sampled in cycle c after
    in[c] is applied, before the clock edge)."""
    ins = [(_signal(bench, k), v) for k, v in inputs.items()]
    outs = [(k, _signal(bench, k)) for k in outputs]
    cycles = len(next(iter(inputs.values())))
    rec = {k: np.zeros(cycles, np.int64) for k in outputs}

    def tb():
        for c in range(cycles):
            for s, v in ins:
                yield s.eq(int(v[c]))
            yield
            for k, s in outs:
                rec[k][c] = yield s

    run_simulation(bench, tb())
    return rec


def run(bench, cases, simulator, seed=0):
    inputs, outputs, segments = schedule(bench, cases, seed)
    # the schedule's `ready` is what the unit sees in each cycle; it takes it a cycle ahead
    ready = inputs.pop("dut.ready")
    inputs["dut.ready_d"] = np.append(ready[1:], 1)
    outputs = outputs + ["dut.ready"]
    if simulator == "verilator":
        from rnnaccel.gateware.sim import run_verilator
        rec = run_verilator(bench, inputs, outputs, name=f"weights{bench.dut.n_lanes}")
    else:
        rec = run_migen(bench, inputs, outputs)
    # busy_next predicts busy (the core registers it for its start condition)
    assert np.array_equal(rec["dut.busy_next"][:-1], rec["dut.busy"][1:]), "busy_next != next busy"
    assert np.array_equal(rec["dut.ready"][1:], ready[1:]), "ready is ready_d registered"
    for case, begin, end in segments:
        sub = {k: rec[k][begin:end] for k in outputs}
        sub["ready"] = ready[begin:end]
        check(case, sub, bench.dut)


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------
def check(case, rec, dut):
    """rec: per-cycle outputs from the start cycle (index 0) on."""
    n, mode, ks = case.n, case.mode, case.k_stored
    ne = n_eff(n, mode)
    total = case.rows * ks
    C = -(-total // ne)
    valid, ready = rec["dut.valid"], rec["ready"]
    lanes = np.stack([rec[s] for s in dut.w], axis=1)
    take = np.nonzero(valid & ready)[0]
    assert len(take) == C, f"{case}: {len(take)} stream cycles accepted, expected {C}"

    # outputs hold while valid and not ready
    hold = np.nonzero(valid[:-1] & (ready[:-1] == 0))[0]
    for k in ("dut.valid", "dut.first", "dut.last", "dut.n_valid", "dut.bnd"):
        assert np.array_equal(rec[k][hold], rec[k][hold + 1]), f"{case}: {k} changed in a stall"
    assert np.array_equal(lanes[hold], lanes[hold + 1]), f"{case}: lanes changed in a stall"

    # control per accepted cycle
    P = np.arange(C) * ne                                  # flat index of the cycle's weight 0
    first, last = rec["dut.first"][take], rec["dut.last"][take]
    assert first.tolist() == [1] + [0] * (C - 1), f"{case}: first {first}"
    assert last.tolist() == [0] * (C - 1) + [1], f"{case}: last {last}"
    assert np.array_equal(rec["dut.n_valid"][take], np.minimum(ne, total - P)), f"{case}: n_valid"
    m = np.maximum(1, -(-P // ks))                          # the next row start at or after P
    start = m * ks
    exp_bnd = np.where((start - P < ne) & (start < total), start - P, ne)
    got_bnd = rec["dut.bnd"][take]
    bad = np.nonzero(got_bnd != exp_bnd)[0]
    assert bad.size == 0, (f"{case}: bnd wrong from cycle {bad[0]}: "
                           f"{got_bnd[bad[:8]]} != {exp_bnd[bad[:8]]}")

    # the weights
    L = lanes[take]
    assert L.min() >= -256 and L.max() <= 255
    if mode == 16:
        lo, hi = L[:, 0::2], L[:, 1::2]
        assert lo.min() >= 0 and hi.min() >= -128 and hi.max() <= 127, f"{case}: pair ranges"
        L = lo + hi * 256
    else:
        assert L.min() >= -128 and L.max() <= 127, f"{case}: int8 range"
    flat = L[:, :ne].reshape(-1)[:total]
    ref = case.ref.reshape(-1)
    bad = np.nonzero(flat != ref)[0]
    assert bad.size == 0, (f"{case}: {bad.size} weights differ, first at flat index {bad[0]} "
                           f"(row {bad[0] // ks}, col {bad[0] % ks}): "
                           f"{flat[bad[:6]]} != {ref[bad[:6]]}")

    # timing: exact with ready high throughout; each frozen cycle (ready low) costs <= 1
    want = stream_cycles(n, mode, case.rows, ks, case.group_log2)
    frozen = int(np.sum(ready[:take[-1]] == 0))
    assert take[-1] + 1 <= first_output_latency(mode) + want + frozen, f"{case}: too slow"
    if not case.backpressure:
        lat = take[0]
        assert lat == first_output_latency(mode), f"{case}: first output after {lat} cycles"
        cycles = take[-1] - take[0] + 1
        assert cycles == want, f"{case}: {cycles} stream cycles, model says {want}"
        assert not rec["dut.busy"][take[-1] + 1], f"{case}: busy after the last output"
    return True


# --------------------------------------------------------------------------------------------------
# The cycle model itself
# --------------------------------------------------------------------------------------------------
def test_stream_cycles_model():
    # plain modes and single groups: exactly ceil(rows * k / N_eff)
    assert stream_cycles(32, 8, 154, 164, 0) == 790
    assert stream_cycles(32, 16, 154, 164, 0) == 1579
    assert stream_cycles(32, 6, 154, 164, 8) == 790
    # long groups never stall, tiny groups do (mode 6: W + 7 = 23 cycles per group at least)
    assert stream_cycles(32, 4, 154, 164, 3) == 790
    assert stream_cycles(64, 6, 10, 64, 0) == 16 + 23 * 8 + 1   # crossing into group 9, + 1
    assert first_output_latency(8) == first_output_latency(16) == 9
    assert [first_output_latency(m) for m in (6, 4, 2)] == [24, 12, 9]


# --------------------------------------------------------------------------------------------------
# Migen simulator: tiny cases
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [16, 8, 6, 4, 2])
def test_migen_small(mode):
    cases = [Case(8, mode, rows=5, k=67, group_rows=2, seed=1).build(),
             Case(8, mode, rows=3, k=37, group_rows=2, seed=2, backpressure=0.3).build()]
    run(Bench(8, wdepth=128, pdepth=128), cases, "migen", seed=mode)   # a bench runs once


# --------------------------------------------------------------------------------------------------
# Verilator: every N and mode, larger matrices
# --------------------------------------------------------------------------------------------------
def verilator_cases(n):
    out = []
    for i, mode in enumerate((16, 8, 6, 4, 2)):
        rows, k = 37 + 11 * i, 67 + 29 * i + n // 4     # neither a multiple of N
        G = 8 if mode in CODEBOOK_MODES else 0          # several groups, the last one shorter
        out.append(Case(n, mode, rows, k, G, seed=i))
        out.append(Case(n, mode, 29, 131 + i, G // 2, seed=10 + i, backpressure=0.25))
    # groups too short for the refill (stalls), and short rows padded to 64 columns
    out += [Case(n, 6, 23, 45, 1, seed=20), Case(n, 4, 19, 70, 1, seed=21),
            Case(n, 6, 41, 101, 2, seed=22), Case(n, 2, 33, 64, 1, seed=23),
            Case(n, 8, 17, 23, seed=24), Case(n, 16, 9, 64, seed=25)]
    # a random sweep of small geometries (single rows, one-row groups, K = 64 exactly, ...)
    rng = np.random.default_rng(n)
    for i in range(12):
        mode = int(rng.choice([16, 8, 6, 4, 2]))
        G = 1 << int(rng.integers(0, 6)) if mode in CODEBOOK_MODES else 0
        rows, k = int(rng.integers(1, 40)), int(rng.choice([64, rng.integers(1, 200)]))
        out.append(Case(n, mode, rows, k, G, seed=100 + i,
                        backpressure=float(rng.choice([0, 0, 0.4]))))
    return [c.build() for c in out]


@pytest.mark.parametrize("n", [8, 16, 32, 64])
def test_verilator(n):
    from rnnaccel.gateware.sim import verilator_available
    if not verilator_available():
        pytest.skip("verilator not installed")
    cases = verilator_cases(n)
    stalls = [c for c in cases if c.mode in CODEBOOK_MODES and not c.backpressure
              and stream_cycles(n, c.mode, c.rows, c.k_stored, c.group_log2)
              > -(-c.rows * c.k_stored // n)]
    assert stalls, "no case exercises refill stalls"
    run(Bench(n, wdepth=WEIGHT_BYTES // n), cases, "verilator", seed=n)
