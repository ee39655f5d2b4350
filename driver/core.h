/* rnnaccel driver core: the per-word work of loading images and running inferences.
 *
 * Every access goes through an rna_bus: either direct pointers into mmap'ed windows (uio, /dev/mem,
 * PYNQ's MMIO arrays) or two burst callbacks into Python (cffi `extern "Python"`) for remote
 * transports (UART bridge, litex_server, PYNQ devices without a mapping, the host fake board).
 * Addresses are bus byte addresses as in csr.csv; every access is one 32-bit word.
 */
#ifndef RNNACCEL_CORE_H
#define RNNACCEL_CORE_H
#include <stdint.h>
#include <stddef.h>

#define RNA_MAX_REGIONS 8
#define RNA_MAX_CFG 32

/* return codes */
#define RNA_OK 0
#define RNA_EBUS -1        /* transport failed (message in bus->err) */
#define RNA_EUNMAPPED -2   /* address outside every mapped window */
#define RNA_ETIMEOUT -3    /* the device did not finish in time */
#define RNA_EDEVICE -4     /* the device reported an error code (status) */

typedef struct {
    uint64_t base, size;          /* bus byte address and size of a mapped window */
    volatile uint32_t *ptr;
} rna_region;

typedef struct {
    int mode;                     /* 0: Python callbacks, 1: mmap pointers */
    void *ctx;                    /* cffi handle of the Python transport (mode 0) */
    uint32_t max_burst;           /* words per callback burst */
    int n_regions;
    rna_region regions[RNA_MAX_REGIONS];
    uint64_t words_read, words_written, transactions;
    char err[256];
} rna_bus;

/* register addresses of one device (bus byte addresses, 0 = absent) */
typedef struct {
    uint64_t ctrl, steps, status, cycles, mac_ops, stalls, ev_pending;
    uint64_t vmem;                /* vector window base */
    uint32_t busy_mask, done_mask, error_shift, error_mask, parity_shift, soft_reset, start, parity_in_shift;
} rna_regs;

/* one inference */
typedef struct {
    const int16_t *x;             /* frames, n_x words, written at vmem word in_addr */
    uint32_t n_x, in_addr;
    uint32_t clear_state, state_addr, state_words;
    uint32_t n_cfg;               /* configuration registers written before start (skipped if 0) */
    uint64_t cfg_addr[RNA_MAX_CFG];
    uint32_t cfg_val[RNA_MAX_CFG];
    uint32_t steps, parity;
    double timeout_s;
    int irq_fd;                   /* >= 0: wait on a uio fd instead of polling */
    int16_t *out;                 /* n_out words read back from vmem word out_addr */
    uint32_t n_out, out_addr;
    int16_t *state;               /* optional: n_state words from state_addr (NULL: not read) */
} rna_run_args;

typedef struct {
    uint32_t status, error, parity;
    uint64_t cycles, mac_ops, stalls;
    uint32_t polls;
    double seconds;
} rna_run_result;

int rna_bus_init(rna_bus *b, int mode, void *ctx, uint32_t max_burst);
int rna_bus_map(rna_bus *b, uint64_t base, uint64_t size, void *ptr);
int rna_read(rna_bus *b, uint64_t addr, uint32_t *buf, size_t n);
int rna_write(rna_bus *b, uint64_t addr, const uint32_t *buf, size_t n);
int rna_read_reg(rna_bus *b, uint64_t addr, uint32_t nwords, uint64_t *value);
int rna_write_bytes(rna_bus *b, uint64_t addr, const uint8_t *data, size_t nbytes, size_t pad_to);
int rna_fill(rna_bus *b, uint64_t addr, uint32_t value, size_t n);
int rna_write_i16(rna_bus *b, uint64_t addr, const int16_t *x, size_t n);
int rna_read_i16(rna_bus *b, uint64_t addr, int16_t *out, size_t n);
int rna_write_regs(rna_bus *b, const uint64_t *addr, const uint32_t *val, uint32_t n);
int rna_wait(rna_bus *b, const rna_regs *r, double timeout_s, int irq_fd, uint32_t *status, uint32_t *polls);
int rna_run(rna_bus *b, const rna_regs *r, const rna_run_args *a, rna_run_result *res);
int rna_soft_reset(rna_bus *b, const rna_regs *r);

#endif
