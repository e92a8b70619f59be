/* lua_shm.c -- shared dictionaries for Lua: the sl_ffi_shm_* functions that
 * lua/sluice/shared.lua declares with ffi.cdef and calls through ffi.C (the binary links with
 * -rdynamic, so they must stay non-static and be linked as objects, not from an archive).
 *
 * They are thin: arguments arrive as plain C values (a Lua string passed to a const char *
 * is only borrowed for the call), results leave through one sl_ffi_shm_out_t the Lua side
 * allocates once and reuses, and strings point into the zone's process-local scratch buffer,
 * which Lua copies with ffi.string before its next call. Nothing here calls into Lua,
 * yields or allocates, so a JIT-compiled get, set or incr is a direct C call.
 *
 * Returns: 0 for success, a negative number for failure with out->err set (a static string
 * such as "not found", "exists", "no memory", "not a number"). Keep sl_ffi_shm_out_t and the
 * signatures in step with the cdef in lua/sluice/shared.lua. */
#include "sluice.h"

#include "shm.h"


typedef struct {
    double       num;       /* number and boolean values, incr result, ttl */
    const char  *str;       /* string value or packed keys, in the zone's scratch buffer */
    uint32_t     len;       /* uint32_t, not size_t: LuaJIT reads it as a plain number */
    uint32_t     flags;
    int          stale;
    int          forcible;
    const char  *err;
} sl_ffi_shm_out_t;


SL_FFI void *
sl_ffi_shm_zone(const char *name, size_t len)
{
    return sl_shm_zone_find(name, len);
}


/* Returns the value's type (SL_SHM_NIL when missing) or -1. */
SL_FFI int
sl_ffi_shm_get(void *zone, const char *key, size_t klen, int stale_ok, sl_ffi_shm_out_t *out)
{
    sl_shm_value_t  v;
    int             rc;

    rc = sl_shm_get(zone, key, klen, stale_ok, &v, &out->flags, &out->stale, &out->err);
    if (rc == SL_ERROR) {
        return -1;
    }

    out->num = v.num;
    out->str = v.str;
    out->len = (uint32_t) v.len;
    return v.type;
}


static int
store(int (*op)(sl_shm_zone_t *, const char *, size_t, const sl_shm_value_t *, double,
    uint32_t, int *, const char **), void *zone, const char *key, size_t klen, int type,
    double num, const char *str, size_t len, double exptime, uint32_t flags,
    sl_ffi_shm_out_t *out)
{
    sl_shm_value_t  v;

    v.type = type;
    v.num = num;
    v.str = str;
    v.len = len;
    return op(zone, key, klen, &v, exptime, flags, &out->forcible, &out->err) == SL_OK ? 0 : -1;
}


SL_FFI int
sl_ffi_shm_set(void *zone, const char *key, size_t klen, int type, double num, const char *str,
    size_t len, double exptime, uint32_t flags, sl_ffi_shm_out_t *out)
{
    return store(sl_shm_set, zone, key, klen, type, num, str, len, exptime, flags, out);
}


SL_FFI int
sl_ffi_shm_safe_set(void *zone, const char *key, size_t klen, int type, double num,
    const char *str, size_t len, double exptime, uint32_t flags, sl_ffi_shm_out_t *out)
{
    return store(sl_shm_safe_set, zone, key, klen, type, num, str, len, exptime, flags, out);
}


SL_FFI int
sl_ffi_shm_add(void *zone, const char *key, size_t klen, int type, double num, const char *str,
    size_t len, double exptime, uint32_t flags, sl_ffi_shm_out_t *out)
{
    return store(sl_shm_add, zone, key, klen, type, num, str, len, exptime, flags, out);
}


SL_FFI int
sl_ffi_shm_replace(void *zone, const char *key, size_t klen, int type, double num,
    const char *str, size_t len, double exptime, uint32_t flags, sl_ffi_shm_out_t *out)
{
    return store(sl_shm_replace, zone, key, klen, type, num, str, len, exptime, flags, out);
}


/* out->num = the new value. */
SL_FFI int
sl_ffi_shm_incr(void *zone, const char *key, size_t klen, double n, double init, int has_init,
    double init_ttl, sl_ffi_shm_out_t *out)
{
    return sl_shm_incr(zone, key, klen, n, init, has_init, init_ttl, &out->num, &out->forcible,
                       &out->err) == SL_OK ? 0 : -1;
}


/* Deleting a missing key is not a failure (ngx.shared's delete returns true either way). */
SL_FFI int
sl_ffi_shm_delete(void *zone, const char *key, size_t klen, sl_ffi_shm_out_t *out)
{
    return sl_shm_delete(zone, key, klen, &out->err) == SL_ERROR ? -1 : 0;
}


SL_FFI int
sl_ffi_shm_expire(void *zone, const char *key, size_t klen, double ttl, sl_ffi_shm_out_t *out)
{
    return sl_shm_expire(zone, key, klen, ttl, &out->err) == SL_OK ? 0 : -1;
}


/* out->num = seconds left, 0 for no expiry. */
SL_FFI int
sl_ffi_shm_ttl(void *zone, const char *key, size_t klen, sl_ffi_shm_out_t *out)
{
    return sl_shm_ttl(zone, key, klen, &out->num, &out->err) == SL_OK ? 0 : -1;
}


/* Returns the number of keys, packed in out->str / out->len as sl_shm_keys describes. */
SL_FFI int
sl_ffi_shm_keys(void *zone, int max, sl_ffi_shm_out_t *out)
{
    const char  *buf;
    size_t       len;
    long         n;

    n = sl_shm_keys(zone, max > 0 ? (size_t) max : 0, &buf, &len, &out->err);
    if (n < 0) {
        return -1;
    }

    out->str = buf;
    out->len = (uint32_t) len;
    return (int) n;
}


SL_FFI int
sl_ffi_shm_flush_all(void *zone, sl_ffi_shm_out_t *out)
{
    return sl_shm_flush_all(zone, &out->err) == SL_OK ? 0 : -1;
}


/* Returns how many expired items were freed, or -1. */
SL_FFI int
sl_ffi_shm_flush_expired(void *zone, int max, sl_ffi_shm_out_t *out)
{
    return (int) sl_shm_flush_expired(zone, max > 0 ? (size_t) max : 0, &out->err);
}


/* double, not size_t: a 64-bit integer would reach Lua as a boxed cdata. */
SL_FFI double
sl_ffi_shm_free_space(void *zone)
{
    return (double) sl_shm_free_space(zone);
}


SL_FFI double
sl_ffi_shm_capacity(void *zone)
{
    return (double) sl_shm_capacity(zone);
}
