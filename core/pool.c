/* pool.c -- a bump allocator over a chain of blocks. Big allocations get a block of their
 * own; nothing is freed before the pool is. The first block is embedded in the pool header,
 * so a request that needs less than one block costs one malloc. */
#include "pool.h"

typedef struct block_s {
    struct block_s  *next;
    size_t           size;
    size_t           used;
    max_align_t      data[];
} block_t;

typedef struct cleanup_s {
    struct cleanup_s  *next;
    void             (*fn)(void *data);
    void              *data;
} cleanup_t;

struct sl_pool_s {
    block_t    *current;
    block_t    *full;
    cleanup_t  *cleanups;
    size_t      block_size;
};

#define ALIGN(n)  (((n) + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1))


static block_t *
block_new(size_t size)
{
    block_t  *b = sl_xmalloc(sizeof(block_t) + size);

    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}


sl_pool_t *
sl_pool_new(size_t block_size)
{
    sl_pool_t  *p = sl_xmalloc(sizeof(sl_pool_t));

    p->block_size = block_size;
    p->current = block_new(block_size);
    p->full = NULL;
    p->cleanups = NULL;
    return p;
}


void *
sl_pool_alloc(sl_pool_t *p, size_t size)
{
    block_t  *b = p->current;
    void     *r;

    size = ALIGN(size);

    if (b->size - b->used >= size) {
        r = (char *) b->data + b->used;
        b->used += size;
        return r;
    }

    if (size > p->block_size / 4) {
        /* a big one gets its own block, so the current block keeps its free space */
        b = block_new(size);
        b->used = size;
        b->next = p->full;
        p->full = b;
        return b->data;
    }

    p->current->next = p->full;
    p->full = p->current;
    b = block_new(p->block_size);
    p->current = b;
    b->used = size;
    return b->data;
}


void *
sl_pool_calloc(sl_pool_t *p, size_t size)
{
    void  *r = sl_pool_alloc(p, size);

    memset(r, 0, size);
    return r;
}


char *
sl_pool_strndup(sl_pool_t *p, const char *s, size_t n)
{
    char  *r = sl_pool_alloc(p, n + 1);

    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}


void
sl_pool_cleanup_add(sl_pool_t *p, void (*fn)(void *data), void *data)
{
    cleanup_t  *c = sl_pool_alloc(p, sizeof(cleanup_t));

    c->fn = fn;
    c->data = data;
    c->next = p->cleanups;
    p->cleanups = c;
}


void
sl_pool_reset(sl_pool_t *p)
{
    cleanup_t  *c;
    block_t    *b, *next;

    for (c = p->cleanups; c != NULL; c = c->next) {
        c->fn(c->data);
    }

    for (b = p->full; b != NULL; b = next) {
        next = b->next;
        free(b);
    }

    p->full = NULL;
    p->cleanups = NULL;
    p->current->used = 0;
}


void
sl_pool_free(sl_pool_t *p)
{
    sl_pool_reset(p);
    free(p->current);
    free(p);
}
