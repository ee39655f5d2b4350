"""Run model images on the core's RTL in Verilator, the way a driver would use the hardware.

One Verilator invocation per call: load the program, parameters, weights and vector spaces through
the core's host ports, then for each run write the input frames, pulse `start`, wait, and read the
outputs, the state and the counters back. Used by the RTL tests and `rnnaccel rtl-bench`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rnnaccel.host import isa
from rnnaccel.host.image import Image

from .core import N_SPACES, RNNAccelCore
from .sim import run_verilator


@dataclass
class Layout:
    """Where an image lives in the core's memories (word addresses)."""
    base: list                       # per vector space
    size: list
    prog_base: int = 0
    param_base: int = 0
    weight_base: int = 0


def layout(img: Image, core: RNNAccelCore) -> Layout:
    out_words = img.max_steps * img.out_step_stride if img.seq_output else img.out_features
    sizes = [img.max_steps * img.in_features, max(out_words, 1), img.state_words, img.scratch_words,
             img.const_words]
    base, a = [], 0
    for s in sizes:
        base.append(a)
        a += max(s, 1)
    if a > core.vmem_words:
        raise ValueError(f"image needs {a} vector words, the core has {core.vmem_words}")
    return Layout(base=base, size=sizes)


@dataclass
class RunResult:
    out: np.ndarray
    state: np.ndarray
    cycles: int
    mac_ops: int
    error: int
    error_pc: int
    parity: int
    done: bool = field(default=False)


class RtlSession:
    """Builds a per-cycle schedule of host-port activity, then runs it once in Verilator."""

    def __init__(self, core: RNNAccelCore, img: Image, name=None):
        self.core, self.img = core, img
        self.lay = layout(img, core)
        self.name = name or f"RNNAccelCore{core.n_lanes}"
        self.rows = []          # per cycle: dict of input values
        self.marks = []         # (kind, cycle index, info)
        self._load()

    # ---- schedule helpers ------------------------------------------------------------------------
    def _cycle(self, **vals):
        self.rows.append(vals)
        return len(self.rows) - 1

    def _load(self):
        img, c, lay = self.img, self.core, self.lay
        prog = np.frombuffer(isa.encode_program(img.program), "<u4")
        if len(prog) > c.prog_words:
            raise ValueError("program does not fit")
        for k, w in enumerate(prog):
            self._cycle(prog_we=1, prog_adr=k, prog_dat=int(w))
        params = img.params + bytes(-len(img.params) % 4)
        for k, w in enumerate(np.frombuffer(params, "<u4")):
            self._cycle(param_we=1, param_adr=k, param_dat=int(w))
        n = c.n_lanes
        weights = img.weights + bytes(-len(img.weights) % n)
        if len(weights) // n > c.wmem_words:
            raise ValueError("weights do not fit")
        for k in range(len(weights) // n):
            self._cycle(wmem_we=1, wmem_adr=k, wmem_dat=int.from_bytes(weights[k * n:(k + 1) * n], "little"))
        # every vector word: zeros, then the constants
        for a in range(sum(max(s, 1) for s in lay.size)):
            self._cycle(vmem_we=1, vmem_adr=a, vmem_wdat=0)
        consts = np.frombuffer(img.consts, "<i2")
        for k, v in enumerate(consts):
            self._cycle(vmem_we=1, vmem_adr=lay.base[isa.SPACE_CONST] + k, vmem_wdat=int(v))

    def run(self, x_q, parity=0, budget=None, clear_state=False):
        """Schedule one run on int16 frames x_q [T, F]; returns a handle for `results`.
        clear_state zeroes the model's context first (what the driver does for images that are
        not streamable, and on a user's reset)."""
        img, lay = self.img, self.lay
        T = len(x_q)
        if clear_state:
            for k in range(lay.size[isa.SPACE_STATE]):
                self._cycle(vmem_we=1, vmem_adr=lay.base[isa.SPACE_STATE] + k, vmem_wdat=0)
        for k, v in enumerate(np.asarray(x_q).reshape(-1)):
            self._cycle(vmem_we=1, vmem_adr=lay.base[isa.SPACE_IN] + k, vmem_wdat=int(v))
        self._cycle(steps=T)                # (steps: set a cycle before start, as a CSR write is)
        start = self._cycle(start=1, parity_in=parity)
        budget = budget or 4000 + 8 * T * (img.macs_per_step // self.core.n_lanes + 2000)
        for _ in range(budget):
            self._cycle()
        reads = []
        for space, words in ((isa.SPACE_OUT, lay.size[isa.SPACE_OUT]), (isa.SPACE_STATE, lay.size[isa.SPACE_STATE])):
            for k in range(words):
                reads.append((space, k, self._cycle(vmem_adr=lay.base[space] + k)))
        for _ in range(self.core.vmem_read_latency):     # the last read's data
            self._cycle()
        self.marks.append((start, budget, reads))
        return len(self.marks) - 1

    # ---- execution -----------------------------------------------------------------------------
    def execute(self):
        c, lay = self.core, self.lay
        static = {"prog_len": len(self.img.program), "pp_dist": self.img.pp_dist}
        for s in range(N_SPACES):
            static[c.space_base[s]] = lay.base[s]
            static[c.space_size[s]] = lay.size[s]
        keys = ["prog_we", "prog_adr", "prog_dat", "param_we", "param_adr", "param_dat", "wmem_we", "wmem_adr",
                "wmem_dat", "vmem_we", "vmem_adr", "vmem_wdat", "start", "steps", "parity_in"]
        C = len(self.rows)
        ins = {}
        held = {"steps", "parity_in"}  # control registers keep their value until rewritten
        for k in keys:
            col, last = [], 0
            for r in self.rows:
                last = r.get(k, last if k in held else 0)
                col.append(last)
            if k == "wmem_dat":  # 8*N bits: Python ints above 64 bits
                ins[k] = np.array(col, dtype=object if 8 * c.n_lanes > 64 else np.uint64)
            else:
                ins[k] = np.array(col, dtype=np.int64)
        for k, v in static.items():
            ins[k] = np.full(C, v, dtype=np.int64)
        outs = ["busy", "pool_owner", "done", "error", "error_pc", "parity_out", "cycles", "mac_ops", "vmem_rdat"]
        self.res = run_verilator(c, ins, outs, name=self.name)
        # the pool's owner is a register copy of busy's next value, spelt out beside the FSM: a
        # late owner would drop the host's first write after a run, an early one a core write
        differ = np.flatnonzero(self.res["pool_owner"] != self.res["busy"])
        if differ.size:
            raise RuntimeError(f"the vector pool's owner differs from busy at cycle {differ[0]} "
                               f"(and {differ.size - 1} more): the core's owner logic is wrong")
        return self

    def results(self, handle) -> RunResult:
        start, budget, reads = self.marks[handle]
        r = self.res
        end = start + budget  # status is stable by then (the budget is generous)
        busy = r["busy"][start + 1:end]
        if busy.size and busy[-1]:
            raise RuntimeError(f"the core was still busy after {budget} cycles")
        lat = self.core.vmem_read_latency
        out = [int(r["vmem_rdat"][cyc + lat]) for space, k, cyc in reads if space == isa.SPACE_OUT]
        state = [int(r["vmem_rdat"][cyc + lat]) for space, k, cyc in reads if space == isa.SPACE_STATE]
        return RunResult(out=np.array(out), state=np.array(state), cycles=int(r["cycles"][end]),
                         mac_ops=int(r["mac_ops"][end]), error=int(r["error"][end]),
                         error_pc=int(r["error_pc"][end]), parity=int(r["parity_out"][end]),
                         done=bool(r["done"][end]))
