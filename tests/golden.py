"""A deliberately naive, scalar, arbitrary-precision interpreter of the layer program, written from
docs/isa.md and docs/arithmetic.md. It shares nothing with the vectorised simulator but the weight
decoder and the activation tables (each tested on its own), so agreement checks the simulator's
float64-BLAS shortcut, shifts, rounding, saturation and addressing."""
from rnnaccel.host import activation, isa
from rnnaccel.host.simulator import decode_bias, decode_weights


def rnd(v, r):  # shift right by r with round half up; left shift when r < 0
    return (v + (1 << (r - 1))) >> r if r > 0 else v << -r


def sat(v, bits=16):
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


def wrap48(v):
    v &= (1 << 48) - 1
    return v - (1 << 48) if v >> 47 else v


def act(name, z):
    return z if name == "none" else int(activation.act_q(name, [z])[0])


def run(img, x_q, state=None, parity=0):
    """x_q: list of T lists of ints. Returns (out list, state list, parity)."""
    T, F = len(x_q), img.in_features
    mem = {isa.SPACE_IN: [0] * (img.max_steps * F),
           isa.SPACE_OUT: [0] * max(1, img.max_steps * img.out_step_stride if img.seq_output else img.out_features),
           isa.SPACE_STATE: list(state) if state is not None else [0] * img.state_words,
           isa.SPACE_SCRATCH: [0] * img.scratch_words,
           isa.SPACE_CONST: [int.from_bytes(img.consts[i:i + 2], "little", signed=True)
                             for i in range(0, len(img.consts), 2)]}
    for t in range(T):
        mem[isa.SPACE_IN][t * F:(t + 1) * F] = x_q[t]

    def addr(o, t, j=0):
        a = o.addr + o.stride * t + j
        if o.pp:
            a += img.pp_dist * (parity ^ (o.pp == isa.PP_NEXT))
        return a

    def rd(o, t, j):
        return mem[o.space][addr(o, t, j)]

    pc, loop = 0, None
    prog = img.program
    while prog[pc].opcode != isa.OP_HALT:
        ins = prog[pc]
        if ins.opcode == isa.OP_LOOP:
            loop = [pc + 1, ins.count or T, ins.reverse, 0]
            pc += 1
            continue
        if ins.opcode == isa.OP_ENDLOOP:
            parity ^= 1
            loop[3] += 1
            pc, loop = (loop[0], loop) if loop[3] < loop[1] else (pc + 1, None)
            continue
        t = T - 1 if loop is None else (loop[1] - 1 - loop[3] if loop[2] else loop[3])
        W = decode_weights(img, ins).tolist()
        bias = decode_bias(img, ins).tolist()
        ys = []
        for j in range(ins.rows):
            acc = bias[j]
            for k in range(ins.a_len):
                acc += (rd(ins.a, t, k) * W[j][k]) << ins.a_shift
            for k in range(ins.b_len):
                acc += (rd(ins.b, t, k) * W[j][ins.a_len + k]) << ins.b_shift
            acc = wrap48(acc)
            if ins.diag:
                acc = wrap48(acc + rnd(rd(ins.da, t, j) * rd(ins.db, t, j), -ins.diag_shift))
            a = act(ins.act, sat(rnd(acc, ins.out_shift)))
            if ins.combine == isa.COMB_NONE:
                y = a
            elif ins.combine == isa.COMB_MUL:
                y = sat(rnd(a * rd(ins.p, t, j), ins.s_c))
            elif ins.combine == isa.COMB_GRU:
                y = sat(a + rnd(rd(ins.p, t, j) * (rd(ins.q, t, j) - a), 14))
            elif ins.combine == isa.COMB_MAC:
                y = sat(rnd(a * rd(ins.p, t, j) + (rd(ins.q, t, j) << ins.s_q), ins.s_c))
            else:
                y = sat(rnd(a * act(ins.act2, sat(rnd(rd(ins.p, t, j), ins.s_p))), ins.s_c))
            ys.append(y)
        for o in (ins.dst, ins.dst2):
            if o.used:
                for j, y in enumerate(ys):
                    mem[o.space][addr(o, t, j)] = y
        pc += 1
    return mem[isa.SPACE_OUT], mem[isa.SPACE_STATE], parity
