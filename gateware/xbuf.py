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
from migen import READ_FIRST, Array, C, Cat, If, Memory, Module, Mux, Signal

from rnnaccel.host.spec import ACT_BITS

from .bram import collision_free, registered_read
from .regs import InputCopies, copy_reg, drop_resets

COPY_GROUP = 8  # banks or lanes served by one register copy of a shared control
SEL_GROUP = 2   # banks served by one copy of the buffer select (it reaches ~50 cells per bank)
LANE_GROUP = 2  # lanes served by one copy of mode16 (it picks each lane's 16-bit element)
ROT_STAGES = 3  # register stages of the rotator
ROT_GROUP = 2   # lanes served by one copy of a rotator stage's amount (its lanes' multipliers lie apart)


class XBuffer(Module):
    """N banks of `kmax // N` words plus N wrap registers, per buffer; `sets` buffers.

    Configuration of buffer s (set before the stream's restart, held for the whole stream): cfg[s] = dict of k (columns per stored
    row, N <= k <= kmax), k_useful (a_len + b_len; columns >= k_useful are padding), split (a_len),
    shift_b (the shifted segment is B, else A), mode16 (lane pairs share an element: N_eff = N/2).
    With one set, `k`, `k_useful`, `split`, `shift_b`, `mode16` are its attributes as well.
    Write port: we[j], wpos (position of element j = 0), data: element j is wdata[(j + wrot) mod
    wr_width] (the vector pool's banks in bank order: the rotation joins the unit's own), into buffer `wsel`;
    `wsel` and cfg[wsel]["k"] must be set a cycle before the first write (the wrap bank uses k registered);
    a write lands `write_latency` (3) cycles after it is presented (readable from the cycle after that).
    Read: `restart` sets p = 0 and starts a stream on buffer `rsel` (rsel held from the cycle after
    restart to the stream's end), `advance` steps the window by N_eff (a pulse per stream cycle;
    the first no earlier than `settle` cycles after restart, the previous stream's last one
    before it); outputs x[i], shifted, zero appear `latency` cycles after the cycle the window
    was at p, shifted_early and zero_early (the same masks) one cycle before them.

    The buffers share the window position, the rotator and the lane masks (one stream reads at a
    time, the other buffer loads meanwhile): buffer s is the address MSB of every bank memory and
    its own set of wrap registers.

    With `external_restart` the parent drives the copies of `restart` and `advance`
    (`restarts.copies`, `advances.copies`: regs.drive_copies, from their next values).
    """

    def __init__(self, n_lanes, kmax, wr_width=4, sets=1, external_restart=False):
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
        self.wrot = Signal(max(1, (wr_width - 1).bit_length()))

        self.restart = Signal()
        self.advance = Signal()
        self.remaining = Signal(32)  # elements left in the stream (lanes past it are zero)

        self.x = [Signal((ACT_BITS, True), name=f"xw{i}") for i in range(N)]
        self.shifted = Signal(N)
        self.zero = Signal(N)
        self.latency = 5 + ROT_STAGES

        def cfg(name, sel):
            return Array(c[name] for c in self.cfg)[sel] if S > 1 else self.cfg[0][name]

        # ---- storage -----------------------------------------------------------------------
        # (the loader writes the buffer that no stream reads: no read meets a write to its word)
        banks = collision_free(*[Memory(ACT_BITS, depth * S, name=f"xbank{b}") for b in range(N)])
        wrap = [Array(Signal((ACT_BITS, True), name=f"xwrap{s}_{b}") for b in range(N)) for s in range(S)]
        self.specials += banks
        # each bank a block RAM read through its output register (latency two: bram.py), not LUT
        # RAM (at N = 32 the LUT RAM took some 3,000 LUT sites and its read mux 500 more);
        # READ_FIRST: no transparency bypass behind it (a stream reads one set while the loader
        # writes the other)
        rports = [registered_read(self, m, mode=READ_FIRST) for m in banks]
        wports = [m.get_port(write_capable=True) for m in banks]
        self.specials += wports

        aw = (depth - 1).bit_length()

        def badr(word, sel):
            if S == 1:
                return word
            return Cat(word[:aw], sel) if aw else sel

        grp = [i // COPY_GROUP for i in range(N)]
        n_grp = grp[-1] + 1
        # `restart` clears every bank's read address: one copy per group of banks (InputCopies)
        self.restarts = InputCopies(self, self.restart, external_restart)
        restart_g = [self.restarts.get(f"xrestart{g}") for g in range(n_grp)]
        restart = self.restarts.get("xrestart")
        # `advance` moves the position registers and every bank's read address: a copy for the
        # positions and one per group of banks (the parent drives them from the advance's next
        # value, like the restarts)
        self.advances = InputCopies(self, self.advance, external_restart)
        # and of `rsel` (each pick of the buffer's values and each select copy below has its
        # own: one register reaching the geometry picks and the select copies took 12.1 ns)
        assert S <= 2           # (a 1-bit select: InputCopies)
        self.rsels = InputCopies(self, self.rsel, external_restart)
        advance_g = [self.advances.get(f"xadvance{g}") for g in range(n_grp)]
        advance = self.advances.get("xadvance")

        # ---- writes: position wpos+j -> bank (wpos+j) mod N, word (wpos+j) div N ------------
        lg = N.bit_length() - 1
        assert 1 << lg == N, "N must be a power of two"
        # Writes land three cycles after they are presented, through three register stages:
        # P the inputs where they arrive (the run's first bank R = wpos mod N, its word q and
        # q + 1, the wrapped start R' = (wpos + k) mod N, each element's `early` flag: position
        # < N, it has a wrap copy); A the W words rotated once, for all banks, so that word m
        # is the element bound for a bank b with b mod W == m (element (b - R) mod N), with the
        # write enables rotated alike, and per bank whether the run covers it and which word it
        # takes; B per bank and per wrap register its write, a wire from the rotated words.
        # The wrap copy: x[pos] for pos < N also lives at bank (pos + k) mod N, the same
        # rotation by R'. So the decode is two W-word rotators, not a W:1 select per bank.
        W = wr_width
        lw = W.bit_length() - 1
        assert 1 << lw == W, "wr_width must be a power of two"
        we_p, early_p, wsel_p = Signal(W), Signal(W), Signal(sb)
        r_p, rw_p = Signal(lg), Signal(lg)             # R and R' (bank of element 0, direct and wrapped)
        d_p, dw_p = Signal(lw), Signal(lw)             # the data's rotations: R - wrot, R' - wrot (mod W)
        q_p, q1_p = Signal(kw - lg), Signal(kw - lg)
        wdat_p = [Signal((ACT_BITS, True), name=f"xwdat{j}", reset_less=True) for j in range(W)]
        # (k mod N of the written buffer a register: the buffer pick and two adders before d_p
        # took 10.1 ns)
        wrapped_pos, k_lo = Signal(lg + 1), Signal(lg)
        self.sync += k_lo.eq(cfg("k", self.wsel)[:lg])
        self.comb += wrapped_pos.eq(self.wpos[:lg] + k_lo)
        self.sync += d_p.eq(self.wpos[:lw] - self.wrot), dw_p.eq(wrapped_pos[:lw] - self.wrot)
        self.sync += we_p.eq(self.we), wsel_p.eq(self.wsel), r_p.eq(self.wpos[:lg]), \
            rw_p.eq(wrapped_pos[:lg]), q_p.eq(self.wpos >> lg), q1_p.eq((self.wpos >> lg) + 1), \
            [early_p[j].eq(self.we[j] & (self.wpos < N - j)) for j in range(W)], \
            [wdat_p[j].eq(self.wdata[j]) for j in range(W)]
        self.write_latency = 3

        def rot_w(vals, amount, width):   # out[m] = vals[(m - amount) mod W]
            for lv in range(lw):
                vals = [Mux(amount[lv], vals[(m - (1 << lv)) % W], vals[m]) for m in range(W)]
            out = [Signal(width, name=f"xrotw{m}", reset_less=True) for m in range(W)]
            self.sync += [o.eq(v) for o, v in zip(out, vals)]
            return out
        rot = rot_w(wdat_p, d_p, ACT_BITS)                 # stage A
        wrot = rot_w(wdat_p, dw_p, ACT_BITS)
        rwe = rot_w([we_p[j] for j in range(W)], r_p, 1)
        rwearly = rot_w([early_p[j] for j in range(W)], rw_p, 1)

        def covers(start, b):
            """The W-position run from bank `start` covers bank b (b in [start, start + W) mod N)."""
            if W == N:
                return C(1)
            chunk = start[lw:]                   # the run's first chunk of W banks, then the next
            return Mux(b % W >= start[:lw], chunk == b >> lw, chunk == ((b >> lw) - 1) % (N >> lw))
        a_sel = [copy_reg(self, wsel_p, f"xa_sel{g}") for g in range(n_grp)]
        a_q = [copy_reg(self, q_p, f"xa_q{g}") for g in range(n_grp)]
        a_q1 = [copy_reg(self, q1_p, f"xa_q1_{g}") for g in range(n_grp)]
        for b in range(N):
            g, m = grp[b], b % W
            cov, wcov, low = Signal(name=f"xcov{b}"), Signal(name=f"xwcov{b}"), Signal(name=f"xlow{b}")
            self.sync += cov.eq(covers(r_p, b)), wcov.eq(covers(rw_p, b)), low.eq(b < r_p)
            # stage B: the bank's write (word q, or q + 1 for a bank below R: past the row of banks)
            b_we = Signal(name=f"bwe{b}")
            b_adr = Signal(len(wports[b].adr), name=f"badr{b}")
            b_dat = Signal((ACT_BITS, True), name=f"bdat{b}")
            self.sync += b_we.eq(rwe[m] & cov), b_dat.eq(rot[m]), \
                b_adr.eq(badr(Mux(low, a_q1[g], a_q[g]), a_sel[g]))
            self.comb += wports[b].adr.eq(b_adr), wports[b].dat_w.eq(b_dat), wports[b].we.eq(b_we)
            wen = [Signal(name=f"wen{s}_{b}") for s in range(S)]
            wval = Signal((ACT_BITS, True), name=f"wval{b}")
            self.sync += [wen[s].eq(rwearly[m] & wcov & (a_sel[g] == s)) for s in range(S)], wval.eq(wrot[m])
            for s in range(S):
                self.sync += If(wen[s], wrap[s][b].eq(wval))

        # ---- window position ----------------------------------------------------------------------
        # The stream's geometry comes registered from buffer rsel (constant for the stream): k,
        # the step N_eff, and k - step for the wrap test. Besides p, the position registers hold
        # the next two window positions (pn, pnn) and, for pn, what a bank address needs: its word
        # q, q + 1 and per bank b >= pn mod N. An advance then only moves registers (each bank's
        # read address is a register of its own, loaded through a 2:1 mux), and the one adder pair
        # that wraps a position works on registers. After restart (p = 0) the registers settle
        # while the stream starts up (4 cycles): the first advance may come `settle` (5) cycles
        # later, the fifth for the core's loader (its last write lands 5 cycles after LOADED).
        self.settle = 5
        rd_k, rd_step, rd_kms = Signal(kw), Signal(kw), Signal(kw)
        # (k - step a register per buffer, a cycle behind its configuration: no adder behind the
        # buffer select, which took 11.0 ns)
        kms = [Signal(kw, name=f"xkms{s_}") for s_ in range(S)]
        self.sync += [kms[s_].eq(self.cfg[s_]["k"] - Mux(self.cfg[s_]["mode16"], N // 2, N)) for s_ in range(S)]
        rsel_rd = self.rsels.get("xrsel_rd")
        self.sync += rd_k.eq(cfg("k", rsel_rd)), \
            If(cfg("mode16", rsel_rd), rd_step.eq(N // 2)).Else(rd_step.eq(N)), \
            rd_kms.eq(Array(kms)[rsel_rd] if S > 1 else kms[0])

        def wrap_next(x):        # (x + step) mod k for x < k (k >= step)
            s, t = Signal(kw + 1), Signal((kw + 2, True))
            self.comb += s.eq(x + rd_step), t.eq(x - rd_kms)
            return Mux(t[-1], s, t)
        p, pn, pnn = Signal(kw), Signal(kw), Signal(kw)
        p_next = Signal(kw)          # (also for the lane masks' copies of p, below)
        self.comb += If(restart, p_next.eq(0)).Elif(advance, p_next.eq(pn)).Else(p_next.eq(p))
        self.sync += [
            p.eq(p_next), If(~restart, If(advance, pn.eq(pnn)).Else(pn.eq(wrap_next(p)))),
            pnn.eq(Mux(advance, wrap_next(pnn), wrap_next(pn))),   # (the advance picks last: 12.1 ns before the adders)
        ]
        nx = Signal(kw)          # pn after this cycle (when advancing), else pn itself: the derived
        self.comb += nx.eq(Mux(advance, pnn, pn))   # registers follow pn a cycle late when idle
        # (pn's word q and q + 1 in a register per SEL_GROUP banks: one per COPY_GROUP reached
        # its banks' address registers along the die in 10.4 ns)
        n_q = -(-N // SEL_GROUP)
        q_nx, q1_nx = Signal(kw - lg), Signal(kw - lg)
        self.comb += q_nx.eq(nx >> lg), q1_nx.eq((nx >> lg) + 1)
        qn_g = [copy_reg(self, q_nx, f"xqn{g}") for g in range(n_q)]
        qn1_g = [copy_reg(self, q1_nx, f"xqn1_{g}") for g in range(n_q)]
        gen = Signal(N)
        # (each bank's test on pn and on pnn, the advance picking between them last: no adder's
        # carry chain behind the advance's mux)
        self.sync += [gen[b].eq(Mux(advance, b >= pnn[:lg], b >= pn[:lg])) for b in range(N)]

        # ---- read: bank b serves lane (b - p) mod N at position p + ((b - p) mod N) -------------
        # The buffer select, the rotator's stage-2 amount and the stage-2 mode16 reach every bank
        # or lane: each group of COPY_GROUP banks/lanes has its own register copy of them (the
        # select thus reaches the bank addresses a cycle after rsel, well within `settle`)
        # (the select also picks each bank's wrap register and LUT-RAM half: a copy per SEL_GROUP
        # banks, each from a copy of rsel per four of them: one register reaching the sixteen
        # copies by the banks along the die took 11.4 ns)
        n_sel = -(-N // SEL_GROUP)
        sel_in = [self.rsels.get(f"xrsel_s{c}") for c in range(-(-n_sel // 4))]
        sel_copies = [copy_reg(self, sel_in[c // 4], f"xsel{c}") for c in range(n_sel)] if S > 1 else []
        sel1_g = {b: sel_copies[b // SEL_GROUP] for b in range(N)} if S > 1 else {}
        k_g = [copy_reg(self, rd_k, f"xk{g}") for g in range(n_grp)]     # (from rd_k: no buffer pick before the copies)
        use_wrap = Signal(N)
        radr = [Signal(kw - lg, name=f"radr{b}") for b in range(N)]
        for b in range(N):
            self.sync += If(restart_g[grp[b]], radr[b].eq(0)).Elif(advance_g[grp[b]],
                If(gen[b], radr[b].eq(qn_g[b // SEL_GROUP])).Else(radr[b].eq(qn1_g[b // SEL_GROUP])))
            self.comb += rports[b].adr.eq(badr(radr[b], sel1_g[b] if S > 1 else 0))
            self.sync += use_wrap[b].eq(Cat(C(b, lg), radr[b]) >= k_g[grp[b]])
        # the wrap test and the buffer select once more, beside the block RAMs' output registers,
        # and the wrap test a third time beside the bank words' own register
        use_wrap2, use_wrap3 = Signal(N), Signal(N)
        self.sync += use_wrap2.eq(use_wrap), use_wrap3.eq(use_wrap2)
        # (the second select a copy per bank: from a copy per SEL_GROUP banks one hop to a bank's
        # wrap pick took 9.5 ns)
        sel2 = [copy_reg(self, sel1_g[b], f"xsel2_{b}") for b in range(N)] if S > 1 else []
        # stage 1: the bank's block RAM read (its address register), stage 2: its output register,
        # stage 3: a fabric register of the word (the block RAMs sit in rows of their own, the
        # pick and the rotator near the lanes: the way between gets a cycle to itself); then the
        # pick of memory word or wrap register, registered (stage 4); stages 5..7: the
        # rotator, a third of its levels each (one 4:1 mux per bit at N = 32), and the 16-bit
        # pair pick in stage 7 -> x. A rotator level moves words across lanes, and the lanes'
        # multipliers spread over the die, so each stage holds about one slice of logic
        # rotate by r (win[i] = word[(r + i) mod N]) as log2(N) levels of 2:1 muxes, not N N:1
        # muxes; rotations commute, so the levels can go in any order over the stages, each stage
        # by p as many cycles late as it runs after the window's cycle (per lane group)
        def rotate(vals, sel, levels):     # sel[i]: the amount as lane i's mux sees it
            for lv in levels:
                nxt = [Signal((ACT_BITS, True), name=f"rot{lv}_{i}") for i in range(N)]
                for i in range(N):
                    self.comb += If(sel[i][lv], nxt[i].eq(vals[(i + (1 << lv)) % N])).Else(nxt[i].eq(vals[i]))
                vals = nxt
            return vals
        vals = [Signal((ACT_BITS, True), name=f"pick{b}", reset_less=True) for b in range(N)]
        # the streaming buffer's wrap register picked two stages early (the loader writes only the
        # other buffer's while a stream runs, and a wrap register is read two cycles after the
        # bank it stands for): the pick behind the bank word's register is one 2:1 mux
        for b in range(N):
            if S > 1:
                wr_b = Signal((ACT_BITS, True), name=f"xwsel{b}", reset_less=True)
                self.sync += wr_b.eq(Array(wrap[s][b] for s in range(S))[sel2[b]])
            else:
                wr_b = wrap[0][b]
            wr_b2 = Signal((ACT_BITS, True), name=f"xwsel2_{b}", reset_less=True)
            word = Signal((ACT_BITS, True), name=f"xword{b}", reset_less=True)
            self.sync += wr_b2.eq(wr_b), word.eq(rports[b].dat_r), \
                If(use_wrap3[b], vals[b].eq(wr_b2)).Else(vals[b].eq(word))
        per = -(-lg // ROT_STAGES)
        r = Signal(lg, name="xr0")
        r_a = Signal(lg, name="xr0a")
        self.sync += r_a.eq(p[:lg]), r.eq(r_a)
        for k in range(ROT_STAGES):
            r_next = Signal(lg, name=f"xr{k + 1}")
            self.sync += r_next.eq(r)
            r = r_next                                   # p, k + 3 cycles late
            r_g = [copy_reg(self, r, f"xrot{k}_{g}") for g in range(-(-N // ROT_GROUP))]   # k + 4 late
            part = rotate(vals, [r_g[i // ROT_GROUP] for i in range(N)], range(k * per, min(lg, (k + 1) * per)))
            if k == ROT_STAGES - 1:
                win = part
                break
            vals = [Signal((ACT_BITS, True), name=f"word{k}_{b}", reset_less=True) for b in range(N)]
            self.sync += [vals[b].eq(part[b]) for b in range(N)]
        # lane i takes element i (element i // 2 for paired 16-bit lanes). Its column depends on p
        # only, not on the memory data: pipelined beside the data path, one cycle ahead of it. The
        # lanes a mask covers are a run of elements: with col = p + e (less k past the wrap),
        # col >= k <=> e >= k - p, col < split <=> e < split - p (e < split + k - p past the
        # wrap), and so on. So per lane group the bounds (k - p, split - p, ...; clamped to
        # 0..N) are computed once (the differences registered in stage 1, clamped in stage 2),
        # and each lane compares its constant element index with them (stage 3: a few LUTs, no
        # carry chain per lane; the compares registered, then their picks: stage 4). The masks
        # are ready at latency 4, registered at 5, 6 and 7
        # (`shifted_early`, `zero_early`: the MAC array applies them to the weights before its
        # multipliers) and again at 8. The stream's
        # configuration comes registered once (the buffer's values picked by rsel), then per lane
        # group; it changes three cycles after restart, when the previous stream's last window
        # has passed stage 1 and before the new one's (rsel -> pick -> every group's copies
        # took 10.8 ns).
        # The bounds past the wrap (split + k, k_useful + k) are registers per buffer, a cycle
        # behind its configuration (which is set while the buffer loads, cycles before a stream
        # on it begins): no adder behind the buffer select.
        names = list(self.cfg[0])
        past_wrap = []
        for s_ in range(S):
            d = {}
            for n in ("split", "k_useful"):
                d[n] = Signal(kw + 1, name=f"{n}_k{s_}")
                self.sync += d[n].eq(self.cfg[s_][n] + self.cfg[s_]["k"])
            past_wrap.append(d)

        def clamp_n(x, name):
            """x clamped to 0..N, registered (x signed)."""
            r = Signal(lg + 1, name=name)
            big = Signal(name=name + "_big")
            self.comb += big.eq(x[lg:len(x) - 1] != 0)
            self.sync += If(x[-1], r.eq(0)).Elif(big, r.eq(N)).Else(r.eq(x[:lg]))
            return r
        bounds = []
        geo = {n: Signal.like(self.cfg[0][n], name=f"xgeo_{n}") for n in names}
        for n in ("split", "k_useful"):
            geo[n + "_k"] = Signal.like(past_wrap[0][n], name=f"xgeo_{n}_k")
            self.sync += geo[n + "_k"].eq(Array(d[n] for d in past_wrap)[self.rsels.get(f"xrsel_{n}_k")]
                                          if S > 1 else past_wrap[0][n])
        self.sync += [geo[n].eq(cfg(n, self.rsels.get(f"xrsel_{n}"))) for n in names]
        for g in range(n_grp):
            c = {n: copy_reg(self, geo[n], f"xc{g}_{n}") for n in geo}
            bd = {}
            p_g = copy_reg(self, p_next, f"xp{g}")        # == p (one register reaching every group's
            for n in ("k", "split", "split_k", "k_useful", "k_useful_k"):   # subtractors: 10.5 ns)
                diff = Signal((kw + 3, True), name=f"xd{g}_{n}")
                self.sync += diff.eq(c[n] - p_g)         # stage 1: the difference, registered
                bd[n] = clamp_n(diff, f"xb{g}_{n}")      # stage 2: clamped
            flags = [Signal(name=f"xb{g}_shb1"), Signal(name=f"xb{g}_m16_1")]
            bd["shift_b"], bd["mode16"] = Signal(name=f"xb{g}_shb"), Signal(name=f"xb{g}_m16")
            self.sync += flags[0].eq(c["shift_b"]), flags[1].eq(c["mode16"]), \
                bd["shift_b"].eq(flags[0]), bd["mode16"].eq(flags[1])
            bd["shift_b3"] = Signal(name=f"xb{g}_shb3")         # beside the compares' registers
            self.sync += bd["shift_b3"].eq(bd["shift_b"])
            bounds.append(bd)
        # elements left in the stream, clamped to N: a copy per lane group
        rem_1 = Signal(lg + 1)
        self.sync += If(self.remaining >= N, rem_1.eq(N)).Else(rem_1.eq(self.remaining[:lg + 1]))
        for g, bd in enumerate(bounds):
            bd["rem"] = copy_reg(self, rem_1, f"xb{g}_rem")
        self.shifted_early, self.zero_early = Signal(N), Signal(N)
        mask_s2, mask_z2 = Signal(N), Signal(N)        # the masks at latency 4
        mask_s3, mask_z3 = Signal(N), Signal(N)        # and 5
        mask_s4, mask_z4 = Signal(N), Signal(N)        # and 6
        assert self.latency == 8
        # the pair pick (stage 7) sees mode16 six cycles after rsel changes: a stream's last
        # window (at most a cycle before restart) passes stage 7 five cycles after the restart
        m16_r = [Signal(name=f"xm16_r{j}") for j in range(4)]
        self.sync += m16_r[0].eq(cfg("mode16", self.rsels.get("xrsel_m16"))), [b.eq(a) for a, b in zip(m16_r, m16_r[1:])]
        m16_l = [copy_reg(self, m16_r[-1], f"xm16_{j}") for j in range(-(-N // LANE_GROUP))]
        # the picked word registered once more beside its lane's multiplier (stage 8: the rotator
        # and the pick lie in the middle, the multipliers along the die; rotator -> pick -> the
        # lane's register took 10.6 ns)
        x_pick = [Signal((ACT_BITS, True), name=f"xpick{i}", reset_less=True) for i in range(N)]
        for i in range(N):
            bd = bounds[grp[i]]

            def ge(b):       # this lane's element >= b
                return Mux(bd["mode16"], i // 2 >= b, i >= b)
            # stage 3: this lane's compares with the bounds, registered
            cmp = {n: Signal(name=f"xge{i}_{n}") for n in ("k", "split_k", "split", "k_useful_k", "k_useful", "rem")}
            self.sync += [cmp[n].eq(ge(bd[n])) for n in cmp]
            self.sync += [
                mask_s2[i].eq(Mux(cmp["k"], ~cmp["split_k"], ~cmp["split"]) ^ bd["shift_b3"]),
                mask_z2[i].eq(Mux(cmp["k"], cmp["k_useful_k"], cmp["k_useful"]) | cmp["rem"]),
                mask_s3[i].eq(mask_s2[i]), mask_z3[i].eq(mask_z2[i]),
                mask_s4[i].eq(mask_s3[i]), mask_z4[i].eq(mask_z3[i]),
                self.shifted_early[i].eq(mask_s4[i]), self.zero_early[i].eq(mask_z4[i]),
                If(m16_l[i // LANE_GROUP], x_pick[i].eq(win[i // 2])).Else(x_pick[i].eq(win[i])),
                self.x[i].eq(x_pick[i]),
                self.shifted[i].eq(self.shifted_early[i]),
                self.zero[i].eq(self.zero_early[i]),
            ]
        # everything but the window position is data, recomputed each cycle or written by the loader
        drop_resets(self, keep=[p])
