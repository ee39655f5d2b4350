"""The accelerator's register and window map: the one contract between the SoC and the driver.

Pure Python (no LiteX, no Migen) so that the driver on a board's ARM imports it too. The SoC
builds its CSRs and bus windows from these tables; the driver decodes fields with them. Addresses
are NOT defined here: LiteX assigns them and exports `csr.csv` / `csr.json`, and the driver learns
every address from that file only.

Names in the exported map: CSR `<name>` below appears as `rnnaccel_<name>` (CSR_PREFIX), window
`<name>` as memory region `rnnaccel_<name>`. Registers wider than 32 bits span several words, most
significant word first (LiteX convention).

Protocol (what `gateware/rtlrun.py` does on the bare core, and the driver does through the SoC):
  1. while `status.busy` is 0: write the program, parameter and weight windows, the vector words
     (constants, zeroed state, input frames);
  2. write `prog_len`, `prog_base`, `weight_base`, `param_base`, `pp_dist`, `base_<space>`,
     `size_<space>`, `steps`;
  3. write `ctrl` with start=1 and the context's parity in `parity_in`;
  4. poll `status` (or `ev_pending.done`) until busy=0 and done=1, or error != 0;
  5. read the output (and state) words from the vector window, `cycles`, `mac_ops`, and the new
     parity from `status.parity`; write `ctrl.soft_reset` to recover from an error or a hang.
"""
from __future__ import annotations

from rnnaccel.host import isa
from rnnaccel.host.spec import WEIGHT_MODES   # bit k of caps.modes = WEIGHT_MODES[k]

ID_VALUE = 0x524E4E41            # "RNNA"
HW_VERSION = 1                   # bump when anything in this file changes meaning
CSR_PREFIX = "rnnaccel"
SPACE_NAMES = tuple(isa.SPACES[k] for k in sorted(isa.SPACES))   # in, out, state, scratch, const

# ---- fields: name -> (lsb, width) ---------------------------------------------------------------
CTRL_FIELDS = {"start": (0, 1), "soft_reset": (1, 1), "parity_in": (2, 1)}   # start/soft_reset pulse
STATUS_FIELDS = {"busy": (0, 1), "done": (1, 1), "parity": (2, 1), "error": (4, 3), "error_pc": (16, 16)}
CAPS_FIELDS = {"n_lanes": (0, 8), "modes": (8, 5), "n_spaces": (16, 4)}
VERSION_FIELDS = {"hw": (16, 16), "image": (0, 16)}      # image: the image-format version it runs

# ---- CSRs: (name, bits, access, description); access "ro" = status, "rw" = storage ------------------
CSRS = (
    ("id", 32, "ro", "constant ID_VALUE ('RNNA'): the driver checks it first"),
    ("version", 32, "ro", "hw version (hi 16) | image-format version (lo 16)"),
    ("caps", 32, "ro", "n_lanes | supported weight modes | vector spaces (CAPS_FIELDS)"),
    ("prog_words", 32, "ro", "program memory size, 32-bit words"),
    ("param_words", 32, "ro", "parameter memory size, 32-bit words"),
    ("wmem_bytes", 32, "ro", "weight memory size, bytes"),
    ("vmem_words", 32, "ro", "vector pool size, 16-bit words"),
    ("ctrl", 32, "rw", "start (pulse), soft_reset (pulse), parity_in (CTRL_FIELDS)"),
    ("steps", 16, "rw", "time steps of the next run"),
    ("prog_len", 32, "rw", "instructions in the program"),
    ("prog_base", 32, "rw", "program window word address of instruction 0"),
    ("weight_base", 32, "rw", "weight memory word address (N bytes per word) of the weight section"),
    ("param_base", 32, "rw", "parameter window word address of the parameter section"),
    ("pp_dist", 32, "rw", "ping-pong distance of the image, in vector words"),
    *((f"base_{s}", 32, "rw", f"vector-pool word address of the {s} space") for s in SPACE_NAMES),
    *((f"size_{s}", 32, "rw", f"words in the {s} space") for s in SPACE_NAMES),
    ("status", 32, "ro", "busy, done, parity, error, error_pc (STATUS_FIELDS)"),
    ("cycles", 32, "ro", "cycles of the last run"),
    ("mac_ops", 48, "ro", "useful 16x8 lane operations of the last run"),
    ("stalls", 32, "ro", "stream cycles lost to a full row FIFO in the last run"),
)
EVENTS = ("done",)               # EventManager sources: `done` pulses when a run ends (done or error)

# ---- windows on the SoC bus: (name, description); sizes come from the caps registers ------------
WINDOWS = (
    ("prog", "program memory, one 32-bit instruction word per bus word (write)"),
    ("param", "parameter memory, one 32-bit word per bus word (write)"),
    ("wmem", "weight memory as little-endian 32-bit sub-words: bus word a writes bits 32*j.. of weight "
             "word a // (N/4), j = a % (N/4); a weight word is committed when its last sub-word is written"),
    ("vmem", "vector pool, one signed 16-bit word per bus word (read/write, sign-extended on read)"),
)


def field(value: int, fields: dict, name: str) -> int:
    """Extract field `name` from a register value."""
    lsb, width = fields[name]
    return (value >> lsb) & ((1 << width) - 1)


def pack(fields: dict, **values) -> int:
    """A register value from field values (unnamed fields 0)."""
    v = 0
    for name, x in values.items():
        lsb, width = fields[name]
        if not 0 <= int(x) < 1 << width:
            raise ValueError(f"field {name}={x} does not fit in {width} bits")
        v |= int(x) << lsb
    return v


def modes_mask(modes) -> int:
    return sum(1 << WEIGHT_MODES.index(m) for m in modes)


def modes_from_mask(mask: int) -> tuple:
    return tuple(m for k, m in enumerate(WEIGHT_MODES) if mask >> k & 1)
