"""NN compiler: model IR + calibration data + weight mode -> model image.

1. Calibrate: run the float executor on sample inputs and record max |value| of every tensor the
   hardware will hold; choose power-of-two formats (spec.frac_bits_for).
2. Lower every layer to MATVEC instructions with fused epilogues (docs/isa.md shows each cell),
   placed in LOOPs over time steps; allocate the vector spaces (state with ping-pong h, scratch,
   const, in/out buffers).
3. Compress and place weights (compression.py), biases and codebooks; set WAIT flags where an
   instruction reads what the previous one writes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from . import isa
from .compression import encode, pack_fields, padded_size, unpack_fields
from .image import FLAG_SEQ_OUTPUT, FLAG_STREAMABLE, Image
from .ir import FC, Flatten, GRUCell, LSTMCell, Model, ModelError, Recurrent
from .isa import Instr, Operand
from .reference import Tracer, run_float
from .spec import (ACC_BITS, BIAS_BITS, F_ACT_IN, F_ACT_OUT, F_GRU_H, MAX_DRAIN_CYCLES, MAX_LANES,
                   MAX_SEG_SHIFT, MAX_SHIFT, WEIGHT_MODES,
                   frac_bits_for, quantize)

HEADROOM = 1.25           # calibration margin on every calibrated format
DEFAULT_STREAM_STEPS = 256


class CompileError(ModelError):
    pass


@dataclass
class Val:
    """Where a layer's output lives. kind: 'step' (one vector per step, inside the open loop),
    'seq' (a whole sequence in memory, row t at op.addr + t*op.stride), 'vec' (one vector)."""
    kind: str
    op: Operand
    n: int
    f: int
    producer: Optional[Instr] = None


class _Alloc:
    def __init__(self):
        self.size = 0

    def take(self, n):
        a = self.size
        self.size += int(n)
        if self.size > 0xFFFF:
            raise CompileError("vector memory needs more than 65535 words in one space")
        return a


class Compiler:
    def __init__(self, model: Model, calib, bits=8, steps=None, group_rows=None):
        if bits not in WEIGHT_MODES:
            raise CompileError(f"--bits {bits}: supported weight modes are {', '.join(map(str, WEIGHT_MODES))}")
        self.m, self.bits, self.group_rows = model, bits, group_rows
        calib = np.asarray(calib, dtype=np.float64)
        if calib.ndim == 2:
            calib = calib[None]
        if calib.ndim != 3 or calib.shape[2] != model.in_features:
            raise CompileError(f"calibration data must be [N, T, {model.in_features}], got {calib.shape}")
        self.tr = Tracer()
        run_float(model, calib, trace=self.tr)
        if model.streamable:
            self.max_steps = int(steps or model.steps or DEFAULT_STREAM_STEPS)
        else:
            self.max_steps = int(steps or model.steps or calib.shape[1])
            if any(isinstance(l, Flatten) for l in model.layers):
                self.max_steps = model.steps
        self.state, self.scratch = _Alloc(), _Alloc()
        self.pp_vectors = []      # (name, size): state vectors with two copies
        self.nonpp_state = []
        self.consts = bytearray()
        self.params = bytearray()
        self.weights = bytearray()
        self.prog = []
        self.in_loop = False
        self.loop_macs = 0
        self.once_macs = 0
        self.max_k = 0
        self.fp32_weight_bytes = 0
        self.stored_weight_bytes = 0
        self.state_map = {}
        self.layer_rows = []

    # ---- formats --------------------------------------------------------------------------------
    def fmt(self, name, hi=None):
        if name not in self.tr.absmax:
            raise CompileError(f"no calibration value for {name}")
        return frac_bits_for(self.tr.absmax[name], headroom=HEADROOM, hi=hi)

    # ---- memory ---------------------------------------------------------------------------------
    def const_vec(self, values, f):
        q = quantize(values, f)
        addr = len(self.consts) // 2
        self.consts += q.astype("<i2").tobytes()
        return Operand(isa.SPACE_CONST, addr)

    def param(self, blob: bytes):
        off = len(self.params)
        self.params += blob + bytes(-len(blob) % 8)
        return off

    # ---- emission ---------------------------------------------------------------------------------
    def matvec(self, name, W, bias, segs, act="none", f_out=None, dst=None, diag=None, combine=None,
               note=""):
        """Emit y = combine(act(W [x_seg...] + bias)); segs: [(Operand, len, frac)]."""
        W = np.asarray(W, dtype=np.float64)
        rows, K = W.shape
        assert K == sum(s[1] for s in segs), (name, K, segs)
        f_x = max(s[2] for s in segs)
        enc = encode(W, self.bits, group_rows=self.group_rows)
        f_w = enc.frac_bits
        # Keep the worst-case accumulator, the bias and the shifts inside the datapath.
        while True:
            f_acc = f_x + f_w
            shifts = [f_x - s[2] for s in segs]
            wq = np.abs(W) * 2.0 ** f_w
            col_shift = np.concatenate([np.full(s[1], sh) for s, sh in zip(segs, shifts)])
            worst = np.max(np.sum(np.ceil(wq) * 2.0 ** (15 + col_shift), axis=1)) if K else 0
            b_q = np.round(np.asarray(bias, np.float64) * 2.0 ** f_acc)
            if (worst < 2.0 ** (ACC_BITS - 3) and np.max(np.abs(b_q), initial=0) < 2.0 ** (BIAS_BITS - 1)):
                break
            f_w -= 1
            enc = encode(W, self.bits, group_rows=self.group_rows, frac_bits=f_w)
        if max(shifts) > MAX_SEG_SHIFT:
            raise CompileError(f"{name}: input segments differ by {max(shifts)} fractional bits; the "
                               f"array aligns at most {MAX_SEG_SHIFT} (rescale the model's inputs)")
        f_z = F_ACT_IN if act in ("sigmoid", "tanh", "softsign") else f_out
        out_shift = f_acc - f_z
        if not -MAX_SHIFT <= out_shift <= MAX_SHIFT:
            raise CompileError(f"{name}: output shift {out_shift} outside the datapath's range")
        self.weights += bytes(padded_size(len(self.weights)) - len(self.weights))
        woff = len(self.weights)
        pad = max(0, MAX_LANES - K)  # rows shorter than the widest array are padded (docs/isa.md)
        self.weights += _pad_rows(enc.packed, self.bits, rows, K, pad)
        cb_off = self.param(enc.codebook_blob) if enc.codebooks is not None else 0
        b_off = self.param(b_q.astype("<i4").tobytes())
        G = enc.group_rows or 1
        ins = Instr(isa.OP_MATVEC, rows=rows, pad=pad, mode=self.bits, weight_off=woff, codebook_off=cb_off,
                    group_log2=int(np.log2(G)), bias_off=b_off, out_shift=int(out_shift), act=act,
                    note=f"{name} {note}".strip())
        ins.a, ins.a_len, ins.a_shift = segs[0][0], segs[0][1], shifts[0]
        if len(segs) > 1:
            ins.b, ins.b_len, ins.b_shift = segs[1][0], segs[1][1], shifts[1]
        if diag is not None:
            (da, fa), (db, fb) = diag
            ins.diag, ins.da, ins.db, ins.diag_shift = True, da, db, int(f_acc - fa - fb)
        if combine is not None:
            kind, kw = combine
            ins.combine = kind
            for k, v in kw.items():
                setattr(ins, k, v)
        ins.dst = dst
        self.prog.append(ins)
        macs = rows * K
        if self.in_loop:
            self.loop_macs += macs
        else:
            self.once_macs += macs
        self.max_k = max(self.max_k, K)
        self.fp32_weight_bytes += 4 * W.size
        self.stored_weight_bytes += enc.nbytes
        return ins

    def scratch_vec(self, n, stride=0, steps=1):
        return Operand(isa.SPACE_SCRATCH, self.scratch.take(n * max(steps, 1)), stride)

    def open_loop(self, reverse=False):
        self.close_loop()
        self.prog.append(Instr(isa.OP_LOOP, reverse=reverse))
        self.in_loop = True

    def close_loop(self):
        if self.in_loop:
            self.prog.append(Instr(isa.OP_ENDLOOP))
            self.in_loop = False

    # ---- cells --------------------------------------------------------------------------------------
    def state_vec(self, name, n, f, pp):
        if pp:
            self.pp_vectors.append((name, n, f))
        else:
            self.nonpp_state.append((name, n, f))
        return name

    def gru(self, cell: GRUCell, x: Val, name, h_op_cur, h_op_next):
        H, I = cell.hidden, cell.in_features
        f = F_GRU_H
        xs = (x.op, I, x.f)
        hcur = (h_op_cur, H, f)
        Wx, Wh, bx, bh = cell.w_x, cell.w_h, cell.b_x, cell.b_h
        sl = lambda k: slice(k * H, (k + 1) * H)
        U = self.scratch_vec(H)
        if not cell.reset_after:
            RH = self.scratch_vec(H)
            self.matvec(f"{name}.r", np.hstack([Wx[sl(0)], Wh[sl(0)]]), bx[sl(0)] + bh[sl(0)], [xs, hcur],
                        "sigmoid", dst=RH, combine=(isa.COMB_MUL, dict(p=h_op_cur, s_c=F_ACT_OUT)), note="r*h")
            self.matvec(f"{name}.u", np.hstack([Wx[sl(1)], Wh[sl(1)]]), bx[sl(1)] + bh[sl(1)], [xs, hcur],
                        "sigmoid", dst=U)
            return self.matvec(f"{name}.c", np.hstack([Wx[sl(2)], Wh[sl(2)]]), bx[sl(2)] + bh[sl(2)],
                               [xs, (RH, H, F_ACT_OUT)], "tanh", dst=h_op_next,
                               combine=(isa.COMB_GRU, dict(p=U, q=h_op_cur)), note="h' = c + u*(h-c)")
        R = self.scratch_vec(H)
        HN = self.scratch_vec(H)
        f_hn = self.fmt(name + ".hn")
        self.matvec(f"{name}.r", np.hstack([Wx[sl(0)], Wh[sl(0)]]), bx[sl(0)] + bh[sl(0)], [xs, hcur],
                    "sigmoid", dst=R)
        self.matvec(f"{name}.u", np.hstack([Wx[sl(1)], Wh[sl(1)]]), bx[sl(1)] + bh[sl(1)], [xs, hcur],
                    "sigmoid", dst=U)
        self.matvec(f"{name}.hn", Wh[sl(2)], bh[sl(2)], [hcur], "none", f_out=f_hn, dst=HN)
        return self.matvec(f"{name}.c", Wx[sl(2)], bx[sl(2)], [xs], "tanh", dst=h_op_next,
                           diag=((R, F_ACT_OUT), (HN, f_hn)),
                           combine=(isa.COMB_GRU, dict(p=U, q=h_op_cur)), note="r*hn in diag")

    def lstm(self, cell: LSTMCell, x: Val, name, h_op_cur, h_op_next, c_op, f_h, f_c):
        H, I, Rn = cell.hidden, cell.in_features, cell.out_features
        xs = (x.op, I, x.f)
        hcur = (h_op_cur, Rn, f_h)
        sl = lambda k: slice(k * H, (k + 1) * H)
        W = np.hstack([cell.w_x, cell.w_h])
        b = cell.bias.astype(np.float64).copy()
        b[sl(1)] += cell.forget_bias
        peep = {}
        if cell.peephole:
            for g, p in (("i", cell.p_i), ("f", cell.p_f), ("o", cell.p_o)):
                fp = frac_bits_for(np.max(np.abs(p)), hi=15)
                peep[g] = (self.const_vec(p, fp), fp)
        I_ = self.scratch_vec(H)
        IG = self.scratch_vec(H)
        self.matvec(f"{name}.i", W[sl(0)], b[sl(0)], [xs, hcur], "sigmoid", dst=I_,
                    diag=(peep["i"], (c_op, f_c)) if peep else None)
        self.matvec(f"{name}.g", W[sl(2)], b[sl(2)], [xs, hcur], "tanh", dst=IG,
                    combine=(isa.COMB_MUL, dict(p=I_, s_c=F_ACT_OUT)), note="i*g")
        self.matvec(f"{name}.f", W[sl(1)], b[sl(1)], [xs, hcur], "sigmoid", dst=c_op,
                    diag=(peep["f"], (c_op, f_c)) if peep else None,
                    combine=(isa.COMB_MAC, dict(p=c_op, q=IG, s_q=f_c, s_c=F_ACT_OUT)), note="c' = f*c + i*g")
        if cell.w_proj is None:
            m_dst = h_op_next
        else:
            m_dst = self.scratch_vec(H)
        last = self.matvec(f"{name}.o", W[sl(3)], b[sl(3)], [xs, hcur], "sigmoid", dst=m_dst,
                           diag=(peep["o"], (c_op, f_c)) if peep else None,
                           combine=(isa.COMB_MULACT, dict(p=c_op, s_p=f_c - F_ACT_IN, act2="tanh",
                                                          s_c=F_ACT_OUT)), note="m = o*tanh(c')")
        if cell.w_proj is not None:
            last = self.matvec(f"{name}.proj", cell.w_proj, np.zeros(Rn), [(m_dst, H, F_ACT_OUT)], "none",
                               f_out=f_h, dst=h_op_next)
        return last

    def cell(self, cell, x: Val, name):
        """Emit one time step of `cell` inside the open loop; returns the step's output Val."""
        if isinstance(cell, GRUCell):
            f_h, f_c = F_GRU_H, None
        else:
            f_h = F_ACT_OUT if cell.w_proj is None else self.fmt(name + ".h")
            f_c = self.fmt(name + ".c")
        n = cell.out_features
        base = self.state_vec(name + ".h", n, f_h, pp=True)
        h_cur = Operand(isa.SPACE_STATE, 0, 0, isa.PP_CUR)
        h_next = Operand(isa.SPACE_STATE, 0, 0, isa.PP_NEXT)
        # addresses are fixed up in finish() once all state is known; keep a symbolic tag
        h_cur.addr = h_next.addr = ("pp", base)
        if isinstance(cell, GRUCell):
            last = self.gru(cell, x, name, h_cur, h_next)
        else:
            c_op = Operand(isa.SPACE_STATE, ("np", self.state_vec(name + ".c", cell.hidden, f_c, pp=False)))
            last = self.lstm(cell, x, name, h_cur, h_next, c_op, f_h, f_c)
        return Val("step", h_next, n, f_h, last)

    # ---- layers -------------------------------------------------------------------------------------
    def materialize(self, v: Val, space=isa.SPACE_SCRATCH):
        """Make a per-step value into a whole sequence in memory (dst2 of its producer)."""
        if v.kind != "step":
            return v
        T = self.max_steps
        addr = self.scratch.take(v.n * T) if space == isa.SPACE_SCRATCH else 0
        op = Operand(space, addr, v.n)
        if v.producer.dst2.used:
            raise CompileError(f"{v.producer.note}: output needed in two extra places")
        v.producer.dst2 = op
        self.close_loop()
        return Val("seq", op, v.n, v.f, None)

    def recurrent(self, layer: Recurrent, v: Val, is_last):
        if not layer.bidirectional and not layer.reverse:
            if v.kind == "seq" or not self.in_loop:
                self.open_loop()
            x = Val("step", v.op, v.n, v.f)
            return self.cell(layer.cell, x, layer.name)
        v = self.materialize(v)
        T = self.max_steps
        n1 = layer.cell.out_features
        n = layer.out_features
        space = isa.SPACE_OUT if is_last and layer.return_sequences else isa.SPACE_SCRATCH
        addr = self.scratch.take(n * T) if space == isa.SPACE_SCRATCH else 0
        if space == isa.SPACE_OUT:
            self.out_stride = n
        outs = []
        dirs = [(layer.cell, False, ".fwd", 0), (layer.backward, True, ".bwd", n1)] if layer.bidirectional \
            else [(layer.cell, True, "", 0)]
        for cell, rev, suffix, off in dirs:
            self.open_loop(reverse=rev)
            step = self.cell(cell, Val("step", v.op, v.n, v.f), layer.name + suffix)
            step.producer.dst2 = Operand(space, addr + off, n)
            outs.append(step)
            self.close_loop()
        seq = Val("seq", Operand(space, addr, n), n, outs[0].f)
        if len({o.f for o in outs}) > 1:
            raise CompileError(f"{layer.name}: forward and backward outputs have different formats")
        if not layer.return_sequences:
            return Val("vec", seq.op, n, seq.f, None)
        return seq

    def fc(self, layer: FC, v: Val):
        act = layer.activation
        f_out = F_ACT_OUT if act in ("sigmoid", "tanh", "softsign") else self.fmt(layer.name)
        if v.kind == "seq":
            self.open_loop()
            kind = "step"
        elif v.kind == "vec":
            self.close_loop()
            kind = "vec"
        else:
            kind = "step"
        dst = self.scratch_vec(layer.out_features)
        ins = self.matvec(layer.name, layer.weight, layer.bias, [(v.op, layer.in_features, v.f)], act,
                          f_out=f_out, dst=dst)
        return Val(kind, dst, layer.out_features, f_out, ins)

    # ---- whole model ----------------------------------------------------------------------------------
    def compile(self) -> Image:
        m = self.m
        f_in = self.fmt("input")
        v = Val("seq", Operand(isa.SPACE_IN, 0, m.in_features), m.in_features, f_in)
        self.out_stride = 0
        for i, layer in enumerate(m.layers):
            is_last = i == len(m.layers) - 1
            if isinstance(layer, Flatten):
                v = self.materialize(v)
                if v.op.stride != v.n:
                    raise CompileError(f"{layer.name}: flatten needs a contiguous sequence")
                v = Val("vec", replace(v.op, stride=0), v.n * m.steps, v.f)
            elif isinstance(layer, FC):
                v = self.fc(layer, v)
            elif isinstance(layer, Recurrent):
                v = self.recurrent(layer, v, is_last)
            else:
                raise CompileError(f"{getattr(layer, 'name', layer)}: unsupported layer")
        # route the final value to OUT
        if v.op.space != isa.SPACE_OUT:
            if v.producer is None or v.producer.dst2.used:
                raise CompileError("the model's output must come from an FC or a recurrent step")
            seq = v.kind == "step" and m.sequence_output
            self.out_stride = v.n if seq else 0
            v.producer.dst2 = Operand(isa.SPACE_OUT, 0, self.out_stride)
        self.close_loop()
        self.prog.append(Instr(isa.OP_HALT))
        return self.finish(f_in, v)

    def finish(self, f_in, v: Val) -> Image:
        # state: [pp copy 0 | pp copy 1 | non-pp]
        pp_addr, a = {}, 0
        for name, n, f in self.pp_vectors:
            pp_addr[name] = a
            self.state_map[name] = {"addr": a, "len": n, "frac": f, "pp": True}
            a += n
        pp_dist = a
        a *= 2
        np_addr = {}
        for name, n, f in self.nonpp_state:
            np_addr[name] = a
            self.state_map[name] = {"addr": a, "len": n, "frac": f, "pp": False}
            a += n
        state_words = a
        for ins in self.prog:
            if ins.opcode != isa.OP_MATVEC:
                continue
            for opn in isa.OPERAND_WORDS:
                o = getattr(ins, opn)
                if isinstance(o.addr, tuple):
                    kind, name = o.addr
                    setattr(ins, opn, replace(o, addr=(pp_addr if kind == "pp" else np_addr)[name]))
        set_wait_flags(self.prog, self.max_steps, pp_dist)
        m = self.m
        flags = (FLAG_STREAMABLE if m.streamable else 0) | (FLAG_SEQ_OUTPUT if self.out_stride else 0)
        meta = {
            "name": m.name, "labels": m.labels, "bits": self.bits, "state": self.state_map,
            "layers": [list(r) for r in m.summary()],
            "frontend": vars(m.frontend) if m.frontend is not None else None,
            "steps": m.steps, "macs_once": self.once_macs,
            "fp32_weight_bytes": self.fp32_weight_bytes, "stored_weight_bytes": self.stored_weight_bytes,
            "notes": [ins.note for ins in self.prog],   # per instruction: which layer it computes
        }
        return Image(program=self.prog, params=bytes(self.params), weights=bytes(self.weights),
                     consts=bytes(self.consts), meta=meta, flags=flags, state_words=state_words,
                     scratch_words=self.scratch.size, pp_dist=pp_dist, in_features=m.in_features,
                     in_frac=f_in, out_features=m.out_features, out_frac=v.f, max_steps=self.max_steps,
                     out_step_stride=self.out_stride, weight_modes=1 << self.bits, max_k=self.max_k,
                     macs_per_step=self.loop_macs)


def _pad_rows(packed: bytes, bits, rows, cols, pad) -> bytes:
    """Append `pad` zero fields to every row of a packed weight stream."""
    if pad == 0:
        return packed
    fields = unpack_fields(packed, bits, rows * cols).reshape(rows, cols)
    return pack_fields(np.pad(fields, ((0, 0), (0, pad))).ravel(), bits)


def _ranges(ins: Instr, which: str, max_steps: int, pp_dist: int, flip=False):
    """(space, lo, hi) word ranges an instruction touches at parity 0 (`flip`: at the other parity).
    which: 'seg' (segments A/B), 'read' (everything read) or 'write'."""
    if which == "write":
        ops = [(ins.dst, ins.rows), (ins.dst2, ins.rows)]
    else:
        ops = [(ins.a, ins.a_len), (ins.b, ins.b_len)]
        if which == "read":
            if ins.diag:
                ops += [(ins.da, ins.rows), (ins.db, ins.rows)]
            if ins.combine:
                ops += [(ins.p, ins.rows), (ins.q, ins.rows)]
    out = []
    for o, n in ops:
        if not o.used or n == 0:
            continue
        lo = o.addr + (pp_dist * ((o.pp == isa.PP_NEXT) ^ flip) if o.pp else 0)
        out.append((o.space, lo, lo + n + o.stride * (max_steps - 1)))
    return out


def _overlap(r1, r2):
    return any(s1 == s2 and lo1 < hi2 and lo2 < hi1 for s1, lo1, hi1 in r1 for s2, lo2, hi2 in r2)


def set_wait_flags(prog, max_steps=1 << 16, pp_dist=1 << 16):
    """Mark read-after-write hazards on writes that may still be in flight (docs/isa.md):
    WAIT when the matrix product's segments depend on them, WAIT_EPI when only epilogue/diag
    operands do.

    The controller loads instruction i's segments while instruction i-1 streams, and reads i's
    epilogue operands after i-1 has streamed. A write of instruction j is certainly done
      - for i's segments, if some instruction L with j < L <= i-2 outlasts the drain (at least
        MAX_LANES * MAX_DRAIN_CYCLES MACs), or L <= i-1 waited (WAIT: it loaded only once
        everything before it was written); WAIT_OLDER marks a dependency on instructions
        before i-1 only (load once all but i-1 have retired);
      - for i's epilogue operands, if some L with j < L <= i-1 outlasts the drain or waited
        (WAIT or WAIT_EPI).
    Addresses are compared at the ping-pong parity each instruction runs at; loop bodies are
    walked twice so the back-edge is covered; after a loop both parities are assumed. Also
    enforces that no MATVEC's segments read what it writes itself."""
    hist = []          # [instruction, parities it may run at, index]
    barriers = []      # (index, kind): "long", "wait", "wait_epi"
    parity, idx = 0, 0

    def floor(limit, kinds):
        return max((i for i, k in barriers if i <= limit and k in kinds), default=-1)

    def writes_since(lo):
        return [r for p, pars, i in hist if i >= lo for par in pars
                for r in _ranges(p, "write", max_steps, pp_dist, par)]

    def visit(ins):
        nonlocal idx
        seg = _ranges(ins, "seg", max_steps, pp_dist, parity)
        if _overlap(_ranges(ins, "write", max_steps, pp_dist, parity), seg):
            raise CompileError(f"{ins.note}: writes a vector its own matrix product reads")
        seg_floor = max(floor(idx - 2, ("long",)), floor(idx - 1, ("wait",)))
        if _overlap(writes_since(max(seg_floor, idx - 1)), seg):
            ins.flags |= isa.FLAG_WAIT
            barriers.append((idx, "wait"))
        elif _overlap(writes_since(seg_floor), seg):
            ins.flags |= isa.FLAG_WAIT_OLDER      # only instructions before the previous one
            barriers.append((idx - 1, "wait"))    # everything before i-1 is written when i loads
        if not ins.flags & isa.FLAG_WAIT and _overlap(writes_since(floor(idx - 1, ("long", "wait", "wait_epi"))),
                      _ranges(ins, "read", max_steps, pp_dist, parity)):
            ins.flags |= isa.FLAG_WAIT_EPI
            barriers.append((idx, "wait_epi"))
        if ins.rows * ins.k >= MAX_LANES * MAX_DRAIN_CYCLES:
            barriers.append((idx, "long"))
        hist.append((ins, (parity,), idx))
        idx += 1

    body = None
    for ins in prog:
        if ins.opcode == isa.OP_LOOP:
            body = []
        elif ins.opcode == isa.OP_ENDLOOP:
            parity ^= 1          # second iteration
            for b in body:
                visit(b)
            # after T iterations the parity is unknown: keep what is in flight at both parities
            hist[:] = [(p, (0, 1), i) for p, _, i in hist]
            parity, body = 0, None
        elif ins.opcode == isa.OP_MATVEC:
            visit(ins)
            if body is not None:
                body.append(ins)


def compile_model(model: Model, calib, bits=8, steps=None, group_rows=None) -> Image:
    """IR + calibration features [N, T, F] -> Image."""
    return Compiler(model, calib, bits=bits, steps=steps, group_rows=group_rows).compile()


def report(model: Model, img: Image) -> str:
    lines = [f"model {model.name}: {model.param_count:,} parameters, weight mode {img.meta['bits']} bits"]
    for name, desc, n in model.summary():
        lines.append(f"  {name:<24} {desc:<44} {n:>9,}")
    fp32, stored = img.meta["fp32_weight_bytes"], img.meta["stored_weight_bytes"]
    lines.append(f"program: {len(img.program)} instructions, {img.macs_per_step:,} MACs per step"
                 + (f", {img.meta['macs_once']:,} once per run" if img.meta["macs_once"] else ""))
    lines.append(f"weights: {stored:,} bytes (packed + codebooks) vs {fp32:,} bytes fp32: "
                 f"compression {fp32 / max(stored, 1):.2f}x")
    lines.append(f"image: {len(img.to_bytes()):,} bytes; state {img.state_words} words, "
                 f"scratch {img.scratch_words} words, input Q.{img.in_frac}, output Q.{img.out_frac}")
    return "\n".join(lines)
