/* links: core/shm.c core/shm_alloc.c */
/* shm.c -- shared dictionaries: every operation, expiry on an injected clock, LRU eviction
 * and expired-first reclaim, many keys, large values, incr semantics, a randomised run
 * against a reference model, counting from four processes at once, and a process dying
 * while it holds the zone lock (clean and in the middle of a change). */
#include "sluice.h"

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm.h"
#include "tap.h"

static uint64_t  fake_now = 1000000;


static uint64_t
fake_clock(void)
{
    return fake_now;
}


static sl_shm_value_t
str_val(const char *s)
{
    sl_shm_value_t  v = { SL_SHM_STRING, 0, s, strlen(s) };

    return v;
}


static sl_shm_value_t
num_val(double n)
{
    sl_shm_value_t  v = { SL_SHM_NUMBER, n, NULL, 0 };

    return v;
}


static int
set_str(sl_shm_zone_t *z, const char *key, const char *val, double ttl, int *forcible)
{
    sl_shm_value_t   v = str_val(val);
    const char      *err;
    int              f;

    return sl_shm_set(z, key, strlen(key), &v, ttl, 0, forcible ? forcible : &f, &err);
}


/* 1 if key holds exactly the string want, 0 if not, -1 if missing. */
static int
has_str(sl_shm_zone_t *z, const char *key, const char *want)
{
    sl_shm_value_t   v;
    uint32_t         flags;
    int              stale;
    const char      *err;

    if (sl_shm_get(z, key, strlen(key), 0, &v, &flags, &stale, &err) != SL_OK) {
        return -1;
    }

    return v.type == SL_SHM_STRING && v.len == strlen(want) && memcmp(v.str, want, v.len) == 0;
}


static int
exists(sl_shm_zone_t *z, const char *key)
{
    sl_shm_value_t   v;
    uint32_t         flags;
    int              stale;
    const char      *err;

    return sl_shm_get(z, key, strlen(key), 0, &v, &flags, &stale, &err) == SL_OK;
}


static void
test_zones(void)
{
    sl_shm_zone_t  *a, *b;
    const char     *err = NULL;

    ok(sl_shm_zone_create("small", 60 * 1024, &err) == NULL && err != NULL,
       "a zone below 64 KiB is refused (%s)", err);
    ok(sl_shm_zone_create("", 1 << 20, &err) == NULL, "an empty name is refused");

    a = sl_shm_zone_create("alpha", 1 << 20, &err);
    b = sl_shm_zone_create("beta", 100000, &err);
    ok(a != NULL && b != NULL, "two zones created");
    ok(sl_shm_zone_create("alpha", 1 << 20, &err) == NULL, "a duplicate name is refused (%s)",
       err);
    ok(sl_shm_zone_find("alpha", 5) == a && sl_shm_zone_find("beta", 4) == b,
       "zones found by name");
    ok(sl_shm_zone_find("alph", 4) == NULL && sl_shm_zone_find("gamma", 5) == NULL,
       "unknown names are not found");
    is_int(sl_shm_zone_count(), 2, "two zones registered");
    ok(strcmp(sl_shm_zone_name(sl_shm_zone_at(0)), "alpha") == 0
       && strcmp(sl_shm_zone_name(sl_shm_zone_at(1)), "beta") == 0
       && sl_shm_zone_at(2) == NULL, "zones enumerate in order");
    is_int(sl_shm_capacity(b) % 4096, 0, "size rounded up to pages");
    ok(sl_shm_capacity(b) >= 100000, "capacity covers the asked size");

    sl_shm_zone_destroy(a);
    is_int(sl_shm_zone_count(), 1, "destroy unregisters");
    ok(sl_shm_zone_find("alpha", 5) == NULL && sl_shm_zone_at(0) == b, "beta remains");
    sl_shm_zone_destroy(b);
    is_int(sl_shm_zone_count(), 0, "no zones left");
}


static void
test_basic(sl_shm_zone_t *z)
{
    sl_shm_value_t   v, t = { SL_SHM_BOOLEAN, 1, NULL, 0 }, nil = { SL_SHM_NIL, 0, NULL, 0 };
    uint32_t         flags;
    int              stale, forcible;
    const char      *err;
    size_t           free0 = sl_shm_free_space(z);

    is_int(sl_shm_get(z, "k", 1, 0, &v, &flags, &stale, &err), SL_DECLINED, "get: missing");
    is_int(v.type, SL_SHM_NIL, "get: missing is nil");

    v = str_val("hello");
    is_int(sl_shm_set(z, "k", 1, &v, 0, 7, &forcible, &err), SL_OK, "set string");
    is_int(forcible, 0, "set: not forcible");
    is_int(sl_shm_get(z, "k", 1, 0, &v, &flags, &stale, &err), SL_OK, "get string");
    is_str(v.str, v.len, "hello", "get: value");
    is_int(v.type, SL_SHM_STRING, "get: type");
    is_int(flags, 7, "get: flags");
    is_int(stale, 0, "get: not stale");
    ok(sl_shm_free_space(z) < free0, "free space shrinks");

    v = num_val(-2.5);
    sl_shm_set(z, "n", 1, &v, 0, 0xffffffffu, &forcible, &err);
    sl_shm_get(z, "n", 1, 0, &v, &flags, &stale, &err);
    ok(v.type == SL_SHM_NUMBER && v.num == -2.5, "get number");
    ok(flags == 0xffffffffu, "flags keep all 32 bits");

    sl_shm_set(z, "b", 1, &t, 0, 0, &forcible, &err);
    sl_shm_get(z, "b", 1, 0, &v, &flags, &stale, &err);
    ok(v.type == SL_SHM_BOOLEAN && v.num == 1, "get boolean true");
    t.num = 0;
    sl_shm_set(z, "b", 1, &t, 0, 0, &forcible, &err);
    sl_shm_get(z, "b", 1, 0, &v, &flags, &stale, &err);
    ok(v.type == SL_SHM_BOOLEAN && v.num == 0, "get boolean false");

    v = str_val("");
    sl_shm_set(z, "e", 1, &v, 0, 0, &forcible, &err);
    ok(sl_shm_get(z, "e", 1, 0, &v, &flags, &stale, &err) == SL_OK
       && v.type == SL_SHM_STRING && v.len == 0 && v.str != NULL, "empty string value");

    v = str_val("a much longer value than before, so the item moves");
    is_int(sl_shm_set(z, "k", 1, &v, 0, 0, &forcible, &err), SL_OK, "overwrite, growing");
    is_int(has_str(z, "k", "a much longer value than before, so the item moves"), 1,
           "grown value read back");
    v = str_val("x");
    sl_shm_set(z, "k", 1, &v, 0, 0, &forcible, &err);
    is_int(has_str(z, "k", "x"), 1, "shrunk value read back");

    is_int(sl_shm_set(z, "k", 1, &nil, 0, 0, &forcible, &err), SL_OK, "set nil");
    is_int(exists(z, "k"), 0, "set nil deletes");

    v = str_val("1");
    is_int(sl_shm_add(z, "a", 1, &v, 0, 0, &forcible, &err), SL_OK, "add: new key");
    v = str_val("2");
    is_int(sl_shm_add(z, "a", 1, &v, 0, 0, &forcible, &err), SL_DECLINED, "add: existing key");
    ok(strcmp(err, "exists") == 0, "add: err is 'exists'");
    is_int(has_str(z, "a", "1"), 1, "add: old value kept");

    is_int(sl_shm_replace(z, "r", 1, &v, 0, 0, &forcible, &err), SL_DECLINED,
           "replace: missing key");
    ok(strcmp(err, "not found") == 0, "replace: err is 'not found'");
    is_int(exists(z, "r"), 0, "replace: nothing created");
    is_int(sl_shm_replace(z, "a", 1, &v, 0, 0, &forcible, &err), SL_OK, "replace: existing");
    is_int(has_str(z, "a", "2"), 1, "replace: new value");

    is_int(sl_shm_safe_set(z, "s", 1, &v, 0, 0, &forcible, &err), SL_OK, "safe_set");
    is_int(has_str(z, "s", "2"), 1, "safe_set: value");

    is_int(sl_shm_delete(z, "a", 1, &err), SL_OK, "delete");
    is_int(exists(z, "a"), 0, "delete: gone");
    is_int(sl_shm_delete(z, "a", 1, &err), SL_DECLINED, "delete: missing");

    is_int(sl_shm_get(z, "", 0, 0, &v, &flags, &stale, &err), SL_ERROR, "empty key refused");
    ok(strcmp(err, "empty key") == 0, "err is 'empty key'");
    v = str_val("x");
    t.type = 9;
    is_int(sl_shm_set(z, "x", 1, &t, 0, 0, &forcible, &err), SL_ERROR, "bad value type");
    is_int(sl_shm_set(z, "x", 1, &v, -1, 0, &forcible, &err), SL_ERROR, "negative exptime");

    is_int(sl_shm_get(z, "a\0b", 3, 0, &v, &flags, &stale, &err), SL_DECLINED, "binary key");
    v = str_val("nul");
    sl_shm_set(z, "a\0b", 3, &v, 0, 0, &forcible, &err);
    ok(sl_shm_get(z, "a\0b", 3, 0, &v, &flags, &stale, &err) == SL_OK
       && sl_shm_get(z, "a\0c", 3, 0, &v, &flags, &stale, &err) == SL_DECLINED,
       "keys with NUL bytes are distinct");

    is_int(sl_shm_flush_all(z, &err), SL_OK, "flush_all");
    is_int(exists(z, "n") + exists(z, "s") + exists(z, "b"), 0, "flush_all empties");
    is_int(sl_shm_free_space(z), free0, "flush_all gives all space back");
    ok(sl_shm_check_for_test(z) == NULL, "zone consistent");
}


static void
test_keys_limits(sl_shm_zone_t *z)
{
    char            *key, *val;
    sl_shm_value_t   v;
    const char      *err, *buf;
    size_t           len, i;
    long             n;
    int              forcible;
    uint32_t         flags;
    int              stale;

    key = sl_xmalloc(SL_SHM_MAX_KEY_LEN + 1);
    memset(key, 'k', SL_SHM_MAX_KEY_LEN + 1);
    v = str_val("long");
    is_int(sl_shm_set(z, key, SL_SHM_MAX_KEY_LEN, &v, 0, 0, &forcible, &err), SL_OK,
           "a 65535-byte key");
    is_int(sl_shm_get(z, key, SL_SHM_MAX_KEY_LEN, 0, &v, &flags, &stale, &err), SL_OK,
           "read by its 65535-byte key");
    is_int(sl_shm_set(z, key, SL_SHM_MAX_KEY_LEN + 1, &v, 0, 0, &forcible, &err), SL_ERROR,
           "a 65536-byte key is refused");
    ok(strcmp(err, "key too long") == 0, "err is 'key too long'");
    free(key);
    sl_shm_flush_all(z, &err);

    set_str(z, "one", "1", 0, NULL);
    set_str(z, "two", "2", 0, NULL);
    set_str(z, "three", "3", 0, NULL);
    n = sl_shm_keys(z, 0, &buf, &len, &err);
    is_int(n, 3, "keys: all three");
    is_int(len, 3 * 2 + 3 + 3 + 5, "keys: packed length");
    ok(len >= 7 && buf[0] == 5 && buf[1] == 0 && memcmp(buf + 2, "three", 5) == 0,
       "keys: most recent first, length-prefixed");
    is_int(sl_shm_keys(z, 2, &buf, &len, &err), 2, "keys: max honoured");
    sl_shm_flush_all(z, &err);
    is_int(sl_shm_keys(z, 0, &buf, &len, &err), 0, "keys: none after flush");
    ok(buf != NULL && len == 0, "keys: empty buffer is valid");

    /* Large values: half the zone, then more than the zone. */
    len = sl_shm_capacity(z) / 2;
    val = sl_xmalloc(len + 1);
    for (i = 0; i < len; i++) {
        val[i] = (char) ('a' + i % 26);
    }

    v.type = SL_SHM_STRING;
    v.str = val;
    v.len = len;
    is_int(sl_shm_set(z, "big", 3, &v, 0, 0, &forcible, &err), SL_OK, "half-zone value");
    ok(sl_shm_get(z, "big", 3, 0, &v, &flags, &stale, &err) == SL_OK && v.len == len
       && memcmp(v.str, val, len) == 0, "half-zone value read back intact");
    v.str = val;
    v.len = sl_shm_capacity(z);
    set_str(z, "small", "s", 0, NULL);
    is_int(sl_shm_set(z, "huge", 4, &v, 0, 0, &forcible, &err), SL_ERROR,
           "a value bigger than the zone is refused");
    ok(strcmp(err, "no memory") == 0 && forcible == 0, "no memory, nothing evicted");
    ok(exists(z, "small") && exists(z, "big"), "other items untouched");
    free(val);
    sl_shm_flush_all(z, &err);
    ok(sl_shm_check_for_test(z) == NULL, "zone consistent");
}


static void
test_expiry(sl_shm_zone_t *z)
{
    sl_shm_value_t   v;
    uint32_t         flags;
    int              stale, forcible;
    double           ttl, r;
    const char      *err, *buf;
    size_t           len;

    sl_shm_set_clock_for_test(fake_clock);

    set_str(z, "t", "v", 1.5, NULL);
    set_str(z, "forever", "v", 0, NULL);
    is_int(sl_shm_ttl(z, "t", 1, &ttl, &err), SL_OK, "ttl");
    ok(ttl == 1.5, "ttl is 1.5 s (%g)", ttl);
    sl_shm_ttl(z, "forever", 7, &ttl, &err);
    ok(ttl == 0, "ttl 0 for no expiry");
    is_int(sl_shm_ttl(z, "nope", 4, &ttl, &err), SL_DECLINED, "ttl: missing");

    fake_now += 1499;
    is_int(has_str(z, "t", "v"), 1, "alive 1 ms before expiry");
    sl_shm_ttl(z, "t", 1, &ttl, &err);
    ok(ttl == 0.001, "ttl counts down to 1 ms (%g)", ttl);
    fake_now += 1;
    is_int(has_str(z, "t", "v"), -1, "gone at expiry");
    is_int(sl_shm_ttl(z, "t", 1, &ttl, &err), SL_DECLINED, "ttl: expired is not found");
    is_int(sl_shm_keys(z, 0, &buf, &len, &err), 1, "keys skips expired items");

    is_int(sl_shm_get(z, "t", 1, 1, &v, &flags, &stale, &err), SL_OK, "get_stale finds it");
    ok(stale == 1 && v.len == 1 && v.str[0] == 'v', "get_stale: stale value");
    is_int(sl_shm_get(z, "forever", 7, 1, &v, &flags, &stale, &err), SL_OK, "get_stale live");
    is_int(stale, 0, "get_stale: live is not stale");

    is_int(sl_shm_expire(z, "t", 1, 10, &err), SL_DECLINED, "expire: expired is not found");
    v = str_val("again");
    is_int(sl_shm_add(z, "t", 1, &v, 0, 0, &forcible, &err), SL_OK, "add over expired key");
    is_int(sl_shm_replace(z, "q", 1, &v, 0, 0, &forcible, &err), SL_DECLINED, "replace missing");

    is_int(sl_shm_expire(z, "t", 1, 0.25, &err), SL_OK, "expire: sets a ttl");
    sl_shm_ttl(z, "t", 1, &ttl, &err);
    ok(ttl == 0.25, "expire: ttl 0.25 (%g)", ttl);
    is_int(sl_shm_expire(z, "t", 1, 0, &err), SL_OK, "expire 0");
    sl_shm_ttl(z, "t", 1, &ttl, &err);
    ok(ttl == 0, "expire 0: never expires");
    is_int(sl_shm_expire(z, "zz", 2, 1, &err), SL_DECLINED, "expire: missing");
    is_int(sl_shm_expire(z, "t", 1, -1, &err), SL_ERROR, "expire: negative refused");

    set_str(z, "tiny", "v", 0.0001, NULL);
    sl_shm_ttl(z, "tiny", 4, &ttl, &err);
    ok(ttl == 0.001, "a sub-millisecond ttl still expires (%g)", ttl);

    /* incr keeps the ttl; init_ttl applies only when it creates. */
    sl_shm_incr(z, "c", 1, 1, 0, 1, 2, &r, &forcible, &err);
    sl_shm_ttl(z, "c", 1, &ttl, &err);
    ok(r == 1 && ttl == 2, "incr with init_ttl: 1, ttl 2");
    fake_now += 1000;
    sl_shm_incr(z, "c", 1, 1, 0, 1, 50, &r, &forcible, &err);
    sl_shm_ttl(z, "c", 1, &ttl, &err);
    ok(r == 2 && ttl == 1, "incr on a live key keeps its ttl (%g)", ttl);
    fake_now += 1000;
    is_int(sl_shm_incr(z, "c", 1, 1, 0, 0, 0, &r, &forcible, &err), SL_DECLINED,
           "incr on expired, no init: not found");
    is_int(sl_shm_incr(z, "c", 1, 5, 10, 1, 0, &r, &forcible, &err), SL_OK,
           "incr on expired with init");
    sl_shm_ttl(z, "c", 1, &ttl, &err);
    ok(r == 15 && ttl == 0, "restarted at init + n, no ttl");

    is_int(sl_shm_flush_expired(z, 0, &err), 1, "flush_expired frees the expired item");
    is_int(sl_shm_flush_expired(z, 0, &err), 0, "flush_expired: nothing left");

    sl_shm_flush_all(z, &err);
    ok(sl_shm_check_for_test(z) == NULL, "zone consistent");
    sl_shm_set_clock_for_test(NULL);
}


static void
test_incr(sl_shm_zone_t *z)
{
    double       r = -1;
    int          forcible;
    const char  *err;
    sl_shm_value_t   v;
    uint32_t         flags;
    int              stale;

    is_int(sl_shm_incr(z, "n", 1, 1, 0, 0, 0, &r, &forcible, &err), SL_DECLINED,
           "incr missing, no init");
    ok(strcmp(err, "not found") == 0 && !exists(z, "n"), "not found, nothing created");
    is_int(sl_shm_incr(z, "n", 1, 3, 10, 1, 0, &r, &forcible, &err), SL_OK,
           "incr missing with init");
    ok(r == 13, "creates init + n");
    sl_shm_incr(z, "n", 1, -0.5, 100, 1, 0, &r, &forcible, &err);
    ok(r == 12.5, "init ignored once it exists; fractions add");
    sl_shm_get(z, "n", 1, 0, &v, &flags, &stale, &err);
    ok(v.type == SL_SHM_NUMBER && v.num == 12.5, "get sees the number");

    set_str(z, "s", "12", 0, NULL);
    is_int(sl_shm_incr(z, "s", 1, 1, 0, 1, 0, &r, &forcible, &err), SL_ERROR,
           "incr on a string");
    ok(strcmp(err, "not a number") == 0, "err is 'not a number'");
    is_int(has_str(z, "s", "12"), 1, "string untouched");
    sl_shm_flush_all(z, &err);
}


/* A 64 KiB zone filled with 1 KiB values: the oldest go, touched ones stay, expired first. */
static void
test_eviction(sl_shm_zone_t *z)
{
    char          key[32], val[1024];
    int           i, forcible, first_forcible = -1, evicted = 0, kept = 0;
    const char   *err;
    sl_shm_value_t  v = { SL_SHM_STRING, 0, val, sizeof(val) };

    memset(val, 'v', sizeof(val));
    for (i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        if (sl_shm_set(z, key, strlen(key), &v, 0, 0, &forcible, &err) != SL_OK) {
            break;
        }

        if (forcible && first_forcible < 0) {
            first_forcible = i;
        }

        if (i == 5) {
            /* keep k0 fresh: it must survive the evictions that follow */
            ok(has_str(z, "k0", "") == 0, "k0 read");
        }

        if (i > 5 && i % 4 == 0) {
            exists(z, "k0");
        }
    }

    is_int(i, 200, "every set succeeded");
    ok(first_forcible > 40 && first_forcible < 64, "forcible once full (at %d)",
       first_forcible);
    ok(exists(z, "k0"), "recently read k0 survived");
    ok(!exists(z, "k1") && !exists(z, "k2"), "oldest items evicted");
    ok(exists(z, "k199") && exists(z, "k198"), "newest items present");
    for (i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        if (exists(z, key)) {
            kept++;
        } else {
            evicted++;
        }
    }

    ok(kept > 40 && evicted > 100, "kept %d, evicted %d", kept, evicted);
    is_int(sl_shm_safe_set(z, "new", 3, &v, 0, 0, &forcible, &err), SL_ERROR,
           "safe_set on a full zone");
    ok(strcmp(err, "no memory") == 0 && forcible == 0, "safe_set: no memory, no eviction");
    ok(sl_shm_check_for_test(z) == NULL, "zone consistent after eviction");
    sl_shm_flush_all(z, &err);

    /* Fill with a mix of items expiring soon and not; after expiry sets reclaim only
     * the expired ones, without forcible. */
    sl_shm_set_clock_for_test(fake_clock);
    for (i = 0; ; i++) {
        snprintf(key, sizeof(key), "e%d", i);
        if (sl_shm_safe_set(z, key, strlen(key), &v, i % 2 ? 1 : 0, 0, &forcible, &err)
            != SL_OK)
        {
            break;
        }
    }

    kept = i;
    fake_now += 2000;
    for (i = 0; ; i++) {
        snprintf(key, sizeof(key), "n%d", i);
        if (sl_shm_safe_set(z, key, strlen(key), &v, 0, 0, &forcible, &err) != SL_OK) {
            break;
        }
    }

    ok(i >= kept / 2 - 1 && i <= kept / 2 + 1,
       "safe_set reclaims the expired half (%d new of %d)", i, kept);
    for (i = 0, evicted = 0; i < kept; i += 2) {
        snprintf(key, sizeof(key), "e%d", i);
        evicted += !exists(z, key);
    }

    is_int(evicted, 0, "items without expiry all kept");
    set_str(z, "force", "x", 0, &forcible);
    is_int(forcible, 1, "set reports forcible when it evicts a live item");
    ok(sl_shm_check_for_test(z) == NULL, "zone consistent");
    sl_shm_set_clock_for_test(NULL);
    sl_shm_flush_all(z, &err);
}


static void
test_many_keys(sl_shm_zone_t *z)
{
    char            key[32];
    int             i, bad = 0, n = 100000, forcible;
    const char     *err, *buf;
    size_t          len;
    sl_shm_value_t  v;
    uint32_t        flags;
    int             stale;
    double          r;

    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        if (sl_shm_incr(z, key, strlen(key), i, 0, 1, 0, &r, &forcible, &err) != SL_OK
            || forcible)
        {
            bad++;
        }
    }

    is_int(bad, 0, "%d counters created without eviction", n);
    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "key:%d", i);
        if (sl_shm_get(z, key, strlen(key), 0, &v, &flags, &stale, &err) != SL_OK
            || v.num != i)
        {
            bad++;
        }
    }

    is_int(bad, 0, "all %d read back", n);
    for (i = 0; i < n; i += 2) {
        snprintf(key, sizeof(key), "key:%d", i);
        bad += sl_shm_delete(z, key, strlen(key), &err) != SL_OK;
    }

    is_int(bad, 0, "half deleted");
    is_int(sl_shm_keys(z, 0, &buf, &len, &err), n / 2, "keys lists the other half");
    ok(sl_shm_check_for_test(z) == NULL, "zone consistent");
    sl_shm_flush_all(z, &err);
}


/* Random sets, deletes and incrs with random sizes against a plain array; checks the zone's
 * invariants on the way and that all space returns at the end. */
static void
test_random(sl_shm_zone_t *z)
{
    enum { NKEYS = 300 };
    static char     model[NKEYS][600];
    static int      mlen[NKEYS];
    char            key[16], val[600];
    int             i, k, j, forcible, bad = 0, badcheck = 0;
    unsigned        seed = 12345;
    size_t          free0 = sl_shm_free_space(z);
    const char     *err, *what = NULL;
    sl_shm_value_t  v;
    uint32_t        flags;
    int             stale;

    for (k = 0; k < NKEYS; k++) {
        mlen[k] = -1;
    }

    for (i = 0; i < 50000; i++) {
        k = rand_r(&seed) % NKEYS;
        snprintf(key, sizeof(key), "r%d", k);

        switch (rand_r(&seed) % 4) {
        case 0:
        case 1:
            v.type = SL_SHM_STRING;
            v.len = rand_r(&seed) % sizeof(val);
            for (j = 0; j < (int) v.len; j++) {
                val[j] = (char) rand_r(&seed);
            }

            v.str = val;
            if (sl_shm_set(z, key, strlen(key), &v, 0, 0, &forcible, &err) != SL_OK
                || forcible)
            {
                bad++;
            }

            memcpy(model[k], val, v.len);
            mlen[k] = (int) v.len;
            break;
        case 2:
            sl_shm_delete(z, key, strlen(key), &err);
            mlen[k] = -1;
            break;
        default:
            if (sl_shm_get(z, key, strlen(key), 0, &v, &flags, &stale, &err) == SL_OK) {
                if (mlen[k] < 0 || (int) v.len != mlen[k]
                    || memcmp(v.str, model[k], v.len) != 0)
                {
                    bad++;
                }

            } else if (mlen[k] >= 0) {
                bad++;
            }
        }

        if (i % 997 == 0 && (what = sl_shm_check_for_test(z)) != NULL) {
            badcheck++;
        }
    }

    is_int(bad, 0, "50000 random operations agree with the model");
    ok(badcheck == 0, "invariants held throughout (%s)", what ? what : "ok");
    for (k = 0; k < NKEYS; k++) {
        snprintf(key, sizeof(key), "r%d", k);
        sl_shm_delete(z, key, strlen(key), &err);
    }

    is_int(sl_shm_free_space(z), free0, "deleting everything gives all space back");
}


static void
test_processes(sl_shm_zone_t *z)
{
    enum { CHILDREN = 4, INCRS = 100000 };
    pid_t            pid;
    int              i, j, status, failed = 0, forcible;
    double           r;
    const char      *err;
    sl_shm_value_t   v;
    uint32_t         flags;
    int              stale;

    for (i = 0; i < CHILDREN; i++) {
        pid = fork();
        if (pid == 0) {
            for (j = 0; j < INCRS; j++) {
                if (sl_shm_incr(z, "hits", 4, 1, 0, 1, 0, &r, &forcible, &err) != SL_OK) {
                    _exit(1);
                }
            }

            _exit(0);
        }
    }

    for (i = 0; i < CHILDREN; i++) {
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failed++;
        }
    }

    is_int(failed, 0, "%d children incremented %d times each", CHILDREN, INCRS);
    sl_shm_get(z, "hits", 4, 0, &v, &flags, &stale, &err);
    ok(v.num == CHILDREN * INCRS, "exact total %.0f", v.num);

    /* A child dies holding the lock while only reading: items survive. */
    set_str(z, "keep", "me", 0, NULL);
    pid = fork();
    if (pid == 0) {
        sl_shm_lock_for_test(z, 0);
        _exit(0);
    }

    waitpid(pid, &status, 0);
    is_int(has_str(z, "keep", "me"), 1, "lock of a dead reader recovered, items kept");
    is_int(sl_shm_wipes_for_test(z), 0, "no wipe");
    ok(sl_shm_check_for_test(z) == NULL, "zone consistent");

    /* A child dies in the middle of a change: the zone is wiped and usable. */
    pid = fork();
    if (pid == 0) {
        sl_shm_lock_for_test(z, 1);
        _exit(0);
    }

    waitpid(pid, &status, 0);
    is_int(has_str(z, "keep", "me"), -1, "lock of a dead writer recovered, zone wiped");
    is_int(sl_shm_wipes_for_test(z), 1, "one wipe");
    ok(sl_shm_check_for_test(z) == NULL, "zone consistent after the wipe");
    is_int(set_str(z, "after", "ok", 0, NULL), SL_OK, "set works after recovery");
    is_int(has_str(z, "after", "ok"), 1, "and reads back");

    /* A dead child that had the lock in a loop of incrs, killed at a random point. */
    pid = fork();
    if (pid == 0) {
        for (;;) {
            sl_shm_incr(z, "spin", 4, 1, 0, 1, 0, &r, &forcible, &err);
        }
    }

    usleep(20000);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    is_int(sl_shm_incr(z, "spin", 4, 1, 0, 1, 0, &r, &forcible, &err), SL_OK,
           "incr works after a child was killed mid-loop");
    ok(sl_shm_check_for_test(z) == NULL, "zone consistent");
}


int
main(void)
{
    sl_shm_zone_t  *z, *small, *big;
    const char     *err;

    sl_log_level = SL_LOG_ERROR;        /* the robustness tests warn on purpose */

    test_zones();

    z = sl_shm_zone_create("test", 1 << 20, &err);
    small = sl_shm_zone_create("small", SL_SHM_MIN_SIZE, &err);
    big = sl_shm_zone_create("big", 16 << 20, &err);
    ok(z != NULL && small != NULL && big != NULL, "zones for the tests");

    test_basic(z);
    test_keys_limits(z);
    test_expiry(z);
    test_incr(z);
    test_eviction(small);
    test_many_keys(big);
    test_random(big);
    test_processes(z);

    done_testing();
}
