/* LiteX's sim glue (litex/build/sim/core/veril.cpp, BSD-2-Clause) without the VCD tracer: the
 * rnnaccel simulated board is built without --trace (a third less C++ to compile, no sim.vcd). */
#include <stdint.h>
#include "Vsim.h"
#include "verilated.h"

uint64_t main_time = 0;

extern "C" void litex_sim_eval(void *vsim, uint64_t time_ps)
{
  ((Vsim*)vsim)->eval();
  main_time = time_ps;
}

extern "C" void litex_sim_init_cmdargs(int argc, char *argv[])
{
  Verilated::commandArgs(argc, argv);
}

extern "C" void litex_sim_init_tracer(void *vsim, long start, long end)
{
}

extern "C" void litex_sim_tracer_dump()
{
}

extern "C" int litex_sim_got_finish()
{
  return Verilated::gotFinish();
}

#if VM_COVERAGE
extern "C" void litex_sim_coverage_dump()
{
  VerilatedCov::write("sim.cov");
}
#endif

double sc_time_stamp()
{
  return main_time;
}
