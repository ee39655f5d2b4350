"""Bit-accurate behaviour simulator: runs a model image exactly as the accelerator does.

Integer arithmetic only (spec.py), vectorised over a batch of sequences, usable one step at a time
with state kept between calls (streaming). Dot products run as float64 BLAS matrix products, which
are exact here: |x| <= 2^15, |w| <= 2^15 and K < 2^22 keep every partial sum below 2^53
(checked at load). Everything after the dot product is int64 numpy.
"""
from __future__ import annotations

import numpy as np

from . import activation, isa
from .compression import unpack_fields
from .image import Image, ImageError
from .spec import (ACC_BITS, CODEBOOK_MODES, F_ACT_OUT, quantize, dequantize, requant, saturate,
                   shift_round, wrap)


class SimError(RuntimeError):
    """The controller stopped with an error code (the same codes the hardware reports)."""

    def __init__(self, code, pc, msg):
        super().__init__(f"instruction {pc}: {isa.ERRORS[code]} ({msg})")
        self.code, self.pc = code, pc


def decode_weights(img: Image, ins: isa.Instr) -> np.ndarray:
    """The integer weight matrix [rows, K] the decompression unit feeds the MAC array."""
    R, K, mode = ins.rows, ins.k_stored, ins.mode
    n = R * K
    nbytes = (n * mode + 7) // 8
    if ins.weight_off + nbytes > len(img.weights):
        raise SimError(isa.ERR_WEIGHT, -1, f"weights [{ins.weight_off}, +{nbytes}) beyond {len(img.weights)} bytes")
    raw = img.weights[ins.weight_off:ins.weight_off + nbytes]
    if mode == 16:
        return np.frombuffer(raw, "<i2").astype(np.int64).reshape(R, K)
    if mode == 8:
        return np.frombuffer(raw, "i1").astype(np.int64).reshape(R, K)
    assert mode in CODEBOOK_MODES
    G = 1 << ins.group_log2
    groups = -(-R // G)
    cb_bytes = groups << mode
    if ins.codebook_off + cb_bytes > len(img.params):
        raise SimError(isa.ERR_WEIGHT, -1, "codebooks beyond the parameter section")
    cb = np.frombuffer(img.params[ins.codebook_off:ins.codebook_off + cb_bytes], "i1").astype(np.int64)
    cb = cb.reshape(groups, 1 << mode)
    idx = unpack_fields(raw, mode, n).reshape(R, K)
    return cb[(np.arange(R) // G)[:, None], idx]


def decode_bias(img: Image, ins: isa.Instr) -> np.ndarray:
    end = ins.bias_off + 4 * ins.rows
    if end > len(img.params):
        raise SimError(isa.ERR_WEIGHT, -1, "bias beyond the parameter section")
    return np.frombuffer(img.params[ins.bias_off:end], "<i4").astype(np.int64)


_LUT = {}


def act_lut(name, z):
    """act_q through a 65,536-entry table built from act_q itself (identical by construction,
    several times faster than re-evaluating the segments)."""
    if name == "none":
        return z
    lut = _LUT.get(name)
    if lut is None:
        # index = z mod 2^16: non-negative z index from the front, negative z from the back
        lut = _LUT[name] = activation.act_q(name, np.arange(1 << 16, dtype=np.int64).astype(np.int16))
    return lut[z]


# --------------------------------------------------------------------------------------------------
# Row arithmetic after the dot product (docs/arithmetic.md steps 2-5): pure functions on int64
# arrays, shared by the simulator and the gateware tests as the one reference.
# --------------------------------------------------------------------------------------------------
def row_preact(ins: isa.Instr, acc, da=None, db=None):
    """acc (dot product + bias, 48-bit) -> z: diagonal term, requantisation."""
    acc = np.asarray(acc, dtype=np.int64)
    if ins.diag:
        acc = wrap(acc + shift_round(np.asarray(da, np.int64) * np.asarray(db, np.int64), -ins.diag_shift),
                   ACC_BITS)
    return requant(acc, ins.out_shift)


def row_output(ins: isa.Instr, z, p=None, q=None):
    """z -> y: activation and the combine stage."""
    a = act_lut(ins.act, np.asarray(z, dtype=np.int64))
    c = ins.combine
    if c == isa.COMB_NONE:
        return a
    P = np.asarray(p, dtype=np.int64)
    if c == isa.COMB_MUL:
        return saturate(shift_round(a * P, ins.s_c))
    if c == isa.COMB_GRU:
        return saturate(a + shift_round(P * (np.asarray(q, np.int64) - a), F_ACT_OUT))
    if c == isa.COMB_MAC:
        return saturate(shift_round(a * P + (np.asarray(q, np.int64) << np.int64(ins.s_q)), ins.s_c))
    if c == isa.COMB_MULACT:
        return saturate(shift_round(a * act_lut(ins.act2, saturate(shift_round(P, ins.s_p))), ins.s_c))
    raise SimError(isa.ERR_FIELD, -1, f"combine {c}")


class _Prepared:
    """Per-MATVEC constants decoded once at load."""

    def __init__(self, img, ins):
        W = decode_weights(img, ins)[:, :ins.k]  # padding columns never contribute
        wbits = 16 if ins.mode == 16 else 8
        if ins.k >= 1 << (53 - 15 - wbits):
            raise ImageError(f"K={ins.k} too large for exact float64 dot products")
        self.wa = np.ascontiguousarray(W[:, :ins.a_len].T, dtype=np.float64)
        self.wb = np.ascontiguousarray(W[:, ins.a_len:].T, dtype=np.float64) if ins.b_len else None
        self.bias = decode_bias(img, ins)
        self.w_int = W
        # The 48-bit wrap can only matter if the worst case |acc| reaches 2^47; images from the
        # compiler never do, so the common path skips it (still bit-exact: wrap is then identity).
        col_shift = np.r_[np.full(ins.a_len, ins.a_shift), np.full(ins.b_len, ins.b_shift)]
        worst = float(np.max(np.abs(W).astype(np.float64) @ (2.0 ** (15 + col_shift)))) + float(np.max(np.abs(self.bias)))
        self.may_wrap = ins.diag or worst >= 2.0 ** (ACC_BITS - 1)
        # Fast path: one float64 product over [A | B] with the segment shifts folded into the
        # weights and the bias added in float64; exact while every value stays below 2^52.
        self.fast = not self.may_wrap and worst < 2.0 ** 52
        if self.fast:
            self.w_cat = np.ascontiguousarray((W * 2.0 ** col_shift[None, :]).T, dtype=np.float64)
            self.bias_f = self.bias.astype(np.float64)
            self.xbuf = None


class Simulator:
    """Runs an image on a batch of `batch` independent sequences (one context per sequence)."""

    def __init__(self, image: Image, batch: int = 1):
        self.img = image
        self.prep = {}
        for pc, ins in enumerate(image.program):
            if ins.opcode == isa.OP_MATVEC:
                try:
                    self.prep[pc] = _Prepared(image, ins)
                except SimError as e:
                    raise SimError(e.code, pc, str(e)) from None
        self.const = np.frombuffer(image.consts, "<i2").astype(np.int64)[None, :]
        self.out_words = (image.max_steps * image.out_step_stride if image.seq_output else image.out_features)
        self.reset(batch)

    # ---- state -----------------------------------------------------------------------------------
    def reset(self, batch=None):
        """Zero every context's state (the driver's "clear context")."""
        if batch is not None:
            self.batch = int(batch)
        B = self.batch
        self.mem = {
            isa.SPACE_IN: np.zeros((B, self.img.max_steps * self.img.in_features), np.int64),
            isa.SPACE_OUT: np.zeros((B, max(self.out_words, 1)), np.int64),
            isa.SPACE_STATE: np.zeros((B, self.img.state_words), np.int64),
            isa.SPACE_SCRATCH: np.zeros((B, self.img.scratch_words), np.int64),
            isa.SPACE_CONST: self.const,
        }
        self.parity = 0

    # ---- operand access --------------------------------------------------------------------------
    def _addr(self, op: isa.Operand, n, t, pc, what):
        a = op.addr + op.stride * t
        if op.pp:
            a += self.img.pp_dist * (self.parity ^ (op.pp == isa.PP_NEXT))
        size = self.mem[op.space].shape[1] if op.space in self.mem else -1
        if op.space not in self.mem or a < 0 or a + n > size:
            raise SimError(isa.ERR_ADDR, pc, f"{what} {op} [{a}, +{n}) outside {isa.SPACES.get(op.space, op.space)} "
                                             f"of {max(size, 0)} words")
        return a

    def _read(self, op, n, t, pc, what):
        a = self._addr(op, n, t, pc, what)
        return self.mem[op.space][:, a:a + n]

    def _write(self, op, values, t, pc, what):
        n = values.shape[1]
        a = self._addr(op, n, t, pc, what)
        if op.space == isa.SPACE_CONST:
            raise SimError(isa.ERR_ADDR, pc, f"{what}: the CONST space is read-only")
        self.mem[op.space][:, a:a + n] = values

    # ---- execution -------------------------------------------------------------------------------
    def _product_fast(self, p, ins, t, pc):
        """requant(acc) through the exact float64 fast path (see _Prepared)."""
        B = self.batch
        if p.xbuf is None or p.xbuf.shape[0] != B:
            p.xbuf = np.empty((B, ins.k))
        p.xbuf[:, :ins.a_len] = self._read(ins.a, ins.a_len, t, pc, "a")
        if ins.b_len:
            p.xbuf[:, ins.a_len:] = self._read(ins.b, ins.b_len, t, pc, "b")
        acc = p.xbuf @ p.w_cat
        acc += p.bias_f
        r = ins.out_shift
        if r > 0:
            acc += 2.0 ** (r - 1)
            acc *= 2.0 ** -r
            np.floor(acc, out=acc)
        elif r < 0:
            acc *= 2.0 ** -r
        np.clip(acc, -32768, 32767, out=acc)
        return acc.astype(np.int64)

    def _matvec(self, pc, ins, t):
        p = self.prep[pc]
        if p.fast:
            z = self._product_fast(p, ins, t, pc)
        else:
            z = self._product(p, ins, t, pc)
        self._epilogue(ins, z, t, pc)

    def _product(self, p, ins, t, pc):
        """requant(acc) in int64, with the 48-bit wrap and the diagonal term."""
        xa = self._read(ins.a, ins.a_len, t, pc, "a")
        acc = (xa.astype(np.float64) @ p.wa).astype(np.int64) << np.int64(ins.a_shift)
        if ins.b_len:
            xb = self._read(ins.b, ins.b_len, t, pc, "b")
            acc += (xb.astype(np.float64) @ p.wb).astype(np.int64) << np.int64(ins.b_shift)
        acc += p.bias
        if p.may_wrap:
            acc = wrap(acc, ACC_BITS)
        if ins.diag:
            R = ins.rows
            return row_preact(ins, acc, self._read(ins.da, R, t, pc, "diag a"), self._read(ins.db, R, t, pc, "diag b"))
        return requant(acc, ins.out_shift)

    def _epilogue(self, ins, z, t, pc):
        R = ins.rows
        p = self._read(ins.p, R, t, pc, "p") if ins.combine != isa.COMB_NONE else None
        q = self._read(ins.q, R, t, pc, "q") if ins.combine in (isa.COMB_GRU, isa.COMB_MAC) else None
        try:
            y = row_output(ins, z, p, q)
        except SimError as e:
            raise SimError(e.code, pc, str(e)) from None
        self._write(ins.dst, y, t, pc, "dst")
        if ins.dst2.used:
            self._write(ins.dst2, y, t, pc, "dst2")

    def execute(self, steps):
        """Run the program for `steps` time steps on what is in the IN buffer."""
        prog, T = self.img.program, int(steps)
        pc, loop = 0, None  # loop = (start_pc, count, reverse, iteration)
        budget = 16 + len(prog) * (T + 1) * 4  # bounded: a program can never hang the simulator
        while budget > 0:
            budget -= 1
            if pc >= len(prog):
                raise SimError(isa.ERR_NOHALT, pc, "program counter past the last instruction")
            ins = prog[pc]
            if ins.opcode == isa.OP_HALT:
                if loop is not None:
                    raise SimError(isa.ERR_LOOP, pc, "HALT inside a loop")
                return
            if ins.opcode == isa.OP_LOOP:
                if loop is not None:
                    raise SimError(isa.ERR_LOOP, pc, "nested LOOP")
                count = ins.count or T
                if count > self.img.max_steps and ins.count == 0:
                    raise SimError(isa.ERR_FIELD, pc, f"{count} steps > max_steps {self.img.max_steps}")
                loop = [pc + 1, count, ins.reverse, 0]
                pc = pc + 1 if count else self._skip_loop(pc)
                if not count:
                    loop = None
                continue
            if ins.opcode == isa.OP_ENDLOOP:
                if loop is None:
                    raise SimError(isa.ERR_LOOP, pc, "ENDLOOP without LOOP")
                self.parity ^= 1
                loop[3] += 1
                if loop[3] < loop[1]:
                    pc = loop[0]
                else:
                    loop, pc = None, pc + 1
                continue
            if loop is None:
                t = T - 1
            else:
                t = loop[1] - 1 - loop[3] if loop[2] else loop[3]
            self._matvec(pc, ins, t)
            pc += 1
        raise SimError(isa.ERR_NOHALT, pc, "instruction budget exhausted")

    def _skip_loop(self, pc):
        prog = self.img.program
        for j in range(pc + 1, len(prog)):
            if prog[j].opcode == isa.OP_ENDLOOP:
                return j + 1
        raise SimError(isa.ERR_LOOP, pc, "LOOP without ENDLOOP")

    # ---- user API ----------------------------------------------------------------------------------
    def run_q(self, x_q, reset=None):
        """x_q int [B, T, F] (or [T, F]) already quantised -> int output [B, ...].

        reset: clear the state first (default: True for images that are not streamable)."""
        x_q = np.asarray(x_q)
        squeeze = x_q.ndim == 2
        if squeeze:
            x_q = x_q[None]
        B, T, F = x_q.shape
        img = self.img
        if F != img.in_features:
            raise ValueError(f"input has {F} features per step, the image expects {img.in_features}")
        if T < 1 or T > img.max_steps:
            raise ValueError(f"{T} steps: the image accepts 1..{img.max_steps} per run (compile with --steps)")
        if reset is None:
            reset = not img.streamable
        if B != self.batch or reset:
            if B != self.batch and not reset and np.any(self.mem[isa.SPACE_STATE]):
                raise ValueError(f"batch changed from {self.batch} to {B} with live state; pass reset=True")
            self.reset(B)
        self.mem[isa.SPACE_IN][:, :T * F] = x_q.reshape(B, T * F)
        self.execute(T)
        out = self.mem[isa.SPACE_OUT]
        if img.seq_output:
            y = out[:, :T * img.out_step_stride].reshape(B, T, img.out_step_stride)[:, :, :img.out_features]
        else:
            y = out[:, :img.out_features]
        y = y.copy()
        return y[0] if squeeze else y

    def run(self, x, reset=None):
        """Float in, float out: quantise the features with the image's input format, dequantise logits."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("input features contain NaN or Inf")
        y = self.run_q(quantize(x, self.img.in_frac), reset)
        return dequantize(y, self.img.out_frac)

    def state(self):
        """Named state vectors (dequantised) from the image's state map, for inspection."""
        res = {}
        for name, s in self.img.meta.get("state", {}).items():
            a = s["addr"] + (self.img.pp_dist * self.parity if s.get("pp") else 0)
            res[name] = dequantize(self.mem[isa.SPACE_STATE][:, a:a + s["len"]], s["frac"])
        return res
