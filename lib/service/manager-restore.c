/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The restores the manager starts by itself: at start-up once each URI's first list is back,
 * for guests lost while nobody watched (the running set, reconciled with libvirt), for a URI that
 * answers late, and the retries of failed starts within RestoreRetrySec. manager.c owns the
 * state and the runs. */

#include "job.h"
#include "log.h"
#include "macro.h"
#include "manager-private.h"
#include "policy.h"
#include "util.h"

/* A burst of lifecycle events is one running-set write. */
#define RUNNING_SET_MSEC 100
/* Failed starts are retried after 2 s, 4 s, … up to every 30 s, within RestoreRetrySec. */
#define RETRY_FIRST_MSEC 2000
#define RETRY_MAX_MSEC   30000

/* Whether the record's entry is one a restore starts. */
bool manager_restorable(const RecordGuest *rg)
{
        return outcome_is_stopped(rg->outcome) || outcome_is_in_flight(rg->outcome) ||
               rg->outcome == OUTCOME_NONE || rg->outcome == OUTCOME_LOST;
}

static gboolean retry_cb(gpointer p)
{
        Manager *m = p;

        m->retry_source = 0;
        (void) manager_maybe_restore(m);
        return G_SOURCE_REMOVE;
}

/* One timer, at the earliest retry due: nothing wakes up while nothing waits. */
static void schedule_retry(Manager *m)
{
        guint64 next = G_MAXUINT64, now = now_usec();
        GHashTableIter it;
        gpointer v;

        if (m->retry_source) {
                g_source_remove(m->retry_source);
                m->retry_source = 0;
        }
        g_hash_table_iter_init(&it, m->waiting);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Waiting *w = v;

                if (!w->given_up)
                        next = MIN(next, w->next_at);
        }
        if (next != G_MAXUINT64)
                m->retry_source = g_timeout_add(
                        (guint) MAX(1, next > now ? (next - now + 999) / USEC_PER_MSEC : 1), retry_cb, m);
}

/* After a restore: what is still in the record waits, with backoff, for RestoreRetrySec. Returns
 * how many guests wait for a retry. */
unsigned manager_note_restore_results(Manager *m, Engine *e)
{
        unsigned n = 0;
        g_autoptr(GPtrArray) gs = engine_guests(e);
        guint64 now = now_usec();
        bool window_spent = now >= m->restore_since + m->config->restore_retry_usec;

        for (guint i = 0; i < gs->len; i++) {
                const EngineGuest *g = gs->pdata[i];
                g_autofree char *k = manager_key_of(g->uri, g->uuid);
                Waiting *w;

                if (outcome_is_restored(g->outcome) || !record_find(m->record, g->uri, g->uuid)) {
                        g_hash_table_remove(m->waiting, k);
                        continue;
                }
                if (!m->restore_pending)
                        continue;
                w = g_hash_table_lookup(m->waiting, k);
                if (!w) {
                        w = g_new0(Waiting, 1);
                        g_hash_table_insert(m->waiting, g_steal_pointer(&k), w);
                }
                g_free(w->why);
                w->why = g_strdup(g->error ?: "not started");
                w->next_at = now + (guint64) backoff_ms(w->attempts++, RETRY_FIRST_MSEC, RETRY_MAX_MSEC) *
                                           USEC_PER_MSEC;
                if (window_spent && !w->given_up) {
                        w->given_up = true;
                        log_full(LOG_ERR, 0, &(LogGuest){g->name, g->uuid, g->uri}, NULL,
                                 "%s: giving up after RestoreRetrySec (%s); it stays in the record for the "
                                 "next start-up",
                                 g->name, w->why);
                } else if (!w->given_up) {
                        log_full(LOG_NOTICE, 0, &(LogGuest){g->name, g->uuid, g->uri}, NULL,
                                 "%s: start retried in %.0f s (%s)", g->name,
                                 (double) (w->next_at - now) / (double) USEC_PER_SEC, w->why);
                        n++;
                }
        }
        schedule_retry(m);
        bus_manager_emit(m, (const char *const[]){"RestoreWaiting", NULL});
        manager_schedule_flush(m); /* the metrics */
        return n;
}

/* ---- restores at start-up, after an unclean stop, and deferred ---- */

static gboolean running_update_cb(gpointer p)
{
        Manager *m = p;
        g_autoptr(GHashTable) vouched = g_hash_table_new(g_str_hash, g_str_equal);
        g_auto(GStrv) uris = guest_cache_uris(m->cache);
        bool all_resolved = true;
        GHashTableIter it;
        gpointer k;

        m->running_source = 0;
        for (char **u = uris; *u; u++)
                all_resolved = all_resolved && g_hash_table_contains(m->reconciled, *u);
        g_hash_table_iter_init(&it, m->reconciled);
        while (g_hash_table_iter_next(&it, &k, NULL))
                if (guest_cache_reachable(m->cache, k))
                        g_hash_table_add(vouched, k);
        running_set_update(m->running, m->cache, m->config, vouched, m->record, all_resolved,
                           m->state == MANAGER_PRESERVED && m->run_is_shutdown);
        return G_SOURCE_REMOVE;
}

/* During a run the guests it acts on are in the record; the set follows once it is over. */
void manager_schedule_running_update(Manager *m)
{
        if (!m->running_source && !m->run)
                m->running_source = g_timeout_add(RUNNING_SET_MSEC, running_update_cb, m);
}

/* The first list of @uri since the start: the guests the running set says were running and that
 * are off now, with no record of ours saying why, stopped while nobody watched. */
void manager_reconcile(Manager *m, const char *uri)
{
        g_autoptr(GPtrArray) lost = NULL;

        g_hash_table_add(m->reconciled, g_strdup(uri));
        lost = running_set_lost(m->running, m->cache, uri, m->record);
        for (guint i = 0; i < lost->len; i++) {
                const RecordGuest *rg = lost->pdata[i];
                const GuestInfo *now = guest_cache_lookup(m->cache, uri, rg->uuid);
                LogGuest lg = {rg->name, rg->uuid, rg->uri};
                GuestPolicy policy;
                RecordGuest *r;
                bool skip;

                if (!now && (rg->persistent || !rg->xml)) {
                        log_full(LOG_NOTICE, 0, &lg, NULL,
                                 "%s was running before an unclean stop, but libvirt no longer knows it",
                                 rg->name);
                        continue;
                }
                policy_for_guest(m->config, rg->uri, rg->name, rg->persistent, now ? now->metadata : NULL,
                                 &policy);
                skip = policy.skip && !policy.libvirt; /* libvirt does nothing after a power cut */
                guest_policy_clear(&policy);
                if (skip)
                        continue;
                if (!m->config->restore || !m->config->restore_after_crash) {
                        log_full(
                                LOG_NOTICE, 0, &lg, NULL,
                                "%s was running before an unclean stop (power cut, crash); not started (%s)",
                                rg->name, m->config->restore ? "RestoreAfterCrash=no" : "Restore=no");
                        continue;
                }
                log_full(LOG_WARNING, 0, &lg, MESSAGE_ID_LOST,
                         "%s was running and stopped while guestkeeper was not watching (power cut, crash, "
                         "daemon not running): it is started again",
                         rg->name);
                r = record_put(m->record, rg->uri, rg->uuid, rg->name, rg->persistent);
                r->outcome = OUTCOME_LOST;
                r->xml = g_strdup(rg->xml);
                g_hash_table_replace(m->outcomes, manager_key_of(rg->uri, rg->uuid),
                                     GINT_TO_POINTER(OUTCOME_LOST));
        }
}

/* The record's guests a restore may start now: on a URI that answers, and not waiting for a
 * retry. NULL when there is none. */
static GHashTable *restorable_now(Manager *m)
{
        g_autoptr(GHashTable) only = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        guint64 now = now_usec();

        for (guint i = 0; i < m->record->guests->len; i++) {
                RecordGuest *rg = m->record->guests->pdata[i];
                g_autofree char *k = manager_key_of(rg->uri, rg->uuid);
                Waiting *w = g_hash_table_lookup(m->waiting, k);

                if (!manager_restorable(rg) || !guest_cache_reachable(m->cache, rg->uri) ||
                    (w && (w->given_up || now < w->next_at)))
                        continue;
                g_hash_table_add(only, g_steal_pointer(&k));
        }
        return g_hash_table_size(only) > 0 ? g_steal_pointer(&only) : NULL;
}

bool manager_maybe_restore(Manager *m)
{
        g_autoptr(GHashTable) only = NULL;

        if (m->run || !m->restore_pending || manager_held(m) ||
            (m->state != MANAGER_IDLE && m->state != MANAGER_STARTING))
                return false;
        only = restorable_now(m);
        if (!only)
                return false;
        manager_start_run(m, RUN_RESTORE, false, only);
        return true;
}

/* Once READY and every URI's first list is back (or ConnectTimeoutSec passed): restore. */
void manager_maybe_start_up(Manager *m)
{
        if (!m->ready || m->state != MANAGER_STARTING ||
            (!guest_cache_all_tried(m->cache) && !m->settle_expired))
                return;
        if (m->settle_source) {
                g_source_remove(m->settle_source);
                m->settle_source = 0;
        }
        if (manager_held(m)) {
                log_notice("Maintenance hold: %u preserved guests stay down until 'guestkeeperctl restore'",
                           m->record->guests->len);
                manager_set_state(m, MANAGER_IDLE);
                return;
        }
        m->restore_pending = m->config->restore;
        m->restore_since = now_usec();
        if (!manager_maybe_restore(m))
                manager_set_state(m, MANAGER_IDLE);
}

gboolean manager_settle_cb(gpointer p)
{
        Manager *m = p;

        m->settle_source = 0;
        m->settle_expired = true;
        manager_maybe_start_up(m);
        return G_SOURCE_REMOVE;
}
