/* headers.c -- header lists: linear scans, since requests carry a few dozen fields at most. */
#include "headers.h"

#include <string.h>
#include <strings.h>


void
sl_hdrs_init(sl_hdrs_t *h, sl_pool_t *pool, size_t cap)
{
    h->pool = pool;
    h->cap = cap < 8 ? 8 : cap;
    h->n = 0;
    h->items = sl_pool_alloc(pool, h->cap * sizeof(sl_hdr_t));
}


void
sl_hdrs_add(sl_hdrs_t *h, const char *name, size_t nlen, const char *value, size_t vlen)
{
    sl_hdr_t  *items;

    if (h->n == h->cap) {
        items = sl_pool_alloc(h->pool, h->cap * 2 * sizeof(sl_hdr_t));
        memcpy(items, h->items, h->n * sizeof(sl_hdr_t));
        h->items = items;
        h->cap *= 2;
    }

    h->items[h->n].name.data = name;
    h->items[h->n].name.len = nlen;
    h->items[h->n].value.data = value;
    h->items[h->n].value.len = vlen;
    h->n++;
}


int
sl_hdr_is(const sl_str_t *name, const char *lower, size_t len)
{
    return name->len == len && strncasecmp(name->data, lower, len) == 0;
}


void
sl_hdr_set_index(sl_hdr_set_t *set)
{
    sl_hdr_set_entry_t  t;
    size_t              i, j;
    unsigned            b;

    /* insertion sort by bucket: a few dozen entries, once */
    for (i = 1; i < set->n; i++) {
        t = set->e[i];
        for (j = i; j > 0 && (set->e[j - 1].first & 31) > (t.first & 31); j--) {
            set->e[j] = set->e[j - 1];
        }
        set->e[j] = t;
    }

    memset(set->lo, 0, sizeof(set->lo));
    memset(set->hi, 0, sizeof(set->hi));
    for (i = set->n; i > 0; i--) {
        b = set->e[i - 1].first & 31;
        set->lo[b] = (unsigned char) (i - 1);
        if (set->hi[b] == 0) {
            set->hi[b] = (unsigned char) i;
        }
    }
}


size_t
sl_hdrs_remove_set(sl_hdrs_t *h, const sl_hdr_set_t *set)
{
    const sl_hdr_set_entry_t  *e, *end;
    sl_str_t                  *name;
    size_t                     i, removed = 0;
    unsigned char              first;

    for (i = 0; i < h->n; i++) {
        name = &h->items[i].name;
        if (name->len == 0) {
            continue;
        }

        first = (unsigned char) name->data[0] | 0x20;
        end = set->e + set->hi[first & 31];
        for (e = set->e + set->lo[first & 31]; e < end; e++) {
            if (e->first == first && (e->prefix ? e->len <= name->len : e->len == name->len)
                && strncasecmp(name->data, e->s, e->len) == 0)
            {
                name->len = 0;      /* removed (see headers.h) */
                removed++;
                break;
            }
        }
    }

    return removed;
}


void
sl_hdrs_set(sl_hdrs_t *h, const char *name, size_t nlen, const char *value, size_t vlen)
{
    size_t  i;
    int     done = 0;

    for (i = 0; i < h->n; i++) {
        if (h->items[i].name.len != nlen
            || strncasecmp(h->items[i].name.data, name, nlen) != 0)
        {
            continue;
        }

        if (value != NULL && !done) {
            h->items[i].value.data = sl_pool_strndup(h->pool, value, vlen);
            h->items[i].value.len = vlen;
            done = 1;
            continue;
        }

        h->items[i].name.len = 0;
    }

    if (value != NULL && !done) {
        sl_hdrs_add(h, sl_pool_strndup(h->pool, name, nlen), nlen,
                    sl_pool_strndup(h->pool, value, vlen), vlen);
    }
}


const sl_hdr_t *
sl_hdrs_find(const sl_hdrs_t *h, const char *name, size_t nlen)
{
    size_t  i;

    for (i = 0; i < h->n; i++) {
        if (h->items[i].name.len == nlen
            && strncasecmp(h->items[i].name.data, name, nlen) == 0)
        {
            return &h->items[i];
        }
    }

    return NULL;
}
