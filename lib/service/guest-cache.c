/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "guest-cache.h"

#include "gk-build-config.h"
#include "hypervisor-faults.h"
#include "job.h"
#include "log.h"
#include "macro.h"
#include "policy.h"

#define RECONNECT_MAX_MSEC 30000

struct GuestCache {
        Workers *workers;
        GuestCacheCallbacks cb;
        void *userdata;
        GPtrArray *watched; /* Watched*, one per URI */
};

/* One watched URI. Refcounted: a list job in flight holds a reference, so a
 * guest_cache_set_uris() that replaces the watches while a list runs leaves the job
 * something valid to return to; a dropped Watched (@cache NULL) ignores the result and
 * starts nothing. */
typedef struct Watched {
        gint ref;
        GuestCache *cache;
        Hypervisor *hv;
        guint listener;
        GHashTable *guests; /* uuid → CachedGuest* */
        bool reachable;
        bool refreshing;
        bool refresh_again;
        bool tried;          /* a list came back, or failed, at least once */
        bool unknown;        /* an event named a guest the cache does not know: a list must tell */
        guint64 epoch;       /* bumps at every event: a list taken before the last event is stale */
        GHashTable *removed; /* uuids events removed since the last refresh started */
        guint reconnect_source;
        unsigned attempts; /* failed lists in a row: the reconnect backoff */
        char *error;
} Watched;

static void refresh(Watched *w);

static GuestInfo *cached_guest_new(const char *uuid, const char *name, bool persistent, GuestState state)
{
        GuestInfo *g = g_new0(GuestInfo, 1);

        g->uuid = g_strdup(uuid);
        g->name = g_strdup(name);
        g->persistent = persistent;
        g->state = state;
        return g;
}

static void changed(Watched *w)
{
        if (w->cache->cb.changed)
                w->cache->cb.changed(w->cache, w->cache->userdata);
}

/* Atomic: after workers_abandon() at exit, a late job drops its reference on its worker. */
static Watched *watched_ref(Watched *w)
{
        g_atomic_int_inc(&w->ref);
        return w;
}

static void watched_unref(Watched *w)
{
        if (!g_atomic_int_dec_and_test(&w->ref))
                return;
        hypervisor_unref(w->hv);
        g_hash_table_unref(w->guests);
        g_hash_table_unref(w->removed);
        g_free(w->error);
        g_free(w);
}

/* ---- lists ---- */

/* A JOB_LIST (every guest, inactive ones too) with the watch it answers. */
typedef struct RefreshJob {
        Job job; /* first */
        Watched *w;
        guint64 epoch;
} RefreshJob;

static gboolean reconnect_cb(gpointer p)
{
        Watched *w = p;

        w->reconnect_source = 0;
        refresh(w);
        return G_SOURCE_REMOVE;
}

/* Said once per new or changed value, not at every list: a guest's metadata is written by
 * whoever may edit the guest, and a typo must not wait for a host shutdown to be seen. */
static void check_metadata(const char *uri, const GuestInfo *info)
{
        g_autofree char *why = NULL;
        GuestSettings s;

        if (info->metadata && policy_parse_metadata(info->metadata, &s, &why) < 0)
                log_full(LOG_WARNING, 0, &(LogGuest){info->name, info->uuid, uri}, NULL,
                         "%s: malformed guestkeeper metadata, ignored: %s", info->name, why);
}

static void refresh_done(gpointer p)
{
        RefreshJob *j = p;
        Watched *w = j->w;
        g_autoptr(GHashTable) old = NULL;
        g_autofree char *uri = NULL;

        w->refreshing = false;
        if (!w->cache)
                return; /* dropped while listing */
        w->tried = true;
        uri = hypervisor_get_uri(w->hv);
        if (j->job.r < 0) {
                if (w->reachable || !w->error)
                        log_full(LOG_ERR, 0, &(LogGuest){.uri = uri}, NULL, "Cannot reach %s: %s", uri,
                                 j->job.error);
                w->reachable = false;
                g_free(w->error);
                w->error = g_strdup(j->job.error);
                /* Reconnect with backoff: libvirtd may start after us or restart. */
                if (!w->reconnect_source)
                        w->reconnect_source = g_timeout_add(
                                backoff_ms(w->attempts++, 1000, RECONNECT_MAX_MSEC), reconnect_cb, w);
        } else {
                if (!w->reachable)
                        log_info("Connected to %s", uri);
                w->reachable = true;
                bool stale = j->epoch != w->epoch;

                w->attempts = 0;
                g_clear_pointer(&w->error, g_free);
                /* Events came while listing: the list may predate them. Only learn new
                 * guests from it, and list again. */
                if (stale)
                        w->refresh_again = true;
                else {
                        w->unknown = false;
                        old = g_steal_pointer(&w->guests);
                        w->guests = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, guest_info_destroy);
                }
                for (guint i = 0; i < j->job.list->len; i++) {
                        GuestInfo *info = j->job.list->pdata[i];
                        GuestInfo *g, *before = old ? g_hash_table_lookup(old, info->uuid) : NULL;

                        if (stale && (g_hash_table_contains(w->guests, info->uuid) ||
                                      g_hash_table_contains(w->removed, info->uuid)))
                                continue; /* known, or gone since the list was taken */
                        if (!before || !streq_ptr(before->metadata, info->metadata))
                                check_metadata(uri, info);
                        g = guest_info_copy(info);
                        g_hash_table_replace(w->guests, g->uuid, g);
                }
        }
        changed(w);
        if (w->cache && w->cache->cb.listed)
                w->cache->cb.listed(w->cache, uri, j->job.r >= 0, w->cache->userdata);
        if (w->cache && w->refresh_again) {
                w->refresh_again = false;
                refresh(w);
        }
}

static void refresh_free(gpointer p)
{
        RefreshJob *j = p;

        watched_unref(j->w);
        job_clear(&j->job);
        g_free(j);
}

static void refresh(Watched *w)
{
        RefreshJob *j;

        if (!w->cache)
                return; /* dropped (by a callback of the list that just came back) */
        if (w->refreshing) {
                w->refresh_again = true;
                return;
        }
        w->refreshing = true;
        g_hash_table_remove_all(w->removed);
        j = g_new0(RefreshJob, 1);
        j->w = watched_ref(w);
        j->epoch = w->epoch;
        job_init(&j->job, JOB_LIST, w->hv, NULL);
        j->job.flag = true; /* inactive guests too */
        workers_submit(w->cache->workers, j, job_run, refresh_done, refresh_free);
}

/* ---- events ---- */

static void on_hypervisor_event(Hypervisor *h, const char *uuid, GuestEvent event, int detail,
                                void *userdata)
{
        Watched *w = userdata;
        GuestInfo *g;

        /* The first list, under way, runs on this connection or a later one: it misses no
         * event, and a second list of every guest would only delay a run's start. */
        if (event == GUEST_EVENT_CONNECTED && w->refreshing && !w->tried)
                return;
        w->epoch++;
        if (event == GUEST_EVENT_DISCONNECTED) {
                g_autofree char *uri = hypervisor_get_uri(h);
                log_full(LOG_WARNING, 0, &(LogGuest){.uri = uri}, NULL,
                         "Lost the connection to %s; reconnecting", uri);
                w->reachable = false;
                refresh(w);
                return;
        }
        if (event == GUEST_EVENT_CONNECTED) {
                w->unknown = true;
                refresh(w);
                return;
        }
        g = g_hash_table_lookup(w->guests, uuid);
        if (!g) {
                w->unknown = true;
                refresh(w); /* a guest we did not know: learn its name */
                return;
        }
        switch (event) {
        case GUEST_EVENT_STARTED:
        case GUEST_EVENT_RESUMED:
                g->state = GUEST_STATE_RUNNING;
                break;
        case GUEST_EVENT_PAUSED:
                g->state = GUEST_STATE_PAUSED;
                break;
        case GUEST_EVENT_STOPPED:
                if (!g->persistent) {
                        g_hash_table_add(w->removed, g_strdup(uuid));
                        g_hash_table_remove(w->guests, uuid);
                } else
                        g->state = detail == STOP_REASON_SAVED ? GUEST_STATE_SAVED : GUEST_STATE_SHUTOFF;
                break;
        case GUEST_EVENT_UNDEFINED:
                if (!guest_state_is_active(g->state)) {
                        g_hash_table_add(w->removed, g_strdup(uuid));
                        g_hash_table_remove(w->guests, uuid);
                } else
                        g->persistent = false;
                break;
        case GUEST_EVENT_DEFINED:
                g->persistent = true;
                break;
        case GUEST_EVENT_METADATA:
                refresh(w); /* the event does not carry the new value */
                return;
        default:
                break;
        }
        changed(w);
}

/* ---- watches ---- */

static Watched *watched_new(GuestCache *c, const char *uri, const char *faults)
{
        Watched *w = g_new0(Watched, 1);

        w->ref = 1;
        w->cache = c;
        w->hv = hypervisor_libvirt_new(uri, NULL);
        if (faults && *faults) {
                g_autofree char *why = NULL;
                Hypervisor *f = hypervisor_faults_new(w->hv);

                if (faults_parse(f, faults, &why) < 0)
                        log_error("GUESTKEEPER_FAULTS: %s; ignored", why);
                else
                        log_warning("GUESTKEEPER_FAULTS=%s: injecting faults (testing only)", faults);
                hypervisor_unref(w->hv);
                w->hv = f;
        }
        w->guests = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, guest_info_destroy);
        w->removed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        w->listener = hypervisor_add_listener(w->hv, on_hypervisor_event, w);
        w->unknown = true; /* until the first list */
        return w;
}

/* The cache lets go of a URI (a new set of URIs, the end): no more events, reconnects,
 * results or callbacks. A list in flight keeps it alive until it comes back. */
static void watched_drop(gpointer p)
{
        Watched *w = p;

        w->cache = NULL;
        if (w->reconnect_source)
                g_source_remove(w->reconnect_source);
        w->reconnect_source = 0;
        hypervisor_remove_listener(w->hv, w->listener);
        watched_unref(w);
}

static Watched *watched_for_uri(GuestCache *c, const char *uri)
{
        for (guint i = 0; i < c->watched->len; i++) {
                Watched *w = c->watched->pdata[i];
                g_autofree char *u = hypervisor_get_uri(w->hv);

                if (streq_ptr(u, uri))
                        return w;
        }
        return NULL;
}

GuestCache *guest_cache_new(Workers *workers, const GuestCacheCallbacks *cb, void *userdata)
{
        GuestCache *c = g_new0(GuestCache, 1);

        c->workers = workers;
        if (cb)
                c->cb = *cb;
        c->userdata = userdata;
        c->watched = g_ptr_array_new_with_free_func(watched_drop);
        return c;
}

GuestCache *guest_cache_free(GuestCache *c)
{
        if (!c)
                return NULL;
        g_ptr_array_unref(c->watched);
        g_free(c);
        return NULL;
}

void guest_cache_set_uris(GuestCache *c, char *const *uris)
{
        /* Testing aid (guestkeeperd(8), ENVIRONMENT): inject faults into the real backend. */
        const char *faults = g_getenv("GUESTKEEPER_FAULTS");

#if !GK_FAULT_INJECTION
        /* A release build: a leftover variable must not change what the daemon does. */
        if (faults && *faults)
                log_warning("GUESTKEEPER_FAULTS is set but this build has no fault injection "
                            "(-Dfault-injection=false); ignored");
        faults = NULL;
#endif

        g_ptr_array_set_size(c->watched, 0);
        for (char *const *u = uris; u && *u; u++) {
                Watched *w = watched_new(c, *u, faults);

                g_ptr_array_add(c->watched, w);
                refresh(w);
        }
}

void guest_cache_refresh_all(GuestCache *c)
{
        for (guint i = 0; i < c->watched->len; i++)
                refresh(c->watched->pdata[i]);
}

void guest_cache_note_running(GuestCache *c, const char *uri, const char *uuid, const char *name,
                              bool persistent)
{
        Watched *w = watched_for_uri(c, uri);
        GuestInfo *g;

        if (!w)
                return;
        w->epoch++; /* newer than a list in flight */
        g = g_hash_table_lookup(w->guests, uuid);
        if (g) {
                g->state = GUEST_STATE_RUNNING;
                return;
        }
        g = cached_guest_new(uuid, name, persistent, GUEST_STATE_RUNNING);
        g_hash_table_replace(w->guests, g->uuid, g);
}

void guest_cache_foreach(GuestCache *c, GuestCacheFunc fn, void *userdata)
{
        for (guint i = 0; i < c->watched->len; i++) {
                Watched *w = c->watched->pdata[i];
                g_autofree char *uri = hypervisor_get_uri(w->hv);
                GHashTableIter it;
                gpointer v;

                g_hash_table_iter_init(&it, w->guests);
                while (g_hash_table_iter_next(&it, NULL, &v))
                        fn(uri, w->reachable, v, userdata);
        }
}

static void count_one(const char *uri, bool reachable, const GuestInfo *g, void *userdata)
{
        unsigned *n = userdata;

        n[0]++;
        n[1] += guest_state_is_active(g->state);
}

void guest_cache_count(GuestCache *c, unsigned *ret_guests, unsigned *ret_running)
{
        unsigned n[2] = {};

        guest_cache_foreach(c, count_one, n);
        *ret_guests = n[0];
        *ret_running = n[1];
}

guint guest_cache_n_uris(GuestCache *c)
{
        return c->watched->len;
}

char **guest_cache_uris(GuestCache *c)
{
        GPtrArray *a = g_ptr_array_new();

        for (guint i = 0; i < c->watched->len; i++)
                g_ptr_array_add(a, hypervisor_get_uri(((Watched *) c->watched->pdata[i])->hv));
        g_ptr_array_add(a, NULL);
        return (char **) g_ptr_array_free(a, FALSE);
}

GPtrArray *guest_cache_snapshot(GuestCache *c, guint index)
{
        Watched *w;
        GPtrArray *a;
        GHashTableIter it;
        gpointer v;

        g_return_val_if_fail(index < c->watched->len, NULL);
        w = c->watched->pdata[index];
        /* Complete unless an event named a guest the cache does not know yet (its list is in
         * flight). A list after a run or a metadata change only refreshes what events keep
         * current anyway: a shutdown right after a restore need not wait for it. */
        if (!w->tried || !w->reachable || w->unknown || w->reconnect_source)
                return NULL;
        a = g_ptr_array_new_full(g_hash_table_size(w->guests), guest_info_destroy);
        g_hash_table_iter_init(&it, w->guests);
        while (g_hash_table_iter_next(&it, NULL, &v))
                g_ptr_array_add(a, guest_info_copy(v));
        return a;
}

bool guest_cache_all_tried(GuestCache *c)
{
        for (guint i = 0; i < c->watched->len; i++)
                if (!((Watched *) c->watched->pdata[i])->tried)
                        return false;
        return true;
}

const GuestInfo *guest_cache_lookup(GuestCache *c, const char *uri, const char *uuid)
{
        Watched *w = watched_for_uri(c, uri);

        return w ? g_hash_table_lookup(w->guests, uuid) : NULL;
}

bool guest_cache_reachable(GuestCache *c, const char *uri)
{
        Watched *w = watched_for_uri(c, uri);

        return w && w->reachable;
}

GPtrArray *guest_cache_hypervisors(GuestCache *c)
{
        GPtrArray *a = g_ptr_array_new_with_free_func(hypervisor_destroy);

        for (guint i = 0; i < c->watched->len; i++)
                g_ptr_array_add(a, hypervisor_ref(((Watched *) c->watched->pdata[i])->hv));
        return a;
}
