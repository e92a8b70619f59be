/* shm_alloc.c -- the allocator inside a shared-dictionary zone (layout in shm_alloc.h): hands
 * out the blocks of the data area that core/shm.c keeps its items in.
 *
 * Segregated first fit with boundary tags. Each block starts with its size and the size of
 * the block before it, so a freed block merges with free neighbours in O(1) and free blocks
 * never lie side by side. Free blocks sit in NBINS lists by power-of-two size class; an
 * allocation tries the first BIN_SCAN blocks of its own class, then the head of the next
 * non-empty larger class (found in a bitmap), then the rest of its own class, and splits off
 * what it does not need when that is MIN_SPLIT bytes or more. With one allocator for all
 * sizes, evicting enough LRU items always makes room for any item up to the data area's
 * size, which per-class slabs cannot promise. */
#include "sluice.h"

#include "shm_alloc.h"

#define MIN_SPLIT     64        /* a smaller tail stays with the block it was cut from */
#define BIN_SCAN      16        /* blocks of the request's own size class first fit looks at */

#define FBLK(h, off)  ((fblk_t *) AT(h, off))

typedef struct {
    blk_t     blk;
    uint32_t  next;         /* neighbours in its size class's free list */
    uint32_t  prev;
} fblk_t;


static uint32_t
bin_of(uint32_t size)
{
    return 31 - (uint32_t) __builtin_clz(size);
}


static void
free_list_push(hdr_t *h, uint32_t off)
{
    fblk_t    *f = FBLK(h, off);
    uint32_t   bin = bin_of(f->blk.size);

    f->prev = 0;
    f->next = h->bins[bin];
    if (f->next) {
        FBLK(h, f->next)->prev = off;
    }

    h->bins[bin] = off;
    h->bin_map |= 1u << bin;
}


static void
free_list_remove(hdr_t *h, uint32_t off)
{
    fblk_t    *f = FBLK(h, off);
    uint32_t   bin = bin_of(f->blk.size);

    if (f->prev) {
        FBLK(h, f->prev)->next = f->next;

    } else {
        h->bins[bin] = f->next;
        if (f->next == 0) {
            h->bin_map &= ~(1u << bin);
        }
    }

    if (f->next) {
        FBLK(h, f->next)->prev = f->prev;
    }
}


uint32_t
sl_shm_alloc_block(hdr_t *h, uint32_t need)
{
    uint32_t   bin, off, size, rest, mask;
    int        n;

    bin = bin_of(need);
    for (off = h->bins[bin], n = 0; off != 0 && n < BIN_SCAN; off = FBLK(h, off)->next, n++) {
        if (BLK(h, off)->size >= need) {
            goto found;
        }
    }

    mask = bin < 31 ? h->bin_map & ~((2u << bin) - 1) : 0;
    if (mask != 0) {
        off = h->bins[__builtin_ctz(mask)];
        goto found;
    }

    /* Nothing larger: rather than evict, look through the rest of the own class. */
    for (; off != 0; off = FBLK(h, off)->next) {
        if (BLK(h, off)->size >= need) {
            goto found;
        }
    }

    return 0;

found:

    free_list_remove(h, off);
    size = BLK(h, off)->size;

    if (size - need >= MIN_SPLIT) {
        rest = off + need;
        BLK(h, rest)->size = size - need;
        BLK(h, rest)->prev_size = need;
        BLK(h, rest + size - need)->prev_size = size - need;
        free_list_push(h, rest);
        size = need;
    }

    BLK(h, off)->size = size | BLK_USED;
    h->free_bytes -= size;
    return off;
}


void
sl_shm_alloc_free(hdr_t *h, uint32_t off)
{
    blk_t     *b = BLK(h, off), *nb, *pb;
    uint32_t   size = BLK_SIZE(b), next;

    h->free_bytes += size;

    next = off + size;
    nb = BLK(h, next);
    if (!(nb->size & BLK_USED)) {
        free_list_remove(h, next);
        size += nb->size;
    }

    if (b->prev_size != 0) {
        pb = BLK(h, off - b->prev_size);
        if (!(pb->size & BLK_USED)) {
            free_list_remove(h, off - b->prev_size);
            size += pb->size;
            off -= b->prev_size;
            b = pb;
        }
    }

    b->size = size;
    BLK(h, off + size)->prev_size = size;
    free_list_push(h, off);
}


void
sl_shm_alloc_shrink(hdr_t *h, uint32_t off, uint32_t need)
{
    blk_t     *b = BLK(h, off);
    uint32_t   size = BLK_SIZE(b), rest;

    if (size - need < MIN_SPLIT) {
        return;
    }

    rest = off + need;
    BLK(h, rest)->size = (size - need) | BLK_USED;
    BLK(h, rest)->prev_size = need;
    BLK(h, off + size)->prev_size = size - need;
    b->size = need | BLK_USED;
    sl_shm_alloc_free(h, rest);
}

void
sl_shm_alloc_reset(hdr_t *h)
{
    blk_t  *first, *end;

    h->bin_map = 0;
    memset(h->bins, 0, sizeof(h->bins));

    first = BLK(h, h->data_start);
    first->size = h->data_end - h->data_start;
    first->prev_size = 0;
    end = BLK(h, h->data_end);
    end->size = sizeof(blk_t) | BLK_USED;
    end->prev_size = first->size;
    free_list_push(h, h->data_start);

    h->free_bytes = first->size;
}


/* Test-only: walks every block, then every free list. */
const char *
sl_shm_alloc_check(hdr_t *h, uint64_t *nused)
{
    uint32_t   off, prev = 0, size, i, n;
    uint64_t   free_bytes = 0, nfree = 0;
    blk_t     *b;

    *nused = 0;

    for (off = h->data_start; off < h->data_end; off += size) {
        b = BLK(h, off);
        size = BLK_SIZE(b);
        if (size < sizeof(fblk_t) || size % 8 != 0 || off + size > h->data_end) {
            return "bad block size";
        }

        if (b->prev_size != prev) {
            return "bad prev_size";
        }

        if (!(b->size & BLK_USED)) {
            if (prev != 0 && !(BLK(h, off - prev)->size & BLK_USED)) {
                return "adjacent free blocks";
            }

            free_bytes += size;
            nfree++;

        } else {
            (*nused)++;
        }

        prev = size;
    }

    if (off != h->data_end || BLK(h, off)->prev_size != prev) {
        return "blocks do not end at the sentinel";
    }

    if (free_bytes != h->free_bytes) {
        return "free_bytes is wrong";
    }

    for (i = 0, n = 0; i < NBINS; i++) {
        if (!!(h->bin_map & (1u << i)) != (h->bins[i] != 0)) {
            return "bin_map is wrong";
        }

        for (prev = 0, off = h->bins[i]; off != 0; prev = off, off = FBLK(h, off)->next) {
            if ((BLK(h, off)->size & BLK_USED) || bin_of(BLK(h, off)->size) != i
                || FBLK(h, off)->prev != prev)
            {
                return "bad free list";
            }

            n++;
        }
    }

    if (n != nfree) {
        return "free lists miss blocks";
    }

    return NULL;
}
