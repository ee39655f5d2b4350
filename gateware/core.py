"""The accelerator core: memories, controller, and the datapath units wired together.

    program memory -> front end: fetch, decode, checks, segment load, stream start
    vector pool --(loader, 8 words/cycle)--> X buffer 0|1 --window--> MAC array <-- weight stream
    MAC rows -> row FIFO -> feeder (bias, epilogue operands) -> epilogue -> write queue -> vector pool

Three parts run concurrently:

* the front end walks the program one instruction at a time. For a MATVEC it checks every operand
  (one cycle, all in parallel), loads the segments into the X buffer the running stream does not
  use (or reuses the buffer when the segments are the ones already loaded), and starts the weight
  stream as soon as the previous one has finished; then it fetches the next instruction while the
  stream runs. WAIT (docs/isa.md) holds the load until every earlier instruction has written its
  last row; HALT waits for the same before `done`.
* the stream: weights and X windows through the MAC array, rows into the row FIFO;
* the back end: the feeder takes rows in order with their instruction's context (a small queue
  filled at stream start), reads the epilogue operands and the bias, the epilogue computes, the
  write queue writes one word per cycle. WAIT_EPI holds an instruction's first row until every
  earlier instruction has retired (written its last row).

`rnnaccel.host.cycles` models every cycle of this; the RTL tests keep the two equal.

Host side (valid while `busy` is low): write ports for the program, parameter and weight
memories, and a word port into the vector pool. Control: `start` with `parity_in`; `steps`
and the base/size registers hold from a cycle before `start` (as CSRs written before it do); status: `busy`, `done`, `error`, `error_pc`, `parity_out`, counters.
"""
from functools import reduce
from operator import and_, or_

from migen import FSM, READ_FIRST, Array, Case, Cat, If, Memory, Module, Mux, NextState, NextValue, Signal
from migen.fhdl.bitcontainer import value_bits_sign

from rnnaccel.host import cycles as timing
from rnnaccel.host import isa
from rnnaccel.host.spec import ACC_BITS, ACT_BITS, MAX_ROWS, MAX_SEG_SHIFT, WEIGHT_MODE_CODE

from .bram import SlicedMemory, collision_free, registered_read
from .dsp import RegisteredMul
from .epilogue import Epilogue
from .fifo import RowFifo
from .mac import MacArray
from .regs import copy_reg, delay, drive_copies
from .vmem import VectorPool
from .weights import WeightStream
from .xbuf import XBuffer

N_SPACES = 5                          # IN, OUT, STATE, SCRATCH, CONST (isa.SPACES)
OPERANDS = ("a", "b", "da", "db", "p", "q", "dst", "dst2")
STRIDED = {"a": "a_stride", "b": "b_stride", "dst": "dst_stride", "dst2": "dst2_stride"}
ROW_FIFO_DEPTH = timing.ROW_FIFO_DEPTH
CTX_DEPTH = timing.CTX_DEPTH
WQ_DEPTH = 8
# memory sizes of the default core (the SoC wrapper, the simulated board and the boards use these):
# GRU-S fits at 8-bit weights (77.6 KB), several keyword models at 4 bits
HOST_MID = 4          # weight-memory host write copies served by one first-level copy

CORE_DEFAULTS = dict(prog_words=2048, param_words=4096, wmem_bytes=128 * 1024, vmem_words=8192, kmax=1024)


def wmem_slice_bits(words):
    """Bits per weight-memory slice: as wide as one block RAM of 16K bits is at this depth (1..8)."""
    return max(1, min(8, 16384 // (1 << (words - 1).bit_length())))


def weight_memory(n_lanes, words):
    """The weight memory's slices, in word order (bits of a weight word side by side). The host
    writes them only while the core is idle, when nothing uses the stream's reads."""
    sb = wmem_slice_bits(words)
    return collision_free(*[Memory(sb, words, name=f"wmem{j}") for j in range(8 * n_lanes // sb)])


def lanes16(mode16, weights):
    """A count of weights as a count of lanes: in 16-bit mode each weight spans two lanes."""
    return Mux(mode16, weights << 1, weights)


class RNNAccelCore(Module):
    def __init__(self, n_lanes=32, prog_words=CORE_DEFAULTS["prog_words"],
                 param_words=CORE_DEFAULTS["param_words"], wmem_bytes=CORE_DEFAULTS["wmem_bytes"],
                 vmem_words=CORE_DEFAULTS["vmem_words"], kmax=CORE_DEFAULTS["kmax"]):
        N = self.n_lanes = n_lanes
        self.wmem_words = wmem_bytes // N
        self.prog_words, self.param_words, self.vmem_words = prog_words, param_words, vmem_words
        vaw = (vmem_words - 1).bit_length()
        paw = (param_words - 1).bit_length()
        waw = (self.wmem_words - 1).bit_length()
        iaw = (prog_words - 1).bit_length()

        # ---- memories and host ports --------------------------------------------------------------
        prog = Memory(32, prog_words, name="prog")
        collision_free(prog)      # (the host writes the program and parameters only while the core is idle)
        # the parameter memory in two copies written alike, each in slices one block RAM deep: the
        # weight stream's (codebooks) and the feeder's (biases), the latter read through the block
        # RAMs' output registers (the epilogue takes a row's bias a cycle after the row)
        # (host writes land a cycle later, through a register copy per slice)
        self.submodules.param_cb = q_stream = SlicedMemory("param_cb", 32, param_words, registered=True,
                                                           write_copies=True, no_collisions=True)
        self.submodules.param_bias = q_bias = SlicedMemory("param_bias", 32, param_words, registered=True,
                                                           write_copies=True, no_collisions=True)
        # the weight memory in slices side by side, each exactly one block RAM deep (a DP16KD holds
        # 16K bits: 4096 x 4 at N = 32), with its own read address register: the words come
        # straight from the block RAMs, with no depth-cascade mux behind them, and no single
        # address net reaches every block RAM
        wslices = weight_memory(N, self.wmem_words)
        sb = wslices[0].width
        self.specials += prog, *wslices
        # read ports READ_FIRST (data registered): a write-first port beside a write port makes
        # yosys emulate the transparency with a bypass mux and an address compare behind the block
        # RAM; here a read never meets a write to the same word in the same cycle (the host writes
        # only while the core is idle; see also VectorPool)
        rd = dict(mode=READ_FIRST)
        p_fetch, p_host = prog.get_port(**rd), prog.get_port(write_capable=True)
        # the weight stream's reads with latency 2: the block RAMs' output registers (bram.py)
        w_stream = [registered_read(self, m, **rd) for m in wslices]
        w_host = [m.get_port(write_capable=True) for m in wslices]
        self.specials += p_fetch, p_host, *w_host
        # host writes into the program, parameter and weight memories (write-only for the host)
        # are registered and land a cycle later (the program), two (the parameter copies and the
        # weight memory: two levels of register copies, the last per slice or per 32 bits of
        # slices, copy_reg keeping the identical ones apart): nothing but a register before the ports
        self.prog_we, self.prog_adr, self.prog_dat = Signal(), Signal(iaw), Signal(32)
        self.sync += p_host.we.eq(self.prog_we), p_host.adr.eq(self.prog_adr), p_host.dat_w.eq(self.prog_dat)
        # (in two levels of copies: a register per parameter copy, then one per slice; for the
        # weight memory one per HOST_MID copies, then one per 16 bits of slices: the memories
        # spread over the die, and one register reaching all their copies took 12.4 ns, one per
        # 32 bits 9.5 ns)
        self.param_we, self.param_adr, self.param_dat = Signal(), Signal(paw), Signal(32)
        for m in (q_stream, q_bias):
            ctl = copy_reg(self, Cat(self.param_we, self.param_adr, self.param_dat), f"{m.memories[0].name_override}_host")
            self.comb += m.we.eq(ctl[0]), m.wadr.eq(ctl[1:1 + paw]), m.wdat.eq(ctl[1 + paw:])
        self.wmem_we, self.wmem_adr, self.wmem_dat = Signal(), Signal(waw), Signal(8 * N)
        per_copy = max(1, 16 // sb)
        for j, port in enumerate(w_host):
            if j % (per_copy * HOST_MID) == 0:
                mid = copy_reg(self, Cat(self.wmem_we, self.wmem_adr), f"wmem_hmid{j // (per_copy * HOST_MID)}")
            if j % per_copy == 0:
                ctl = copy_reg(self, mid, f"wmem_host{j // per_copy}")
            dat_mid = Signal(sb, name=f"wmem_hdat{j}", reset_less=True)
            self.sync += dat_mid.eq(self.wmem_dat[sb * j:sb * j + sb]), port.dat_w.eq(dat_mid)
            self.comb += port.we.eq(ctl[0]), port.adr.eq(ctl[1:])
        self.vmem_we, self.vmem_adr = Signal(), Signal(vaw)
        self.vmem_wdat, self.vmem_rdat = Signal((ACT_BITS, True)), Signal((ACT_BITS, True))
        self.vmem_rdat_wide = Signal((ACT_BITS, True))   # the word at vmem_adr four cycles later (idle core)

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
        self.pool_owner = Signal()            # the core holds the vector pool's ports (== busy)
        self.done = Signal()
        self.error = Signal(3)
        self.error_pc = Signal(iaw)
        self.parity_out = Signal()
        self.cycles = Signal(32)
        self.mac_ops = Signal(48)           # useful lane operations (16x8 products)
        self.stalls = Signal(32)            # stream cycles lost to a full row FIFO (0 when modelled)

        # ---- datapath units -------------------------------------------------------------------------
        RD_WIDTH = timing.load_width(N)       # pool words per loader cycle
        self.submodules.vpool = vpool = VectorPool(vmem_words, RD_WIDTH)
        # X buffers 0 and 1 (one loads while the other streams): one unit, two sets of banks
        self.submodules.xbuf = xb = XBuffer(N, kmax, RD_WIDTH, sets=2, external_restart=True)
        assert q_stream.read_latency == 2     # (the weight stream's codebook filler expects it)
        self.submodules.wstream = ws = WeightStream(N, w_stream, q_stream, external_start=True)
        self.submodules.mac = mac = MacArray(N)
        tag_bits = 2 * vaw + 2
        self.submodules.epi = epi = Epilogue(tag_bits=tag_bits)
        self.submodules.rows = rowfifo = RowFifo(ACC_BITS, ROW_FIFO_DEPTH)

        # ---- instruction register and its fields (isa.FIELDS is the single source) -----------------
        ir = [Signal(32, name=f"ir{k}") for k in range(isa.INSTR_WORDS)]
        # ir[k] shifts in from ir[k + 1] (the last from the program memory) with shift copy k (below)
        self._shift_copies = [Signal(name=f"ir_shift{k}") for k in range(isa.INSTR_WORDS)]
        ir_last_in = Signal(32)          # the program memory's word (driven with the fetch, below)
        ir_in = ir[1:] + [ir_last_in]    # what ir[k] loads with its shift

        def fld(name):
            w, lsb, width, signed = isa.FIELDS[name]
            s = Signal((width, signed), name=f"f_{name}")
            self.comb += s.eq(ir[w][lsb:lsb + width])
            return s
        F = {name: fld(name) for name in isa.FIELDS}

        def shift_in(name):
            """(enable, value): field `name` as ir's next shift sets it, with that shift's enable
            copy (a register fed from it under the enable equals a test of the settled field,
            one cycle earlier)."""
            w, lsb, width, _ = isa.FIELDS[name]
            return self._shift_copies[w], ir_in[w][lsb:lsb + width]

        pc = Signal(iaw + 1)
        fetch_k = Signal(5)
        in_loop, loop_start, loop_count, loop_iter, loop_rev = Signal(), Signal(iaw + 1), Signal(16), Signal(16), Signal()
        parity = Signal()
        t = Signal(16)
        err = Signal(3)
        self.comb += self.parity_out.eq(parity), self.error.eq(err)

        used = {
            "a": F["a_space"] != isa.SPACE_NONE,
            "b": F["b_len"] != 0,
            "da": F["diag"], "db": F["diag"],
            "p": F["combine"] != isa.COMB_NONE,
            "q": (F["combine"] == isa.COMB_GRU) | (F["combine"] == isa.COMB_MAC),
            "dst": F["dst_space"] != isa.SPACE_NONE,
            "dst2": F["dst2_space"] != isa.SPACE_NONE,
        }
        length = {"a": F["a_len"], "b": F["b_len"]}
        for op in ("da", "db", "p", "q", "dst", "dst2"):
            length[op] = F["rows"]

        # ---- operand checks: all eight in parallel, pipelined over DECODE and CHECK0..3 ------------
        # The registers below run freely; the instruction register and the loop state are stable
        # from DECODE until the next FETCH, so stage A is valid in CHECK0, B in CHECK1, C in CHECK2,
        # their OR in CHECK3 (timing.CHECK_CYCLES), where the FSM acts on the results.
        #   A: stride * t, addr + pp offset, size and base of the operand's space (the product in
        #      a multiplier block with input and output registers, fed from the stride's next
        #      value: its inputs load as the last FETCH shift puts the stride in place)
        #   B: eff = addr + stride * t + pp offset, size - length
        #   C: bad = eff + length > size (or an illegal space), phys = base + eff
        t_now = Signal(16)
        self.comb += If(in_loop, If(loop_rev, t_now.eq(loop_count - 1 - loop_iter)).Else(t_now.eq(loop_iter))) \
            .Else(t_now.eq(self.steps - 1))
        self.sync += t.eq(t_now)
        bases, sizes = Array(self.space_base), Array(self.space_size)
        op_bad = []
        phys, phys_base, eff_low = {}, {}, {}
        for op in OPERANDS:
            space, pp = F[f"{op}_space"], F[f"{op}_pp"]
            stride_nx = None
            if op in STRIDED:
                shifting, nxt = shift_in(STRIDED[op])
                stride_nx = Signal((len(nxt) + 1, True), name=f"stride_nx_{op}")
                self.comb += If(shifting, stride_nx.eq(nxt)).Else(stride_nx.eq(F[STRIDED[op]]))
            # parity and pp_dist in a register copy per operand (each reaches the operand's
            # offset mux; both change at least a FETCH before the next DECODE reads them)
            pp_off = Signal(vaw + 1, name=f"ppoff_{op}")
            par_c = copy_reg(self, parity, f"parity_{op}")
            dist_c = copy_reg(self, self.pp_dist, f"ppdist_{op}")
            self.comb += If((pp != 0) & ((pp == isa.PP_NEXT) ^ par_c), pp_off.eq(dist_c)).Else(pp_off.eq(0))
            prod_a = Signal(32, name=f"prod_{op}")
            addr_a = Signal(18, name=f"addrpp_{op}")
            size_a = Signal(vaw + 1, name=f"psize_{op}")
            szlen_b = Signal((vaw + 19, True), name=f"szlen_{op}")
            base_a = Signal(vaw, name=f"pbase_{op}")
            sbad_a = Signal(name=f"sbad_{op}")
            if stride_nx is not None:
                t_s, prod_p = Signal((len(t) + 1, True), name=f"t_{op}"), Signal((34, True), name=f"prodp_{op}")
                self.comb += t_s.eq(t), prod_a.eq(prod_p)
                self.specials += RegisteredMul(stride_nx, t_s, prod_p)
            # the space picking size and base in a copy per pick, loaded with ir's shift (the
            # field's bits reaching both 5:1 muxes and more took 10.2 ns of routing)
            sp_en, sp_nxt = shift_in(f"{op}_space")
            sp_size, sp_base = (copy_reg(self, sp_nxt, f"sp_{n}_{op}", ce=sp_en, reset=True) for n in ("size", "base"))
            self.sync += [
                addr_a.eq(F[f"{op}_addr"] + pp_off),
                size_a.eq(sizes[sp_size]), base_a.eq(bases[sp_base]),
                sbad_a.eq((space >= N_SPACES) | ((op in ("dst", "dst2")) & (space == isa.SPACE_CONST))),
            ]
            eff_b = Signal(34, name=f"eff_{op}")
            self.sync += eff_b.eq(addr_a + prod_a), szlen_b.eq(size_a - length[op])
            phys[op] = Signal(vaw, name=f"phys_{op}")
            # eff + length > size  <=>  eff > size - length (eff >= 0)
            phys_base[op], eff_low[op] = base_a, eff_b[:vaw]
            self.sync += phys[op].eq(base_a + eff_b)
            # (in two registers: eff > size - length on the low vaw + 1 bits only, and the cases
            # that decide alone: an illegal space, eff >= 2^(vaw + 1) > size, size < length; one
            # compare over eff's 34 bits took 10.2 ns)
            lo = vaw + 1
            bad_c, bad_c_lo = Signal(name=f"bad_{op}"), Signal(name=f"badlo_{op}")
            self.sync += bad_c.eq(used[op] & (sbad_a | (eff_b[lo:] != 0) | (szlen_b < 0))), \
                bad_c_lo.eq(used[op] & (eff_b[:lo] > szlen_b[:lo]))
            op_bad += [bad_c, bad_c_lo]
        # the sixteen checks (each registered: a carry-chain compare, then the OR of eight operands
        # spread over the die took 12.1 ns) in one register: CHECK3's decision (and the stream
        # start's next value, do_finalize) reads a flip-flop
        any_op_bad = Signal()
        self.sync += any_op_bad.eq(reduce(or_, op_bad))

        # the field checks in two register stages: each comparison on ir's fields registered
        # (DECODE), their OR (CHECK0); CHECK1 acts on it (ir is stable from DECODE)
        field_terms = [
            F["mode"] >= len(WEIGHT_MODE_CODE), F["act"] >= len(isa.ACT_CODE),
            F["act2"] >= len(isa.ACT_CODE), F["combine"] >= len(isa.COMBINES),
            F["rows"] == 0, F["rows"] > MAX_ROWS, F["a_len"] == 0,
            F["a_space"] == isa.SPACE_NONE, F["dst_space"] == isa.SPACE_NONE,
            F["a_aux"] < 0, F["a_aux"] > MAX_SEG_SHIFT, F["b_aux"] < 0, F["b_aux"] > MAX_SEG_SHIFT,
            (F["b_len"] != 0) & (F["a_aux"] != 0) & (F["b_aux"] != 0), F["dst_aux"] < 0,
            F["a_pp"] > 2, F["b_pp"] > 2, F["dst_pp"] > 2, F["dst2_pp"] > 2]
        field_bad = Signal(len(field_terms))
        self.sync += [field_bad[i].eq(term) for i, term in enumerate(field_terms)]
        field_bad_r = Signal()     # valid from CHECK1
        self.sync += field_bad_r.eq(field_bad != 0)

        # stage A: k_stored, k_useful, mode (also what LOAD and START use)
        k_useful, k_stored = Signal(17), Signal(18)
        k_stored_nx = Signal(len(k_stored))
        self.comb += k_stored_nx.eq(F["a_len"] + F["b_len"] + F["dst_aux"])
        self.sync += k_useful.eq(F["a_len"] + F["b_len"]), k_stored.eq(k_stored_nx)
        # (a copy of it for the weight check's partial products: k_stored reaches the stream,
        # the X buffer's configuration and these; its one register took 10.0 ns to them)
        k_mul = copy_reg(self, k_stored_nx, "k_mul")
        mode16 = Signal()
        self.sync += mode16.eq(F["mode"] == WEIGHT_MODE_CODE[16])
        # weight check: ceil(rows * k_stored * bits / 8N) + (weight_off >> lgN) + weight_base >
        # wmem_words  <=>  rows * k_stored * bits > (wmem_words - (weight_off >> lgN) - weight_base) * 8N
        lgN = N.bit_length() - 1
        wo_a, bo_a = Signal(33), Signal(33)
        self.sync += wo_a.eq((F["weight_off"] >> lgN) + self.weight_base), \
            bo_a.eq((F["bias_off"] >> 2) + self.param_base)
        cb_base = Signal(len(ws.cb_base))
        self.sync += cb_base.eq((self.param_base << 2) + F["codebook_off"])
        # the product rows * k_stored * bits in three register stages: rows * bits (shifts and,
        # for 6 bits, one add, on the instruction's fields in DECODE), two partial products with
        # k_stored (valid from CHECK0) of 7 bits of it each, their sum. Rows beyond MAX_ROWS
        # (10 bits) fail the field check (CHECK1) before this one counts
        limit_b, pbad_b = Signal((35, True)), Signal()
        # bias_off / 4 + param_base + rows > param_words  <=>  bo_a > param_words - rows (a
        # compare of two registers in CHECK0, no adder before it)
        plim_a = Signal((max(param_words.bit_length(), 16) + 2, True))
        self.sync += plim_a.eq(param_words - F["rows"])
        row_bits = MAX_ROWS.bit_length()
        rows_r = F["rows"][:row_bits]
        rb_bits = row_bits + max(WEIGHT_MODE_CODE).bit_length() - 1
        rows_b = Signal(rb_bits)
        self.sync += Case(F["mode"], {WEIGHT_MODE_CODE[b]: rows_b.eq(sum(rows_r << k for k in range(5) if b >> k & 1))
                                      for b in WEIGHT_MODE_CODE})
        half = rb_bits // 2
        part_lo, part_hi = Signal(18 + half), Signal(18 + rb_bits - half)
        self.sync += part_lo.eq(rows_b[:half] * k_mul), part_hi.eq(rows_b[half:] * k_mul), \
            limit_b.eq(self.wmem_words - wo_a), pbad_b.eq(bo_a > plim_a)
        # the sum (CHECK1) and the compare (CHECK2) in stages of their own (two carry chains in
        # one took 13.5 ns), so CHECK3 decides on a register
        stream_bits, limit_c, pbad_c = Signal(40), Signal.like(limit_b), Signal()
        self.sync += stream_bits.eq(part_lo + (part_hi << half)), limit_c.eq(limit_b), pbad_c.eq(pbad_b)
        weight_bad, weight_bad_now = Signal(), Signal()
        self.comb += weight_bad_now.eq((stream_bits > (limit_c << (lgN + 3))) | pbad_c)
        self.sync += weight_bad.eq(weight_bad_now)

        # ---- loader into X buffer `ld_sel` ---------------------------------------------------------
        ld_sel, ld_seg, ld_i, loading = Signal(), Signal(), Signal(17), Signal()
        ld_src, ld_pos0 = Signal(vaw), Signal(17)
        ld_left = Signal(17)       # elements of the segment from ld_i on
        # the loader's decisions on registers: "the segment ends in this cycle" (ld_left <=
        # RD_WIDTH) loaded beside ld_left, from registered tests on the lengths (ir is stable from
        # DECODE, the loader runs from CHECK3 on)
        ld_end, b_none = Signal(), Signal()
        len_short = {n: Signal(name=f"{n}_short") for n in ("a_len", "b_len")}
        self.sync += [len_short[n].eq(F[n] <= RD_WIDTH) for n in len_short], b_none.eq(F["b_len"] == 0)
        ld_pend, ld_pend_pos, ld_pend_mask = Signal(), Signal(17), Signal(RD_WIDTH)
        self.comb += If(ld_seg, ld_src.eq(phys["b"]), ld_pos0.eq(F["a_len"])) \
            .Else(ld_src.eq(phys["a"]), ld_pos0.eq(0))
        # the pool address runs in its own register (ld_src + ld_i), no adder before the banks
        ld_adr = Signal(vaw)
        # (vpool.wide_adr: ld_adr while the core runs, the host's word address while it is idle: below)
        # the pool's wide read has latency four (the address registered where it arrives, a bank
        # address register, the block RAMs' output registers: their clock-to-out stays out of
        # the bank/wrap write logic); with the X buffer's three write stages the last write lands
        # six cycles after LOADED, in time for the stream's first window read (asserted below)
        wr_pend, wr_pos, wr_mask = (delay(self, v, vpool.wide_latency - 1, f"ld_{n}")
                                    for v, n in ((ld_pend, "pend"), (ld_pend_pos, "pos"), (ld_pend_mask, "mask")))
        self.comb += [xb.wpos.eq(wr_pos), xb.wsel.eq(ld_sel), If(wr_pend, xb.we.eq(wr_mask))]
        self.comb += [xb.wdata[j].eq(vpool.wide_bank[j]) for j in range(RD_WIDTH)], xb.wrot.eq(vpool.wide_rot)
        self.comb += xb.remaining.eq(0xFFFFFFFF)
        for b in range(2):
            # per-buffer window geometry, set while the buffer loads: from LOAD's second cycle
            # to LOADED, on a flag register of its own (the state decode reaching the buffer's
            # sixty configuration registers took 12.8 ns), in time for the first write (LOAD's
            # fifth cycle at the earliest: the pool's wide read), which needs the new k a cycle
            # ahead for its wrap copy; the values hold until START
            c = xb.cfg[b]
            cfg = [c["k"], c["k_useful"], c["split"], c["shift_b"], c["mode16"]]
            vals = [k_stored, k_useful, F["a_len"], F["b_aux"] != 0, mode16]
            assert vpool.wide_latency - 1 >= 2     # the first write's wide read, after cfg_we
            cfg_we = Signal(name=f"xcfg_we{b}")
            self.sync += cfg_we.eq(loading & (ld_sel == b)), If(cfg_we, *[c.eq(v) for c, v in zip(cfg, vals)])
        # which segments each buffer holds (for reuse)
        held = [[Signal(vaw, name=f"held{b}_a"), Signal(vaw, name=f"held{b}_b"), Signal(17, name=f"held{b}_la"),
                 Signal(17, name=f"held{b}_lb"), Signal(name=f"held{b}_m16"), Signal(name=f"held{b}_v")]
                for b in range(2)]
        last_sel = Signal()        # buffer of the most recently started stream
        seg_wait, seg_ready = Signal(), Signal()   # WAIT / WAIT_OLDER (docs/isa.md)
        self.comb += seg_wait.eq(F["flags"][0] | F["flags"][2])
        # reuse as a register: compared on the physical addresses' next values (stage C's sums,
        # valid in CHECK1); held and last_sel change only in LOADED and START, never during a check
        # (held == base + eff (mod 2^vaw) tested as held - base == eff: the differences and the
        # other terms registered beside eff (stage B, valid in CHECK1), so no adder sits before
        # the compare; base + eff then the compare took 10.3 ns)
        reuse = Signal()
        h = [Array(held[b][k] for b in range(2)) for k in range(6)]
        held_off = {op: Signal(vaw, name=f"heldoff_{op}") for op in ("a", "b")}
        self.sync += [held_off[op].eq(h[k][last_sel] - phys_base[op]) for k, op in enumerate(("a", "b"))]
        # (the other terms: each compare registered in DECODE, from ir and held values stable
        # since FETCH, their AND in CHECK0 (mode16, stage A's, joins there): one stage took 10.9 ns)
        same_len = Signal(2)
        same_rest = Signal()
        self.sync += same_len.eq(Cat(h[2][last_sel] == F["a_len"], h[3][last_sel] == F["b_len"]))
        self.sync += same_rest.eq(h[5][last_sel] & (same_len == 3) & (h[4][last_sel] == mode16) & ~seg_wait)
        self.sync += reuse.eq(same_rest & (held_off["a"] == eff_low["a"]) & (held_off["b"] == eff_low["b"]))

        # ---- stream: the weight stream and the X window of buffer `st_sel` into the array -----------
        # (mode, rows and group size registered once more: the stream samples them at its start,
        # STREAM_START_DELAY after START, while the instruction register still holds the started
        # instruction; the mode's decode sat behind the instruction register: 11.1 ns)
        ws_f = {n: Signal.like(F[n], name=f"ws_{n}") for n in ("mode", "rows", "group_log2")}
        self.sync += [ws_f[n].eq(F[n]) for n in ws_f]
        self.comb += [
            ws.word_base.eq(wo_a),           # registered: valid from CHECK0, four cycles before START at the earliest
            ws.mode.eq(ws_f["mode"]), ws.rows.eq(ws_f["rows"]), ws.k_stored.eq(k_stored),
            ws.group_log2.eq(ws_f["group_log2"]), ws.cb_base.eq(cb_base),
        ]
        st_sel, st_shift, st_mode16 = Signal(), Signal(max=MAX_SEG_SHIFT + 1), Signal()
        ws_ready = Signal()
        # registered (in the weight stream; the FIFO level grows by at most one row per cycle,
        # hence the extra 1; the row's register before the FIFO and `level`, a cycle late: 2 more)
        # (the level test a register, from the level's next value: the same value, no compare
        # before the weight stream's enables and the X buffer's advance copies)
        # (in two registers: the weight stream's clock-enable copies and the X buffer's advance
        # copies lie apart; one register reaching both took 10.8 ns)
        # (the level's next value is level + we_d - pop_d: the test picks one of three compares
        # on the level register by the two strobes, no adder between them and the compare)
        room_ok, room_nx = Signal(reset=1), Signal()
        room_lim = ROW_FIFO_DEPTH - (mac.latency + timing.XBUF_LATENCY + 11)
        lv = rowfifo.level
        self.comb += Case(Cat(rowfifo.pop_d, rowfifo.we_d), {
            0b10: room_nx.eq(lv < room_lim - 1), 0b01: room_nx.eq(lv < room_lim + 1),
            "default": room_nx.eq(lv < room_lim)})
        self.sync += room_ok.eq(room_nx)
        room_ok_x = copy_reg(self, room_nx, "room_ok_x", reset=True)   # (0 after a reset: nothing is valid then)
        self.comb += ws.ready_d.eq(room_ok), ws_ready.eq(ws.ready)
        take = Signal()
        self.comb += take.eq(ws.valid & ws_ready)
        self.sync += If(ws.valid & ~ws_ready, self.stalls.eq(self.stalls + 1))
        # (the X buffer's copies of `advance` are registers, loaded from the take's next value:
        # no AND and no net from the weight stream's registers reaches its banks' addresses)
        self.comb += xb.advance.eq(take), xb.rsel.eq(st_sel)
        drive_copies(self, xb.advances.copies, ws.valid_next & room_ok_x, "xadv")

        lag = timing.XBUF_LATENCY
        # the loader's last write is presented wide_latency - 1 cycles after LOADED and readable
        # write_latency + 1 cycles later; the first window is read with the first advance, the
        # weight stream's first output, first_output_latency cycles after START (LOADED + 1 at
        # the earliest); meanwhile the X buffer's position registers settle after restart (START)
        first_read = min(timing.first_output_latency(b) for b in WEIGHT_MODE_CODE)
        assert vpool.wide_latency - 1 + xb.write_latency <= first_read
        assert first_read >= xb.settle
        assert xb.latency == lag

        def delayed(sig, name, reset_less=False):
            return delay(self, sig, lag, name, reset_less)
        # the masks reach the array a cycle ahead of x, the weights two (it shifts the weights,
        # then masks and picks them, in register stages of its own), the shift three: lag - 1,
        # lag - 2 and lag - 3 stages
        wd = [delay(self, ws.w[i], lag - 2, f"wl{i}", reset_less=True) for i in range(N)]
        take_d = delayed(take, "take")
        first_d, last_d = delayed(ws.first, "first"), delayed(ws.last, "last")
        bnd_d = delayed(ws.bnd, "bnd")
        m16_d = delayed(st_mode16, "m16")
        shift_ahead3 = delay(self, st_shift, lag - 3, "shift")   # the array registers it per lane group
        # the lanes past the cycle's last weight, compared a cycle ahead and registered (with the
        # weights, a cycle ahead of x; `tail` a cycle later for the utilisation counter)
        nvalid_a, m16_a = delay(self, ws.n_valid, lag - 2, "nvalid_a"), delay(self, st_mode16, lag - 2, "m16_a")
        tail_ahead, tail = Signal(N, reset_less=True), Signal(N, reset_less=True)
        self.sync += [tail_ahead[i].eq(i >= lanes16(m16_a, nvalid_a)) for i in range(N)]
        self.sync += tail.eq(tail_ahead)
        self.comb += [
            mac.valid.eq(take_d), mac.first.eq(first_d), mac.last.eq(last_d),
            mac.bnd.eq(lanes16(m16_d, bnd_d)), mac.shift_ahead3.eq(shift_ahead3), mac.mode16.eq(m16_d),
            mac.shifted_ahead.eq(xb.shifted_early),
            mac.zero_ahead.eq(xb.zero_early | tail_ahead),
        ] + [mac.x[i].eq(xb.x[i]) for i in range(N)] + [mac.w_ahead2[i].eq(wd[i]) for i in range(N)]
        # utilisation counter: the idle-lane mask registered, then counted in two register stages
        # (8 lanes, then the groups); it is read after `done`, long after its last increment
        zero_r, v_r, v_c, busy_v = Signal(N), Signal(), Signal(), Signal()
        self.sync += zero_r.eq(xb.zero | tail), v_r.eq(mac.valid), v_c.eq(v_r), busy_v.eq(v_c)
        counts = []
        for g in range(0, N, 8):
            c = Signal(max=9, name=f"busy{g // 8}")
            self.sync += c.eq(sum(~zero_r[i] for i in range(g, min(g + 8, N))))
            counts.append(c)
        busy_r = Signal(max=N + 1)
        self.sync += busy_r.eq(sum(counts)), If(busy_v, self.mac_ops.eq(self.mac_ops + busy_r))

        # two rows may finish in one cycle (a boundary and the stream's end): hold the second
        row1_hold, row1_val = Signal(), Signal((ACC_BITS, True), reset_less=True)
        self.sync += If(mac.row0_valid & mac.row1_valid, row1_hold.eq(1), row1_val.eq(mac.row1)) \
            .Else(row1_hold.eq(0))
        # the row registered by the MAC array, on its way to the row FIFO by the feeder
        # (timing.FIFO_IN_LATENCY)
        assert timing.FIFO_IN_LATENCY == 1
        self.sync += [
            rowfifo.we.eq(mac.row0_valid | mac.row1_valid | row1_hold),
            If(row1_hold, rowfifo.din.eq(row1_val))
            .Elif(mac.row0_valid, rowfifo.din.eq(mac.row0))
            .Else(rowfifo.din.eq(mac.row1)),
        ]

        # ---- instruction contexts: pushed at stream start, retired at the last write ----------------
        # (the row count's tests from ir's shift-in, into registers of their own: the rows field
        # reaches some hundred LUTs, its decode behind it took 9.7 ns)
        rows_en, rows_in = shift_in("rows")
        rows_t = {"rows_m1": Signal(len(F["rows"]), name="rows_m1"), "one_row": Signal(name="rows_one"),
                  "two_rows": Signal(name="rows_two")}
        self.sync += If(rows_en, rows_t["rows_m1"].eq(rows_in - 1), rows_t["one_row"].eq(rows_in == 1),
                        rows_t["two_rows"].eq(rows_in == 2))
        ctx_fields = {
            **rows_t,
            "n_ops": None, "interval": None, "wait_epi": F["flags"][1],
            "da": phys["da"], "db": phys["db"], "p": phys["p"], "q": phys["q"],
            "dst": phys["dst"], "dst2": phys["dst2"], "dst2_used": used["dst2"],
            "order": None,
            "bias": self.param_base + (F["bias_off"] >> 2),
            "diag": F["diag"], "diag_shift": F["da_aux"], "out_shift": F["out_shift"], "act": F["act"],
            "act2": F["act2"], "combine": F["combine"], "s_c": F["p_aux"], "s_q": F["q_aux"], "s_p": F["db_aux"],
        }
        need_now = [used["da"], used["db"], used["p"], used["q"]]
        n_ops_now, interval_now = Signal(3), Signal(3)
        self.comb += n_ops_now.eq(sum(need_now))
        self.comb += If(n_ops_now > 1, interval_now.eq(n_ops_now)).Elif(used["dst2"], interval_now.eq(2)) \
            .Else(interval_now.eq(1))
        interval_m1 = Signal(2)
        self.comb += interval_m1.eq(interval_now - 1)
        ctx_fields["n_ops"], ctx_fields["interval"] = n_ops_now, interval_m1   # stored minus one
        # the row's slot order (slot -> operand index, among da, db, p, q those used), 2 bits a slot
        pos_of = [Signal(3, name=f"pos{k}") for k in range(4)]
        order = [Signal(2, name=f"ord{k}") for k in range(4)]
        self.comb += pos_of[0].eq(0)
        for k in range(1, 4):
            self.comb += pos_of[k].eq(pos_of[k - 1] + need_now[k - 1])
        for k in range(4):
            self.comb += If(need_now[k], Array(order)[pos_of[k]].eq(k))
        ctx_fields["order"] = Cat(*order)
        # each value registered once before the contexts (from ir and the checks' registers, held
        # from DECODE to the push: the decode and its adders then sit by the instruction register,
        # the four contexts wherever their readers are)
        ctx = {}
        for name, value in ctx_fields.items():
            src = Signal(value_bits_sign(value), name=f"ctxin_{name}", reset_less=True)
            self.sync += src.eq(value)
            regs = [Signal(value_bits_sign(value), name=f"ctx{e}_{name}") for e in range(CTX_DEPTH)]
            ctx[name] = (regs, src)
        push_ptr, feed_ptr, retire_ptr = Signal(2), Signal(2), Signal(2)
        ctx_count = Signal(3)
        ctx_push, ctx_retire = Signal(), Signal()
        # the push is registered and lands in the first FETCH cycle after START, while the
        # instruction register and its checked addresses still hold the started instruction (the
        # first instruction word is loaded at the end of the second FETCH cycle); everything that
        # looks at the contexts does so many cycles later (the next START, WAIT, HALT, its rows)
        push = [Signal(name=f"ctx_push{e}") for e in range(CTX_DEPTH)]   # one-hot, registered
        self.sync += [push[e].eq(ctx_push & (push_ptr == e)) for e in range(CTX_DEPTH)]
        pushed = Signal()
        self.comb += pushed.eq(Cat(*push) != 0)
        # (each field's registers load on a register copy of their context's push: one register
        # reaching a context's 150 clock enables took 11 ns of routing)
        for name, (regs, src) in ctx.items():
            for e in range(CTX_DEPTH):
                self.sync += If(copy_reg(self, ctx_push & (push_ptr == e), f"ctx_push{e}_{name}", reset=True),
                                regs[e].eq(src))
        self.sync += [
            If(ctx_push, push_ptr.eq(push_ptr + 1)),
            If(ctx_retire, retire_ptr.eq(retire_ptr + 1)),
            ctx_count.eq(ctx_count + pushed - ctx_retire),
        ]

        def C(name, ptr):
            return Array(ctx[name][0])[ptr]

        # ---- feeder --------------------------------------------------------------------------------
        # A row is popped, then occupies `interval` slots; slot s issues the read of its s-th epilogue
        # operand (da, db, p, q in that order among those used), whose data comes FEED_LATENCY (5)
        # cycles later (timing.FEED_LATENCY == vpool.rd_latency: the pool's address register and
        # its copies per bank, the block RAMs' output registers, its bank pick registered).
        # FEED_LATENCY cycles after its last slot (while the next row may already be in its
        # slots) it enters the epilogue, with its last operand straight from the pool's read port;
        # its bias follows a cycle later from the bias copy's output registers, registered
        # FEED_LATENCY - 1 times more (addressed from the cycle after the pop, held until the next
        # pop).
        feeding, slot = Signal(), Signal(3)
        r_ctx, acc_r = Signal(2), Signal((ACC_BITS, True))
        acc_p, push = Signal((ACC_BITS, True)), Signal()   # (p_ctx: copies, p_tag: below)
        # last_slot (feeding & slot == interval - 1) is a register, computed with the next state
        # (below): pop, and the FIFO read behind it, start from registers, not from a mux and a compare
        last_slot = Signal()
        # the row's values at its last slot, FEED_LATENCY - 1 cycles later (a cycle before its last
        # operand arrives)
        assert vpool.rd_latency == timing.FEED_LATENCY == 5
        last_slot_d = delay(self, last_slot, timing.FEED_LATENCY - 1, "last_slot")
        acc_r_d = delay(self, acc_r, timing.FEED_LATENCY - 1, "acc_r", reset_less=True)
        r_ctx_d = delay(self, r_ctx, timing.FEED_LATENCY - 1, "r_ctx")
        fd_first = Signal(reset=1)   # the next row popped is its context's first
        # what `pop` and the context's end look at, as registers from the next values of the
        # pointers (exact), and the current context's flags picked from the next pointer a cycle
        # ahead (a context is pushed many cycles before its first row can be popped): the loop
        # feed_ptr -> pop -> feed_ptr holds registers and one-bit logic only
        avail, ctx_one, ctx_int0 = Signal(), Signal(), Signal()
        free, epi_ok = Signal(reset=1), Signal(reset=1)
        avail_nx, epi_ok_nx, free_nx = Signal(), Signal(), Signal()
        pop = Signal()
        self.comb += pop.eq(rowfifo.readable & avail & epi_ok & free)
        # `pop` reaches some two hundred flip-flops (the FIFO's, the feeder's, the row addresses'):
        # copies of it for the FIFO and the row addresses, each an AND of register copies of its
        # four terms (loaded from their next values: equal to `pop` in every cycle; after the
        # reset all are 0 with `readable`), so no one LUT's net reaches them all
        def pop_copy(name):
            terms = [copy_reg(self, nx, f"pop_{name}_{t}", reset=True) for t, nx in
                     (("r", rowfifo.readable_next), ("a", avail_nx), ("e", epi_ok_nx), ("f", free_nx))]
            p = Signal(name=f"pop_{name}")
            self.comb += p.eq(reduce(and_, terms))
            return p
        self.comb += rowfifo.re.eq(pop_copy("fifo"))
        slot_end = Signal()                       # the row's last slot comes next
        self.comb += slot_end.eq(slot + 1 == C("interval", r_ctx))
        self.comb += free_nx.eq(Mux(pop, ctx_int0, free | slot_end))
        self.sync += If(pop, last_slot.eq(ctx_int0)).Elif(last_slot, last_slot.eq(0)) \
            .Elif(feeding, last_slot.eq(slot_end)), free.eq(free_nx)
        # feed_ptr from its next value (three register copies of it pick the contexts behind the
        # pop, below); whether the popped row is its context's last: for the first row a flag of the context,
        # then a count of the rows left (fd_rem) whose zero test is a register (rem_zero), so the
        # loop feed_ptr -> pop -> feed_ptr holds one-bit context picks only
        fd_last, feed_nx = Signal(), Signal(2)
        fd_rem, rem_zero = Signal(16), Signal()
        self.comb += fd_last.eq(Mux(fd_first, ctx_one, rem_zero)), \
            If(pop & fd_last, feed_nx.eq(feed_ptr + 1)).Else(feed_nx.eq(feed_ptr))
        fd_first_nx = Signal()
        self.comb += fd_first_nx.eq(Mux(pop, fd_last, fd_first))
        self.comb += avail_nx.eq(feed_nx != (push_ptr + ctx_push)[:2]), \
            epi_ok_nx.eq(~fd_first_nx | ~C("wait_epi", feed_nx) | ((retire_ptr + ctx_retire)[:2] == feed_nx))
        self.sync += avail.eq(avail_nx), epi_ok.eq(epi_ok_nx), \
            ctx_one.eq(C("one_row", feed_nx)), ctx_int0.eq(C("interval", feed_nx) == 0)
        # (and for the two groups of row addresses a copy of `pop` and of fd_first each; fd_first
        # stored inverted, so the copy's reset value is its)
        pop_adr = [pop_copy(f"adr{g}") for g in range(2)]
        first_adr = [~copy_reg(self, ~fd_first_nx, f"fd_notfirst{g}", reset=True) for g in range(2)]

        # what a pop loads from its row's context: picked by register copies of the feed pointer
        # (one per row address, whose picks sit beside its register, and one per group of the other
        # uses; the picks are some 110 mux selects; registers from `feed_nx` instead put `pop` ->
        # feed_nx -> the picks in one cycle: 14.6 ns at c7aa052; three copies for all: 11.7-13.1 ns)
        pick_use = {"order": "op", "n_ops": "op"}   # else "ctl"; a row address: its own
        feed_adr = {}

        def cur(name, own=False):
            use = name if own else pick_use.get(name, "ctl")
            if use not in feed_adr:
                feed_adr[use] = copy_reg(self, feed_nx, f"feed_adr_{use}", reset=True)   # == feed_ptr
            return C(name, feed_adr[use])

        def row_address(name, width):
            """The popped row's address from its context's base `name` (a register loaded on the
            pop): the base itself for the context's first row, else the previous row's plus one
            (a context pick and a 2:1 mux behind the pop, no adder of base and row index)."""
            adr = Signal(width, name=f"radr_{name}")
            g = 0 if name in ("da", "db", "bias") else 1      # the address group: its pop / fd_first copy
            self.sync += If(pop_adr[g], If(first_adr[g], adr.eq(cur(name, own=True))).Else(adr.eq(adr + 1)))
            return adr
        # the row's accumulator loads whenever a pop may happen (not only on one: `pop` then stays
        # out of its 48 clock enables, which have copies of `free` of their own); after a pop it
        # holds until the row's last slot
        for lo in range(0, ACC_BITS, 16):
            self.sync += If(copy_reg(self, free_nx, f"acc_free{lo // 16}"), acc_r[lo:lo + 16].eq(rowfifo.dout[lo:lo + 16]))
        self.sync += [
            push.eq(last_slot_d), feed_ptr.eq(feed_nx),
            If(last_slot_d, acc_p.eq(acc_r_d)),
            If(pop,
                feeding.eq(1), slot.eq(0), r_ctx.eq(feed_ptr),
                fd_first.eq(fd_last),
                If(fd_first, fd_rem.eq(cur("rows_m1") - 1), rem_zero.eq(cur("two_rows")))
                .Else(fd_rem.eq(fd_rem - 1), rem_zero.eq(fd_rem == 1)))
            .Elif(last_slot, feeding.eq(0))
            .Elif(feeding, slot.eq(slot + 1)),
        ]
        # the context of the row entering the epilogue (r_ctx at its last slot) selects some
        # sixty bits of settings: two copies of it, by use
        p_ctx_s0, p_ctx_s1 = (copy_reg(self, r_ctx_d, f"p_ctx_{n}", ce=last_slot_d, reset=True)
                              for n in ("s0", "s1"))
        # the row's write tag (destination addresses, second write, last row of its context)
        # computed when the row is popped, like its operand addresses, and carried to the
        # epilogue's input beside the row (no context pick and adder before the epilogue)
        r_two, r_last = Signal(), Signal()
        self.sync += If(pop, r_two.eq(cur("dst2_used")), r_last.eq(fd_last))
        r_tag = Cat(row_address("dst", vaw), row_address("dst2", vaw), r_two, r_last)
        r_tag_d = delay(self, r_tag, timing.FEED_LATENCY - 1, "r_tag")
        p_tag = Signal(len(r_tag))
        self.sync += If(last_slot_d, p_tag.eq(r_tag_d))
        core_rd_adr = Signal(vaw)
        # the popped row's slot order (its context's), loaded at pop and shifted down one slot per
        # cycle: in every slot the read operand's index is a register
        ordq = [Signal(2, name=f"ordq{k}") for k in range(4)]
        n_ops_r = Signal(3)
        self.sync += If(pop, *[q.eq(cur("order")[2 * k:2 * k + 2]) for k, q in enumerate(ordq)], n_ops_r.eq(cur("n_ops"))) \
            .Elif(feeding, *[ordq[k].eq(ordq[k + 1]) for k in range(3)])
        # the four operand addresses of the row (base + row), added when the row is popped: in the
        # slots only a mux stands before the pool's read port
        op_adr = Array(row_address(name, vaw) for name in ("da", "db", "p", "q"))
        self.comb += core_rd_adr.eq(op_adr[ordq[0]])
        # the read's data FEED_LATENCY cycles later (the pool's block RAMs through their output
        # registers, its bank pick registered)
        rd_k, rd_live = Signal(2), Signal()
        self.sync += rd_k.eq(ordq[0]), rd_live.eq(feeding & (slot < n_ops_r))
        rd_k2 = delay(self, rd_k, timing.FEED_LATENCY - 1, "rd_k")
        rd_live2 = delay(self, rd_live, timing.FEED_LATENCY - 1, "rd_live")
        cap = [Signal((ACT_BITS, True), name=f"cap{k}", reset_less=True) for k in range(4)]
        now = [Signal((ACT_BITS, True), name=f"opnow{k}") for k in range(4)]
        for k in range(4):
            self.sync += If(rd_live2 & (rd_k2 == k), cap[k].eq(vpool.rd_dat))
            self.comb += If(rd_live2 & (rd_k2 == k), now[k].eq(vpool.rd_dat)).Else(now[k].eq(cap[k]))
        # the bias address (context base + row) added when the row is popped, like the operands'
        self.comb += q_bias.adr.eq(row_address("bias", len(q_bias.adr)))
        # (the row enters the epilogue FEED_LATENCY cycles after its last slot)
        bias = delay(self, q_bias.dat_r, timing.FEED_LATENCY - 1, "bias", reset_less=True)
        self.comb += [
            epi.valid.eq(push), epi.acc.eq(acc_p), epi.bias.eq(bias),
            epi.tag.eq(p_tag),
            epi.da.eq(now[0]), epi.db.eq(now[1]), epi.p.eq(now[2]), epi.q.eq(now[3]),
        ] + [getattr(epi, s).eq(C(s, p_ctx_s0)) for s in ("diag", "diag_shift", "out_shift", "act", "act2")] \
          + [getattr(epi, s).eq(C(s, p_ctx_s1)) for s in ("combine", "s_c", "s_q", "s_p")]

        # ---- write queue: up to two writes enter per row, one leaves per cycle -----------------------
        wq_adr = Array(Signal(vaw, name=f"wqa{e}") for e in range(WQ_DEPTH))
        wq_dat = Array(Signal((ACT_BITS, True), name=f"wqd{e}", reset_less=True) for e in range(WQ_DEPTH))
        wq_last = Array(Signal(name=f"wql{e}") for e in range(WQ_DEPTH))
        wq_head = Signal(3)
        # the tail one-hot (and rotated by one for a second write): each entry's write enable is
        # an AND of registers, not a decode of a pointer
        tail0 = Signal(WQ_DEPTH, reset=1)
        tail1 = Signal(WQ_DEPTH)
        self.comb += tail1.eq(Cat(tail0[-1], tail0[:-1]))
        wq_count = Signal(4)
        o_dst, o_dst2 = epi.out_tag[:vaw], epi.out_tag[vaw:2 * vaw]
        o_two, o_last = epi.out_tag[2 * vaw], epi.out_tag[2 * vaw + 1]
        n_in = Signal(2)
        self.comb += If(epi.out_valid, n_in.eq(1 + o_two)).Else(n_in.eq(0))
        wq_write = Signal()
        self.comb += wq_write.eq(wq_count != 0)
        # the head in register copies (one per picked field, loaded from its next value: one
        # pointer reaching the 8:1 muxes of every field took 10.2 ns)
        head_nx = Signal(3)
        self.comb += head_nx.eq(wq_head + wq_write)
        hd_last, hd_adr, hd_dat0, hd_dat1 = (copy_reg(self, head_nx, f"wq_head_{n}", reset=True)
                                             for n in ("last", "adr", "dat0", "dat1"))
        half_dat = ACT_BITS // 2
        # (the entries load on a copy of the epilogue's valid each: one register reaching the
        # queue's 240 clock enables took 11.3 ns of routing)
        ov = [copy_reg(self, epi.out_valid_next, f"wq_ov{e}", reset=True) for e in range(WQ_DEPTH)]
        self.sync += [
            If(ov[e] & tail0[e],
                wq_adr[e].eq(o_dst), wq_dat[e].eq(epi.y), wq_last[e].eq(o_last & ~o_two),
            ).Elif(ov[e] & o_two & tail1[e],
                wq_adr[e].eq(o_dst2), wq_dat[e].eq(epi.y), wq_last[e].eq(o_last))
            for e in range(WQ_DEPTH)]
        self.sync += [
            Case(n_in, {1: tail0.eq(tail1), 2: tail0.eq(Cat(tail1[-1], tail1[:-1]))}),
            wq_head.eq(head_nx),
            wq_count.eq(wq_count + n_in - wq_write),
        ]
        # vector pool ports: the core while busy, the host otherwise (`own` == busy, a register:
        # see do_finalize)
        # (a copy of it per use: the write register, the single-word read address, the wide read
        # address; each reaches a port's worth of muxes)
        self._own_copies = own, own_rd, own_wide = [Signal(name=f"own_{n}") for n in ("w", "rd", "wide")]
        self.comb += self.pool_owner.eq(own)    # (the RTL runs check it against busy every cycle)
        # the write port from one output register (timing.WQ_LATENCY: the queue entry, then this
        # register), loaded with the queue's head entry while the core owns the pool, else with
        # the host's write (which thus lands a cycle later; the host writes only while the core
        # is idle): the write reaches the pool's banks from flip-flops, not through the head's 8:1
        # mux and the owner mux; the context retires with its last write
        # (then the pool's register per bank: vpool.wr_latency; the context retires as its last
        # write lands, a register later still)
        assert timing.WQ_LATENCY == 2 + vpool.wr_latency == 3
        pool_we, pool_wadr, pool_wdat, core_wlast = Signal(), Signal(vaw), Signal((ACT_BITS, True), reset_less=True), Signal()
        # (the queue drains and its contexts retire whoever owns the pool: after an error the
        # core is idle while rows may still be on their way)
        self.comb += core_wlast.eq(delay(self, wq_write & wq_last[hd_last], 1 + vpool.wr_latency, "wlast"))
        self.sync += \
            If(own, pool_we.eq(wq_write), pool_wadr.eq(wq_adr[hd_adr]),
               pool_wdat[:half_dat].eq(Array(d[:half_dat] for d in wq_dat)[hd_dat0]),
               pool_wdat[half_dat:].eq(Array(d[half_dat:] for d in wq_dat)[hd_dat1])) \
            .Else(pool_we.eq(self.vmem_we), pool_wadr.eq(self.vmem_adr), pool_wdat.eq(self.vmem_wdat))
        self.comb += ctx_retire.eq(core_wlast)
        self.comb += vpool.we.eq(pool_we), vpool.wr_adr.eq(pool_wadr), vpool.wr_dat.eq(pool_wdat), \
            If(own_rd, vpool.rd_adr.eq(core_rd_adr)).Else(vpool.rd_adr.eq(self.vmem_adr))
        self.comb += self.vmem_rdat.eq(vpool.rd_dat)
        self.vmem_read_latency = vpool.rd_latency      # vmem_adr -> vmem_rdat (idle core)
        # the host's reads also through the wide port, wide_latency cycles after the address (its
        # block RAMs' output registers: no 5.8 ns clock-to-out on the way to a bus far away)
        self.vmem_wide_latency = vpool.wide_latency
        self.comb += If(own_wide, vpool.wide_adr.eq(ld_adr)).Else(vpool.wide_adr.eq(self.vmem_adr)), \
            self.vmem_rdat_wide.eq(vpool.wide_dat0)

        # ---- front end -------------------------------------------------------------------------------
        # the fetch address is a register (prog_base + 16 pc + fetch_k, counting with fetch_k), and
        # "pc is inside the program" a flag beside pc: both loaded with pc from registers that
        # hold them for each jump target (pc + 1, loop_start: stable from FETCH to DECODE, or
        # from a LOOP to its ENDLOOP; 0), so no adder or compare sits before the program memory
        # or the ir shift's enables
        fadr, pc_ok = Signal(iaw), Signal()
        self.comb += p_fetch.adr.eq(fadr)
        tgt = {"next": pc + 1, "loop": loop_start, "zero": 0}
        tgt_adr = {n: Signal(iaw, name=f"fadr_{n}") for n in tgt}
        tgt_ok = {n: Signal(name=f"pc_ok_{n}") for n in tgt}
        self.sync += [tgt_adr[n].eq(self.prog_base + (v << 4)) for n, v in tgt.items()], \
            [tgt_ok[n].eq(v < self.prog_len) for n, v in tgt.items()]
        self.submodules.fsm = fsm = FSM(reset_state="IDLE")
        self.sync += If(self.busy, self.cycles.eq(self.cycles + 1))

        def fail(code):
            return [NextValue(err, code), NextValue(self.error_pc, pc), NextState("ERROR")]

        def next_instr(target):     # target: a name of tgt
            return [NextValue(pc, tgt[target]), NextValue(fetch_k, 0),
                    NextValue(pc_ok, tgt_ok[target]), NextState("FETCH")]   # fadr: below

        # (a register: steps is set before start; its test behind the start's logic took 11.7 ns)
        launch_ok = Signal()
        self.sync += launch_ok.eq(self.steps != 0)
        launch = If(self.start,
            NextValue(self.cycles, 0), NextValue(self.mac_ops, 0), NextValue(self.stalls, 0),
            NextValue(self.done, 0), NextValue(err, 0), NextValue(in_loop, 0),
            NextValue(parity, self.parity_in), NextValue(held[0][5], 0), NextValue(held[1][5], 0),
            If(~launch_ok, *fail(isa.ERR_FIELD)).Else(*next_instr("zero")))
        fsm.act("IDLE", launch)
        fsm.act("ERROR", launch)   # the error code stays readable until the next start
        # the instruction words load whatever pc is (after an error ir is not used)
        # ir is a shift register: word k arrives in cycle fetch_k == k + 1 and shifts down to
        # ir[k] by the last one (the memory's output then reaches one register per bit). The shift
        # (in FETCH, fetch_k != 0) reaches 512 clock enables: a register copy of it per word,
        # from its next value (do_finalize)
        for k in range(isa.INSTR_WORDS):
            self.sync += If(self._shift_copies[k], ir[k].eq(ir_in[k]))
        self.comb += ir_last_in.eq(p_fetch.dat_r)
        self._fetch_stays = pc_ok & (fetch_k != isa.INSTR_WORDS)   # FETCH's own transitions
        fsm.act("FETCH",
            self.busy.eq(1),
            If(~pc_ok, *fail(isa.ERR_NOHALT)).Else(
                NextValue(fetch_k, fetch_k + 1),
                If(fetch_k == isa.INSTR_WORDS, NextState("DECODE"))))
        # DECODE's whole decision in registers, set with ir's shifts from the opcode's shift-in and
        # the loop registers (in_loop, loop_iter and loop_count change only in DECODE and at
        # launch, so loop_more and in_loop have settled by FETCH's last shift): DECODE, the fetch
        # address and the pool owner (do_finalize) act on flip-flops, not on an opcode decode
        ops = (isa.OP_HALT, isa.OP_LOOP, isa.OP_ENDLOOP, isa.OP_MATVEC)
        loop_more = Signal()
        self.sync += loop_more.eq(loop_iter + 1 < loop_count)
        shifting, opcode_nx = shift_in("opcode")
        op_nx = {op: opcode_nx == op for op in ops}
        dec = {k: Signal(name=f"dec_{k}") for k in ("loop_op", "endloop_op", "fail", "drain", "check", "next", "loop")}
        dec_err = Signal(len(err))
        nest_bad = ((op_nx[isa.OP_HALT] | op_nx[isa.OP_LOOP]) & in_loop) | (op_nx[isa.OP_ENDLOOP] & ~in_loop)
        self.sync += If(shifting,
            dec["loop_op"].eq(op_nx[isa.OP_LOOP] & ~in_loop),
            dec["endloop_op"].eq(op_nx[isa.OP_ENDLOOP] & in_loop),
            dec["fail"].eq(nest_bad | ~reduce(or_, op_nx.values())),
            If(nest_bad, dec_err.eq(isa.ERR_LOOP)).Else(dec_err.eq(isa.ERR_OPCODE)),
            dec["drain"].eq(op_nx[isa.OP_HALT] & ~in_loop),
            dec["check"].eq(op_nx[isa.OP_MATVEC]),
            dec["next"].eq((op_nx[isa.OP_LOOP] & ~in_loop) | (op_nx[isa.OP_ENDLOOP] & in_loop & ~loop_more)),
            dec["loop"].eq(op_nx[isa.OP_ENDLOOP] & in_loop & loop_more))
        # LOOP's "count == 0" (loop over `steps`) from the shift-in as well: a register, not a
        # 16-bit zero test before loop_count's 16 clock enables
        count_zero = Signal()
        shifting, count_nx = shift_in("count")
        self.sync += If(shifting, count_zero.eq(count_nx == 0))
        # (the flags are exclusive: at most one of fail / drain / check / next / loop is set)
        fsm.act("DECODE",
            self.busy.eq(1),
            If(dec["fail"], *fail(dec_err)),
            If(dec["drain"], NextState("DRAIN")),
            If(dec["check"], NextState("CHECK0")),
            If(dec["next"], *next_instr("next")),
            If(dec["loop"], *next_instr("loop")),
            If(dec["loop_op"],
                NextValue(in_loop, 1), NextValue(loop_start, pc + 1), NextValue(loop_iter, 0),
                NextValue(loop_rev, F["reverse"]),
                If(count_zero, NextValue(loop_count, self.steps)).Else(NextValue(loop_count, F["count"]))),
            If(dec["endloop_op"],
                NextValue(parity, ~parity), NextValue(loop_iter, loop_iter + 1),
                If(~loop_more, NextValue(in_loop, 0))))
        fsm.act("CHECK0", self.busy.eq(1), NextState("CHECK1"))   # the check pipeline (above)
        fsm.act("CHECK1", self.busy.eq(1),   # the field checks, registered twice
                If(field_bad_r, *fail(isa.ERR_FIELD)).Else(NextState("CHECK2")))
        fsm.act("CHECK2", self.busy.eq(1), NextState("CHECK3"))
        fsm.act("CHECK3",
            self.busy.eq(1),
            If(any_op_bad, *fail(isa.ERR_ADDR)).Elif(weight_bad, *fail(isa.ERR_WEIGHT)).Else(
                If(seg_wait, NextState("WAITSEG"))
                .Elif(reuse, NextValue(ld_sel, last_sel), NextState("START"))
                .Else(NextValue(ld_sel, ~last_sel), NextState("LOAD"))))
        self.comb += seg_ready.eq((ctx_count == 0) | (~F["flags"][0] & (ctx_count <= 1)))
        fsm.act("WAITSEG",   # WAIT: every earlier instruction retired; WAIT_OLDER: all but the last
            self.busy.eq(1),
            If(seg_ready, NextValue(ld_sel, ~last_sel), NextState("LOAD")))
        fsm.act("LOAD",
            self.busy.eq(1),
            NextValue(ld_pend, 1), NextValue(ld_pend_pos, ld_pos0 + ld_i),
            # ld_left = segment length - ld_i, counted down: its end is a compare with constants
            NextValue(ld_pend_mask, Cat(*[ld_left > j for j in range(RD_WIDTH)])),
            If(ld_end & (ld_seg | b_none), NextState("LOADED")))
        # the segment walk: in LOAD the next RD_WIDTH elements, or the next segment; in any other
        # state set up for segment A (LOAD is entered from CHECK3 and WAITSEG only, with ir, phys
        # and the length tests valid): the enables are the state decode alone, not the checks
        self.sync += If(loading,
            If(ld_end,
                ld_i.eq(0), ld_left.eq(F["b_len"]), ld_end.eq(len_short["b_len"]),
                If(~ld_seg & ~b_none, ld_seg.eq(1), ld_adr.eq(phys["b"])))
            .Else(ld_i.eq(ld_i + RD_WIDTH), ld_left.eq(ld_left - RD_WIDTH), ld_end.eq(ld_left <= 2 * RD_WIDTH),
                  ld_adr.eq(ld_adr + RD_WIDTH))) \
            .Else(ld_seg.eq(0), ld_i.eq(0), ld_left.eq(F["a_len"]), ld_end.eq(len_short["a_len"]), ld_adr.eq(phys["a"]))
        fsm.act("LOADED",    # the last loader write is still on its way into the X buffer (see the loader)
            self.busy.eq(1), NextValue(ld_pend, 0),
            *[If(ld_sel == b, NextValue(held[b][k], v)) for b in range(2) for k, v in
              enumerate([phys["a"], phys["b"], F["a_len"], F["b_len"], mode16, 1])],
            NextState("START"))
        # START's two conditions as registers, from the next values of what they test (exact:
        # ws_idle == ~ws.busy, ctx_free == ctx_count < CTX_DEPTH in every cycle), and START acts on
        # them a cycle late (timing.START_SEEN: the stream start's next value, below, then comes
        # from registers only; both stay true until START itself starts a stream)
        ws_idle, ctx_free, ctx_free_nx = Signal(reset=1), Signal(reset=1), Signal()
        self.comb += ctx_free_nx.eq(ctx_count + pushed - ctx_retire < CTX_DEPTH)
        self.sync += ws_idle.eq(~ws.busy_next), ctx_free.eq(ctx_free_nx)
        assert timing.START_SEEN == 1
        start_ok = Signal()
        self.sync += start_ok.eq(ws_idle & ctx_free)
        fsm.act("START",     # the previous stream has finished issuing and a context slot is free
            self.busy.eq(1),
            If(start_ok,     # (the stream start, below: the same test)
                NextValue(last_sel, ld_sel),
                NextValue(st_shift, F["a_aux"] | F["b_aux"]), NextValue(st_mode16, mode16),
                *next_instr("next")))
        # the stream start, in START & start_ok, reaches several hundred registers (the weight
        # stream's and X buffer's start inputs, the context push): register copies of it, one per
        # group of them (do_finalize). The context push loads from its next value; the stream's
        # and X buffer's copies a cycle later (timing.STREAM_START_DELAY) from a register of it
        # per unit: the next value's logic reached the copies all over the die (11.9 ns)
        self._push_copies = [ctx_push]
        # the stream's buffer, set with the stream start; the X buffer's copies of it from its
        # next value (regs.drive_copies)
        st_sel_nx = Signal()
        self.comb += If(fsm.ongoing("START") & start_ok, st_sel_nx.eq(ld_sel)).Else(st_sel_nx.eq(st_sel))
        self.sync += st_sel.eq(st_sel_nx)
        drive_copies(self, xb.rsels.copies, st_sel_nx, "xrsel")
        self._stream_copies = {"ws": ws.start_copies, "xb": xb.restarts.copies}
        self._start_nx = [ws_idle & ctx_free]
        # "START in the next cycle", spelt out on registers (do_finalize): CHECK3 passing every
        # check onto a reused buffer, LOADED, or START still waiting
        # (CHECK3's "start at once" in one register: every check passed and the buffer reused,
        # reuse implying no WAIT; the same registers' inputs a cycle earlier, all valid in CHECK2)
        c3_go = Signal()
        self.sync += c3_go.eq(~reduce(or_, op_bad) & ~weight_bad_now & reuse)
        # the transitions into those three states, spelt out (CHECK3 always leaves, LOADED always
        # goes to START, START stays until start_ok): the one-hot flags below load from these,
        # not from the FSM's whole next-state logic (opcode decode, checks: 10.9 ns)
        self._into = {"CHECK3": [("CHECK2", 1)], "LOADED": [("LOAD", ld_end & (ld_seg | b_none))],
                      "START": [("CHECK3", ~any_op_bad & ~weight_bad & ~seg_wait & reuse), ("LOADED", 1),
                                ("START", ~start_ok)]}
        self._to_start = {"CHECK3": c3_go, "LOADED": 1,
                          "START": ~start_ok}
        drained = Signal()
        self.comb += drained.eq(ctx_count == 0)
        fsm.act("DRAIN",     # HALT: wait for every row to be written
            self.busy.eq(1),
            If(drained, NextValue(self.done, 1), NextState("IDLE")))
        # the fetch address beside the FSM, on the same conditions as its transitions into and
        # within FETCH (next_instr; FETCH's count): each a state and one or two flag registers,
        # not the FSM's next-state logic in front of fadr
        st = fsm.ongoing
        self.sync += \
            If((st("IDLE") | st("ERROR")) & self.start & launch_ok, fadr.eq(tgt_adr["zero"])) \
            .Elif(st("FETCH") & pc_ok, fadr.eq(fadr + 1)) \
            .Elif((st("DECODE") & dec["next"]) | (st("START") & start_ok), fadr.eq(tgt_adr["next"])) \
            .Elif(st("DECODE") & dec["loop"], fadr.eq(tgt_adr["loop"]))
        # the pool owner's next value (busy next: do_finalize) spelt out the same way: a busy
        # state that does not fail or finish, or a launch
        self._busy_nx = Signal()
        leave = (st("FETCH") & ~pc_ok) | (st("DECODE") & dec["fail"]) | (st("CHECK1") & field_bad_r) | \
            (st("CHECK3") & (any_op_bad | weight_bad)) | (st("DRAIN") & drained)
        idle = st("IDLE") | st("ERROR")
        self.comb += self._busy_nx.eq((~idle & ~leave) | (idle & self.start & launch_ok))
        self.sync += If(~fsm.ongoing("LOAD"), ld_pend.eq(0))
        self.comb += loading.eq(fsm.ongoing("LOAD"))

    def do_finalize(self):
        # `busy` and "in START" as registers, from the FSM's next state (the FSM is finalised by
        # now): the pool's port select and the stream start then come from flip-flops, not from
        # the state decode
        fsm = self.fsm
        drive_copies(self, self._own_copies, self._busy_nx, "own")
        # the ir shift: FETCH with fetch_k != 0; the next cycle shifts iff FETCH stays FETCH
        # (fetch_k counts up from 0 there; FETCH is entered with fetch_k = 0)
        shift_nx = Signal()
        self.comb += shift_nx.eq((fsm.state == fsm.encoding["FETCH"]) & self._fetch_stays)
        drive_copies(self, self._shift_copies, shift_nx, "ir_shift_r")
        # the stream start's next value: START next (the FSM's transitions into it, each from its
        # state register and one or two flag registers, not through the next-state logic) and the
        # START conditions' next values
        # (the states as one-hot flags of their own, from the transitions into them: no state decode
        # before the copies, which sit all over the die)
        in_st = {st: Signal(name=f"in_{st.lower()}") for st in self._to_start}
        self.sync += [in_st[st].eq(reduce(or_, [(fsm.state == fsm.encoding[src]) & cond for src, cond in self._into[st]]))
                      for st in in_st]
        to_start, go_nx = Signal(), Signal()
        self.comb += to_start.eq(reduce(or_, [in_st[st] & cond for st, cond in self._to_start.items()]))
        self.comb += go_nx.eq(reduce(and_, [to_start] + self._start_nx))
        drive_copies(self, self._push_copies, go_nx, "st_push")
        assert timing.STREAM_START_DELAY == 1
        for unit, copies in self._stream_copies.items():
            drive_copies(self, copies, copy_reg(self, go_nx, f"st_go_{unit}", reset=True), f"st_go_{unit}_")
