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
from migen import Array, If, Memory, Module, Signal

from rnnaccel.host.spec import ACT_BITS


class XBuffer(Module):
    """N banks of `kmax // N` words plus N wrap registers.

    Configuration (held for the whole stream): k (columns per stored row, N <= k <= kmax),
    k_useful (a_len + b_len; columns >= k_useful are padding), split (a_len), shift_b (the shifted
    segment is B, else A), mode16 (lane pairs share an element: N_eff = N/2).
    Write port: we[j], wpos (position of element 0), wdata[j] for j < wr_width.
    Read: `advance` steps the window by N_eff (a pulse per stream cycle), `restart` sets p = 0;
    outputs x[i], col[i], shifted, zero appear `latency` cycles after the cycle the window was
    at p.
    """

    def __init__(self, n_lanes, kmax, wr_width=4):
        N = self.n_lanes = n_lanes
        assert kmax % N == 0 and wr_width <= N
        depth = kmax // N
        kw = (2 * kmax).bit_length()
        self.k = Signal(kw)
        self.k_useful = Signal(kw)
        self.split = Signal(kw)
        self.shift_b = Signal()
        self.mode16 = Signal()

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

        # ---- storage -----------------------------------------------------------------------
        banks = [Memory(ACT_BITS, depth, name=f"xbank{b}") for b in range(N)]
        wrap = Array(Signal((ACT_BITS, True), name=f"xwrap{b}") for b in range(N))
        self.specials += banks
        rports = [m.get_port() for m in banks]            # synchronous read
        wports = [m.get_port(write_capable=True) for m in banks]
        self.specials += rports + wports

        # ---- writes: position wpos+j -> bank (wpos+j) mod N, word (wpos+j) div N ------------
        lg = N.bit_length() - 1
        assert 1 << lg == N, "N must be a power of two"
        for j in range(wr_width):
            pos = Signal(kw, name=f"wp{j}")
            self.comb += pos.eq(self.wpos + j)
            # the wrap copy: x[pos] for pos < N also lives at bank (pos + k) mod N
            wb = Signal(lg, name=f"wrapbank{j}")
            self.comb += wb.eq(pos + self.k)
            self.sync += If(self.we[j] & (pos < N), wrap[wb].eq(self.wdata[j]))
        for b in range(N):
            hits = [Signal(name=f"hit{b}_{j}") for j in range(wr_width)]
            for j in range(wr_width):
                self.comb += hits[j].eq(self.we[j] & (((self.wpos + j) & (N - 1)) == b))
            # at most one j hits bank b (consecutive positions, wr_width <= N)
            for j in range(wr_width):
                self.comb += If(hits[j],
                                wports[b].adr.eq((self.wpos + j) >> lg),
                                wports[b].dat_w.eq(self.wdata[j]),
                                wports[b].we.eq(1))

        # ---- window position --------------------------------------------------------------------
        p = Signal(kw)
        step = Signal(kw)
        self.comb += If(self.mode16, step.eq(N // 2)).Else(step.eq(N))
        self.sync += If(self.restart, p.eq(0)).Elif(self.advance,
            If(p + step >= self.k, p.eq(p + step - self.k)).Else(p.eq(p + step)))

        # ---- read: bank b serves lane (b - p) mod N at position p + ((b - p) mod N) -------------
        q, r = Signal(kw), Signal(lg)
        self.comb += q.eq(p >> lg), r.eq(p[:lg])
        use_wrap = Signal(N)
        for b in range(N):
            pos = Signal(kw, name=f"rp{b}")
            self.comb += If(b >= r, pos.eq((q << lg) + b)).Else(pos.eq(((q + 1) << lg) + b))
            self.comb += rports[b].adr.eq(pos >> lg)
            self.sync += use_wrap[b].eq(pos >= self.k)
        # stage 1 (the memory's read register): pick memory word or wrap register, registered
        # (the block RAM's clock-to-out stays out of the rotator); stage 2: rotate by r -> x
        r1, r2 = Signal(lg), Signal(lg)
        p1, p2 = Signal(kw), Signal(kw)
        rem1, rem2 = Signal(32), Signal(32)
        self.sync += r1.eq(r), p1.eq(p), rem1.eq(self.remaining), r2.eq(r1), p2.eq(p1), rem2.eq(rem1)
        word = [Signal((ACT_BITS, True), name=f"word{b}") for b in range(N)]
        for b in range(N):
            self.sync += If(use_wrap[b], word[b].eq(wrap[b])).Else(word[b].eq(rports[b].dat_r))
        # rotate by r2 (win[i] = word[(r2 + i) mod N]) as log2(N) levels of 2:1 muxes, not N
        # N:1 muxes
        win = word
        for lv in range(lg):
            nxt = [Signal((ACT_BITS, True), name=f"rot{lv}_{i}") for i in range(N)]
            for i in range(N):
                self.comb += If(r2[lv], nxt[i].eq(win[(i + (1 << lv)) % N])).Else(nxt[i].eq(win[i]))
            win = nxt
        # lane i takes element i (element i // 2 for paired 16-bit lanes)
        for i in range(N):
            col = Signal(kw + 1, name=f"col{i}")
            e = Signal(lg + 1, name=f"el{i}")
            self.comb += If(self.mode16, e.eq(i // 2)).Else(e.eq(i))
            self.comb += If(p2 + e >= self.k, col.eq(p2 + e - self.k)).Else(col.eq(p2 + e))
            self.sync += [
                If(self.mode16, self.x[i].eq(win[i // 2])).Else(self.x[i].eq(win[i])),
                self.shifted[i].eq((col < self.split) ^ self.shift_b),
                self.zero[i].eq((col >= self.k_useful) | (e >= rem2)),
            ]
