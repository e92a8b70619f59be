/* shm.h -- shared dictionaries: named zones of memory that the master maps before fork and
 * every worker shares, holding key -> value items (nil, boolean, number or string, plus a
 * uint32 of user flags and an optional expiry), like OpenResty's ngx.shared.DICT.
 *
 * Keys are byte strings of 1..SL_SHM_MAX_KEY_LEN bytes. Expiry times are given in seconds
 * with millisecond precision (0 = never) and measured on CLOCK_MONOTONIC, which every
 * process of the machine shares. All operations lock the zone with a robust process-shared
 * mutex, never block on anything else and never allocate on the heap except to grow the
 * zone's process-local scratch buffer (get of a longer string than ever before, keys).
 *
 * Return codes: SL_OK; SL_DECLINED for the logical misses ("not found", "exists");
 * SL_ERROR for everything else ("no memory", "not a number", bad arguments). Whenever the
 * result is not SL_OK, *err is a static string. */
#ifndef SL_SHM_H
#define SL_SHM_H

#include "sluice.h"

typedef struct sl_shm_zone_s  sl_shm_zone_t;

/* Value types. The numbers are Lua's type tags, so the FFI side switches on them as is. */
#define SL_SHM_NIL       0
#define SL_SHM_BOOLEAN   1
#define SL_SHM_NUMBER    3
#define SL_SHM_STRING    4

#define SL_SHM_MIN_SIZE      ((size_t) 64 * 1024)
#define SL_SHM_MAX_SIZE      ((size_t) 0xffff0000)     /* offsets inside a zone are 32-bit */
#define SL_SHM_MAX_KEY_LEN   65535

typedef struct {
    int          type;      /* SL_SHM_* */
    double       num;       /* SL_SHM_NUMBER; SL_SHM_BOOLEAN as 0 or 1 */
    const char  *str;       /* SL_SHM_STRING: len bytes, not NUL-terminated */
    size_t       len;
} sl_shm_value_t;


/* Zones. Create them in the master before forking the workers: the memory is an anonymous
 * shared mapping, so only processes forked afterwards see it. The registry of zones is
 * process-local (workers inherit the master's copy at fork). */

/* Maps size bytes (rounded up to the page size; SL_SHM_MIN_SIZE..SL_SHM_MAX_SIZE) and
 * registers the zone under name (copied). NULL + *err if the name is taken, the size is out
 * of range or mmap fails. */
sl_shm_zone_t *sl_shm_zone_create(const char *name, size_t size, const char **err);

/* The zone registered under name[0..len), or NULL. */
sl_shm_zone_t *sl_shm_zone_find(const char *name, size_t len);

/* Unregisters and unmaps the zone in this process (the master, on reload, for zones the new
 * configuration no longer has). Workers forked earlier keep their own mapping until they
 * exit; the mutex is left alone because one of them may hold it. */
void sl_shm_zone_destroy(sl_shm_zone_t *z);

size_t sl_shm_zone_count(void);
sl_shm_zone_t *sl_shm_zone_at(size_t i);                 /* NULL past the end */
const char *sl_shm_zone_name(sl_shm_zone_t *z);          /* NUL-terminated, owned by z */


/* Items. */

/* Looks key up. SL_OK: *v holds the value, *flags the user flags and *stale whether the item
 * had expired (only possible with stale_ok). SL_DECLINED: no such live item (v->type is
 * SL_SHM_NIL). A string value is copied into the zone's process-local scratch buffer, valid
 * until the next sl_shm_get or sl_shm_keys on this zone in this process. A live item moves
 * to the head of the LRU list. */
int sl_shm_get(sl_shm_zone_t *z, const char *key, size_t klen, int stale_ok,
    sl_shm_value_t *v, uint32_t *flags, int *stale, const char **err);

/* Stores key -> *v (v->str is copied) with exptime seconds to live (0 = never) and flags.
 * A nil value deletes the key. When the zone is full, expired items are dropped first, then
 * the least recently used live ones, and *forcible is set to 1 if any live item went. */
int sl_shm_set(sl_shm_zone_t *z, const char *key, size_t klen, const sl_shm_value_t *v,
    double exptime, uint32_t flags, int *forcible, const char **err);

/* Like sl_shm_set, but never evicts live items: "no memory" instead. As with ngx.shared,
 * when an existing item must grow and there is no room, the old item is gone too. */
int sl_shm_safe_set(sl_shm_zone_t *z, const char *key, size_t klen, const sl_shm_value_t *v,
    double exptime, uint32_t flags, int *forcible, const char **err);

/* Like sl_shm_set, but SL_DECLINED "exists" when a live item has the key. */
int sl_shm_add(sl_shm_zone_t *z, const char *key, size_t klen, const sl_shm_value_t *v,
    double exptime, uint32_t flags, int *forcible, const char **err);

/* Like sl_shm_set, but SL_DECLINED "not found" unless a live item has the key. */
int sl_shm_replace(sl_shm_zone_t *z, const char *key, size_t klen, const sl_shm_value_t *v,
    double exptime, uint32_t flags, int *forcible, const char **err);

/* Removes the item (live or expired). SL_DECLINED if there was none. */
int sl_shm_delete(sl_shm_zone_t *z, const char *key, size_t klen, const char **err);

/* Adds n to a live number and stores the sum in *result; expiry and flags stay. A missing or
 * expired key is "not found" unless has_init: then it becomes init + n with flags 0 and
 * init_ttl seconds to live (0 = never), which may evict (*forcible). A live non-number is
 * "not a number". Moves the item to the head of the LRU list. */
int sl_shm_incr(sl_shm_zone_t *z, const char *key, size_t klen, double n, double init,
    int has_init, double init_ttl, double *result, int *forcible, const char **err);

/* Sets a live item's time to live to ttl seconds from now (0 = never). "not found". */
int sl_shm_expire(sl_shm_zone_t *z, const char *key, size_t klen, double ttl,
    const char **err);

/* *ttl = seconds a live item has left (> 0), or 0 if it never expires. "not found". */
int sl_shm_ttl(sl_shm_zone_t *z, const char *key, size_t klen, double *ttl,
    const char **err);

/* Lists up to max live keys (0 = all), most recently used first, into the zone's scratch
 * buffer: each key is a 2-byte little-endian length followed by its bytes. Returns the
 * number of keys (*buf, *len set) or -1 (+ *err). The buffer lives as sl_shm_get's does. */
long sl_shm_keys(sl_shm_zone_t *z, size_t max, const char **buf, size_t *len,
    const char **err);

/* Drops every item. */
int sl_shm_flush_all(sl_shm_zone_t *z, const char **err);

/* Frees up to max expired items (0 = all); returns how many, or -1 (+ *err). */
long sl_shm_flush_expired(sl_shm_zone_t *z, size_t max, const char **err);

/* Bytes in free blocks (an upper bound on the largest item that still fits). */
size_t sl_shm_free_space(sl_shm_zone_t *z);

/* The zone's mapped size in bytes. */
size_t sl_shm_capacity(sl_shm_zone_t *z);


/* Test hooks (t/unit/shm.c); nothing else calls them. */

/* Replaces the millisecond clock in this process; NULL restores CLOCK_MONOTONIC. */
void sl_shm_set_clock_for_test(uint64_t (*now_ms)(void));

/* Takes the zone lock as an operation would; with mark_dirty it also marks the zone as in
 * the middle of a change, so a process that dies now leaves it to be wiped. */
int sl_shm_lock_for_test(sl_shm_zone_t *z, int mark_dirty);
void sl_shm_unlock_for_test(sl_shm_zone_t *z);

/* Checks the allocator, hash table and LRU invariants; NULL if sound, else what is wrong. */
const char *sl_shm_check_for_test(sl_shm_zone_t *z);

/* How many times the zone was wiped because a process died in the middle of a change. */
uint64_t sl_shm_wipes_for_test(sl_shm_zone_t *z);

#endif
