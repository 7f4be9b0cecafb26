/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "running-set.h"

#include "log.h"
#include "macro.h"
#include "policy.h"

struct RunningSet {
        Record *rec;
        RecordWriter *writer;
        char *signature; /* of what the entries hold: a write only when it changes */
};

typedef struct Entry {
        char *uri, *uuid, *name, *xml;
        bool persistent;
} Entry;

static void entry_free(gpointer p)
{
        Entry *e = p;

        g_free(e->uri);
        g_free(e->uuid);
        g_free(e->name);
        g_free(e->xml);
        g_free(e);
}

static void add_entry(GHashTable *t, const char *uri, const char *uuid, const char *name, bool persistent,
                      const char *xml)
{
        Entry *e = g_new0(Entry, 1);

        e->uri = g_strdup(uri);
        e->uuid = g_strdup(uuid);
        e->name = g_strdup(name);
        e->persistent = persistent;
        e->xml = persistent ? NULL : g_strdup(xml);
        g_hash_table_replace(t, g_strconcat(uri, "\n", uuid, NULL), e);
}

static gint compare_strings(gconstpointer a, gconstpointer b)
{
        return g_strcmp0(*(char *const *) a, *(char *const *) b);
}

static char *signature_of(GHashTable *t, GPtrArray **ret_sorted)
{
        g_autoptr(GPtrArray) keys = g_ptr_array_sized_new(g_hash_table_size(t));
        GString *sig = g_string_new(NULL);
        GHashTableIter it;
        gpointer k;

        g_hash_table_iter_init(&it, t);
        while (g_hash_table_iter_next(&it, &k, NULL))
                g_ptr_array_add(keys, k);

        g_ptr_array_sort(keys, compare_strings);
        for (guint i = 0; i < keys->len; i++) {
                Entry *e = g_hash_table_lookup(t, keys->pdata[i]);

                g_string_append_printf(sig, "%s\n%s\n%d\n%s\n", (char *) keys->pdata[i], e->name,
                                       e->persistent, e->xml ?: "");
        }
        *ret_sorted = g_steal_pointer(&keys);
        return g_string_free(sig, FALSE);
}

static void record_written(RecordWriter *w, int r, bool more, void *userdata)
{
        RunningSet *s = userdata;

        /* The daemon runs on; the next change tries again. A power cut now loses what changed. */
        if (r < 0)
                log_error_errno(r, "Failed to write the running set %s: %m", s->rec->path);
}

RunningSet *running_set_new(const char *path, char **ret_problem)
{
        RunningSet *s = g_new0(RunningSet, 1);
        g_autoptr(GHashTable) t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
        g_autoptr(GPtrArray) sorted = NULL;

        (void) record_load_or_set_aside(path, &s->rec, ret_problem);
        for (guint i = 0; i < s->rec->guests->len; i++) {
                RecordGuest *g = s->rec->guests->pdata[i];

                add_entry(t, g->uri, g->uuid, g->name, g->persistent, g->xml);
        }
        s->signature = signature_of(t, &sorted);
        s->writer = record_writer_new(s->rec, record_written, s);
        return s;
}

RunningSet *running_set_free(RunningSet *s)
{
        if (!s)
                return NULL;
        record_writer_free(s->writer);
        record_free(s->rec);
        g_free(s->signature);
        g_free(s);
        return NULL;
}

Record *running_set_record(RunningSet *s)
{
        return s->rec;
}

unsigned running_set_writes(RunningSet *s)
{
        return record_writer_writes(s->writer);
}

typedef struct Collect {
        GHashTable *entries;
        GHashTable *vouched;
        const Config *config;
        bool going_down;
} Collect;

static void collect_guest(const char *uri, bool reachable, const CachedGuest *g, void *userdata)
{
        Collect *c = userdata;
        GuestPolicy policy;

        if (!g_hash_table_contains(c->vouched, uri) || !guest_state_is_active(g->state))
                return;
        /* Action=skip: never started by guestkeeper, so not its to bring back either. A guest
         * left to libvirt's auto-shutdown is kept (libvirt does nothing after a power cut) until
         * the host goes down: then it is libvirt's to stop and to bring back. */
        policy_for_guest(c->config, uri, g->name, g->persistent, g->metadata, &policy);
        if (!policy.skip || (policy.libvirt && !c->going_down))
                add_entry(c->entries, uri, g->uuid, g->name, g->persistent, g->xml);
        guest_policy_clear(&policy);
}

static bool uri_watched(char **uris, const char *uri)
{
        return uris && g_strv_contains((const char *const *) uris, uri);
}

void running_set_update(RunningSet *s, GuestCache *cache, const Config *config, GHashTable *vouched,
                        Record *pending, bool all_resolved, bool going_down)
{
        g_autoptr(GHashTable) t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
        g_autoptr(GPtrArray) sorted = NULL;
        g_auto(GStrv) uris = guest_cache_uris(cache);
        g_autofree char *sig = NULL;

        for (guint i = 0; i < s->rec->guests->len; i++) {
                RecordGuest *g = s->rec->guests->pdata[i];

                if (g_hash_table_contains(vouched, g->uri))
                        continue;
                if (all_resolved && !uri_watched(uris, g->uri))
                        continue; /* the URI is no longer configured: its guests are not ours */
                add_entry(t, g->uri, g->uuid, g->name, g->persistent, g->xml);
        }
        guest_cache_foreach(cache, collect_guest, &(Collect){t, vouched, config, going_down});
        for (guint i = 0; pending && i < pending->guests->len; i++) {
                RecordGuest *g = pending->guests->pdata[i];

                if (g->outcome == OUTCOME_LOST && g_hash_table_contains(vouched, g->uri))
                        add_entry(t, g->uri, g->uuid, g->name, g->persistent, g->xml);
        }

        sig = signature_of(t, &sorted);
        if (streq_ptr(sig, s->signature))
                return;
        g_free(s->signature);
        s->signature = g_steal_pointer(&sig);
        record_clear(s->rec);
        for (guint i = 0; i < sorted->len; i++) {
                Entry *e = g_hash_table_lookup(t, sorted->pdata[i]);
                RecordGuest *g = record_put(s->rec, e->uri, e->uuid, e->name, e->persistent);

                g->xml = g_strdup(e->xml);
        }
        record_writer_touch(s->writer);
}

GPtrArray *running_set_lost(RunningSet *s, GuestCache *cache, const char *uri, Record *record)
{
        GPtrArray *lost = g_ptr_array_new();

        for (guint i = 0; i < s->rec->guests->len; i++) {
                RecordGuest *g = s->rec->guests->pdata[i];
                const GuestInfo *now;

                if (!streq_ptr(g->uri, uri) || record_find(record, g->uri, g->uuid))
                        continue;
                now = guest_cache_lookup(cache, uri, g->uuid);
                if (now && guest_state_is_active(now->state))
                        continue;
                g_ptr_array_add(lost, g);
        }
        return lost;
}
