"""A register-level model of the accelerator SoC: the `host://` transport.

It has the SoC's address space (its own csr.csv, LiteX format, built from soc/regmap.py) and
executes a run from what is in its memories: the program, parameter and weight words the driver
wrote, the vector pool, the base/size registers. Runs go through the host behaviour simulator
(host/simulator.py) and the cycle model (host/cycles.py), so it is bit-exact and cycle-exact by
construction and needs no hardware. Because it reads back its own memories, a word changed behind
the driver's back (`inject_weight_fault`) changes the result, as on hardware; `hang = True` makes
the next start never finish (timeout tests).
"""
from __future__ import annotations

import time

import numpy as np

from rnnaccel.host import cycles as cycle_model
from rnnaccel.host import image as image_format
from rnnaccel.host import isa
from rnnaccel.host.image import Image
from rnnaccel.host.simulator import SimError, Simulator
from rnnaccel.host.spec import WEIGHT_MODES
from rnnaccel.soc import regmap

from .transport import CsrMap, Transport, to_csv

DEFAULTS = dict(prog_words=2048, param_words=4096, wmem_bytes=128 * 1024, vmem_words=8192)
CSR_BASE = 0xF0000000
WINDOW_BASE = {"prog": 0x10000000, "param": 0x20000000, "wmem": 0x30000000, "vmem": 0x40000000}


def _pow2(x):
    return 1 << max(int(x) - 1, 1).bit_length()


class FakeBoard(Transport):
    max_burst = 256
    name = "host://"

    def __init__(self, n_lanes=32, modes=WEIGHT_MODES, run_delay=0.0, **mem):
        m = dict(DEFAULTS, **mem)
        self.n_lanes = n_lanes
        self.modes = tuple(modes)
        self.run_delay = run_delay
        self.hang = False
        self.prog = np.zeros(m["prog_words"], np.uint32)
        self.param = np.zeros(m["param_words"], np.uint32)
        self.wmem = np.zeros(m["wmem_bytes"], np.uint8)
        self.vmem = np.zeros(m["vmem_words"], np.int16)
        regs, a = {}, CSR_BASE + 0x800
        for name, bits, _, _ in regmap.CSRS:
            w = -(-bits // 32)
            regs[f"{regmap.CSR_PREFIX}_{name}"] = (a, w)
            a += 4 * w
        for n in ("ev_status", "ev_pending", "ev_enable"):
            regs[f"{regmap.CSR_PREFIX}_{n}"] = (a, 1)
            a += 4
        sizes = {"prog": 4 * len(self.prog), "param": 4 * len(self.param), "wmem": len(self.wmem),
                 "vmem": 4 * len(self.vmem)}
        mems = {f"{regmap.CSR_PREFIX}_{w}": (WINDOW_BASE[w], _pow2(sizes[w])) for w in WINDOW_BASE}
        self.csr = CsrMap(regs, mems, source="host://")
        self.csr_csv = to_csv(regs, mems)
        self._by_addr = {a: (n[len(regmap.CSR_PREFIX) + 1:], w) for n, (a, w) in regs.items()}
        self.reg = {name: 0 for name, *_ in regmap.CSRS}
        self.reg.update(id=regmap.ID_VALUE, version=(regmap.HW_VERSION << 16) | image_format.VERSION,
                        caps=regmap.pack(regmap.CAPS_FIELDS, n_lanes=n_lanes, modes=regmap.modes_mask(self.modes),
                                         n_spaces=len(regmap.SPACE_NAMES)),
                        prog_words=len(self.prog), param_words=len(self.param), wmem_bytes=len(self.wmem),
                        vmem_words=len(self.vmem), ev_status=0, ev_pending=0, ev_enable=0)
        self._gen = 0                 # bumped by every program/parameter/weight write
        self._cache = {}
        self._busy_until = None
        self.runs = 0

    # ---- bus ---------------------------------------------------------------------------------------
    def _window(self, addr):
        for w, base in WINDOW_BASE.items():
            size = self.csr.mems[f"{regmap.CSR_PREFIX}_{w}"][1]
            if base <= addr < base + size:
                return w, (addr - base) // 4
        return None, None

    def read(self, addr, n):
        self._tick()
        out = np.zeros(n, np.uint32)
        w, off = self._window(addr)
        if w == "vmem":
            out[:] = self.vmem[off:off + n].astype(np.int32).view(np.uint32)
            return out
        if w is not None:
            return out                # prog/param/wmem are write-only: reads return 0
        for i in range(n):
            a = addr + 4 * i
            base = max((b for b in self._by_addr if b <= a), default=None)
            if base is None:
                continue
            name, words = self._by_addr[base]
            k = (a - base) // 4
            if k >= words:
                continue
            v = self.reg.get(name, 0)
            out[i] = (v >> (32 * (words - 1 - k))) & 0xFFFFFFFF
        return out

    def write(self, addr, words):
        self._tick()
        words = np.asarray(words, dtype=np.uint32)
        n = len(words)
        w, off = self._window(addr)
        busy = self._busy_until is not None
        if w is not None:
            if busy:
                return                # the core owns its memories while busy
            if w == "vmem":
                self.vmem[off:off + n] = (words & 0xFFFF).astype(np.uint16).view(np.int16)
            elif w == "wmem":
                self.wmem[4 * off:4 * off + 4 * n] = np.frombuffer(words.astype("<u4").tobytes(), np.uint8)
                self._gen += 1
            else:
                getattr(self, w)[off:off + n] = words
                self._gen += 1
            return
        for i, v in enumerate(words):
            a = addr + 4 * i
            if a not in self._by_addr:
                continue
            name, _ = self._by_addr[a]
            if name == "ctrl":
                self._ctrl(int(v))
            elif name == "ev_pending":
                self.reg["ev_pending"] &= ~int(v)
            elif any(name == c[0] and c[2] == "rw" for c in regmap.CSRS) or name == "ev_enable":
                self.reg[name] = int(v)

    # ---- control -----------------------------------------------------------------------------------
    def _status(self, **f):
        self.reg["status"] = regmap.pack(regmap.STATUS_FIELDS, **f)

    def _ctrl(self, v):
        if regmap.field(v, regmap.CTRL_FIELDS, "soft_reset"):
            self._busy_until = None
            self._status(busy=0, done=0, parity=0)
            return
        if regmap.field(v, regmap.CTRL_FIELDS, "start") and self._busy_until is None:
            self.reg["ctrl"] = v
            self._status(busy=1)
            self._busy_until = float("inf") if self.hang else time.monotonic() + self.run_delay
            self._tick()

    def _tick(self):
        if self._busy_until is not None and time.monotonic() >= self._busy_until:
            self._busy_until = None
            self._execute(regmap.field(self.reg["ctrl"], regmap.CTRL_FIELDS, "parity_in"))

    def _image(self):
        r, N = self.reg, self.n_lanes
        key = (self._gen, r["prog_base"], r["prog_len"], r["param_base"], r["weight_base"], r["pp_dist"],
               r["base_const"], r["size_const"], self.vmem[r["base_const"]:r["base_const"] + r["size_const"]].tobytes())
        hit = self._cache.get(key)
        if hit:
            return hit
        pw = self.prog[r["prog_base"]:r["prog_base"] + isa.INSTR_WORDS * r["prog_len"]]
        if len(pw) < isa.INSTR_WORDS * r["prog_len"]:
            raise SimError(isa.ERR_NOHALT, len(pw) // isa.INSTR_WORDS, "program beyond the program memory")
        try:
            program = isa.decode_program(pw.astype("<u4").tobytes())
        except isa.DecodeError as e:
            raise SimError(e.code, e.pc, str(e)) from None
        img = Image(program=program, params=self.param[r["param_base"]:].astype("<u4").tobytes(),
                    weights=self.wmem[r["weight_base"] * N:].tobytes(),
                    consts=self.vmem[r["base_const"]:r["base_const"] + r["size_const"]].astype("<i2").tobytes(),
                    state_words=r["size_state"], scratch_words=r["size_scratch"], pp_dist=r["pp_dist"],
                    max_steps=0xFFFF, in_features=1, out_features=1)
        sim = Simulator(img, 1)
        self._cache = {key: (img, sim, {})}
        return self._cache[key]

    def _execute(self, parity):
        r = self.reg
        steps = r["steps"]
        self.runs += 1
        try:
            img, sim, cyc = self._image()
            sim.mem = {}
            for s, name in enumerate(regmap.SPACE_NAMES):
                b, n = r[f"base_{name}"], r[f"size_{name}"]
                if b + n > len(self.vmem):
                    raise SimError(isa.ERR_ADDR, 0, f"{name} space beyond the vector pool")
                sim.mem[s] = self.vmem[b:b + n].astype(np.int64)[None].copy()
            sim.parity = parity
            sim.execute(steps)
            for s in (isa.SPACE_OUT, isa.SPACE_STATE, isa.SPACE_SCRATCH, isa.SPACE_IN):
                b = r[f"base_{regmap.SPACE_NAMES[s]}"]
                self.vmem[b:b + sim.mem[s].shape[1]] = sim.mem[s][0].astype(np.int16)
            if steps not in cyc:
                cyc[steps] = cycle_model.run_cycles(img, steps, self.n_lanes)
            c = cyc[steps]
            r.update(cycles=c.cycles, mac_ops=c.lane_ops, stalls=0)
            self._status(busy=0, done=1, parity=sim.parity)
        except SimError as e:
            r.update(cycles=0, mac_ops=0)
            self._status(busy=0, done=1, error=e.code, error_pc=max(e.pc, 0))
        r["ev_pending"] |= 1

    # ---- fault injection -----------------------------------------------------------------------------
    def inject_weight_fault(self, byte_index, mask=0x01):
        """Flip bits of one weight byte (as a write behind the driver's back would)."""
        self.wmem[byte_index] ^= mask
        self._gen += 1


def serve_uartbone(board, host="127.0.0.1", port=0):
    """Serve `board` (any transport) over TCP with the LiteX UARTBone protocol, as the simulated
    board's bridge does; returns (server thread, port). One client at a time; stops with
    `thread.stop()`. Lets the uart:// and pynq:// paths run without Verilator."""
    import socket
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(4)
    srv.settimeout(0.2)
    stop = threading.Event()

    def recv(c, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = c.recv(n - len(buf))
            except socket.timeout:
                if stop.is_set():
                    return None
                continue
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def client(c):
        c.settimeout(0.2)
        with c:
            while not stop.is_set():
                h = recv(c, 6)
                if h is None:
                    return
                cmd, n, addr = h[0], h[1], int.from_bytes(h[2:6], "big") * 4
                if cmd == 0x01:
                    data = recv(c, 4 * n)
                    if data is None:
                        return
                    board.write(addr, np.frombuffer(data, ">u4").astype(np.uint32))
                elif cmd == 0x02:
                    c.sendall(np.asarray(board.read(addr, n), np.uint32).astype(">u4").tobytes())
                else:
                    return

    def loop():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            client(c)
        srv.close()

    th = threading.Thread(target=loop, daemon=True)
    th.stop = stop.set
    th.start()
    return th, srv.getsockname()[1]
