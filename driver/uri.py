"""Device URIs -> transports.

    host://[?lanes=32&vmem_words=8192...]      register-level model of the board (no hardware)
    sim://[?lanes=32&bus=wishbone]             start the simulated SoC (Verilator) and use its UART bridge
    uart://HOST:PORT?csr=PATH                  UARTBone over TCP
    uart:///dev/ttyUSB1?csr=PATH&baud=115200   UARTBone over a serial port
    litex://HOST:PORT?csr=PATH                 litex_server (RemoteClient)
    uio:///dev/uio0?csr=PATH[&offset=0x..]     Linux UIO (interrupt-driven wait with ?irq=1)
    mem://[/dev/mem]?csr=PATH[&offset=0x..]    /dev/mem, only the accelerator's CSRs and windows mapped
    pynq://?csr=PATH[&offset=0x40000000][&bitstream=soc.bit]   PYNQ MMIO (loads the bitstream first)
    pynq://?csr=PATH&bridge=HOST:PORT          PYNQ MMIO through a pynq Device on a UART bridge

Common options: timeout=SECONDS (default 2; sim:// 30), check=raise|record|off (cross-check with the host
simulator, default raise). `offset` is added to csr.csv addresses to get physical addresses.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .transport import CsrMap, DevMem, DriverError, LitexServer, Pynq, Uio, UartBone

SCHEMES = ("host", "sim", "uart", "litex", "uio", "mem", "pynq")
SIM_TIMEOUT = 30.0               # default run timeout of sim:// (seconds)


def _int(v):
    return int(v, 0)


def _parse(uri):
    u = urlsplit(uri if "://" in uri else uri + "://")
    if u.scheme not in SCHEMES:
        raise DriverError(f"device URI {uri!r}: unknown scheme {u.scheme!r} (use one of "
                          f"{', '.join(s + '://' for s in SCHEMES)}; docs/driver.md)")
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    return u, q


def _csr(q, uri, near=None):
    path = q.get("csr")
    if path is None and near:
        for cand in (Path(near).with_name("csr.csv"), Path(near).with_suffix(".csv")):
            if cand.exists():
                path = cand
                break
    if path is None:
        raise DriverError(f"{uri}: give the SoC's register map: ?csr=PATH/csr.csv (written by LiteX when the SoC "
                          f"was built)")
    return CsrMap.load(path)


def open_transport(uri):
    """(transport, CsrMap, objects to close with it) for a device URI."""
    u, q = _parse(uri)
    s = u.scheme
    if s == "host":
        from .fake import FakeBoard
        kw = {k: _int(v) for k, v in q.items() if k in ("lanes", "prog_words", "param_words", "wmem_bytes", "vmem_words")}
        if "lanes" in kw:
            kw["n_lanes"] = kw.pop("lanes")
        if "modes" in q:
            kw["modes"] = tuple(int(m) for m in q["modes"].split(","))
        b = FakeBoard(**kw)
        return b, b.csr, []
    if s == "sim":
        try:
            from rnnaccel.soc.simboard import SimBoard
        except ImportError as e:
            raise DriverError(f"sim:// needs the simulated SoC (rnnaccel.soc.simboard, LiteX and Verilator): {e}") from None
        kw = {}
        if "lanes" in q:
            kw["n_lanes"] = _int(q["lanes"])
        if "bus" in q:
            kw["bus"] = q["bus"]
        board = SimBoard(**kw)
        board.__enter__()
        try:
            t = UartBone(board.host, board.port)
            return t, CsrMap.load(board.csr_csv), [_Closer(board)]
        except Exception:
            board.__exit__(None, None, None)
            raise
    if s == "uart":
        csr = _csr(q, uri)
        if u.hostname and u.port:
            return UartBone(u.hostname, u.port, timeout=float(q.get("io_timeout", 5))), csr, []
        dev = u.path or q.get("port")
        if not dev:
            raise DriverError(f"{uri}: give HOST:PORT (uart://127.0.0.1:1234) or a serial port (uart:///dev/ttyUSB1)")
        return UartBone(device=dev, baud=_int(q.get("baud", "115200"))), csr, []
    if s == "litex":
        csr = _csr(q, uri)
        return LitexServer(u.hostname or "127.0.0.1", u.port or 1234, q.get("csr")), csr, []
    offset = _int(q.get("offset", "0"))
    bit = q.get("bitstream")
    csr = _csr(q, uri, near=bit)
    ranges = csr.accel_ranges()
    if s == "mem":
        return DevMem(ranges, path=u.path or "/dev/mem", offset=offset), csr, []
    if s == "uio":
        return Uio(u.path or "/dev/uio0", offset=offset, needed=ranges), csr, []
    if s == "pynq":
        device = None
        if "bridge" in q:               # a pynq Device routing MMIO to a UART bridge (simulated board)
            from .pynqdev import BridgeDevice
            h, _, p = q["bridge"].rpartition(":")
            device = BridgeDevice(h or "127.0.0.1", int(p))
        return Pynq(ranges, offset=offset, bitstream=bit, device=device), csr, []
    raise AssertionError(s)


class _Closer:
    def __init__(self, board):
        self.board = board

    def close(self):
        self.board.__exit__(None, None, None)


def open_device(uri="host://", timeout=None, check=None, irq=None, transport=None, csr=None):
    """Open the accelerator behind `uri` (or an explicit transport + CsrMap) and return a Device."""
    from .device import Device
    owns = []
    q = {}
    if transport is None:
        _, q = _parse(uri)
        transport, csr, owns = open_transport(uri)
    elif csr is None:
        raise DriverError("open_device(transport=...) needs csr= (a CsrMap)")
    if timeout is None:
        # a simulated board runs ~1e5 times slower than hardware, on a machine that may be busy
        default = SIM_TIMEOUT if uri.startswith("sim:") else 2.0
        timeout = float(q.get("timeout", default))
    if check is None:
        check = q.get("check", "raise")
    if check in ("off", "0", "false", "none", False, None):
        check = False
    if check not in (False, True, "raise", "record"):
        raise DriverError(f"check={check!r}: use raise, record or off")
    if irq is None:
        irq = q.get("irq", "0") not in ("0", "false", "no")
    try:
        return Device(transport, csr, timeout=timeout, check=check, irq=irq, owns=owns)
    except BaseException:
        transport.close()
        for o in owns:
            o.close()
        raise
