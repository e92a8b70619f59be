/* shm_alloc.h -- private to core/shm*.c: the layout of a shared-dictionary zone and the
 * allocator that hands out blocks of its data area (core/shm_alloc.c). Nothing outside the
 * shm files includes it; the public API is core/shm.h.
 *
 * Inside a zone everything refers to everything else by 32-bit offset from the zone's start
 * (0 = none), never by pointer. The allocator's functions all run under the zone lock, between
 * dirty_begin() and dirty_end(). */
#ifndef SL_SHM_ALLOC_H
#define SL_SHM_ALLOC_H

#include "sluice.h"

#include <pthread.h>

#define NBINS         32
#define BLK_USED      1u

#define AT(h, off)    ((char *) (h) + (off))
#define BLK(h, off)   ((blk_t *) AT(h, off))
#define BLK_SIZE(b)   ((b)->size & ~BLK_USED)

/* Every block of the data area starts with this; an item (core/shm.c) embeds it first. */
typedef struct {
    uint32_t  size;         /* whole block in bytes, a multiple of 8; BLK_USED while in use */
    uint32_t  prev_size;    /* size of the block just before this one; 0 for the first */
} blk_t;

/* The zone header, at offset 0. */
typedef struct {
    uint64_t          magic;
    pthread_mutex_t   mutex;
    uint32_t          dirty;          /* a change is in progress; see dirty_begin() */
    uint32_t          size;
    uint32_t          mask;           /* buckets - 1 */
    uint32_t          buckets;        /* offset of uint32_t[mask + 1] */
    uint32_t          data_start;
    uint32_t          data_end;       /* offset of the end sentinel, an 8-byte used block */
    uint32_t          lru_head;
    uint32_t          lru_tail;
    uint32_t          bin_map;        /* bit i set: bins[i] is not empty */
    uint32_t          bins[NBINS];    /* free blocks of size [2^i, 2^(i+1)) */
    uint64_t          free_bytes;
    uint64_t          nitems;
    uint64_t          exp_hint;       /* no item expires before this; NO_EXPIRY if none can */
    uint64_t          wipes;
} hdr_t;


/* Every change to a zone happens inside this window; a zone whose lock's owner died inside it
 * is wiped (core/shm.c). The compiler must not move a change out of the window: a process may
 * die at any store. */
static inline void
dirty_begin(hdr_t *h)
{
    h->dirty = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}


static inline void
dirty_end(hdr_t *h)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    h->dirty = 0;
}


/* Makes [data_start, data_end) one free block, followed by the used end sentinel at
 * data_end, and sets free_bytes to match. The caller has set data_start and data_end. */
void sl_shm_alloc_reset(hdr_t *h);

/* Takes a block of at least need bytes (a multiple of 8, at least the size of an item) and
 * marks it used. Returns its offset, or 0 when no free block is large enough. */
uint32_t sl_shm_alloc_block(hdr_t *h, uint32_t need);

/* Frees the used block at off, merging it with free neighbours. */
void sl_shm_alloc_free(hdr_t *h, uint32_t off);

/* Gives back the end of the used block at off beyond need (a multiple of 8), when that is
 * worth a block of its own. */
void sl_shm_alloc_shrink(hdr_t *h, uint32_t off, uint32_t need);

/* Checks the blocks, free lists, bin_map and free_bytes; NULL if sound, else what is wrong.
 * *nused is set to the number of used blocks (the end sentinel not counted). Test-only. */
const char *sl_shm_alloc_check(hdr_t *h, uint64_t *nused);

#endif
