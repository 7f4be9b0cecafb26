/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The handful of helpers the tree needs. Deliberately not a copy of systemd's macro.h
 * (a copy drifts from its source): only what is used here. */

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <glib.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define USEC_PER_SEC  ((guint64) 1000000ULL)
#define USEC_PER_MSEC ((guint64) 1000ULL)

static inline bool streq_ptr(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

/* Looks up a string in a NULL-padded table indexed by enum value. */
static inline int string_table_lookup(const char *const *table, size_t n, const char *s)
{
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return (int) i;
        return -EINVAL;
}

#define DEFINE_STRING_TABLE(name, type, max)                                                                \
        const char *name##_to_string(type v)                                                                \
        {                                                                                                   \
                if ((int) v < 0 || (size_t) v >= ELEMENTSOF(name##_table))                                  \
                        return NULL;                                                                        \
                return name##_table[v];                                                                     \
        }                                                                                                   \
        type name##_from_string(const char *s)                                                              \
        {                                                                                                   \
                return (type) string_table_lookup(name##_table, (size_t) (max), s);                         \
        }
