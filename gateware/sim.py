"""Verilator harness for the gateware tests: stream per-cycle input vectors through a Migen module
(or a Verilog source) and get the per-cycle output values back as numpy arrays.

    from rnnaccel.gateware.sim import run_verilator
    dut = ActivationUnit()
    res = run_verilator(dut, {"z": z, "func": f, "valid": v}, ["out", "out_valid"])
    res["out"]        # np.int64 array, one value per cycle

How a run works:
  * The module is converted with `migen.fhdl.verilog.convert` (ports: the signals named in
    `inputs`/`outputs`; Migen's `sys_clk`/`sys_rst` are added for a sync domain).
  * A C++ testbench is generated for exactly that port list. Each cycle it reads one record of
    input words from a binary file, applies them with the clock low, evaluates, records the
    outputs, then raises and lowers the clock. So `out[c]` is the value during cycle c after
    `in[c]` was applied: a combinational path shows in the same cycle, a module with L registers
    on its path shows input c at output c + L.
  * `verilator --cc --exe --build -O2` (no tracing) builds it once. The executable is cached under
    `<repo>/build/verilator/` (env RNNACCEL_VERILATOR_CACHE overrides), keyed by a hash of the
    Verilog, its memory-init files, the testbench source, the Verilator version and flags: each
    model is built once per machine, a rerun only runs it. Env VERILATOR names the binary (default:
    `verilator` on PATH), RNNACCEL_VERILATOR_JOBS the build's make jobs (default 2).

Values and signs:
  * Inputs: integers in [-2**(w-1), 2**w) for a w-bit port; negative values are two's complement
    (so a signed port takes its natural range and an unsigned port may be given as either).
    Anything outside raises ValueError rather than being silently truncated.
  * Outputs: np.int64 arrays, sign-extended for signed ports (Migen `Signal((w, True))`, or
    `(w, True)` in `ports`), zero-extended otherwise (an unsigned 64-bit port: np.uint64).
    Ports wider than 64 bits come back as object arrays of Python ints (same sign rule) and are
    given the same way.
  * A Migen module's ports are named by key: a string is an attribute of the module (dotted paths
    allowed, e.g. "sink.valid"), or pass the Signal itself; results use the same keys. For a
    Verilog string, keys are the port names and `ports` gives {name: (width, signed)}.
One clock domain (`sys`); memories initialised by `$readmemh` files are supported (Migen's
`Memory(init=...)`): the files sit next to the executable, which runs in that directory.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["run_verilator", "build", "verilator_available", "cache_dir", "VerilatorError"]

_HARNESS_VERSION = 1   # bump when the generated testbench's behaviour changes
_INSTALL_HINT = "install Verilator: apt-get install verilator (make setup does this)"
_FLAGS = ["--cc", "--exe", "--build", "-O2", "--no-timing",
          "-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial", "fast"]


class VerilatorError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------------
# Tool and cache location
# --------------------------------------------------------------------------------------------------
def _verilator_bin():
    return os.environ.get("VERILATOR") or shutil.which("verilator")


def verilator_available() -> bool:
    return _verilator_bin() is not None


@functools.lru_cache(maxsize=None)
def _verilator_version(binary):
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise VerilatorError(f"cannot run {binary} --version ({e}); {_INSTALL_HINT}") from e


def cache_dir() -> Path:
    """Where built models live: $RNNACCEL_VERILATOR_CACHE, else <repo>/build/verilator (the
    current directory's build/verilator when the package is not a source checkout)."""
    env = os.environ.get("RNNACCEL_VERILATOR_CACHE")
    if env:
        return Path(env).resolve()
    repo = Path(__file__).resolve().parents[1]
    base = repo if (repo / "pyproject.toml").is_file() else Path.cwd()
    return base / "build" / "verilator"


# --------------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------------
class _Port:
    def __init__(self, key, name, width, signed):
        if width < 1:
            raise ValueError(f"port {name}: width {width}")
        self.key, self.name, self.width, self.signed = key, name, int(width), bool(signed)
        self.words = (self.width + 31) // 32


def _resolve(dut, key):
    from migen import Signal
    if isinstance(key, Signal):
        return key
    obj = dut
    for part in str(key).split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Signal):
        raise TypeError(f"{key!r} is not a Signal of the module")
    return obj


def _from_migen(dut, in_keys, out_keys, top):
    from migen.fhdl.verilog import convert
    sigs = {k: _resolve(dut, k) for k in (*in_keys, *out_keys)}
    conv = convert(dut, ios=set(sigs.values()), name=top)
    ports = {k: _Port(k, conv.ns.get_name(s), len(s), s.signed) for k, s in sigs.items()}
    return conv.main_source, dict(conv.data_files), ports


def _has_input(verilog, name):
    return re.search(rf"\binput\b[^;,()]*?\b{re.escape(name)}\b", verilog) is not None


# --------------------------------------------------------------------------------------------------
# Testbench
# --------------------------------------------------------------------------------------------------
def _set_input(p, k):
    if p.width <= 32:
        return f"    top->{p.name} = in[{k}];"
    if p.width <= 64:
        return f"    top->{p.name} = (QData)in[{k}] | ((QData)in[{k + 1}] << 32);"
    return f"    for (int i = 0; i < {p.words}; i++) top->{p.name}[i] = in[{k} + i];"


def _get_output(p, k):
    if p.width <= 32:
        return f"    out[{k}] = (uint32_t)top->{p.name};"
    if p.width <= 64:
        return (f"    out[{k}] = (uint32_t)top->{p.name}; "
                f"out[{k + 1}] = (uint32_t)(top->{p.name} >> 32);")
    return f"    for (int i = 0; i < {p.words}; i++) out[{k} + i] = top->{p.name}[i];"


def _testbench(ins, outs, clock, reset, prefix):
    n_in, n_out = sum(p.words for p in ins), sum(p.words for p in outs)
    sets, gets, k = [], [], 0
    for p in ins:
        sets.append(_set_input(p, k))
        k += p.words
    k = 0
    for p in outs:
        gets.append(_get_output(p, k))
        k += p.words
    clk = (lambda v: f"top->{clock} = {v};") if clock else (lambda v: "")
    rst = (lambda v: f"top->{reset} = {v};") if reset else (lambda v: "")
    nl = "\n"
    return f"""// Generated by rnnaccel.gateware.sim (harness v{_HARNESS_VERSION}).
// Usage: Vtb IN OUT CYCLES RESET_CYCLES
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include "verilated.h"
#include "{prefix}.h"

static const int N_IN = {n_in}, N_OUT = {n_out};

int main(int argc, char** argv) {{
    if (argc != 5) {{ fprintf(stderr, "usage: %s IN OUT CYCLES RESET_CYCLES\\n", argv[0]); return 2; }}
    FILE* fi = fopen(argv[1], "rb");
    FILE* fo = fopen(argv[2], "wb");
    if (!fi || !fo) {{ perror("open"); return 2; }}
    const long cycles = atol(argv[3]), reset_cycles = atol(argv[4]);
    auto ctx = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<{prefix}>(ctx.get());
    uint32_t in[N_IN + 1], out[N_OUT + 1];
    {clk(0)}
    {rst(1)}
    for (long c = 0; c < reset_cycles; c++) {{
        top->eval(); {clk(1)} top->eval(); {clk(0)}
    }}
    {rst(0)}
    for (long c = 0; c < cycles; c++) {{
        if (fread(in, sizeof(uint32_t), N_IN, fi) != (size_t)N_IN) {{
            fprintf(stderr, "input file ends at cycle %ld\\n", c); return 3;
        }}
{nl.join(sets)}
        top->eval();
{nl.join(gets)}
        if (fwrite(out, sizeof(uint32_t), N_OUT, fo) != (size_t)N_OUT) {{ perror("write"); return 3; }}
        {clk(1)} top->eval(); {clk(0)}
    }}
    top->final();
    fclose(fi);
    if (fclose(fo) != 0) {{ perror("close"); return 3; }}
    return 0;
}}
"""


# --------------------------------------------------------------------------------------------------
# Build (cached)
# --------------------------------------------------------------------------------------------------
def _jobs():
    return os.environ.get("RNNACCEL_VERILATOR_JOBS", "2")


def build(verilog, data_files, tb_src, top="top", name=None, cache=None) -> Path:
    """Build (or find in the cache) the executable for this Verilog + testbench. Returns the
    model directory (executable `Vtb`, plus the data files the Verilog reads at run time)."""
    binary = _verilator_bin()
    if binary is None:
        raise VerilatorError(f"verilator not found on PATH; {_INSTALL_HINT}")
    cache = Path(cache) if cache is not None else cache_dir()
    h = hashlib.sha256()
    for part in (f"v{_HARNESS_VERSION}", _verilator_version(binary), " ".join(_FLAGS), top,
                 verilog, tb_src, *(f"{k}\0{v}" for k, v in sorted(data_files.items()))):
        h.update(part.encode())
        h.update(b"\0\1")
    final = cache / f"{name or top}-{h.hexdigest()[:20]}"
    if (final / "Vtb").is_file():
        return final

    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{name or top}-", dir=cache))
    try:
        (tmp / "top.v").write_text(verilog)
        (tmp / "tb.cpp").write_text(tb_src)
        for fname, content in data_files.items():
            (tmp / fname).write_text(content)
        prefix = "Vtop"
        cmd = [binary, *_FLAGS, "-j", _jobs(), "--top-module", top, "--prefix", prefix,
               "--Mdir", "obj", "-o", "Vtb", "top.v", "tb.cpp"]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0 or not (tmp / "obj" / "Vtb").is_file():
            log = (r.stdout + r.stderr)[-6000:]
            raise VerilatorError(f"verilator build of {name or top} failed "
                                 f"({' '.join(cmd)}):\n{log}")
        (tmp / "obj" / "Vtb").rename(tmp / "Vtb")
        shutil.rmtree(tmp / "obj")                 # objects are not needed to run
        try:
            tmp.rename(final)
        except OSError:                            # built concurrently by another process
            if not (final / "Vtb").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)     # no-op after a successful rename
    return final


# --------------------------------------------------------------------------------------------------
# Value packing
# --------------------------------------------------------------------------------------------------
def _pack(p, values, cycles):
    """values -> uint32 array [cycles, p.words] (two's complement, masked to the width)."""
    lo, hi = -(1 << (p.width - 1)), 1 << p.width
    if p.width <= 64:
        a = np.asarray(values)
        if a.dtype.kind not in "iub":
            raise TypeError(f"input {p.key!r}: integer array expected, got {a.dtype}")
        if a.shape != (cycles,):
            raise ValueError(f"input {p.key!r}: shape {a.shape}, expected ({cycles},)")
        if a.size and (int(a.min()) < lo or int(a.max()) >= hi):
            raise ValueError(f"input {p.key!r}: values outside [{lo}, {hi}) for {p.width} bits")
        u = a.astype(np.int64).view(np.uint64) if a.dtype.kind != "u" else a.astype(np.uint64)
        u = u & np.uint64((1 << p.width) - 1)
        return np.stack([(u & np.uint64(0xFFFFFFFF)).astype(np.uint32),
                         (u >> np.uint64(32)).astype(np.uint32)], axis=1)[:, :p.words]
    vals = list(values)
    if len(vals) != cycles:
        raise ValueError(f"input {p.key!r}: {len(vals)} values, expected {cycles}")
    out = np.zeros((cycles, p.words), dtype=np.uint32)
    mask = (1 << p.width) - 1
    for c, v in enumerate(vals):
        v = int(v)
        if not lo <= v < hi:
            raise ValueError(f"input {p.key!r}: value {v} outside [{lo}, {hi})")
        out[c] = np.frombuffer((v & mask).to_bytes(4 * p.words, "little"), dtype="<u4")
    return out


def _unpack(p, words):
    """uint32 array [cycles, p.words] -> int64 array (object array of ints above 64 bits)."""
    if p.width <= 64:
        u = words[:, 0].astype(np.uint64)
        if p.words > 1:
            u |= words[:, 1].astype(np.uint64) << np.uint64(32)
        if p.width == 64:
            return u.view(np.int64) if p.signed else u     # unsigned 64-bit: np.uint64
        v = u.astype(np.int64)
        if p.signed:
            half = np.int64(1) << np.int64(p.width - 1)
            v = ((v + half) & ((half << np.int64(1)) - np.int64(1))) - half
        return v
    res = np.empty(words.shape[0], dtype=object)
    for c in range(words.shape[0]):
        v = int.from_bytes(words[c].astype("<u4").tobytes(), "little")
        if p.signed and v >> (p.width - 1):
            v -= 1 << p.width
        res[c] = v
    return res


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------
def run_verilator(dut, inputs, outputs, *, flush=0, reset_cycles=0, name=None, ports=None,
                  top="top", clock="sys_clk", reset="sys_rst", cache=None):
    """Run `dut` on Verilator for len(inputs[...]) + flush cycles; return {key: per-cycle values}.

    dut:      a Migen Module, or Verilog source text (then `ports` = {name: (width, signed)} for
              every key of inputs/outputs, and `top` the top module's name).
    inputs:   {key: array[cycles]}: the value of each input port in each cycle. Only the listed
              signals become ports (others keep their reset value); a Verilog source's unlisted
              inputs stay 0. The cache key includes the port list: use the same lists across the
              runs of one design to share one build.
    outputs:  keys of the ports to record every cycle.
    flush:    extra cycles appended with every input 0 (to drain a pipeline).
    reset_cycles: cycles with `reset` high before cycle 0 (not recorded). Migen registers start
              at their reset values anyway, so 0 is fine for Migen modules.
    name:     a readable prefix for the cache entry (default: the module's class name).
    clock/reset: port names; ignored when the design has no such input.
    """
    in_keys, out_keys = list(inputs), list(outputs)
    if isinstance(dut, str):
        if ports is None:
            raise ValueError("a Verilog source needs ports={name: (width, signed)}")
        verilog, data_files = dut, {}
        missing = [k for k in (*in_keys, *out_keys) if k not in ports]
        if missing:
            raise ValueError(f"ports has no width for {missing}")
        pmap = {k: _Port(k, k, *ports[k]) for k in (*in_keys, *out_keys)}
        name = name or top
    else:
        verilog, data_files, pmap = _from_migen(dut, in_keys, out_keys, top)
        name = name or type(dut).__name__
    if set(in_keys) & set(out_keys):
        raise ValueError(f"ports both input and output: {set(in_keys) & set(out_keys)}")
    ins, outs = [pmap[k] for k in in_keys], [pmap[k] for k in out_keys]

    lens = {len(v) for v in inputs.values()}
    if len(lens) > 1:
        raise ValueError(f"inputs have different lengths {sorted(lens)}")
    n_data = lens.pop() if lens else 0
    cycles = n_data + int(flush)

    clock = clock if clock and _has_input(verilog, clock) else None
    reset = reset if reset and _has_input(verilog, reset) else None
    tb = _testbench(ins, outs, clock, reset, "Vtop")
    model = build(verilog, data_files, tb, top=top, name=name, cache=cache)

    rec = np.zeros((cycles, sum(p.words for p in ins)), dtype=np.uint32)   # flush rows stay 0
    k = 0
    for p in ins:
        rec[:n_data, k:k + p.words] = _pack(p, inputs[p.key], n_data)
        k += p.words

    runs = model.parent / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=runs))
    try:
        fin, fout = work / "in.bin", work / "out.bin"
        rec.astype("<u4").tofile(fin)
        r = subprocess.run([str(model / "Vtb"), str(fin), str(fout), str(cycles),
                            str(int(reset_cycles))], cwd=model, capture_output=True, text=True)
        if r.returncode != 0:
            raise VerilatorError(f"simulation of {model.name} failed ({r.returncode}):\n"
                                 f"{(r.stdout + r.stderr)[-4000:]}")
        n_out = sum(p.words for p in outs)
        raw = np.fromfile(fout, dtype="<u4")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if raw.size != cycles * n_out:
        raise VerilatorError(f"simulation of {model.name}: {raw.size} output words, "
                             f"expected {cycles * n_out}")
    raw = raw.reshape(cycles, n_out)
    res, k = {}, 0
    for p in outs:
        res[p.key] = _unpack(p, raw[:, k:k + p.words])
        k += p.words
    return res
