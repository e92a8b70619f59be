/* shm.c -- shared dictionaries in memory mapped before fork. A zone is one anonymous shared
 * mapping holding, at fixed offsets: a header (robust mutex, LRU ends, allocator bins,
 * counters), an array of hash buckets, and a data area of blocks. Everything inside refers
 * to everything else by 32-bit offset from the zone's start (0 = none), never by pointer, so
 * the layout does not depend on where a process maps it; this caps a zone below 4 GiB.
 *
 * Items: a chained hash table (one bucket per BUCKET_BYTES of zone, a power of two) finds
 * them; a doubly-linked LRU list orders them, most recently used at the head. get, incr and
 * every store move an item to the head. Expired items are removed lazily: each write frees
 * up to TAIL_EXPIRE expired items at the LRU tail (as nginx does), and an allocation that
 * fails sweeps all of them before it evicts live items from the tail ("forcible"). The
 * sweep is skipped while exp_hint (a lower bound on every item's expiry, exact after each
 * sweep) lies in the future, so a full zone of unexpired items is not scanned on every set.
 *
 * Allocator: core/shm_alloc.c, segregated first fit with boundary tags; items live in the
 * blocks it hands out. The zone's layout is in core/shm_alloc.h.
 *
 * Crashes: the mutex is robust and process-shared. Every change happens between
 * dirty_begin() and dirty_end(); if a process dies holding the lock, the next locker gets
 * EOWNERDEAD, marks the mutex consistent and, if the zone was dirty, wipes it (the lists may
 * be half-linked; checking them would be slower and less certain than starting empty) and
 * logs a warning. A zone that was merely being read stays as it is. */
#include "sluice.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "shm.h"
#include "shm_alloc.h"

#define SHM_MAGIC     0x736c73686d763031ULL     /* "slshmv01" */
#define TAIL_EXPIRE   2         /* expired items each write frees from the LRU tail */
#define BUCKET_BYTES  256       /* one hash bucket per this many bytes of zone */
#define MIN_BUCKETS   64
#define MAX_TTL       1e12      /* seconds; keeps milliseconds far from overflowing */
#define NO_EXPIRY     UINT64_MAX
#define MIN_SCRATCH   256

#define ITEM(h, off)  ((item_t *) AT(h, off))

typedef struct {
    blk_t     blk;
    uint32_t  hnext;        /* next item in the same bucket */
    uint32_t  lru_prev;     /* towards the head (more recently used) */
    uint32_t  lru_next;     /* towards the tail */
    uint32_t  hash;         /* the key's 32-bit hash; its low bits pick the bucket */
    uint64_t  expires;      /* CLOCK_MONOTONIC ms; 0 = never */
    double    num;          /* number, or boolean as 0/1 */
    uint32_t  flags;
    uint32_t  vlen;         /* string value length */
    uint16_t  klen;
    uint8_t   type;         /* SL_SHM_* */
    /* then klen bytes of key, then vlen bytes of string value */
} item_t;

struct sl_shm_zone_s {
    hdr_t   *hdr;
    size_t   size;
    char    *name;
    char    *scratch;       /* process-local: get copies strings out here, keys packs keys */
    size_t   scratch_size;
};

enum { OP_SET, OP_SAFE_SET, OP_ADD, OP_REPLACE };

static uint64_t monotonic_ms(void);

static sl_shm_zone_t  **zones;
static size_t           nzones, zones_cap;
static uint64_t       (*clock_ms)(void) = monotonic_ms;


static uint64_t
monotonic_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}


/* The clock is read at most once per operation, and only if an expiry matters. */
static uint64_t
now_of(uint64_t *now)
{
    if (*now == 0) {
        *now = clock_ms();
    }

    return *now;
}


static int
expired(item_t *it, uint64_t *now)
{
    return it->expires != 0 && it->expires <= now_of(now);
}


static int
ttl_to_ms(double sec, uint64_t *ms)
{
    if (!(sec >= 0 && sec <= MAX_TTL)) {
        return SL_ERROR;
    }

    *ms = (uint64_t) (sec * 1000 + 0.5);
    if (*ms == 0 && sec > 0) {
        *ms = 1;                        /* a tiny ttl still expires; 0 would mean never */
    }

    return SL_OK;
}


static int
check_key(size_t klen, const char **err)
{
    if (klen == 0) {
        *err = "empty key";
        return SL_ERROR;
    }

    if (klen > SL_SHM_MAX_KEY_LEN) {
        *err = "key too long";
        return SL_ERROR;
    }

    return SL_OK;
}


/* MurmurHash64A folded to 32 bits. */
static uint32_t
hash_key(const char *key, size_t len)
{
    const uint64_t        m = 0xc6a4a7935bd1e995ULL;
    const unsigned char  *p = (const unsigned char *) key;
    const unsigned char  *end = p + (len & ~(size_t) 7);
    uint64_t              h = 0x5bd1e995ULL ^ (len * m), k;
    size_t                i;

    for (; p != end; p += 8) {
        memcpy(&k, p, 8);
        k *= m;
        k ^= k >> 47;
        k *= m;
        h ^= k;
        h *= m;
    }

    if (len & 7) {
        for (i = 0; i < (len & 7); i++) {
            h ^= (uint64_t) p[i] << (8 * i);
        }
        h *= m;
    }

    h ^= h >> 47;
    h *= m;
    h ^= h >> 47;
    return (uint32_t) (h ^ (h >> 32));
}


/* Items */

static uint32_t *
buckets(hdr_t *h)
{
    return (uint32_t *) AT(h, h->buckets);
}


static char *
item_key(item_t *it)
{
    return (char *) (it + 1);
}


static size_t
item_need(size_t klen, size_t vlen)
{
    return (sizeof(item_t) + klen + vlen + 7) & ~(size_t) 7;
}


static uint32_t
lookup(hdr_t *h, uint32_t hash, const char *key, size_t klen)
{
    uint32_t   off;
    item_t    *it;

    for (off = buckets(h)[hash & h->mask]; off != 0; off = it->hnext) {
        it = ITEM(h, off);
        if (it->hash == hash && it->klen == klen && memcmp(item_key(it), key, klen) == 0) {
            return off;
        }
    }

    return 0;
}


static void
lru_push_head(hdr_t *h, uint32_t off)
{
    item_t  *it = ITEM(h, off);

    it->lru_prev = 0;
    it->lru_next = h->lru_head;
    if (h->lru_head) {
        ITEM(h, h->lru_head)->lru_prev = off;

    } else {
        h->lru_tail = off;
    }

    h->lru_head = off;
}


static void
lru_remove(hdr_t *h, uint32_t off)
{
    item_t  *it = ITEM(h, off);

    if (it->lru_prev) {
        ITEM(h, it->lru_prev)->lru_next = it->lru_next;

    } else {
        h->lru_head = it->lru_next;
    }

    if (it->lru_next) {
        ITEM(h, it->lru_next)->lru_prev = it->lru_prev;

    } else {
        h->lru_tail = it->lru_prev;
    }
}


static void
lru_touch(hdr_t *h, uint32_t off)
{
    if (h->lru_head != off) {
        lru_remove(h, off);
        lru_push_head(h, off);
    }
}


static void
item_init(hdr_t *h, uint32_t off, uint32_t hash, const char *key, size_t klen)
{
    item_t    *it = ITEM(h, off);
    uint32_t  *b = &buckets(h)[hash & h->mask];

    it->hash = hash;
    it->klen = (uint16_t) klen;
    memcpy(item_key(it), key, klen);
    it->hnext = *b;
    *b = off;
    lru_push_head(h, off);
    h->nitems++;
}


static void
item_free(hdr_t *h, uint32_t off)
{
    item_t    *it = ITEM(h, off);
    uint32_t  *link = &buckets(h)[it->hash & h->mask];

    while (*link != off) {
        link = &ITEM(h, *link)->hnext;
    }

    *link = it->hnext;
    lru_remove(h, off);
    h->nitems--;
    sl_shm_alloc_free(h, off);
}


static void
item_set_expires(hdr_t *h, item_t *it, uint64_t expires)
{
    if (expires != 0 && expires < h->exp_hint) {
        h->exp_hint = expires;
    }

    it->expires = expires;
}


/* Frees expired items, up to max (0 = all). A full sweep makes exp_hint exact again. */
static long
purge_expired(hdr_t *h, uint64_t now, size_t max)
{
    uint32_t   off, prev;
    uint64_t   earliest = NO_EXPIRY;
    item_t    *it;
    size_t     n = 0;

    for (off = h->lru_tail; off != 0; off = prev) {
        it = ITEM(h, off);
        prev = it->lru_prev;

        if (it->expires == 0) {
            continue;
        }

        if (it->expires > now) {
            earliest = sl_min(earliest, it->expires);
            continue;
        }

        if (max != 0 && n == max) {
            return (long) n;            /* swept only part: the old hint still holds */
        }

        item_free(h, off);
        n++;
    }

    h->exp_hint = earliest;
    return (long) n;
}


static void
expire_tail(hdr_t *h, uint64_t *now)
{
    item_t  *it;
    int      i;

    for (i = 0; i < TAIL_EXPIRE && h->lru_tail != 0; i++) {
        it = ITEM(h, h->lru_tail);
        if (!expired(it, now)) {
            return;
        }

        item_free(h, h->lru_tail);
    }
}


/* Makes room for need bytes: free space, then expired items, then (if evict_live) live
 * ones from the LRU tail. need never exceeds the data area, so evicting always ends. */
static uint32_t
alloc_evicting(hdr_t *h, uint32_t need, int evict_live, uint64_t *now, int *forcible)
{
    uint32_t  off;

    off = sl_shm_alloc_block(h, need);
    if (off == 0 && h->exp_hint <= now_of(now)) {
        purge_expired(h, *now, 0);
        off = sl_shm_alloc_block(h, need);
    }

    while (off == 0 && evict_live && h->lru_tail != 0) {
        item_free(h, h->lru_tail);       /* every expired item is gone: this one was live */
        *forcible = 1;
        off = sl_shm_alloc_block(h, need);
    }

    return off;
}


static void
zone_wipe(hdr_t *h)
{
    memset(buckets(h), 0, ((size_t) h->mask + 1) * sizeof(uint32_t));
    h->lru_head = 0;
    h->lru_tail = 0;
    sl_shm_alloc_reset(h);
    h->nitems = 0;
    h->exp_hint = NO_EXPIRY;
}


static int
zone_lock(sl_shm_zone_t *z, const char **err)
{
    hdr_t  *h = z->hdr;
    int     rc;

    rc = pthread_mutex_lock(&h->mutex);
    if (rc == 0) {
        return SL_OK;
    }

    if (rc != EOWNERDEAD) {
        *err = "failed to lock the shared dict";
        return SL_ERROR;
    }

    /* The owner died holding the lock; we own it now and must repair before using it. */
    pthread_mutex_consistent(&h->mutex);

    if (h->dirty) {
        zone_wipe(h);
        h->wipes++;
        h->dirty = 0;
        sl_log_warn("shared dict \"%s\": a process died while changing it, "
                    "all its items were dropped", z->name);

    } else {
        sl_log_notice("shared dict \"%s\": a process died holding its lock "
                      "while not changing it, items kept", z->name);
    }

    return SL_OK;
}


static void
zone_unlock(sl_shm_zone_t *z)
{
    pthread_mutex_unlock(&z->hdr->mutex);
}


/* Runs under the lock: realloc, not sl_xrealloc, so running short fails just this call. */
static int
scratch_reserve(sl_shm_zone_t *z, size_t size)
{
    size_t   n;
    char    *p;

    if (size <= z->scratch_size && z->scratch != NULL) {
        return SL_OK;
    }

    n = sl_max(sl_max(size, z->scratch_size * 2), (size_t) MIN_SCRATCH);
    p = realloc(z->scratch, n);
    if (p == NULL) {
        return SL_ERROR;
    }

    z->scratch = p;
    z->scratch_size = n;
    return SL_OK;
}


/* Checks the key, hashes it (outside the lock) and takes the lock. */
static int
op_begin(sl_shm_zone_t *z, const char *key, size_t klen, uint32_t *hash, const char **err)
{
    if (check_key(klen, err) != SL_OK) {
        return SL_ERROR;
    }

    *hash = hash_key(key, klen);
    return zone_lock(z, err);
}


/* Zones */

sl_shm_zone_t *
sl_shm_zone_create(const char *name, size_t size, const char **err)
{
    size_t               page, nb, len;
    void                *base;
    hdr_t               *h;
    sl_shm_zone_t       *z;
    pthread_mutexattr_t  attr;

    len = name ? strlen(name) : 0;
    if (len == 0) {
        *err = "shared dict name is empty";
        return NULL;
    }

    if (sl_shm_zone_find(name, len) != NULL) {
        *err = "shared dict already exists";
        return NULL;
    }

    if (size < SL_SHM_MIN_SIZE) {
        *err = "shared dict size is below 64 KiB";
        return NULL;
    }

    if (size > SL_SHM_MAX_SIZE) {
        *err = "shared dict size is 4 GiB or more";
        return NULL;
    }

    page = (size_t) sysconf(_SC_PAGESIZE);
    size = (size + page - 1) & ~(page - 1);

    base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        *err = "failed to map shared dict memory";
        return NULL;
    }

    h = base;
    if (pthread_mutexattr_init(&attr) != 0
        || pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) != 0
        || pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) != 0
        || pthread_mutex_init(&h->mutex, &attr) != 0)
    {
        munmap(base, size);
        *err = "failed to initialise the shared dict lock";
        return NULL;
    }

    pthread_mutexattr_destroy(&attr);

    for (nb = MIN_BUCKETS; nb * 2 <= size / BUCKET_BYTES; nb *= 2) {
        /* largest power of two not above size / BUCKET_BYTES */
    }

    h->magic = SHM_MAGIC;
    h->size = (uint32_t) size;
    h->mask = (uint32_t) nb - 1;
    h->buckets = (sizeof(hdr_t) + 63) & ~63u;
    h->data_start = (uint32_t) ((h->buckets + nb * sizeof(uint32_t) + 7) & ~(size_t) 7);
    h->data_end = (uint32_t) (size - sizeof(blk_t));
    zone_wipe(h);

    z = sl_xcalloc(1, sizeof(sl_shm_zone_t));
    z->hdr = h;
    z->size = size;
    z->name = sl_xstrndup(name, len);

    if (nzones == zones_cap) {
        zones_cap = zones_cap ? zones_cap * 2 : 8;
        zones = sl_xrealloc(zones, zones_cap * sizeof(sl_shm_zone_t *));
    }

    zones[nzones++] = z;
    return z;
}


sl_shm_zone_t *
sl_shm_zone_find(const char *name, size_t len)
{
    size_t  i;

    for (i = 0; i < nzones; i++) {
        if (strlen(zones[i]->name) == len && memcmp(zones[i]->name, name, len) == 0) {
            return zones[i];
        }
    }

    return NULL;
}


void
sl_shm_zone_destroy(sl_shm_zone_t *z)
{
    size_t  i;

    for (i = 0; i < nzones; i++) {
        if (zones[i] == z) {
            memmove(&zones[i], &zones[i + 1], (nzones - i - 1) * sizeof(sl_shm_zone_t *));
            nzones--;
            break;
        }
    }

    munmap(z->hdr, z->size);
    free(z->scratch);
    free(z->name);
    free(z);
}


size_t
sl_shm_zone_count(void)
{
    return nzones;
}


sl_shm_zone_t *
sl_shm_zone_at(size_t i)
{
    return i < nzones ? zones[i] : NULL;
}


const char *
sl_shm_zone_name(sl_shm_zone_t *z)
{
    return z->name;
}


/* Items */

int
sl_shm_get(sl_shm_zone_t *z, const char *key, size_t klen, int stale_ok, sl_shm_value_t *v,
    uint32_t *flags, int *stale, const char **err)
{
    hdr_t     *h = z->hdr;
    uint64_t   now = 0;
    uint32_t   off, hash;
    item_t    *it;
    int        rc, is_stale;

    v->type = SL_SHM_NIL;
    v->num = 0;
    v->str = NULL;
    v->len = 0;
    *flags = 0;
    *stale = 0;

    if (op_begin(z, key, klen, &hash, err) != SL_OK) {
        return SL_ERROR;
    }

    off = lookup(h, hash, key, klen);
    if (off == 0) {
        *err = "not found";
        rc = SL_DECLINED;
        goto done;
    }

    it = ITEM(h, off);
    is_stale = expired(it, &now);
    if (is_stale && !stale_ok) {
        *err = "not found";
        rc = SL_DECLINED;
        goto done;
    }

    if (it->type == SL_SHM_STRING) {
        if (scratch_reserve(z, it->vlen) != SL_OK) {
            *err = "no memory";
            rc = SL_ERROR;
            goto done;
        }

        memcpy(z->scratch, item_key(it) + it->klen, it->vlen);
        v->str = z->scratch;
        v->len = it->vlen;
    }

    v->type = it->type;
    v->num = it->num;
    *flags = it->flags;
    *stale = is_stale;

    if (!is_stale && h->lru_head != off) {
        dirty_begin(h);
        lru_touch(h, off);
        dirty_end(h);
    }

    rc = SL_OK;

done:

    zone_unlock(z);
    return rc;
}


static int
store(sl_shm_zone_t *z, int op, const char *key, size_t klen, const sl_shm_value_t *v,
    double exptime, uint32_t flags, int *forcible, const char **err)
{
    hdr_t     *h = z->hdr;
    uint64_t   now = 0, ms;
    uint32_t   off, noff, hash, need;
    size_t     vlen;
    item_t    *it;
    int        rc, live;

    *forcible = 0;

    if (ttl_to_ms(exptime, &ms) != SL_OK) {
        *err = "bad exptime";
        return SL_ERROR;
    }

    switch (v->type) {
    case SL_SHM_NIL:
    case SL_SHM_BOOLEAN:
    case SL_SHM_NUMBER:
        vlen = 0;
        break;
    case SL_SHM_STRING:
        vlen = v->len;
        break;
    default:
        *err = "bad value type";
        return SL_ERROR;
    }

    /* Too big even for an empty zone: fail before touching (or evicting) anything. */
    if (vlen > SL_SHM_MAX_SIZE || item_need(klen, vlen) > h->data_end - h->data_start) {
        *err = "no memory";
        return SL_ERROR;
    }

    need = (uint32_t) item_need(klen, vlen);
    if (op_begin(z, key, klen, &hash, err) != SL_OK) {
        return SL_ERROR;
    }

    dirty_begin(h);
    expire_tail(h, &now);

    off = lookup(h, hash, key, klen);
    live = off != 0 && !expired(ITEM(h, off), &now);

    if (op == OP_ADD && live) {
        *err = "exists";
        rc = SL_DECLINED;
        goto done;
    }

    if (op == OP_REPLACE && !live) {
        *err = "not found";
        rc = SL_DECLINED;
        goto done;
    }

    rc = SL_OK;

    if (v->type == SL_SHM_NIL) {
        if (off != 0) {
            item_free(h, off);
        }

        goto done;
    }

    if (off != 0 && BLK_SIZE(&ITEM(h, off)->blk) >= need) {
        sl_shm_alloc_shrink(h, off, need);
        lru_touch(h, off);

    } else {
        /* Prefer keeping the old item until the new one has a place; failing that, its
         * space may be what lets the new one fit (ngx.shared behaves the same). */
        noff = sl_shm_alloc_block(h, need);
        if (off != 0) {
            item_free(h, off);
        }

        if (noff == 0) {
            noff = alloc_evicting(h, need, op != OP_SAFE_SET, &now, forcible);
            if (noff == 0) {
                *err = "no memory";
                rc = SL_ERROR;
                goto done;
            }
        }

        off = noff;
        item_init(h, off, hash, key, klen);
    }

    it = ITEM(h, off);
    it->type = (uint8_t) v->type;
    it->num = v->type == SL_SHM_BOOLEAN ? (v->num != 0) : v->num;
    it->flags = flags;
    it->vlen = (uint32_t) vlen;
    if (vlen != 0) {
        memcpy(item_key(it) + klen, v->str, vlen);
    }

    item_set_expires(h, it, ms ? now_of(&now) + ms : 0);

done:

    dirty_end(h);
    zone_unlock(z);
    return rc;
}


int
sl_shm_set(sl_shm_zone_t *z, const char *key, size_t klen, const sl_shm_value_t *v,
    double exptime, uint32_t flags, int *forcible, const char **err)
{
    return store(z, OP_SET, key, klen, v, exptime, flags, forcible, err);
}


int
sl_shm_safe_set(sl_shm_zone_t *z, const char *key, size_t klen, const sl_shm_value_t *v,
    double exptime, uint32_t flags, int *forcible, const char **err)
{
    return store(z, OP_SAFE_SET, key, klen, v, exptime, flags, forcible, err);
}


int
sl_shm_add(sl_shm_zone_t *z, const char *key, size_t klen, const sl_shm_value_t *v,
    double exptime, uint32_t flags, int *forcible, const char **err)
{
    return store(z, OP_ADD, key, klen, v, exptime, flags, forcible, err);
}


int
sl_shm_replace(sl_shm_zone_t *z, const char *key, size_t klen, const sl_shm_value_t *v,
    double exptime, uint32_t flags, int *forcible, const char **err)
{
    return store(z, OP_REPLACE, key, klen, v, exptime, flags, forcible, err);
}


int
sl_shm_delete(sl_shm_zone_t *z, const char *key, size_t klen, const char **err)
{
    hdr_t     *h = z->hdr;
    uint32_t   off, hash;

    if (op_begin(z, key, klen, &hash, err) != SL_OK) {
        return SL_ERROR;
    }

    off = lookup(h, hash, key, klen);
    if (off != 0) {
        dirty_begin(h);
        item_free(h, off);
        dirty_end(h);
    }

    zone_unlock(z);

    if (off == 0) {
        *err = "not found";
        return SL_DECLINED;
    }

    return SL_OK;
}


int
sl_shm_incr(sl_shm_zone_t *z, const char *key, size_t klen, double n, double init,
    int has_init, double init_ttl, double *result, int *forcible, const char **err)
{
    hdr_t     *h = z->hdr;
    uint64_t   now = 0, ms = 0;
    uint32_t   off, hash, need;
    item_t    *it;
    int        rc;

    *forcible = 0;

    if (has_init && ttl_to_ms(init_ttl, &ms) != SL_OK) {
        *err = "bad init_ttl";
        return SL_ERROR;
    }

    need = (uint32_t) item_need(klen, 0);
    if (op_begin(z, key, klen, &hash, err) != SL_OK) {
        return SL_ERROR;
    }

    dirty_begin(h);
    expire_tail(h, &now);

    off = lookup(h, hash, key, klen);
    if (off != 0 && !expired(ITEM(h, off), &now)) {
        it = ITEM(h, off);
        if (it->type != SL_SHM_NUMBER) {
            *err = "not a number";
            rc = SL_ERROR;
            goto done;
        }

        it->num += n;
        *result = it->num;
        lru_touch(h, off);
        rc = SL_OK;
        goto done;
    }

    if (!has_init) {
        *err = "not found";
        rc = SL_DECLINED;
        goto done;
    }

    if (off != 0) {
        sl_shm_alloc_shrink(h, off, need);       /* an expired item: reuse its block */
        lru_touch(h, off);

    } else {
        off = alloc_evicting(h, need, 1, &now, forcible);
        if (off == 0) {
            *err = "no memory";
            rc = SL_ERROR;
            goto done;
        }

        item_init(h, off, hash, key, klen);
    }

    it = ITEM(h, off);
    it->type = SL_SHM_NUMBER;
    it->num = init + n;
    it->flags = 0;
    it->vlen = 0;
    item_set_expires(h, it, ms ? now_of(&now) + ms : 0);
    *result = it->num;
    rc = SL_OK;

done:

    dirty_end(h);
    zone_unlock(z);
    return rc;
}


int
sl_shm_expire(sl_shm_zone_t *z, const char *key, size_t klen, double ttl, const char **err)
{
    hdr_t     *h = z->hdr;
    uint64_t   now = 0, ms;
    uint32_t   off, hash;
    int        rc = SL_OK;

    if (ttl_to_ms(ttl, &ms) != SL_OK) {
        *err = "bad exptime";
        return SL_ERROR;
    }

    if (op_begin(z, key, klen, &hash, err) != SL_OK) {
        return SL_ERROR;
    }

    off = lookup(h, hash, key, klen);
    if (off == 0 || expired(ITEM(h, off), &now)) {
        *err = "not found";
        rc = SL_DECLINED;

    } else {
        dirty_begin(h);
        item_set_expires(h, ITEM(h, off), ms ? now_of(&now) + ms : 0);
        dirty_end(h);
    }

    zone_unlock(z);
    return rc;
}


int
sl_shm_ttl(sl_shm_zone_t *z, const char *key, size_t klen, double *ttl, const char **err)
{
    hdr_t     *h = z->hdr;
    uint64_t   now = 0;
    uint32_t   off, hash;
    item_t    *it;
    int        rc = SL_OK;

    if (op_begin(z, key, klen, &hash, err) != SL_OK) {
        return SL_ERROR;
    }

    off = lookup(h, hash, key, klen);
    if (off == 0 || expired(ITEM(h, off), &now)) {
        *err = "not found";
        rc = SL_DECLINED;

    } else {
        it = ITEM(h, off);
        *ttl = it->expires ? (double) (it->expires - now_of(&now)) / 1000 : 0;
    }

    zone_unlock(z);
    return rc;
}


long
sl_shm_keys(sl_shm_zone_t *z, size_t max, const char **buf, size_t *len, const char **err)
{
    hdr_t     *h = z->hdr;
    uint64_t   now = 0;
    uint32_t   off;
    item_t    *it;
    size_t     pos = 0, n = 0;

    if (zone_lock(z, err) != SL_OK) {
        return -1;
    }

    for (off = h->lru_head; off != 0 && (max == 0 || n < max); off = it->lru_next) {
        it = ITEM(h, off);
        if (expired(it, &now)) {
            continue;
        }

        if (scratch_reserve(z, pos + 2 + it->klen) != SL_OK) {
            zone_unlock(z);
            *err = "no memory";
            return -1;
        }

        z->scratch[pos] = (char) (it->klen & 0xff);
        z->scratch[pos + 1] = (char) (it->klen >> 8);
        memcpy(z->scratch + pos + 2, item_key(it), it->klen);
        pos += 2 + it->klen;
        n++;
    }

    zone_unlock(z);

    if (scratch_reserve(z, 1) != SL_OK) {     /* a valid pointer even for no keys */
        *err = "no memory";
        return -1;
    }

    *buf = z->scratch;
    *len = pos;
    return (long) n;
}


int
sl_shm_flush_all(sl_shm_zone_t *z, const char **err)
{
    if (zone_lock(z, err) != SL_OK) {
        return SL_ERROR;
    }

    dirty_begin(z->hdr);
    zone_wipe(z->hdr);
    dirty_end(z->hdr);
    zone_unlock(z);
    return SL_OK;
}


long
sl_shm_flush_expired(sl_shm_zone_t *z, size_t max, const char **err)
{
    uint64_t  now = 0;
    long      n;

    if (zone_lock(z, err) != SL_OK) {
        return -1;
    }

    dirty_begin(z->hdr);
    n = purge_expired(z->hdr, now_of(&now), max);
    dirty_end(z->hdr);
    zone_unlock(z);
    return n;
}


size_t
sl_shm_free_space(sl_shm_zone_t *z)
{
    const char  *err;
    size_t       n;

    if (zone_lock(z, &err) != SL_OK) {
        return 0;
    }

    n = z->hdr->free_bytes;
    zone_unlock(z);
    return n;
}


size_t
sl_shm_capacity(sl_shm_zone_t *z)
{
    return z->size;
}


/* Test hooks */

void
sl_shm_set_clock_for_test(uint64_t (*now_ms)(void))
{
    clock_ms = now_ms ? now_ms : monotonic_ms;
}


int
sl_shm_lock_for_test(sl_shm_zone_t *z, int mark_dirty)
{
    const char  *err;

    if (zone_lock(z, &err) != SL_OK) {
        return SL_ERROR;
    }

    if (mark_dirty) {
        dirty_begin(z->hdr);
    }

    return SL_OK;
}


void
sl_shm_unlock_for_test(sl_shm_zone_t *z)
{
    dirty_end(z->hdr);
    zone_unlock(z);
}


uint64_t
sl_shm_wipes_for_test(sl_shm_zone_t *z)
{
    return z->hdr->wipes;
}


static const char *
check(hdr_t *h)
{
    uint32_t   off, prev, n;
    uint64_t   nused, earliest = NO_EXPIRY;
    const char *err;
    item_t    *it;

    err = sl_shm_alloc_check(h, &nused);
    if (err != NULL) {
        return err;
    }

    for (prev = 0, n = 0, off = h->lru_head; off != 0; prev = off, off = it->lru_next) {
        it = ITEM(h, off);
        if (!(it->blk.size & BLK_USED) || it->lru_prev != prev) {
            return "bad LRU list";
        }

        if (lookup(h, it->hash, item_key(it), it->klen) != off) {
            return "item not in the hash table";
        }

        if (it->expires != 0) {
            earliest = sl_min(earliest, it->expires);
        }

        n++;
    }

    if (prev != h->lru_tail || n != h->nitems || n != nused) {
        return "item counts disagree";
    }

    if (h->exp_hint > earliest) {
        return "exp_hint is past an expiry";
    }

    return NULL;
}


const char *
sl_shm_check_for_test(sl_shm_zone_t *z)
{
    const char  *err;

    if (zone_lock(z, &err) != SL_OK) {
        return err;
    }

    err = check(z->hdr);
    zone_unlock(z);
    return err;
}
