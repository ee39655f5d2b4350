"""The layer-program encoding: the contract between the compiler and the controller in `gateware/`.

A program is a sequence of fixed-size instructions of INSTR_WORDS little-endian 32-bit words.
Every field is declared once in FIELDS as (word, lsb, width, signed); encoder, decoder, behaviour
simulator and the gateware's instruction decoder all read this table. docs/isa.md explains it.

Opcodes
    MATVEC  y[j] = combine(act(requant(bias[j] + sum_seg (x_seg . W_seg[j]) << sh_seg [+ diag])))
            for j < rows; writes y to dst (and dst2). The workhorse: FC rows, gate rows.
    LOOP    repeat the body up to ENDLOOP `count` times (count 0: the STEPS register), t = 0..T-1,
            or T-1..0 with `reverse`. No nesting.
    ENDLOOP end of the loop body; toggles the context's ping-pong parity after every iteration.
    HALT    end of program (done).
Opcode 0 is illegal on purpose: zeroed memory never runs.

Vector operands name a word address in one of the vector spaces below. The effective address is
    addr + stride * t_eff + (pingpong ? PP_DIST * (parity XOR (pp == NEXT)) : 0)
with t_eff the loop's step index (T-1-t when reversed) and T-1 outside a loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INSTR_WORDS = 16
INSTR_BYTES = INSTR_WORDS * 4

# Opcodes ------------------------------------------------------------------------------------------
OP_MATVEC, OP_LOOP, OP_ENDLOOP, OP_HALT = 0x01, 0x02, 0x03, 0x0F
OPCODES = {OP_MATVEC: "MATVEC", OP_LOOP: "LOOP", OP_ENDLOOP: "ENDLOOP", OP_HALT: "HALT"}

# Vector spaces ------------------------------------------------------------------------------------
SPACE_IN, SPACE_OUT, SPACE_STATE, SPACE_SCRATCH, SPACE_CONST, SPACE_NONE = 0, 1, 2, 3, 4, 7
SPACES = {SPACE_IN: "in", SPACE_OUT: "out", SPACE_STATE: "state", SPACE_SCRATCH: "scratch",
          SPACE_CONST: "const"}

# Ping-pong selector
PP_NONE, PP_CUR, PP_NEXT = 0, 1, 2

# Activation codes (act and act2)
ACT_CODE = {"none": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softsign": 4}
ACT_NAME = {v: k for k, v in ACT_CODE.items()}

# Combine (epilogue) codes, a = act(z), P, Q vector operands indexed by row j:
COMB_NONE = 0     # y = a
COMB_MUL = 1      # y = sat(shift(a * P[j], s_c))                       GRU r*h, LSTM i*g
COMB_GRU = 2      # y = sat(a + shift(P[j] * (Q[j] - a), -14))            h' = c + u*(h - c)
COMB_MAC = 3      # y = sat(shift(a * P[j] + shift(Q[j], s_q), s_c))      LSTM c' = f*c + i*g
COMB_MULACT = 4   # y = sat(shift(a * act2(sat(shift(P[j], s_p))), s_c))  LSTM m = o*tanh(c')
COMBINES = {COMB_NONE: "none", COMB_MUL: "mul", COMB_GRU: "gru", COMB_MAC: "mac", COMB_MULACT: "mulact"}

# Error codes the controller (and the simulator) report ------------------------------------------
ERR_NONE, ERR_OPCODE, ERR_LOOP, ERR_ADDR, ERR_WEIGHT, ERR_FIELD, ERR_NOHALT = range(7)
ERRORS = {ERR_NONE: "ok", ERR_OPCODE: "illegal opcode", ERR_LOOP: "bad loop nesting",
          ERR_ADDR: "vector address out of range", ERR_WEIGHT: "weight/parameter offset out of range",
          ERR_FIELD: "illegal field value", ERR_NOHALT: "program ran past its end without HALT"}

# Hazard flags, set by the compiler (the controller does no address comparison of its own):
FLAG_WAIT = 1 << 0      # segments A/B read what the previous MATVEC writes: wait for its last write
FLAG_WAIT_EPI = 1 << 1  # only epilogue/diag operands (P, Q, DA, DB) read what the previous MATVEC
                        # writes: the matrix product may start, the first epilogue read must wait
FLAG_WAIT_OLDER = 1 << 2  # segments read what an instruction before the previous one writes: load
                          # once every instruction but the previous one has written its last row

# Field table: name -> (word, lsb, width, signed) -----------------------------------------------
_OPERAND = lambda w: {"addr": (w, 0, 16, False), "space": (w, 16, 3, False), "pp": (w, 20, 2, False),
                      "aux": (w, 24, 8, True)}
FIELDS = {
    "opcode": (0, 0, 8, False), "flags": (0, 8, 8, False), "mode": (0, 16, 3, False),
    "act": (0, 19, 3, False), "act2": (0, 22, 3, False), "combine": (0, 25, 3, False),
    "diag": (0, 28, 1, False), "reverse": (0, 29, 1, False),
    "rows": (1, 0, 16, False), "out_shift": (1, 16, 8, True), "group_log2": (1, 24, 5, False),
    "count": (1, 0, 16, False),  # LOOP only (shares word 1 with rows)
    "a_stride": (3, 0, 16, False), "a_len": (3, 16, 16, False),
    "b_stride": (5, 0, 16, False), "b_len": (5, 16, 16, False),
    "weight_off": (6, 0, 32, False), "codebook_off": (7, 0, 32, False), "bias_off": (8, 0, 32, False),
    "dst_stride": (14, 0, 16, False), "dst2_stride": (14, 16, 16, False),
}
OPERAND_WORDS = {"a": 2, "b": 4, "da": 9, "db": 10, "p": 11, "q": 12, "dst": 13, "dst2": 15}
for _name, _w in OPERAND_WORDS.items():
    for _k, _v in _OPERAND(_w).items():
        FIELDS[f"{_name}_{_k}"] = _v
# What each operand's aux byte means
AUX_MEANING = {"a": "shift A (left)", "b": "shift B (left)", "da": "diag shift (left, <0 rounds right)",
               "db": "act2 input shift s_p", "p": "s_c", "q": "s_q",
               "dst": "pad: zero columns after A|B in every stored row", "dst2": "unused"}


@dataclass
class Operand:
    space: int = SPACE_NONE
    addr: int = 0
    stride: int = 0
    pp: int = PP_NONE

    @property
    def used(self):
        return self.space != SPACE_NONE

    def __str__(self):
        if not self.used:
            return "-"
        s = f"{SPACES.get(self.space, '?')}[{self.addr}"
        if self.stride:
            s += f"+{self.stride}t"
        s += "]"
        if self.pp:
            s += ".cur" if self.pp == PP_CUR else ".next"
        return s


NONE = Operand()


@dataclass
class Instr:
    opcode: int
    flags: int = 0
    # MATVEC
    rows: int = 0
    a: Operand = field(default_factory=Operand)
    a_len: int = 0
    a_shift: int = 0
    b: Operand = field(default_factory=Operand)
    b_len: int = 0
    b_shift: int = 0
    pad: int = 0   # stored columns per row beyond A|B; their weights are ignored (products are 0)
    mode: int = 8
    group_log2: int = 0
    weight_off: int = 0
    codebook_off: int = 0
    bias_off: int = 0
    out_shift: int = 0
    diag: bool = False
    da: Operand = field(default_factory=Operand)
    db: Operand = field(default_factory=Operand)
    diag_shift: int = 0
    act: str = "none"
    combine: int = COMB_NONE
    p: Operand = field(default_factory=Operand)
    q: Operand = field(default_factory=Operand)
    s_c: int = 0
    s_q: int = 0
    act2: str = "none"
    s_p: int = 0
    dst: Operand = field(default_factory=Operand)
    dst2: Operand = field(default_factory=Operand)
    # LOOP
    count: int = 0
    reverse: bool = False
    note: str = field(default="", compare=False)  # compiler's comment, not encoded

    @property
    def name(self):
        return OPCODES.get(self.opcode, f"op{self.opcode:#x}")

    @property
    def k(self):
        """Useful columns (the dot-product length)."""
        return self.a_len + self.b_len

    @property
    def k_stored(self):
        """Columns per row in the weight stream (K plus zero padding)."""
        return self.a_len + self.b_len + self.pad

    def __str__(self):
        if self.opcode == OP_LOOP:
            n = self.count or "STEPS"
            return f"LOOP {n}{' reverse' if self.reverse else ''}"
        if self.opcode != OP_MATVEC:
            return self.name
        wait = "".join(f" {n}" for f, n in ((FLAG_WAIT, "wait"), (FLAG_WAIT_OLDER, "wait-older"),
                                           (FLAG_WAIT_EPI, "wait-epi")) if self.flags & f)
        s = (f"MATVEC{wait} rows={self.rows} "
             f"a={self.a}x{self.a_len}<<{self.a_shift}")
        if self.b_len:
            s += f" b={self.b}x{self.b_len}<<{self.b_shift}"
        s += f" w{self.mode}@{self.weight_off} >>{self.out_shift} {self.act}"
        if self.diag:
            s += f" diag={self.da}*{self.db}<<{self.diag_shift}"
        if self.combine:
            s += f" {COMBINES[self.combine]}(p={self.p}, q={self.q})"
        s += f" -> {self.dst}"
        if self.dst2.used:
            s += f", {self.dst2}"
        return s + (f"   ; {self.note}" if self.note else "")


# --------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------
def _put(words, name, value):
    w, lsb, width, signed = FIELDS[name]
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    if not lo <= int(value) <= hi:
        raise ValueError(f"field {name}={value} does not fit {width} {'signed' if signed else 'unsigned'} bits")
    words[w] |= (int(value) & ((1 << width) - 1)) << lsb


def _get(words, name):
    w, lsb, width, signed = FIELDS[name]
    v = (int(words[w]) >> lsb) & ((1 << width) - 1)
    if signed and v >= 1 << (width - 1):
        v -= 1 << width
    return v


def encode(instr: Instr) -> bytes:
    from .spec import WEIGHT_MODE_CODE
    w = [0] * INSTR_WORDS
    _put(w, "opcode", instr.opcode)
    _put(w, "flags", instr.flags)
    if instr.opcode == OP_LOOP:
        _put(w, "count", instr.count)
        _put(w, "reverse", int(instr.reverse))
    elif instr.opcode == OP_MATVEC:
        for name, v in (("mode", WEIGHT_MODE_CODE[instr.mode]), ("act", ACT_CODE[instr.act]),
                        ("act2", ACT_CODE[instr.act2]), ("combine", instr.combine), ("diag", int(instr.diag)),
                        ("rows", instr.rows), ("out_shift", instr.out_shift), ("group_log2", instr.group_log2),
                        ("a_stride", instr.a.stride), ("a_len", instr.a_len),
                        ("b_stride", instr.b.stride), ("b_len", instr.b_len),
                        ("weight_off", instr.weight_off), ("codebook_off", instr.codebook_off),
                        ("bias_off", instr.bias_off), ("dst_stride", instr.dst.stride),
                        ("dst2_stride", instr.dst2.stride)):
            _put(w, name, v)
        aux = {"a": instr.a_shift, "b": instr.b_shift, "da": instr.diag_shift, "db": instr.s_p,
               "p": instr.s_c, "q": instr.s_q, "dst": instr.pad, "dst2": 0}
        for op in OPERAND_WORDS:
            o = getattr(instr, op)
            _put(w, f"{op}_addr", o.addr)
            _put(w, f"{op}_space", o.space)
            _put(w, f"{op}_pp", o.pp)
            _put(w, f"{op}_aux", aux[op])
    return np.array(w, dtype="<u4").tobytes()


class DecodeError(ValueError):
    def __init__(self, code, pc, msg):
        super().__init__(f"instruction {pc}: {ERRORS[code]}: {msg}")
        self.code, self.pc = code, pc


def decode(data: bytes, pc=0) -> Instr:
    """Decode one instruction; raises DecodeError with the controller's error code if illegal."""
    from .spec import WEIGHT_MODE_FROM_CODE
    words = np.frombuffer(data, dtype="<u4")
    op = _get(words, "opcode")
    if op not in OPCODES:
        raise DecodeError(ERR_OPCODE, pc, f"opcode {op:#x}")
    ins = Instr(opcode=op, flags=_get(words, "flags"))
    if op == OP_LOOP:
        ins.count, ins.reverse = _get(words, "count"), bool(_get(words, "reverse"))
    if op != OP_MATVEC:
        return ins
    mode, act, act2, comb = (_get(words, n) for n in ("mode", "act", "act2", "combine"))
    if mode not in WEIGHT_MODE_FROM_CODE or act not in ACT_NAME or act2 not in ACT_NAME or comb not in COMBINES:
        raise DecodeError(ERR_FIELD, pc, f"mode={mode} act={act} act2={act2} combine={comb}")
    ins.mode, ins.act, ins.act2, ins.combine = WEIGHT_MODE_FROM_CODE[mode], ACT_NAME[act], ACT_NAME[act2], comb
    for name in ("diag", "rows", "out_shift", "group_log2", "a_len", "b_len", "weight_off",
                 "codebook_off", "bias_off"):
        v = _get(words, name)
        setattr(ins, name, bool(v) if name == "diag" else v)
    strides = {"a": "a_stride", "b": "b_stride", "dst": "dst_stride", "dst2": "dst2_stride"}
    for opn in OPERAND_WORDS:
        o = Operand(space=_get(words, f"{opn}_space"), addr=_get(words, f"{opn}_addr"),
                    pp=_get(words, f"{opn}_pp"),
                    stride=_get(words, strides[opn]) if opn in strides else 0)
        if o.space not in SPACES and o.space != SPACE_NONE or o.pp > PP_NEXT:
            raise DecodeError(ERR_FIELD, pc, f"operand {opn}: space={o.space} pp={o.pp}")
        setattr(ins, opn, o)
    ins.a_shift, ins.b_shift = _get(words, "a_aux"), _get(words, "b_aux")
    ins.diag_shift, ins.s_p = _get(words, "da_aux"), _get(words, "db_aux")
    ins.s_c, ins.s_q = _get(words, "p_aux"), _get(words, "q_aux")
    ins.pad = _get(words, "dst_aux")
    if ins.pad < 0:
        raise DecodeError(ERR_FIELD, pc, f"pad {ins.pad} < 0")
    if ins.rows == 0 or ins.a_len == 0 or not ins.a.used or not ins.dst.used:
        raise DecodeError(ERR_FIELD, pc, "rows, a_len, a and dst must be set")
    from .spec import MAX_SEG_SHIFT
    if not (0 <= ins.a_shift <= MAX_SEG_SHIFT and 0 <= ins.b_shift <= MAX_SEG_SHIFT) or \
            (ins.b_len and min(ins.a_shift, ins.b_shift) != 0):
        raise DecodeError(ERR_FIELD, pc, f"segment shifts {ins.a_shift}/{ins.b_shift}: each 0..{MAX_SEG_SHIFT}, "
                                         "one of them 0")
    return ins


def encode_program(instrs) -> bytes:
    return b"".join(encode(i) for i in instrs)


def decode_program(data: bytes):
    if len(data) % INSTR_BYTES:
        raise DecodeError(ERR_FIELD, len(data) // INSTR_BYTES, "program length is not a whole instruction")
    return [decode(data[i:i + INSTR_BYTES], i // INSTR_BYTES) for i in range(0, len(data), INSTR_BYTES)]


def disassemble(instrs):
    return "\n".join(f"{pc:4d}  {ins}" for pc, ins in enumerate(instrs))
