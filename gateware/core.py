"""The accelerator core: memories, controller, and the datapath units wired together.

    program memory -> fetch -> decode/checks -> operand addresses
    vector pool --(loader, 4 words/cycle)--> X buffer --window--> MAC array <-- weight stream
    MAC rows -> row FIFO -> feeder (bias, epilogue operands) -> epilogue -> vector pool writes

This first controller runs one instruction at a time: fetch (17 cycles), decode, operand checks
(one per cycle), segment load, then the weight stream through the array while finished rows flow
through the epilogue, until the instruction's last row is written. Everything an instruction
reads was therefore written before it starts, so the WAIT flags need no action yet. The exact
cycle count of every phase is given by `rnnaccel.host.cycles` (kept equal to this file by the
RTL tests).

Host side (valid while `busy` is low): write ports for the program, parameter and weight
memories, and a word port into the vector pool. Control: `start` with `steps`, `parity_in` and
the base/size registers; status: `busy`, `done`, `error`, `error_pc`, `parity_out`, counters.
"""
from migen import FSM, Array, Case, Cat, If, Memory, Module, Mux, NextState, NextValue, Signal
from migen.genlib.fifo import SyncFIFO

from rnnaccel.host import isa
from rnnaccel.host.spec import ACC_BITS, ACT_BITS, MAX_SEG_SHIFT, WEIGHT_MODE_CODE

from .epilogue import Epilogue
from .mac import MacArray
from .vmem import RD_WIDTH, VectorPool
from .weights import WeightStream
from .xbuf import XBuffer

N_SPACES = 5                          # IN, OUT, STATE, SCRATCH, CONST (isa.SPACES)
OPERANDS = ("a", "b", "da", "db", "p", "q", "dst", "dst2")
STRIDED = {"a": "a_stride", "b": "b_stride", "dst": "dst_stride", "dst2": "dst2_stride"}
ROW_FIFO_DEPTH = 32


class RNNAccelCore(Module):
    def __init__(self, n_lanes=32, prog_words=2048, param_words=4096, wmem_bytes=128 * 1024,
                 vmem_words=8192, kmax=1024):
        N = self.n_lanes = n_lanes
        self.wmem_words = wmem_bytes // N
        self.prog_words, self.param_words, self.vmem_words = prog_words, param_words, vmem_words
        vaw = (vmem_words - 1).bit_length()
        paw = (param_words - 1).bit_length()
        waw = (self.wmem_words - 1).bit_length()
        iaw = (prog_words - 1).bit_length()

        # ---- memories and host ports --------------------------------------------------------------
        prog = Memory(32, prog_words, name="prog")
        param = Memory(32, param_words, name="param")
        wmem = Memory(8 * N, self.wmem_words, name="wmem")
        self.specials += prog, param, wmem
        p_fetch, p_host = prog.get_port(), prog.get_port(write_capable=True)
        q_stream, q_bias, q_host = param.get_port(), param.get_port(), param.get_port(write_capable=True)
        w_stream, w_host = wmem.get_port(), wmem.get_port(write_capable=True)
        self.specials += p_fetch, p_host, q_stream, q_bias, q_host, w_stream, w_host
        self.prog_we, self.prog_adr, self.prog_dat = p_host.we, p_host.adr, p_host.dat_w
        self.param_we, self.param_adr, self.param_dat = q_host.we, q_host.adr, q_host.dat_w
        self.wmem_we, self.wmem_adr, self.wmem_dat = w_host.we, w_host.adr, w_host.dat_w
        self.vmem_we, self.vmem_adr = Signal(), Signal(vaw)
        self.vmem_wdat, self.vmem_rdat = Signal((ACT_BITS, True)), Signal((ACT_BITS, True))

        # ---- control and status ---------------------------------------------------------------------
        self.start = Signal()
        self.steps = Signal(16)
        self.prog_len = Signal(iaw + 1)      # instructions in the program
        self.parity_in = Signal()
        self.prog_base = Signal(iaw)          # word address of instruction 0
        self.weight_base = Signal(waw)        # word address of the weight section
        self.param_base = Signal(paw)         # word address of the parameter section
        self.space_base = [Signal(vaw, name=f"base_{isa.SPACES[s]}") for s in range(N_SPACES)]
        self.space_size = [Signal(vaw + 1, name=f"size_{isa.SPACES[s]}") for s in range(N_SPACES)]
        self.pp_dist = Signal(vaw)
        self.busy = Signal()
        self.done = Signal()
        self.error = Signal(3)
        self.error_pc = Signal(iaw)
        self.parity_out = Signal()
        self.cycles = Signal(32)
        self.mac_ops = Signal(48)           # useful lane operations (16x8 products)

        # ---- datapath units -------------------------------------------------------------------------
        self.submodules.vpool = vpool = VectorPool(vmem_words)
        self.submodules.xbuf = xbuf = XBuffer(N, kmax, RD_WIDTH)
        self.submodules.wstream = ws = WeightStream(N, w_stream, q_stream)
        self.submodules.mac = mac = MacArray(N)
        self.submodules.epi = epi = Epilogue(tag_bits=16)
        self.submodules.rows = rowfifo = SyncFIFO(ACC_BITS, ROW_FIFO_DEPTH)

        # ---- instruction register and its fields (isa.FIELDS is the single source) -----------------
        ir = [Signal(32, name=f"ir{k}") for k in range(isa.INSTR_WORDS)]

        def fld(name):
            w, lsb, width, signed = isa.FIELDS[name]
            s = Signal((width, signed), name=f"f_{name}")
            self.comb += s.eq(ir[w][lsb:lsb + width])
            return s
        F = {name: fld(name) for name in isa.FIELDS}

        # ---- controller state ---------------------------------------------------------------------
        pc = Signal(iaw + 1)
        fetch_k = Signal(5)
        in_loop, loop_start, loop_count, loop_iter, loop_rev = Signal(), Signal(iaw + 1), Signal(16), Signal(16), Signal()
        parity = Signal()
        t = Signal(16)
        phys = {op: Signal(vaw, name=f"phys_{op}") for op in OPERANDS}
        opk = Signal(4)
        err = Signal(3)
        self.comb += self.parity_out.eq(parity)

        # operand bookkeeping: which are used, their lengths
        used = {
            "a": F["a_space"] != isa.SPACE_NONE,
            "b": (F["b_len"] != 0),
            "da": F["diag"], "db": F["diag"],
            "p": F["combine"] != isa.COMB_NONE,
            "q": (F["combine"] == isa.COMB_GRU) | (F["combine"] == isa.COMB_MAC),
            "dst": F["dst_space"] != isa.SPACE_NONE,
            "dst2": F["dst2_space"] != isa.SPACE_NONE,
        }
        length = {"a": F["a_len"], "b": F["b_len"]}
        for op in ("da", "db", "p", "q", "dst", "dst2"):
            length[op] = F["rows"]

        # one address unit, time-shared over the 8 operands (one per cycle)
        cur_space, cur_addr, cur_stride, cur_pp = Signal(3), Signal(16), Signal(16), Signal(2)
        cur_used, cur_len, cur_write = Signal(), Signal(17), Signal()
        cases = {}
        for k, op in enumerate(OPERANDS):
            stride = F[STRIDED[op]] if op in STRIDED else 0
            cases[k] = [cur_space.eq(F[f"{op}_space"]), cur_addr.eq(F[f"{op}_addr"]), cur_stride.eq(stride),
                        cur_pp.eq(F[f"{op}_pp"]), cur_used.eq(used[op]), cur_len.eq(length[op]),
                        cur_write.eq(op in ("dst", "dst2"))]
        self.comb += Case(opk, cases)
        eff = Signal(34)
        pp_off = Signal(vaw + 1)
        self.comb += If((cur_pp != 0) & ((cur_pp == isa.PP_NEXT) ^ parity), pp_off.eq(self.pp_dist)).Else(pp_off.eq(0))
        self.comb += eff.eq(cur_addr + cur_stride * t + pp_off)
        bases, sizes = Array(self.space_base), Array(self.space_size)
        space_ok = Signal()
        self.comb += space_ok.eq(cur_space < N_SPACES)
        addr_bad = Signal()
        self.comb += addr_bad.eq(~space_ok | (eff + cur_len > sizes[cur_space]) |
                                 (cur_write & (cur_space == isa.SPACE_CONST)))
        phys_arr = Array(phys[op] for op in OPERANDS)

        # field legality (ERR_FIELD)
        n_modes = len(WEIGHT_MODE_CODE)
        field_bad = Signal()
        self.comb += field_bad.eq(
            (F["mode"] >= n_modes) | (F["act"] >= len(isa.ACT_CODE)) | (F["act2"] >= len(isa.ACT_CODE)) |
            (F["combine"] >= len(isa.COMBINES)) | (F["rows"] == 0) | (F["a_len"] == 0) |
            (F["a_space"] == isa.SPACE_NONE) | (F["dst_space"] == isa.SPACE_NONE) |
            (F["a_aux"] < 0) | (F["a_aux"] > MAX_SEG_SHIFT) | (F["b_aux"] < 0) | (F["b_aux"] > MAX_SEG_SHIFT) |
            ((F["b_len"] != 0) & (F["a_aux"] != 0) & (F["b_aux"] != 0)) | (F["dst_aux"] < 0) |
            (F["a_pp"] > 2) | (F["b_pp"] > 2) | (F["dst_pp"] > 2) | (F["dst2_pp"] > 2))

        # instruction geometry
        k_useful = Signal(17)
        k_stored = Signal(18)
        self.comb += k_useful.eq(F["a_len"] + F["b_len"]), k_stored.eq(k_useful + F["dst_aux"])
        mode16 = Signal()
        self.comb += mode16.eq(F["mode"] == WEIGHT_MODE_CODE[16])
        # weight bounds: rows * k_stored * bits / 8 bytes from weight_off (ERR_WEIGHT)
        bits = Signal(5)
        self.comb += Case(F["mode"], {WEIGHT_MODE_CODE[b]: bits.eq(b) for b in WEIGHT_MODE_CODE})
        stream_bits = Signal(48)
        self.comb += stream_bits.eq(F["rows"] * k_stored * bits)
        weight_bad = Signal()
        self.comb += weight_bad.eq(
            ((F["weight_off"] >> (N.bit_length() - 1)) + ((stream_bits + 8 * N - 1) >> (N.bit_length() + 2))
             + self.weight_base > self.wmem_words) |
            ((F["bias_off"] >> 2) + F["rows"] + self.param_base > param_words))

        # ---- loader: segment A then B into X positions, RD_WIDTH per cycle -----------------------
        ld_seg, ld_i = Signal(), Signal(17)
        ld_src, ld_len, ld_pos0 = Signal(vaw), Signal(17), Signal(17)
        ld_pend, ld_pend_pos, ld_pend_mask = Signal(), Signal(17), Signal(RD_WIDTH)
        self.comb += If(ld_seg, ld_src.eq(phys["b"]), ld_len.eq(F["b_len"]), ld_pos0.eq(F["a_len"])) \
            .Else(ld_src.eq(phys["a"]), ld_len.eq(F["a_len"]), ld_pos0.eq(0))
        # the pool's wide read is issued combinationally in LOAD; its data lands one cycle later
        self.comb += vpool.wide_adr.eq(ld_src + ld_i)
        self.comb += [
            xbuf.wpos.eq(ld_pend_pos),
            If(ld_pend, xbuf.we.eq(ld_pend_mask)),
        ] + [xbuf.wdata[j].eq(vpool.wide_dat[j]) for j in range(RD_WIDTH)]
        self.comb += [
            xbuf.k.eq(k_stored), xbuf.k_useful.eq(k_useful), xbuf.split.eq(F["a_len"]),
            xbuf.shift_b.eq(F["b_aux"] != 0), xbuf.mode16.eq(mode16),
            xbuf.remaining.eq(0xFFFFFFFF),
        ]

        # ---- stream: weights + X window into the array ----------------------------------------------
        rows_left = Signal(17)   # rows not yet written back
        stream_go = Signal()
        self.comb += [
            ws.word_base.eq(self.weight_base + (F["weight_off"] >> (N.bit_length() - 1))),
            ws.mode.eq(F["mode"]), ws.rows.eq(F["rows"]), ws.k_stored.eq(k_stored),
            ws.group_log2.eq(F["group_log2"]), ws.cb_base.eq((self.param_base << 2) + F["codebook_off"]),
        ]
        # backpressure: keep room in the row FIFO for every row still in flight
        ws_ready = Signal()
        self.comb += ws_ready.eq(rowfifo.level < ROW_FIFO_DEPTH - (mac.latency + xbuf.latency + 6))
        self.comb += ws.ready.eq(ws_ready)
        take = Signal()
        self.comb += take.eq(stream_go & ws.valid & ws_ready)
        self.comb += xbuf.advance.eq(take)
        # weights and flags wait xbuf.latency cycles for their x window
        lag = xbuf.latency
        def delayed(sig, name):
            cur = sig
            for k in range(lag):
                nxt = Signal.like(cur, name=f"{name}_l{k}")
                self.sync += nxt.eq(cur)
                cur = nxt
            return cur
        wd = [delayed(ws.w[i], f"wl{i}") for i in range(N)]
        take_d = delayed(take, "take")
        first_d, last_d = delayed(ws.first, "first"), delayed(ws.last, "last")
        nvalid_d, bnd_d = delayed(ws.n_valid, "nvalid"), delayed(ws.bnd, "bnd")
        mode16_d = Signal()
        self.comb += mode16_d.eq(mode16)
        tail = Signal(N)
        for i in range(N):
            self.comb += tail[i].eq(i >= lanes16(mode16_d, nvalid_d))
        self.comb += [
            mac.valid.eq(take_d), mac.first.eq(first_d), mac.last.eq(last_d),
            mac.bnd.eq(lanes16(mode16_d, bnd_d)),
            mac.shift.eq(F["a_aux"] | F["b_aux"]), mac.mode16.eq(mode16),
            mac.shifted.eq(xbuf.shifted), mac.zero.eq(xbuf.zero | tail),
        ] + [mac.x[i].eq(xbuf.x[i]) for i in range(N)] + [mac.w[i].eq(wd[i]) for i in range(N)]
        self.sync += If(mac.valid, self.mac_ops.eq(self.mac_ops + mac.busy_lanes))

        # two rows may finish in one cycle (a boundary and the stream's end): hold the second
        row1_hold, row1_val = Signal(), Signal((ACC_BITS, True))
        self.sync += If(mac.row0_valid & mac.row1_valid, row1_hold.eq(1), row1_val.eq(mac.row1)) \
            .Else(row1_hold.eq(0))
        self.comb += [
            rowfifo.we.eq(mac.row0_valid | mac.row1_valid | row1_hold),
            If(row1_hold, rowfifo.din.eq(row1_val))
            .Elif(mac.row0_valid, rowfifo.din.eq(mac.row0))
            .Else(rowfifo.din.eq(mac.row1)),
        ]

        # ---- feeder: one row every `interval` = max(1, operand reads, writes) cycles -----------------
        # A row is popped, then occupies `interval` slots; slot s issues the read of its s-th
        # epilogue operand (da, db, p, q in that order among those used). The cycle after its last
        # slot (while the next row may already be in its first slot) the row enters the epilogue,
        # its last operand and its bias straight from the read ports.
        need = [used["da"], used["db"], used["p"], used["q"]]
        n_ops = Signal(3)
        self.comb += n_ops.eq(sum(need))
        interval = Signal(3)
        self.comb += If(n_ops > 1, interval.eq(n_ops)).Elif(used["dst2"], interval.eq(2)).Else(interval.eq(1))
        pos_of = [Signal(3, name=f"pos{k}") for k in range(4)]
        order = Array(Signal(2, name=f"ord{k}") for k in range(4))   # slot -> operand index
        self.comb += pos_of[0].eq(0)
        for k in range(1, 4):
            self.comb += pos_of[k].eq(pos_of[k - 1] + need[k - 1])
        for k in range(4):
            self.comb += If(need[k], order[pos_of[k]].eq(k))
        op_phys = Array([phys["da"], phys["db"], phys["p"], phys["q"]])

        feeding, slot = Signal(), Signal(3)
        acc_r, j_r = Signal((ACC_BITS, True)), Signal(16)        # the row in its slots
        acc_p, j_p, push = Signal((ACC_BITS, True)), Signal(16), Signal()   # the row entering the epilogue
        row_j = Signal(16)                                         # next row to pop
        last_slot = Signal()
        self.comb += last_slot.eq(feeding & (slot == interval - 1))
        pop = Signal()
        self.comb += pop.eq(rowfifo.readable & stream_go & (~feeding | last_slot))
        self.comb += rowfifo.re.eq(pop)
        self.sync += [
            push.eq(last_slot),
            If(last_slot, acc_p.eq(acc_r), j_p.eq(j_r)),
            If(pop, feeding.eq(1), slot.eq(0), acc_r.eq(rowfifo.dout), j_r.eq(row_j), row_j.eq(row_j + 1))
            .Elif(last_slot, feeding.eq(0))
            .Elif(feeding, slot.eq(slot + 1)),
        ]
        core_rd_adr = Signal(vaw)
        self.comb += core_rd_adr.eq(op_phys[order[slot]] + j_r)
        rd_k, rd_live = Signal(2), Signal()      # which operand the read port returns this cycle
        self.sync += rd_k.eq(order[slot]), rd_live.eq(feeding & (slot < n_ops))
        cap = [Signal((ACT_BITS, True), name=f"cap{k}") for k in range(4)]
        now = [Signal((ACT_BITS, True), name=f"opnow{k}") for k in range(4)]
        for k in range(4):
            self.sync += If(rd_live & (rd_k == k), cap[k].eq(vpool.rd_dat))
            self.comb += If(rd_live & (rd_k == k), now[k].eq(vpool.rd_dat)).Else(now[k].eq(cap[k]))
        # the bias of the row in its slots; read data follows one cycle later (the push cycle)
        self.comb += q_bias.adr.eq(self.param_base + (F["bias_off"] >> 2) + j_r)
        bias = Signal((32, True))
        self.comb += bias.eq(q_bias.dat_r)
        self.comb += [
            epi.valid.eq(push), epi.acc.eq(acc_p + bias), epi.tag.eq(j_p),
            epi.da.eq(now[0]), epi.db.eq(now[1]), epi.p.eq(now[2]), epi.q.eq(now[3]),
            epi.diag.eq(F["diag"]), epi.diag_shift.eq(F["da_aux"]), epi.out_shift.eq(F["out_shift"]),
            epi.act.eq(F["act"]), epi.act2.eq(F["act2"]), epi.combine.eq(F["combine"]),
            epi.s_c.eq(F["p_aux"]), epi.s_q.eq(F["q_aux"]), epi.s_p.eq(F["db_aux"]),
        ]

        # ---- write-back: dst, then dst2 one cycle later ---------------------------------------------
        wb2, wb2_adr, wb2_dat = Signal(), Signal(vaw), Signal((ACT_BITS, True))
        core_we, core_wadr, core_wdat = Signal(), Signal(vaw), Signal((ACT_BITS, True))
        self.sync += [
            wb2.eq(epi.out_valid & used["dst2"]),
            wb2_adr.eq(phys["dst2"] + epi.out_tag), wb2_dat.eq(epi.y),
            If(epi.out_valid | wb2, rows_left.eq(rows_left - (epi.out_valid & ~used["dst2"] | wb2))),
        ]
        self.comb += If(epi.out_valid,
                        core_we.eq(1), core_wadr.eq(phys["dst"] + epi.out_tag), core_wdat.eq(epi.y)) \
            .Elif(wb2, core_we.eq(1), core_wadr.eq(wb2_adr), core_wdat.eq(wb2_dat))

        # vector pool ports: the core while busy, the host otherwise
        self.comb += If(self.busy,
                        vpool.we.eq(core_we), vpool.wr_adr.eq(core_wadr), vpool.wr_dat.eq(core_wdat),
                        vpool.rd_adr.eq(core_rd_adr)) \
            .Else(vpool.we.eq(self.vmem_we), vpool.wr_adr.eq(self.vmem_adr), vpool.wr_dat.eq(self.vmem_wdat),
                  vpool.rd_adr.eq(self.vmem_adr))
        self.comb += self.vmem_rdat.eq(vpool.rd_dat)

        # ---- sequencer ------------------------------------------------------------------------------
        self.comb += p_fetch.adr.eq(self.prog_base + (pc << 4) + fetch_k)
        fsm = FSM(reset_state="IDLE")
        self.submodules.fsm = fsm
        self.sync += If(self.busy, self.cycles.eq(self.cycles + 1))

        def fail(code):
            return [NextValue(err, code), NextValue(self.error_pc, pc), NextState("ERROR")]

        launch = If(self.start,
            NextValue(self.cycles, 0), NextValue(self.mac_ops, 0), NextValue(self.done, 0),
            NextValue(err, 0), NextValue(pc, 0), NextValue(in_loop, 0), NextValue(parity, self.parity_in),
            If(self.steps == 0, *fail(isa.ERR_FIELD)).Else(NextValue(fetch_k, 0), NextState("FETCH")))
        fsm.act("IDLE", launch)
        fsm.act("FETCH",
            self.busy.eq(1),
            If(pc >= self.prog_len, *fail(isa.ERR_NOHALT)).Else(
                NextValue(fetch_k, fetch_k + 1),
                *[If(fetch_k == k + 1, NextValue(ir[k], p_fetch.dat_r)) for k in range(isa.INSTR_WORDS)],
                If(fetch_k == isa.INSTR_WORDS, NextState("DECODE"))))
        fsm.act("DECODE",
            self.busy.eq(1),
            Case(F["opcode"], {
                isa.OP_HALT: If(in_loop, *fail(isa.ERR_LOOP)).Else(NextValue(self.done, 1), NextState("IDLE")),
                isa.OP_LOOP: If(in_loop, *fail(isa.ERR_LOOP)).Else(
                    NextValue(in_loop, 1), NextValue(loop_start, pc + 1), NextValue(loop_iter, 0),
                    NextValue(loop_rev, F["reverse"]),
                    If(F["count"] == 0, NextValue(loop_count, self.steps)).Else(NextValue(loop_count, F["count"])),
                    NextValue(pc, pc + 1), NextValue(fetch_k, 0), NextState("FETCH")),
                isa.OP_ENDLOOP: If(~in_loop, *fail(isa.ERR_LOOP)).Else(
                    NextValue(parity, ~parity), NextValue(loop_iter, loop_iter + 1), NextValue(fetch_k, 0),
                    If(loop_iter + 1 < loop_count, NextValue(pc, loop_start))
                    .Else(NextValue(in_loop, 0), NextValue(pc, pc + 1)),
                    NextState("FETCH")),
                isa.OP_MATVEC: If(field_bad, *fail(isa.ERR_FIELD)).Else(
                    If(in_loop,
                        If(loop_rev, NextValue(t, loop_count - 1 - loop_iter)).Else(NextValue(t, loop_iter)))
                    .Else(NextValue(t, self.steps - 1)),
                    NextValue(opk, 0), NextState("OPERANDS")),
                "default": fail(isa.ERR_OPCODE),
            }))
        fsm.act("OPERANDS",
            self.busy.eq(1),
            If(cur_used & addr_bad, *fail(isa.ERR_ADDR)).Else(
                NextValue(phys_arr[opk], bases[cur_space] + eff),
                NextValue(opk, opk + 1),
                If(opk == len(OPERANDS) - 1,
                    If(weight_bad, *fail(isa.ERR_WEIGHT)).Else(
                        NextValue(ld_seg, 0), NextValue(ld_i, 0), NextState("LOAD")))))
        fsm.act("LOAD",
            self.busy.eq(1),
            # issue a wide read of ld_src + ld_i; the write lands next cycle (ld_pend)
            NextValue(ld_pend, 1), NextValue(ld_pend_pos, ld_pos0 + ld_i),
            NextValue(ld_pend_mask, Cat(*[(ld_i + j < ld_len) for j in range(RD_WIDTH)])),
            If(ld_i + RD_WIDTH >= ld_len,
                NextValue(ld_i, 0),
                If(ld_seg | (F["b_len"] == 0), NextState("LOADED")).Else(NextValue(ld_seg, 1)))
            .Else(NextValue(ld_i, ld_i + RD_WIDTH)))
        self.sync += If(fsm.ongoing("LOADED"), row_j.eq(0))
        fsm.act("LOADED",   # the last loader write lands in this cycle
            self.busy.eq(1), NextValue(ld_pend, 0),
            ws.start.eq(1), xbuf.restart.eq(1),
            NextValue(rows_left, F["rows"]), NextValue(stream_go, 1),
            NextState("STREAM"))
        fsm.act("STREAM",
            self.busy.eq(1),
            If((rows_left == 0) & ~ws.busy,
                NextValue(stream_go, 0), NextValue(pc, pc + 1), NextValue(fetch_k, 0), NextState("FETCH")))
        fsm.act("ERROR", launch)   # the error code stays readable until the next start
        self.sync += If(~fsm.ongoing("LOAD"), ld_pend.eq(0))
        self.comb += self.error.eq(err)


def lanes16(mode16, weights):
    """A count of weights as a count of lanes: in 16-bit mode each weight spans two lanes."""
    return Mux(mode16, weights << 1, weights)
