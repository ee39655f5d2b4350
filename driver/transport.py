"""Transports: how the driver reaches the accelerator's registers and windows.

Every transport offers 32-bit word reads and writes at bus byte addresses (csr.csv addresses):
`read(addr, n) -> np.uint32[n]`, `write(addr, words)`, bursts of at most `max_burst` words.
A transport that can hand out pointers into mapped windows sets `regions` to a list of
(bus base, size, writable buffer); the C core then accesses them directly.

    uart://HOST:PORT       UARTBone over TCP (the simulated board's serial2tcp, or ser2net)
    uart:///dev/ttyUSB1    UARTBone over a serial port (pyserial), ?baud=115200
    litex://HOST:PORT      litex_server (LiteX's RemoteClient; Etherbone packets over TCP)
    uio:///dev/uio0        Linux UIO: maps the device's uio maps only
    mem://                 /dev/mem: maps only the accelerator's CSRs and windows (?offset=PHYS)
    pynq://                pynq.MMIO on the accelerator's CSRs and windows (?offset=, ?bitstream=;
                           ?bridge=HOST:PORT routes MMIO to a UART bridge through a pynq Device)
    host://                a register-level model of the board in this process (driver/fake.py)
"""
from __future__ import annotations

import csv
import json
import mmap
import os
import socket
from pathlib import Path

import numpy as np

from rnnaccel.soc import regmap


class DriverError(RuntimeError):
    """A device problem the user can act on: the message says what happened and what to do."""


class TransportError(DriverError):
    """The transport failed (connection, no answer, unmapped address)."""


# --------------------------------------------------------------------------------------------------
# csr.csv / csr.json
# --------------------------------------------------------------------------------------------------
class CsrMap:
    """Register and memory-region addresses from LiteX's csr.csv or csr.json."""

    def __init__(self, regs: dict, mems: dict, constants=None, source="?"):
        self.regs = regs        # name -> (addr, words)
        self.mems = mems        # name -> (base, size bytes)
        self.constants = constants or {}
        self.source = source

    @classmethod
    def load(cls, path) -> "CsrMap":
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise DriverError(f"cannot read the register map {path}: {e.strerror} (pass ?csr=PATH/csr.csv, "
                              f"the file LiteX wrote when the SoC was built)") from None
        return cls.parse(text, str(path), json_format=p.suffix == ".json")

    @classmethod
    def parse(cls, text, source="csr", json_format=None) -> "CsrMap":
        regs, mems, consts = {}, {}, {}
        if json_format or (json_format is None and text.lstrip().startswith("{")):
            d = json.loads(text)
            for n, r in d.get("csr_registers", {}).items():
                regs[n] = (int(r["addr"]), int(r["size"]))
            for n, m in d.get("memories", {}).items():
                mems[n] = (int(m["base"]), int(m["size"]))
            consts = d.get("constants", {})
        else:
            for row in csv.reader(line for line in text.splitlines() if line and not line.startswith("#")):
                if not row:
                    continue
                if row[0] == "csr_register":
                    regs[row[1]] = (int(row[2], 0), int(row[3], 0))
                elif row[0] == "memory_region":
                    mems[row[1]] = (int(row[2], 0), int(row[3], 0))
                elif row[0] == "constant":
                    consts[row[1]] = row[2]
        return cls(regs, mems, consts, source)

    def reg(self, name, required=True):
        full = f"{regmap.CSR_PREFIX}_{name}"
        if full not in self.regs:
            if required:
                raise DriverError(f"{self.source}: no register {full}: this register map does not describe an "
                                  f"rnnaccel SoC (or a different hardware version)")
            return None
        return self.regs[full]

    def window(self, name):
        full = f"{regmap.CSR_PREFIX}_{name}"
        if full not in self.mems:
            raise DriverError(f"{self.source}: no memory region {full}: this register map does not describe "
                              f"an rnnaccel SoC")
        return self.mems[full]

    def accel_ranges(self):
        """(base, size) byte ranges the driver touches: the accelerator's CSRs and its windows."""
        out = []
        for n, (a, w) in self.regs.items():
            if n.startswith(regmap.CSR_PREFIX + "_"):
                out.append((a, 4 * w))
        lo = min(a for a, _ in out)
        hi = max(a + s for a, s in out)
        ranges = [(lo, hi - lo)] + [self.window(w) for w, _ in regmap.WINDOWS]
        return ranges


def to_csv(regs: dict, mems: dict) -> str:
    """csr.csv text (LiteX format) for a register/memory map."""
    lines = ["#" * 80, "# rnnaccel register map", "#" * 80,
             "constant,config_csr_data_width,32,,", "constant,config_bus_address_width,32,,"]
    for n, (b, s) in mems.items():
        lines.append(f"memory_region,{n},0x{b:08x},{s},io")
    for n, (a, w) in regs.items():
        lines.append(f"csr_register,{n},0x{a:08x},{w},rw")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
class Transport:
    max_burst = 64
    regions = None        # [(base, size, buffer)] for direct access by the C core
    irq_fd = -1
    name = "?"

    def read(self, addr: int, n: int) -> np.ndarray:
        raise NotImplementedError

    def write(self, addr: int, words) -> None:
        raise NotImplementedError

    def close(self):
        pass


class UartBone(Transport):
    """LiteX UARTBone: write = 0x01, n, 32-bit big-endian word address, n big-endian words;
    read = 0x02, n, address -> n big-endian words. Over TCP or a serial port."""

    max_burst = 255

    def __init__(self, host=None, port=None, device=None, baud=115200, timeout=5.0, sync_bytes=1536):
        self.timeout = timeout
        self.sync_bytes = sync_bytes   # a read after this many written bytes keeps the bridge's input
        self._pending = 0              # buffer from overflowing (serial2tcp has a 2 KiB ring)
        if device:
            try:
                import serial
            except ImportError:
                raise DriverError("uart:// over a serial port needs pyserial (pip install pyserial)") from None
            self.ser = serial.Serial(device, baud, timeout=timeout)
            self.sock = None
            self.name = f"uart://{device}"
        else:
            try:
                self.sock = socket.create_connection((host, port), timeout=timeout)
            except OSError as e:
                raise TransportError(f"cannot connect to the UART bridge at {host}:{port}: {e}; is the board "
                                     f"(or the simulated board) running?") from None
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.ser = None
            self.name = f"uart://{host}:{port}"

    def _send(self, data: bytes):
        if self.sock:
            self.sock.sendall(data)
        else:
            self.ser.write(data)

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf)) if self.sock else self.ser.read(n - len(buf))
            except socket.timeout:
                chunk = b""
            if not chunk:
                raise TransportError(f"{self.name}: no answer from the UART bridge ({len(buf)} of {n} bytes "
                                     f"within {self.timeout} s)")
            buf += chunk
        return bytes(buf)

    def read(self, addr, n):
        out = np.empty(n, np.uint32)
        for i in range(0, n, 255):
            k = min(255, n - i)
            self._send(bytes([0x02, k]) + ((addr >> 2) + i).to_bytes(4, "big"))
            out[i:i + k] = np.frombuffer(self._recv(4 * k), ">u4")
        self._pending = 0
        return out

    def write(self, addr, words):
        w = np.asarray(words, dtype=np.uint32)
        for i in range(0, len(w), 255):
            k = min(255, len(w) - i)
            msg = bytes([0x01, k]) + ((addr >> 2) + i).to_bytes(4, "big") + w[i:i + k].astype(">u4").tobytes()
            if self._pending + len(msg) > self.sync_bytes:
                self.read(addr, 1)          # round trip: everything before has been consumed
            self._send(msg)
            self._pending += len(msg)

    def close(self):
        if self.sock:
            self.sock.close()
        if self.ser:
            self.ser.close()


class LitexServer(Transport):
    """litex_server through LiteX's RemoteClient (Etherbone records over TCP)."""

    max_burst = 255

    def __init__(self, host, port, csr_csv=None):
        try:
            from litex import RemoteClient
        except ImportError:
            raise DriverError("litex:// needs LiteX (pip install litex); uart:// talks to the bridge without it") from None
        self.c = RemoteClient(host=host, port=port, csr_csv=csr_csv)
        try:
            self.c.open()
        except OSError as e:
            raise TransportError(f"cannot connect to litex_server at {host}:{port}: {e}; start it with "
                                 f"`litex_server --uart --uart-port ... --bind-ip 127.0.0.1`") from None
        self.name = f"litex://{host}:{port}"

    def read(self, addr, n):
        return np.asarray(self.c.read(addr, n), dtype=np.uint32)

    def write(self, addr, words):
        self.c.write(addr, [int(v) for v in np.asarray(words, dtype=np.uint32)])

    def close(self):
        self.c.close()


class _Mapped(Transport):
    """Windows mapped into this process; the C core accesses them through pointers."""

    def __init__(self):
        self.regions, self._maps = [], []

    def _find(self, addr, n):
        for base, size, buf in self.regions:
            if base <= addr and addr + 4 * n <= base + size:
                return np.frombuffer(buf, np.uint32, count=size // 4)[(addr - base) // 4:(addr - base) // 4 + n]
        raise TransportError(f"{self.name}: address {addr:#x} (+{n} words) is outside the mapped windows")

    def read(self, addr, n):
        return self._find(addr, n).copy()

    def write(self, addr, words):
        self._find(addr, len(words))[:] = np.asarray(words, dtype=np.uint32)

    def close(self):
        self.regions = []
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass
        self._maps = []


class DevMem(_Mapped):
    """/dev/mem (or any file standing for physical memory): maps only the given byte ranges
    (the accelerator's CSRs and windows), `offset` added to every bus address."""

    def __init__(self, ranges, path="/dev/mem", offset=0):
        super().__init__()
        self.name = f"mem://{path}"
        page = mmap.PAGESIZE
        try:
            fd = os.open(path, os.O_RDWR | os.O_SYNC)
        except OSError as e:
            raise TransportError(f"cannot open {path}: {e.strerror} (needs root; prefer uio://)") from None
        try:
            for base, size in ranges:
                phys = base + offset
                start = phys - phys % page
                length = -(-(phys + size - start) // page) * page
                m = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=start)
                self._maps.append(m)
                view = memoryview(m)[phys - start:phys - start + size]
                self.regions.append((base, size, view))
        finally:
            os.close(fd)


class Uio(_Mapped):
    """Linux UIO device: every map of /sys/class/uio/uioN/maps (mmap offset k * page), the
    interrupt through the device file (the C core polls it)."""

    def __init__(self, dev="/dev/uio0", offset=0, needed=()):
        super().__init__()
        self.name = f"uio://{dev}"
        n = Path(dev).name
        maps = sorted(Path(f"/sys/class/uio/{n}/maps").glob("map*"))
        if not maps:
            raise TransportError(f"{dev}: no uio maps in /sys/class/uio/{n}/maps (is the uio driver bound?)")
        try:
            self.fd = os.open(dev, os.O_RDWR)
        except OSError as e:
            raise TransportError(f"cannot open {dev}: {e.strerror}") from None
        for k, m in enumerate(maps):
            addr = int((m / "addr").read_text(), 0)
            size = int((m / "size").read_text(), 0)
            mm = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                           offset=k * mmap.PAGESIZE)
            self._maps.append(mm)
            self.regions.append((addr - offset, size, memoryview(mm)))
        for base, size in needed:
            if not any(b <= base and base + size <= b + s for b, s, _ in self.regions):
                raise TransportError(f"{dev}: the uio maps do not cover {base + offset:#x}+{size:#x} (an "
                                     f"accelerator window); check the device tree node")
        self.irq_fd = self.fd

    def close(self):
        super().close()
        os.close(self.fd)


class Pynq(Transport):
    """pynq.MMIO on the accelerator's CSR range and windows. With a memory-mapped PYNQ device
    (the board) the C core writes through MMIO's arrays directly; with any other pynq Device
    (REGISTER_RW / REMOTE) every burst goes through MMIO.read/write."""

    max_burst = 64

    def __init__(self, ranges, offset=0, bitstream=None, device=None):
        try:
            import pynq
        except ImportError:
            raise DriverError("pynq:// needs PYNQ (run on the board's PYNQ Python, or pip install pynq)") from None
        self.name = "pynq://"
        if bitstream:
            hwh = Path(bitstream).with_suffix(".hwh")
            if hwh.exists():
                pynq.Overlay(str(bitstream), device=device)
            else:
                pynq.Bitstream(str(bitstream), device=device).download()
        self.mmios = []
        direct = []
        for base, size in ranges:
            m = pynq.MMIO(base + offset, size, device=device)
            self.mmios.append((base, size, m))
            arr = getattr(m, "array", None)
            if isinstance(arr, np.ndarray) and arr.size * arr.itemsize >= size and arr.flags.writeable:
                direct.append((base, size, arr))
        self.regions = direct if len(direct) == len(ranges) else None
        self.device = device

    def close(self):
        if self.device is not None and hasattr(self.device, "close"):
            self.device.close()

    def _find(self, addr, n):
        for base, size, m in self.mmios:
            if base <= addr and addr + 4 * n <= base + size:
                return m, addr - base
        raise TransportError(f"pynq: address {addr:#x} (+{n} words) is outside the accelerator's windows")

    def read(self, addr, n):
        m, off = self._find(addr, n)
        dev = m.device
        if dev.has_capability("REGISTER_RW"):      # one burst through the device
            return np.frombuffer(dev.read_registers(m.base_addr + off, 4 * n), "<u4").astype(np.uint32)
        return np.array([m.read(off + 4 * i) for i in range(n)], dtype=np.uint32)

    def write(self, addr, words):
        w = np.asarray(words, dtype=np.uint32)
        m, off = self._find(addr, len(w))
        m.write(off, w.astype("<u4").tobytes())
