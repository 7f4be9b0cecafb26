/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The runs over guests the caller names (PreserveGuestsNamed(), RestoreGuestsNamed()): a name or
 * a UUID becomes the "uri\nuuid" keys of the run's only-set. Nothing starts unless every name
 * means a guest the run can act on. manager.c owns the state and the runs. */

#include <errno.h>

#include "manager-private.h"

static bool names_guest(const char *want, const char *name, const char *uuid)
{
        return g_str_equal(want, name) || g_ascii_strcasecmp(want, uuid) == 0;
}

typedef struct Resolve {
        const char *want;
        GHashTable *keys; /* the running guests @want names (NULL: only whether it is known) */
        bool known;       /* @want names a guest libvirt knows, running or not */
} Resolve;

static void resolve_running(const char *uri, bool reachable, const CachedGuest *g, void *userdata)
{
        Resolve *r = userdata;

        if (!names_guest(r->want, g->name, g->uuid))
                return;
        r->known = true;
        if (r->keys && reachable && guest_state_is_active(g->state))
                g_hash_table_add(r->keys, manager_key_of(uri, g->uuid));
}

/* -ENOENT: no guest of that name or UUID; -EINVAL: known, but nothing to act on. *ret_error says
 * which name and why. */
static int resolve(Manager *m, RunKind kind, char *const *names, GHashTable **ret_only, char **ret_error)
{
        g_autoptr(GHashTable) only = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

        if (!names || !*names) {
                *ret_error = g_strdup("No guest named");
                return -EINVAL;
        }
        for (char *const *n = names; *n; n++) {
                Resolve r = {.want = *n, .keys = only};
                guint before = g_hash_table_size(only);

                if (kind == RUN_PRESERVE)
                        guest_cache_foreach(m->cache, resolve_running, &r);
                else {
                        for (guint i = 0; i < m->record->guests->len; i++) {
                                const RecordGuest *rg = m->record->guests->pdata[i];

                                if (!names_guest(*n, rg->name, rg->uuid))
                                        continue;
                                r.known = true;
                                if (manager_restorable(rg))
                                        g_hash_table_add(only, manager_key_of(rg->uri, rg->uuid));
                        }
                        if (!r.known) {
                                Resolve any = {.want = *n, .keys = NULL};

                                guest_cache_foreach(m->cache, resolve_running, &any);
                                r.known = any.known;
                        }
                }
                if (g_hash_table_size(only) > before)
                        continue;
                if (!r.known) {
                        *ret_error = g_strdup_printf("No guest named %s", *n);
                        return -ENOENT;
                }
                *ret_error =
                        g_strdup_printf(kind == RUN_PRESERVE ? "%s is not running"
                                                             : "%s was not stopped by guestkeeper: nothing "
                                                               "to restore",
                                        *n);
                return -EINVAL;
        }
        *ret_only = g_steal_pointer(&only);
        return 0;
}

int manager_run_named(Manager *m, RunKind kind, char *const *names, bool hold, char **ret_error)
{
        g_autoptr(GHashTable) only = NULL;
        int r;

        if (m->state != MANAGER_IDLE && m->state != MANAGER_PRESERVED)
                return -EBUSY;
        r = resolve(m, kind, names, &only, ret_error);
        if (r < 0)
                return r;
        return kind == RUN_PRESERVE ? manager_preserve_guests(m, hold, only)
                                    : manager_restore_guests(m, only);
}
