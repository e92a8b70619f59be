/* pool.h -- per-request memory: an arena freed at once, with cleanup handlers that release
 * what is not memory (curl handles, timers, Lua refs) when the request ends. */
#ifndef SL_POOL_H
#define SL_POOL_H

#include "sluice.h"

typedef struct sl_pool_s sl_pool_t;

/* A new pool whose blocks hold at least block_size bytes. Never returns NULL. */
sl_pool_t *sl_pool_new(size_t block_size);

/* Runs the cleanup handlers in reverse order of registration, then frees the memory. */
void sl_pool_free(sl_pool_t *p);

/* Runs the cleanup handlers and forgets every allocation, keeping one block for reuse. */
void sl_pool_reset(sl_pool_t *p);

/* Memory that lives as long as the pool, aligned for any type. Never returns NULL. */
void *sl_pool_alloc(sl_pool_t *p, size_t size);
void *sl_pool_calloc(sl_pool_t *p, size_t size);
char *sl_pool_strndup(sl_pool_t *p, const char *s, size_t n);

/* fn(data) runs when the pool is freed. */
void sl_pool_cleanup_add(sl_pool_t *p, void (*fn)(void *data), void *data);

#endif
