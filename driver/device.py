"""The driver: open a device, load model images, run inferences, cross-check them.

    from rnnaccel.driver import open_device
    with open_device("uart://127.0.0.1:4321?csr=build/sim/csr.csv") as dev:
        kws = dev.load("gru_s.rnna")              # image file, bytes or rnnaccel.host.image.Image
        logits = kws.run(mfcc)                    # float [T, F] -> float [12], checked bit-exact
        for y in kws.stream(frames):              # one step per frame, state kept on the device
            ...
        print(kws.last.cycles, kws.last.predicted_cycles)

The per-word work (sections to windows, frames to vector words, start, polling with a timeout,
results and counters) is done by the C core (driver/core.c) over the transport's bus.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnaccel.host import cycles as cycle_model
from rnnaccel.host import image as image_format
from rnnaccel.host import isa
from rnnaccel.host.image import Image
from rnnaccel.host.simulator import Simulator
from rnnaccel.host.spec import dequantize, quantize
from rnnaccel.soc import regmap

from .transport import CsrMap, DriverError, TransportError

try:
    from ._core import ffi, lib
except ImportError as _e:       # pragma: no cover - depends on the installation
    ffi = lib = None
    _CORE_ERROR = _e
else:
    _CORE_ERROR = None


class DeviceTimeout(DriverError):
    """The device did not finish; it has been soft-reset."""


class DeviceFault(DriverError):
    """The device stopped with an error code."""


class ImageDoesNotFit(DriverError):
    """The device lacks the memory or features an image needs."""


class MismatchError(DriverError):
    """The device's output differs from the host behaviour simulator's."""

    def __init__(self, mismatch):
        super().__init__(str(mismatch))
        self.mismatch = mismatch


def _require_core():
    if lib is None:
        raise DriverError(f"the driver's C core (rnnaccel.driver._core) is not built: {_CORE_ERROR}. Reinstall "
                          f"with a C compiler and cffi present: pip install -e '.[driver]' (needs gcc)")


# --------------------------------------------------------------------------------------------------
# the Python side of the C core's burst callbacks
# --------------------------------------------------------------------------------------------------
if lib is not None:
    @ffi.def_extern()
    def rna_py_read(ctx, addr, buf, n):
        t = ffi.from_handle(ctx)
        try:
            data = np.ascontiguousarray(t.read(int(addr), int(n)), dtype=np.uint32)
            if data.size != n:
                raise TransportError(f"{t.name}: read of {n} words returned {data.size}")
            ffi.memmove(buf, data, 4 * n)
            return 0
        except BaseException as e:  # noqa: BLE001 - re-raised on the Python side
            t._exc = e
            return 1

    @ffi.def_extern()
    def rna_py_write(ctx, addr, buf, n):
        t = ffi.from_handle(ctx)
        try:
            t.write(int(addr), np.frombuffer(ffi.buffer(buf, 4 * n), np.uint32).copy())
            return 0
        except BaseException as e:  # noqa: BLE001
            t._exc = e
            return 1


class Bus:
    """The C core's view of a transport (rna_bus): pointers when the transport maps its windows,
    burst callbacks otherwise."""

    def __init__(self, transport):
        _require_core()
        self.t = transport
        self.b = ffi.new("rna_bus *")
        self._keep = []
        if transport.regions:
            lib.rna_bus_init(self.b, 1, ffi.NULL, 0)
            for base, size, buf in transport.regions:
                p = ffi.from_buffer(buf, require_writable=True)
                self._keep.append(p)
                self.check(lib.rna_bus_map(self.b, base, size, p))
        else:
            self._handle = ffi.new_handle(transport)
            lib.rna_bus_init(self.b, 0, self._handle, transport.max_burst)
        self.direct = bool(transport.regions)

    def check(self, rc, what="bus access"):
        if rc == lib.RNA_OK:
            return
        exc = getattr(self.t, "_exc", None)
        if exc is not None:
            self.t._exc = None
            if isinstance(exc, DriverError):
                raise exc
            raise TransportError(f"{self.t.name}: {what} failed: {exc}") from exc
        msg = ffi.string(self.b.err).decode()
        if rc == lib.RNA_ETIMEOUT:
            raise DeviceTimeout(msg)
        raise TransportError(f"{self.t.name}: {what}: {msg}")

    def read(self, addr, n):
        buf = np.empty(n, np.uint32)
        self.check(lib.rna_read(self.b, addr, ffi.from_buffer("uint32_t[]", buf), n))
        return buf

    def write(self, addr, words):
        w = np.ascontiguousarray(words, dtype=np.uint32)
        self.check(lib.rna_write(self.b, addr, ffi.from_buffer("uint32_t[]", w), len(w)))

    def reg(self, addr, nwords=1):
        v = ffi.new("uint64_t *")
        self.check(lib.rna_read_reg(self.b, addr, nwords, v))
        return int(v[0])

    def write_bytes(self, addr, data: bytes, pad_to=4):
        self.check(lib.rna_write_bytes(self.b, addr, data, len(data), pad_to), "image load")

    def fill(self, addr, value, n):
        self.check(lib.rna_fill(self.b, addr, value, n))

    def write_i16(self, addr, x):
        x = np.ascontiguousarray(x, dtype=np.int16)
        self.check(lib.rna_write_i16(self.b, addr, ffi.from_buffer("int16_t[]", x), x.size))

    def read_i16(self, addr, n):
        out = np.empty(n, np.int16)
        self.check(lib.rna_read_i16(self.b, addr, ffi.from_buffer("int16_t[]", out), n))
        return out

    @property
    def stats(self):
        return {"words_read": int(self.b.words_read), "words_written": int(self.b.words_written),
                "transactions": int(self.b.transactions)}


# --------------------------------------------------------------------------------------------------
class _Allocator:
    """First-fit allocation of [0, size) in units (program words, weight words, vector words)."""

    def __init__(self, size):
        self.size = size
        self.used = []          # (start, length)

    def free_total(self):
        return self.size - sum(n for _, n in self.used)

    def alloc(self, n):
        a = 0
        for s, k in sorted(self.used):
            if s - a >= n:
                break
            a = max(a, s + k)
        if a + n > self.size:
            return None
        self.used.append((a, n))
        return a

    def release(self, start):
        self.used = [(s, k) for s, k in self.used if s != start]


@dataclass
class RunInfo:
    """What one inference cost on the device."""
    steps: int
    cycles: int
    predicted_cycles: int
    mac_ops: int
    stalls: int
    seconds: float
    polls: int
    parity: int


@dataclass
class Mismatch:
    """A device output that differs from the host simulator's."""
    model: str
    inference: int
    input: np.ndarray            # int16 frames [T, F]
    device: np.ndarray           # int16 output words
    expected: np.ndarray
    word: int                    # first differing word (flat index into the output)

    def __str__(self):
        d, e = self.device.reshape(-1), self.expected.reshape(-1)
        np_opts = dict(max_line_width=200, threshold=40, edgeitems=8)
        return (f"model {self.model!r}, inference {self.inference}: output word {self.word} is {int(d[self.word])} "
                f"on the device but {int(e[self.word])} in the host simulator "
                f"({int(np.sum(d != e))} of {d.size} words differ)\n"
                f"  input  {self.input.shape[0]} frames x {self.input.shape[1]} features (int16), first frame "
                f"{np.array2string(self.input[0], **np_opts)}\n"
                f"  device {np.array2string(d, **np_opts)}\n"
                f"  host   {np.array2string(e, **np_opts)}")


# --------------------------------------------------------------------------------------------------
class Device:
    """An opened accelerator. Use `open_device(uri)`."""

    def __init__(self, transport, csr: CsrMap, timeout=2.0, check="raise", irq=False, owns=()):
        _require_core()
        self.transport, self.csr = transport, csr
        self.timeout = float(timeout)
        self.check = check
        self._owns = list(owns)       # objects closed with the device (e.g. a simulated board)
        self.bus = Bus(transport)
        self.models = []
        self.current = None           # the model whose configuration registers are loaded
        self.addr = {name: csr.reg(name)[0] for name, *_ in regmap.CSRS}
        self.words = {name: csr.reg(name)[1] for name, *_ in regmap.CSRS}
        ev = csr.reg("ev_pending", required=False)
        self.windows = {w: csr.window(w) for w, _ in regmap.WINDOWS}
        ident = self.bus.reg(self.addr["id"])
        if ident != regmap.ID_VALUE:
            raise DriverError(f"{transport.name}: register rnnaccel_id reads {ident:#010x}, expected "
                              f"{regmap.ID_VALUE:#010x} ('RNNA'): wrong device, wrong csr.csv or the bitstream "
                              f"is not loaded")
        self.caps = self._read_caps()
        r = self.regs = ffi.new("rna_regs *")
        r.ctrl, r.steps, r.status = self.addr["ctrl"], self.addr["steps"], self.addr["status"]
        r.cycles, r.mac_ops, r.stalls = self.addr["cycles"], self.addr["mac_ops"], self.addr["stalls"]
        r.ev_pending = ev[0] if ev else 0
        r.vmem = self.windows["vmem"][0]
        sf, cf = regmap.STATUS_FIELDS, regmap.CTRL_FIELDS
        r.busy_mask = 1 << sf["busy"][0]
        r.done_mask = 1 << sf["done"][0]
        r.error_shift, r.error_mask = sf["error"][0], (1 << sf["error"][1]) - 1
        r.parity_shift = sf["parity"][0]
        r.start, r.soft_reset = 1 << cf["start"][0], 1 << cf["soft_reset"][0]
        r.parity_in_shift = cf["parity_in"][0]
        self.irq_fd = transport.irq_fd if irq else -1
        self.alloc = {"prog": _Allocator(self.caps["prog_words"]), "param": _Allocator(self.caps["param_words"]),
                      "wmem": _Allocator(self.caps["wmem_bytes"] // self.caps["n_lanes"]),
                      "vmem": _Allocator(self.caps["vmem_words"])}
        st = self.status()
        if st["busy"]:
            self.soft_reset()

    # ---- registers -------------------------------------------------------------------------------
    def read_reg(self, name):
        return self.bus.reg(self.addr[name], self.words[name])

    def write_reg(self, name, value):
        self.bus.write(self.addr[name], [value])

    def status(self):
        v = self.read_reg("status")
        return {k: regmap.field(v, regmap.STATUS_FIELDS, k) for k in regmap.STATUS_FIELDS}

    def soft_reset(self):
        lib.rna_soft_reset(self.bus.b, self.regs)
        self.current = None

    def _read_caps(self):
        caps = self.read_reg("caps")
        version = self.read_reg("version")
        c = {"n_lanes": regmap.field(caps, regmap.CAPS_FIELDS, "n_lanes"),
             "modes": regmap.modes_from_mask(regmap.field(caps, regmap.CAPS_FIELDS, "modes")),
             "n_spaces": regmap.field(caps, regmap.CAPS_FIELDS, "n_spaces"),
             "hw_version": regmap.field(version, regmap.VERSION_FIELDS, "hw"),
             "image_version": regmap.field(version, regmap.VERSION_FIELDS, "image")}
        for n in ("prog_words", "param_words", "wmem_bytes", "vmem_words"):
            c[n] = self.read_reg(n)
        if c["hw_version"] != regmap.HW_VERSION:
            raise DriverError(f"{self.transport.name}: hardware version {c['hw_version']}, this driver speaks "
                              f"version {regmap.HW_VERSION}: update the driver or the bitstream")
        if not c["n_lanes"] or c["n_lanes"] & (c["n_lanes"] - 1):
            raise DriverError(f"{self.transport.name}: caps.n_lanes = {c['n_lanes']} is not a power of two")
        return c

    # ---- models ----------------------------------------------------------------------------------
    def load(self, image, name=None, check=None) -> "Model":
        """Load an image (path, bytes or Image) next to the ones already resident."""
        if isinstance(image, (str, Path)):
            name = name or Path(image).stem
            image = Image.load(image)
        elif isinstance(image, (bytes, bytearray)):
            image = Image.from_bytes(bytes(image))
        name = name or image.meta.get("name") or f"model{len(self.models)}"
        return Model(self, image, name, self.check if check is None else check)

    def unload(self, model):
        for kind, start in model._allocs.items():
            self.alloc[kind].release(start)
        self.models.remove(model)
        if self.current is model:
            self.current = None

    def close(self):
        for m in list(self.models):
            self.unload(m)
        self.transport.close()
        for o in self._owns:
            o.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        c = self.caps
        return (f"<rnnaccel Device {self.transport.name}: N={c['n_lanes']} modes={c['modes']} "
                f"prog {c['prog_words']} words, param {c['param_words']} words, wmem {c['wmem_bytes']} B, "
                f"vmem {c['vmem_words']} words; {len(self.models)} model(s)>")


class Model:
    """An image resident on a device, with its own state context (state words and parity)."""

    def __init__(self, dev: Device, img: Image, name: str, check):
        self.dev, self.image, self.name, self.check = dev, img, name, check
        self.n_lanes = dev.caps["n_lanes"]
        self._fits(img)
        self.out_words = img.max_steps * img.out_step_stride if img.seq_output else img.out_features
        self.sizes = [img.max_steps * img.in_features, max(self.out_words, 1), img.state_words,
                      img.scratch_words, img.const_words]
        N = self.n_lanes
        prog = isa.encode_program(img.program)
        need = {"prog": len(prog) // 4, "param": -(-len(img.params) // 4),
                "wmem": -(-len(img.weights) // N), "vmem": sum(max(s, 1) for s in self.sizes)}
        self._allocs = {}
        for kind, n in need.items():
            a = dev.alloc[kind].alloc(max(n, 1))
            if a is None:
                for k2, s in self._allocs.items():
                    dev.alloc[k2].release(s)
                unit = {"prog": "program words", "param": "parameter words", "wmem": "weight words of "
                        f"{N} bytes", "vmem": "vector words"}[kind]
                raise ImageDoesNotFit(
                    f"image {name!r} needs {n:,} {unit}; the device has {dev.alloc[kind].size:,} and "
                    f"{dev.alloc[kind].free_total():,} are free with {len(dev.models)} image(s) resident "
                    f"({', '.join(m.name for m in dev.models) or 'none'}): unload one, or compile a smaller "
                    f"model or weight mode (--bits)")
            self._allocs[kind] = a
        self.prog_base, self.param_base = self._allocs["prog"], self._allocs["param"]
        self.weight_base, v = self._allocs["wmem"], self._allocs["vmem"]
        self.base = []
        for s in self.sizes:
            self.base.append(v)
            v += max(s, 1)
        b = dev.bus
        W = dev.windows
        try:
            b.write_bytes(W["prog"][0] + 4 * self.prog_base, prog)
            b.write_bytes(W["param"][0] + 4 * self.param_base, img.params)
            b.write_bytes(W["wmem"][0] + N * self.weight_base, img.weights, pad_to=N)
            b.fill(W["vmem"][0] + 4 * self.base[0], 0, need["vmem"])
            b.write_i16(W["vmem"][0] + 4 * self.base[isa.SPACE_CONST], np.frombuffer(img.consts, "<i2"))
        except BaseException:
            for kind, start in self._allocs.items():
                dev.alloc[kind].release(start)
            raise
        a = dev.addr
        cfg = [("prog_len", len(img.program)), ("prog_base", self.prog_base), ("weight_base", self.weight_base),
               ("param_base", self.param_base), ("pp_dist", img.pp_dist)]
        cfg += [(f"base_{s}", self.base[k]) for k, s in enumerate(regmap.SPACE_NAMES)]
        cfg += [(f"size_{s}", self.sizes[k]) for k, s in enumerate(regmap.SPACE_NAMES)]
        cfg.sort(key=lambda kv: a[kv[0]])
        self._cfg = [(a[k], int(v)) for k, v in cfg]
        self.parity = 0
        self._clear = True            # the state context is zeroed at the first run
        self.shadow = Simulator(img, 1)
        self._pred = {}
        self.inferences = 0
        self.mismatches = []
        self.cycle_mismatches = []
        self.last = None
        self.history = []             # RunInfo of recent runs (bounded)
        dev.models.append(self)

    def _fits(self, img):
        c = self.dev.caps
        if c["image_version"] != image_format.VERSION:
            raise ImageDoesNotFit(f"the device runs image format version {c['image_version']}, image "
                                  f"{self.name!r} is version {image_format.VERSION}")
        bits = [b for b in (16, 8, 6, 4, 2) if img.weight_modes >> b & 1]
        missing = [b for b in bits if b not in c["modes"]]
        if missing:
            raise ImageDoesNotFit(f"image {self.name!r} uses {missing[0]}-bit weights; this device supports "
                                  f"{', '.join(map(str, c['modes']))}-bit: recompile with --bits "
                                  f"{max(c['modes'])} (or another supported mode)")
        if c["n_spaces"] < len(regmap.SPACE_NAMES):
            raise ImageDoesNotFit(f"the device has {c['n_spaces']} vector spaces, images need "
                                  f"{len(regmap.SPACE_NAMES)}")

    # ---- inference -------------------------------------------------------------------------------
    def _frames(self, x_q):
        img = self.image
        x = np.asarray(x_q)
        if x.ndim == 1 and img.in_features and x.size == img.in_features:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != img.in_features:
            raise ValueError(f"model {self.name!r}: input shape {x.shape}, expected [T, {img.in_features}] "
                             f"(T time steps of {img.in_features} features)")
        if not 1 <= x.shape[0] <= img.max_steps:
            raise ValueError(f"model {self.name!r}: {x.shape[0]} steps, the image accepts 1..{img.max_steps} per "
                             f"run (compile with --steps for more)")
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"model {self.name!r}: run_q takes int16 frames (use run() for float features)")
        if x.size and (x.min() < -32768 or x.max() > 32767):
            raise ValueError(f"model {self.name!r}: frame values outside int16")
        return np.ascontiguousarray(x, dtype=np.int16)

    def predicted_cycles(self, steps):
        if steps not in self._pred:
            self._pred[steps] = cycle_model.run_cycles(self.image, steps, self.n_lanes).cycles
        return self._pred[steps]

    def run_q(self, x_q, reset=None):
        """int16 frames [T, F] -> int16 output ([out_features], or [T, out_features] for images with
        an output per step). reset: zero the state first (default: True unless the image is
        streamable, whose state carries over from the previous run)."""
        img, dev = self.image, self.dev
        x = self._frames(x_q)
        T = x.shape[0]
        if reset is None:
            reset = not img.streamable
        clear = bool(reset or self._clear)
        parity = 0 if clear else self.parity
        n_out = T * img.out_step_stride if img.seq_output else img.out_features
        out = np.empty(max(n_out, 1), np.int16)
        a = ffi.new("rna_run_args *")
        xb = ffi.from_buffer("int16_t[]", x)
        ob = ffi.from_buffer("int16_t[]", out)
        a.x, a.n_x, a.in_addr = xb, x.size, self.base[isa.SPACE_IN]
        a.clear_state, a.state_addr, a.state_words = int(clear), self.base[isa.SPACE_STATE], self.sizes[isa.SPACE_STATE]
        if dev.current is not self:
            a.n_cfg = len(self._cfg)
            for k, (ad, v) in enumerate(self._cfg):
                a.cfg_addr[k], a.cfg_val[k] = ad, v
        a.steps, a.parity, a.timeout_s, a.irq_fd = T, parity, dev.timeout, dev.irq_fd
        a.out, a.n_out, a.out_addr = ob, n_out, self.base[isa.SPACE_OUT]
        a.state = ffi.NULL
        res = ffi.new("rna_run_result *")
        rc = lib.rna_run(dev.bus.b, dev.regs, a, res)
        if rc == lib.RNA_ETIMEOUT:
            self._recover()
            raise DeviceTimeout(
                f"{dev.transport.name}: model {self.name!r} did not finish a {T}-step run within {dev.timeout} s "
                f"(status {res.status:#010x}); the device was soft-reset and this model's state cleared. "
                f"Check the clock and the bitstream, or raise the timeout (open_device(..., timeout=S))")
        if rc == lib.RNA_EDEVICE:
            self._recover()
            st = regmap.field(res.status, regmap.STATUS_FIELDS, "error_pc")
            raise DeviceFault(f"{dev.transport.name}: model {self.name!r} stopped with error {res.error} "
                              f"({isa.ERRORS.get(res.error, '?')}) at instruction {st}; the device was "
                              f"soft-reset and this model's state cleared. Is the image intact (reload it)?")
        try:
            dev.bus.check(rc, "run")
        except DriverError:
            self._recover(reset_device=False)
            raise
        dev.current = self
        self._clear = False
        self.parity = int(res.parity)
        y = self._shape(out[:n_out].copy(), T)
        info = RunInfo(steps=T, cycles=int(res.cycles), predicted_cycles=self.predicted_cycles(T),
                       mac_ops=int(res.mac_ops), stalls=int(res.stalls), seconds=float(res.seconds),
                       polls=int(res.polls), parity=self.parity)
        self.last = info
        self.history.append(info)
        del self.history[:-1000]
        idx = self.inferences
        self.inferences += 1
        if info.cycles != info.predicted_cycles:
            self.cycle_mismatches.append((idx, info.cycles, info.predicted_cycles))
        if self.check:
            exp = self.shadow.run_q(x, reset=clear)
            if not np.array_equal(exp, y):
                word = int(np.flatnonzero(exp.reshape(-1) != y.reshape(-1))[0])
                mm = Mismatch(self.name, idx, x.copy(), y.copy(), exp.copy(), word)
                self.mismatches.append(mm)
                self.shadow.mem[isa.SPACE_STATE][0] = self.read_state()   # follow the device from here
                self.shadow.parity = self.parity
                if self.check == "raise" or self.check is True:
                    raise MismatchError(mm)
        return y

    def _shape(self, out, T):
        img = self.image
        if img.seq_output:
            return out.reshape(T, img.out_step_stride)[:, :img.out_features]
        return out[:img.out_features]

    def _recover(self, reset_device=True):
        if reset_device:
            self.dev.soft_reset()
        self._clear = True
        self.parity = 0
        self.shadow.reset()
        self.dev.current = None

    def run(self, x, reset=None):
        """Float features [T, F] (or a batch [B, T, F], run one sequence after the other) -> float
        outputs, quantised and dequantised with the image's formats."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
            raise ValueError(f"model {self.name!r}: input features contain NaN/Inf (first at index {bad})")
        if x.ndim == 3:
            return np.stack([self.run(s, reset) for s in x])
        y = self.run_q(quantize(x, self.image.in_frac), reset)
        return dequantize(y, self.image.out_frac)

    def step(self, frame_q):
        """One time step of a streamable image (state kept on the device): int16 frame [F] -> output."""
        if not self.image.streamable:
            raise DriverError(f"model {self.name!r} is not streamable (its program runs whole sequences): use "
                              f"run() on windows, or stream(), which slides a window")
        y = self.run_q(np.asarray(frame_q).reshape(1, -1), reset=False)
        return y[0] if self.image.seq_output else y

    def stream(self, frames, hop=1, quantized=False):
        """Yield one output per input frame (every `hop` frames for images that are not streamable,
        which are run on a sliding window of max_steps frames once it is full)."""
        img = self.image
        win = []
        for k, f in enumerate(frames):
            fq = np.asarray(f) if quantized else quantize(np.asarray(f, np.float64), img.in_frac)
            if img.streamable:
                y = self.step(fq)
            else:
                win.append(fq)
                del win[:-img.max_steps]
                if len(win) < img.max_steps or k % hop:
                    continue
                y = self.run_q(np.stack(win), reset=True)
                if img.seq_output:
                    y = y[-1]
            yield y if quantized else dequantize(y, img.out_frac)

    def reset(self):
        """Zero this model's state context on the device (and in the cross-check)."""
        self.dev.bus.fill(self.dev.windows["vmem"][0] + 4 * self.base[isa.SPACE_STATE], 0,
                          self.sizes[isa.SPACE_STATE])
        self.parity = 0
        self._clear = False
        self.shadow.reset()

    def read_state(self):
        """The state words of this context as they are on the device."""
        return self.dev.bus.read_i16(self.dev.windows["vmem"][0] + 4 * self.base[isa.SPACE_STATE],
                                     self.sizes[isa.SPACE_STATE]).astype(np.int64)

    def summary(self):
        return {"model": self.name, "inferences": self.inferences, "mismatches": len(self.mismatches),
                "cycle_mismatches": len(self.cycle_mismatches)}

    def __repr__(self):
        return (f"<rnnaccel Model {self.name!r} on {self.dev.transport.name}: prog@{self.prog_base} "
                f"param@{self.param_base} weights@{self.weight_base} vmem@{self.base[0]}>")
