/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of the fuzz targets: how an input is split, the memory transport the targets
 * stack rill's layers on, and the check macro.
 *
 * Layout of every input: HDR header bytes (target-specific settings), then a 16-bit big-endian
 * count C, then C control bytes, then the data (the peer's bytes). Control bytes steer read
 * sizes, injected WANTs and the operations a target performs; once they run out every control
 * reads as 0, which means "plain": whole reads, no WANT, the default operation. A seed can
 * therefore be a header, two zero bytes and the literal data.
 */
#ifndef RILL_FUZZ_H
#define RILL_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "rill/rill.h"
#include "rill/stream.h"

/* libFuzzer's entry point, defined by each target (and called by replay.c's main). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: say which and abort, so libFuzzer (or the replay driver) reports it. */
#define FZ_CHECK(cond, ...)                                                      \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* An input taken apart (see the layout above). */
struct fz_input {
    const uint8_t *hdr; /* HDR bytes, zero-padded when the input is shorter */
    const uint8_t *ctl;
    size_t nctl;
    size_t ictl; /* next control byte */
    const uint8_t *data;
    size_t ndata;
    uint8_t hdr_copy[16];
};

/* Split @p buf into header (@p hdr_len <= 16 bytes), controls and data. */
void fz_split(struct fz_input *in, const uint8_t *buf, size_t size, size_t hdr_len);

/* The next control byte, 0 once they are used up. */
uint8_t fz_ctl(struct fz_input *in);

/* A 16-bit value from two control bytes. */
size_t fz_ctl16(struct fz_input *in);

/* Settings of the memory transport. */
struct fz_mem_opts {
    bool wants;       /* control bytes 0xf0..0xfe answer RILL_WANT_READ / RILL_WANT_WRITE */
    bool bursts;      /* control byte 0xff on a read inserts a run of filler bytes ('x') */
    size_t burst_max; /* cap on the filler bytes of one stream */
};

/*
 * A transport over memory: reads serve @p in's data in pieces whose sizes come from the control
 * bytes (see fz_piece()), then RILL_EOF; writes are accepted in pieces and discarded. Every byte
 * served is appended to a log (fz_mem_log()), so a target can compare what the layers above
 * returned with what they were given, filler runs included. @p in must outlive the stream.
 */
rill_status fz_mem_new(struct fz_input *in, const struct fz_mem_opts *opts, rill_stream **out);

/* The bytes served so far by the memory transport at the bottom of @p s, and their count. */
const uint8_t *fz_mem_log(rill_stream *s, size_t *len);

/* Bytes written to the memory transport at the bottom of @p s (and discarded). */
size_t fz_mem_written(rill_stream *s);

/* A piece size for a request of @p len bytes from control byte @p c (0: all of it). */
size_t fz_piece(uint8_t c, size_t len);

#endif
