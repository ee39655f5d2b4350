"""X buffer: an instruction's input vector, read as an N-lane window that wraps at K.

Lane i of a stream cycle needs x[(p + i) mod K], p = (cycle * N_eff) mod K (docs/gateware-design.md).
The window [p, p + N) never reaches beyond K + N, so besides x itself (position k in bank k mod N,
word k div N) only the wrap-around part x[0..N-1] is needed a second time, at positions
K..K+N-1: one register per bank (bank (j + K) mod N holds x[j]). Each bank then supplies exactly
one word per cycle (a memory word below K, its register at or above K), and one rotator by
p mod N puts the words on their lanes.

Writes come W consecutive positions per cycle (the loader, or the epilogue forwarding a finished
row); consecutive positions fall in distinct banks, so every bank takes at most one write.

Per lane the unit also reports the column, from which the MAC array's masks follow:
`shifted` (the lane's column is in the shifted segment) and `zero` (padding column or past the
stream's end).
"""
from functools import reduce
from operator import or_

from migen import READ_FIRST, Array, Cat, If, Memory, Module, Mux, Signal

from rnnaccel.host.spec import ACT_BITS

from .regs import copy_reg, drop_resets

COPY_GROUP = 8  # banks or lanes served by one register copy of a shared control
ROT_EARLY = 2   # rotator levels before the stage-1 register (the rest after it)


class XBuffer(Module):
    """N banks of `kmax // N` words plus N wrap registers, per buffer; `sets` buffers.

    Configuration of buffer s (held for the whole stream): cfg[s] = dict of k (columns per stored
    row, N <= k <= kmax), k_useful (a_len + b_len; columns >= k_useful are padding), split (a_len),
    shift_b (the shifted segment is B, else A), mode16 (lane pairs share an element: N_eff = N/2).
    With one set, `k`, `k_useful`, `split`, `shift_b`, `mode16` are its attributes as well.
    Write port: we[j], wpos (position of element 0), wdata[j] for j < wr_width, into buffer `wsel`;
    `wsel` and cfg[wsel]["k"] must be set a cycle before the first write (the wrap bank uses k registered).
    Read: from buffer `rsel` (held for the stream, set at least a cycle before its first read:
    the banks take it registered), `advance` steps the window by N_eff (a pulse
    per stream cycle), `restart` sets p = 0; outputs x[i], shifted, zero appear `latency` cycles
    after the cycle the window was at p.

    The buffers share the window position, the rotator and the lane masks (one stream reads at a
    time, the other buffer loads meanwhile): buffer s is the address MSB of every bank memory and
    its own set of wrap registers.
    """

    def __init__(self, n_lanes, kmax, wr_width=4, sets=1):
        N = self.n_lanes = n_lanes
        assert kmax % N == 0 and wr_width <= N
        depth = kmax // N
        kw = (2 * kmax).bit_length()
        S = self.sets = sets
        sb = max(1, (S - 1).bit_length())
        self.cfg = [{"k": Signal(kw, name=f"k{s}"), "k_useful": Signal(kw, name=f"ku{s}"),
                     "split": Signal(kw, name=f"split{s}"), "shift_b": Signal(name=f"shb{s}"),
                     "mode16": Signal(name=f"m16_{s}")} for s in range(S)]
        if S == 1:
            for name, sig in self.cfg[0].items():
                setattr(self, name, sig)

        self.wsel = Signal(sb)
        self.rsel = Signal(sb)
        self.we = Signal(wr_width)
        self.wpos = Signal(kw)
        self.wdata = [Signal((ACT_BITS, True), name=f"wdata{j}") for j in range(wr_width)]

        self.restart = Signal()
        self.advance = Signal()
        self.remaining = Signal(32)  # elements left in the stream (lanes past it are zero)

        self.x = [Signal((ACT_BITS, True), name=f"xw{i}") for i in range(N)]
        self.shifted = Signal(N)
        self.zero = Signal(N)
        self.latency = 3

        def cfg(name, sel):
            return Array(c[name] for c in self.cfg)[sel] if S > 1 else self.cfg[0][name]

        # ---- storage -----------------------------------------------------------------------
        banks = [Memory(ACT_BITS, depth * S, name=f"xbank{b}") for b in range(N)]
        wrap = [Array(Signal((ACT_BITS, True), name=f"xwrap{s}_{b}") for b in range(N)) for s in range(S)]
        self.specials += banks
        # synchronous read, READ_FIRST: no transparency bypass behind the block RAM (a stream
        # reads one set while the loader writes the other)
        rports = [m.get_port(mode=READ_FIRST) for m in banks]
        wports = [m.get_port(write_capable=True) for m in banks]
        self.specials += rports + wports

        aw = (depth - 1).bit_length()

        def badr(word, sel):
            if S == 1:
                return word
            return Cat(word[:aw], sel) if aw else sel

        # ---- writes: position wpos+j -> bank (wpos+j) mod N, word (wpos+j) div N ------------
        lg = N.bit_length() - 1
        assert 1 << lg == N, "N must be a power of two"
        # the wrap copy: x[pos] for pos < N also lives at bank (pos + k) mod N. k mod N comes
        # registered (the configuration is set at least one cycle before the first write), and each
        # wrap register takes the one write that hits it through an AND-OR, not a priority chain
        wk = Signal(lg)
        self.sync += wk.eq(cfg("k", self.wsel)[:lg])
        whit = [[Signal(name=f"whit{b}_{j}") for j in range(wr_width)] for b in range(N)]
        for j in range(wr_width):
            wb = Signal(lg, name=f"wrapbank{j}")
            early = Signal(name=f"wearly{j}")
            self.comb += wb.eq(self.wpos[:lg] + j + wk), early.eq(self.we[j] & (self.wpos < N - j))
            for b in range(N):
                self.comb += whit[b][j].eq(early & (wb == b))
        for b in range(N):
            any_hit = Signal(name=f"whit{b}")
            wval = Signal((ACT_BITS, True), name=f"wval{b}")
            self.comb += any_hit.eq(Cat(*whit[b]) != 0), \
                wval.eq(reduce(or_, [Mux(whit[b][j], self.wdata[j], 0) for j in range(wr_width)]))
            for s in range(S):
                self.sync += If(any_hit & (self.wsel == s), wrap[s][b].eq(wval))
        for b in range(N):
            hits = [Signal(name=f"hit{b}_{j}") for j in range(wr_width)]
            for j in range(wr_width):
                self.comb += hits[j].eq(self.we[j] & (((self.wpos + j) & (N - 1)) == b))
            # at most one j hits bank b (consecutive positions, wr_width <= N)
            for j in range(wr_width):
                wadr = Signal(kw, name=f"wadr{b}_{j}")
                self.comb += wadr.eq((self.wpos + j) >> lg)
                self.comb += If(hits[j],
                                wports[b].adr.eq(badr(wadr, self.wsel)),
                                wports[b].dat_w.eq(self.wdata[j]),
                                wports[b].we.eq(1))

        # ---- window position --------------------------------------------------------------------
        rk = cfg("k", self.rsel)
        p = Signal(kw)
        step = Signal(kw)
        self.comb += If(cfg("mode16", self.rsel), step.eq(N // 2)).Else(step.eq(N))
        self.sync += If(self.restart, p.eq(0)).Elif(self.advance,
            If(p + step >= rk, p.eq(p + step - rk)).Else(p.eq(p + step)))

        # ---- read: bank b serves lane (b - p) mod N at position p + ((b - p) mod N) -------------
        # The buffer select, the rotator's stage-2 amount and the stage-2 mode16 reach every bank
        # or lane: each group of COPY_GROUP banks/lanes has its own register copy of them (the
        # select thus reaches the bank addresses a cycle after rsel: it is held for the stream and
        # set at least a cycle before its first read)
        grp = [i // COPY_GROUP for i in range(N)]
        n_grp = grp[-1] + 1
        sel1_g = [copy_reg(self, self.rsel, f"xsel{g}", self.advance) for g in range(n_grp)] if S > 1 else []
        q, r = Signal(kw), Signal(lg)
        self.comb += q.eq(p >> lg), r.eq(p[:lg])
        use_wrap = Signal(N)
        for b in range(N):
            pos = Signal(kw, name=f"rp{b}")
            radr = Signal(kw, name=f"radr{b}")
            self.comb += If(b >= r, pos.eq((q << lg) + b)).Else(pos.eq(((q + 1) << lg) + b))
            self.comb += radr.eq(pos >> lg), rports[b].adr.eq(badr(radr, sel1_g[grp[b]] if S > 1 else 0))
            self.sync += use_wrap[b].eq(pos >= rk)
        # stage 1 (the memory's read register): pick memory word or wrap register, the first
        # rotator levels, registered; stage 2: the other rotator levels -> x
        r1 = Signal(lg)
        rem1, rem2 = Signal(32), Signal(32)
        sel1, sel2 = Signal(sb), Signal(sb)
        self.sync += r1.eq(r), rem1.eq(self.remaining), rem2.eq(rem1), \
            sel1.eq(self.rsel), sel2.eq(sel1)
        # rotate by r (win[i] = word[(r + i) mod N]) as log2(N) levels of 2:1 muxes, not N N:1
        # muxes; rotations commute, so the first ROT_EARLY levels (by r1) go before the stage-1
        # register, beside the wrap pick, and the rest (by r1 one cycle later, per lane group) after it
        def rotate(vals, sel, levels):     # sel[i]: the amount as lane i's mux sees it
            for lv in levels:
                nxt = [Signal((ACT_BITS, True), name=f"rot{lv}_{i}") for i in range(N)]
                for i in range(N):
                    self.comb += If(sel[i][lv], nxt[i].eq(vals[(i + (1 << lv)) % N])).Else(nxt[i].eq(vals[i]))
                vals = nxt
            return vals
        early = min(ROT_EARLY, lg)
        pick = [Signal((ACT_BITS, True), name=f"pick{b}") for b in range(N)]
        for b in range(N):
            wr_b = Array(wrap[s][b] for s in range(S))[sel1_g[grp[b]]] if S > 1 else wrap[0][b]
            self.comb += If(use_wrap[b], pick[b].eq(wr_b)).Else(pick[b].eq(rports[b].dat_r))
        part = rotate(pick, [r1] * N, range(early))
        word = [Signal((ACT_BITS, True), name=f"word{b}") for b in range(N)]
        self.sync += [word[b].eq(part[b]) for b in range(N)]
        r2_g = [copy_reg(self, r1, f"xrot{g}", self.advance) for g in range(n_grp)]
        win = rotate(word, [r2_g[grp[i]] for i in range(N)], range(early, lg))
        # lane i takes element i (element i // 2 for paired 16-bit lanes). Its column depends on p
        # only, not on the memory data: pipelined beside the data path, one carry chain per stage
        # (p + e; wrap at k; the segment and padding compares), each with its stage's configuration.
        names = list(self.cfg[0])
        cfgs = [{n: Signal.like(self.cfg[0][n], name=f"{n}_s{t}") for n in names} for t in range(3)]
        for t, sel in enumerate((self.rsel, sel1, sel2)):
            self.comb += [cfgs[t][n].eq(cfg(n, sel)) for n in names]
        c0, c1, c2 = cfgs
        m16_g = [copy_reg(self, c1["mode16"], f"xm16_{g}", self.advance) for g in range(n_grp)]   # = c2's
        for i in range(N):
            e0, e1, e2 = (Signal(lg + 1, name=f"el{i}_{t}") for t in range(3))
            pe = Signal(kw + 1, name=f"pe{i}")
            col = Signal(kw + 1, name=f"col{i}")
            self.comb += If(c0["mode16"], e0.eq(i // 2)).Else(e0.eq(i))
            self.sync += pe.eq(p + e0), e1.eq(e0), e2.eq(e1)
            self.sync += If(pe >= c1["k"], col.eq(pe - c1["k"])).Else(col.eq(pe))
            self.sync += [
                If(m16_g[grp[i]], self.x[i].eq(win[i // 2])).Else(self.x[i].eq(win[i])),
                self.shifted[i].eq((col < c2["split"]) ^ c2["shift_b"]),
                self.zero[i].eq((col >= c2["k_useful"]) | (e2 >= rem2)),
            ]
        # everything but the window position is data, recomputed each cycle or written by the loader
        drop_resets(self, keep=[p])
