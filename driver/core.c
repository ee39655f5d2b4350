/* rnnaccel driver core (see core.h). Built by cffi at install time (driver/_build.py). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

/* Burst callbacks into the Python transport (cffi `extern "Python+C"`): 0 = ok. */
int rna_py_read(void *ctx, uint64_t addr, uint32_t *buf, uint32_t n);
int rna_py_write(void *ctx, uint64_t addr, const uint32_t *buf, uint32_t n);

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int rna_bus_init(rna_bus *b, int mode, void *ctx, uint32_t max_burst) {
    memset(b, 0, sizeof *b);
    b->mode = mode;
    b->ctx = ctx;
    b->max_burst = max_burst ? max_burst : 1;
    return RNA_OK;
}

int rna_bus_map(rna_bus *b, uint64_t base, uint64_t size, void *ptr) {
    if (b->n_regions >= RNA_MAX_REGIONS) {
        snprintf(b->err, sizeof b->err, "too many mapped windows (%d)", RNA_MAX_REGIONS);
        return RNA_EBUS;
    }
    rna_region *r = &b->regions[b->n_regions++];
    r->base = base;
    r->size = size;
    r->ptr = (volatile uint32_t *)ptr;
    return RNA_OK;
}

/* The pointer for [addr, addr + 4n) inside one mapped window, or NULL (never outside a window). */
static volatile uint32_t *map_ptr(rna_bus *b, uint64_t addr, size_t n) {
    for (int i = 0; i < b->n_regions; i++) {
        rna_region *r = &b->regions[i];
        if (addr >= r->base && addr + 4 * (uint64_t)n <= r->base + r->size && !(addr & 3))
            return r->ptr + (addr - r->base) / 4;
    }
    snprintf(b->err, sizeof b->err, "address 0x%llx (+%zu words) is outside the mapped windows",
             (unsigned long long)addr, n);
    return NULL;
}

int rna_read(rna_bus *b, uint64_t addr, uint32_t *buf, size_t n) {
    b->words_read += n;
    if (b->mode == 1) {
        volatile uint32_t *p = map_ptr(b, addr, n);
        if (!p) return RNA_EUNMAPPED;
        for (size_t i = 0; i < n; i++) buf[i] = p[i];
        b->transactions++;
        return RNA_OK;
    }
    while (n) {
        uint32_t k = n < b->max_burst ? (uint32_t)n : b->max_burst;
        b->transactions++;
        if (rna_py_read(b->ctx, addr, buf, k)) return RNA_EBUS;
        addr += 4 * (uint64_t)k; buf += k; n -= k;
    }
    return RNA_OK;
}

int rna_write(rna_bus *b, uint64_t addr, const uint32_t *buf, size_t n) {
    b->words_written += n;
    if (b->mode == 1) {
        volatile uint32_t *p = map_ptr(b, addr, n);
        if (!p) return RNA_EUNMAPPED;
        for (size_t i = 0; i < n; i++) p[i] = buf[i];
        b->transactions++;
        return RNA_OK;
    }
    while (n) {
        uint32_t k = n < b->max_burst ? (uint32_t)n : b->max_burst;
        b->transactions++;
        if (rna_py_write(b->ctx, addr, buf, k)) return RNA_EBUS;
        addr += 4 * (uint64_t)k; buf += k; n -= k;
    }
    return RNA_OK;
}

/* A CSR of nwords 32-bit words, most significant word first (LiteX). */
int rna_read_reg(rna_bus *b, uint64_t addr, uint32_t nwords, uint64_t *value) {
    uint32_t w[2] = {0, 0};
    if (nwords > 2) nwords = 2;
    int rc = rna_read(b, addr, w, nwords);
    if (rc) return rc;
    *value = nwords == 2 ? ((uint64_t)w[0] << 32) | w[1] : w[0];
    return RNA_OK;
}

#define CHUNK 256

/* bytes -> little-endian 32-bit words (zero padded to a multiple of pad_to bytes, at least 4):
   program, parameters, and the weight window's sub-word order (bus word a = bytes 4a..4a+3). */
int rna_write_bytes(rna_bus *b, uint64_t addr, const uint8_t *data, size_t nbytes, size_t pad_to) {
    if (pad_to < 4) pad_to = 4;
    size_t total = (nbytes + pad_to - 1) / pad_to * pad_to, nw = total / 4;
    uint32_t w[CHUNK];
    for (size_t i = 0; i < nw; i += CHUNK) {
        size_t k = nw - i < CHUNK ? nw - i : CHUNK;
        for (size_t j = 0; j < k; j++) {
            uint32_t v = 0;
            for (int q = 0; q < 4; q++) {
                size_t p = 4 * (i + j) + q;
                v |= (uint32_t)(p < nbytes ? data[p] : 0) << (8 * q);
            }
            w[j] = v;
        }
        int rc = rna_write(b, addr + 4 * i, w, k);
        if (rc) return rc;
    }
    return RNA_OK;
}

int rna_fill(rna_bus *b, uint64_t addr, uint32_t value, size_t n) {
    uint32_t w[CHUNK];
    for (int j = 0; j < CHUNK; j++) w[j] = value;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        int rc = rna_write(b, addr + 4 * i, w, k);
        if (rc) return rc;
    }
    return RNA_OK;
}

/* int16 vector words: sign-extended to the 32-bit bus word */
int rna_write_i16(rna_bus *b, uint64_t addr, const int16_t *x, size_t n) {
    uint32_t w[CHUNK];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < k; j++) w[j] = (uint32_t)(int32_t)x[i + j];
        int rc = rna_write(b, addr + 4 * i, w, k);
        if (rc) return rc;
    }
    return RNA_OK;
}

int rna_read_i16(rna_bus *b, uint64_t addr, int16_t *out, size_t n) {
    uint32_t w[CHUNK];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        int rc = rna_read(b, addr + 4 * i, w, k);
        if (rc) return rc;
        for (size_t j = 0; j < k; j++) out[i + j] = (int16_t)(w[j] & 0xffff);
    }
    return RNA_OK;
}

/* Register writes in the given order, runs of consecutive addresses merged into one burst. */
int rna_write_regs(rna_bus *b, const uint64_t *addr, const uint32_t *val, uint32_t n) {
    uint32_t i = 0;
    while (i < n) {
        uint32_t j = i + 1;
        while (j < n && addr[j] == addr[j - 1] + 4) j++;
        int rc = rna_write(b, addr[i], val + i, j - i);
        if (rc) return rc;
        i = j;
    }
    return RNA_OK;
}

int rna_soft_reset(rna_bus *b, const rna_regs *r) {
    uint32_t v = r->soft_reset;
    return rna_write(b, r->ctrl, &v, 1);
}

/* Until status.busy = 0 (done or error). irq_fd >= 0: a uio file descriptor; the interrupt
   is enabled, waited for with poll() and acknowledged in ev_pending. */
int rna_wait(rna_bus *b, const rna_regs *r, double timeout_s, int irq_fd, uint32_t *status, uint32_t *polls) {
    double t0 = now_s(), deadline = t0 + timeout_s;
    uint32_t st = 0, np = 0;
    for (;;) {
        int rc = rna_read(b, r->status, &st, 1);
        np++;
        if (rc) return rc;
        if (!(st & r->busy_mask)) break;
        double t = now_s();
        if (t > deadline) {
            *status = st; *polls = np;
            snprintf(b->err, sizeof b->err, "the device was still busy after %.3f s (status 0x%08x)",
                     t - t0, st);
            return RNA_ETIMEOUT;
        }
        if (irq_fd >= 0) {
            int ms = (int)((deadline - t) * 1000) + 1;
            struct pollfd p = {.fd = irq_fd, .events = POLLIN};
            int32_t one = 1, cnt;
            if (write(irq_fd, &one, 4) != 4) { /* enable the uio interrupt */ }
            if (poll(&p, 1, ms) > 0 && read(irq_fd, &cnt, 4) == 4 && r->ev_pending) {
                uint32_t ack = 1;
                rna_write(b, r->ev_pending, &ack, 1);
            }
        } else if (b->mode == 1 && np > 64) {
            struct timespec ts = {0, 20000};   /* memory mapped: spin briefly, then 20 us naps */
            nanosleep(&ts, NULL);
        }
    }
    *status = st;
    *polls = np;
    return RNA_OK;
}

/* One inference: frames in, (state cleared,) configuration, start, wait, counters, outputs out. */
int rna_run(rna_bus *b, const rna_regs *r, const rna_run_args *a, rna_run_result *res) {
    double t0 = now_s();
    int rc;
    memset(res, 0, sizeof *res);
    uint64_t vb = r->vmem;
    if (a->clear_state && a->state_words && (rc = rna_fill(b, vb + 4ull * a->state_addr, 0, a->state_words)))
        return rc;
    if (a->n_x && (rc = rna_write_i16(b, vb + 4ull * a->in_addr, a->x, a->n_x))) return rc;
    if (a->n_cfg > RNA_MAX_CFG) {
        snprintf(b->err, sizeof b->err, "%u configuration registers (at most %d)", a->n_cfg, RNA_MAX_CFG);
        return RNA_EBUS;
    }
    if (a->n_cfg && (rc = rna_write_regs(b, a->cfg_addr, a->cfg_val, a->n_cfg))) return rc;
    uint32_t steps = a->steps;
    if ((rc = rna_write(b, r->steps, &steps, 1))) return rc;
    uint32_t ctrl = r->start | ((a->parity & 1) << r->parity_in_shift);
    if ((rc = rna_write(b, r->ctrl, &ctrl, 1))) return rc;
    rc = rna_wait(b, r, a->timeout_s, a->irq_fd, &res->status, &res->polls);
    res->seconds = now_s() - t0;
    if (rc) return rc;
    res->error = (res->status >> r->error_shift) & r->error_mask;
    res->parity = (res->status >> r->parity_shift) & 1;
    if ((rc = rna_read_reg(b, r->cycles, 1, &res->cycles))) return rc;
    if (r->mac_ops && (rc = rna_read_reg(b, r->mac_ops, 2, &res->mac_ops))) return rc;
    if (r->stalls && (rc = rna_read_reg(b, r->stalls, 1, &res->stalls))) return rc;
    if (res->error) {
        res->seconds = now_s() - t0;
        return RNA_EDEVICE;
    }
    if (a->n_out && (rc = rna_read_i16(b, vb + 4ull * a->out_addr, a->out, a->n_out))) return rc;
    if (a->state && a->state_words && (rc = rna_read_i16(b, vb + 4ull * a->state_addr, a->state, a->state_words)))
        return rc;
    res->seconds = now_s() - t0;
    return RNA_OK;
}
