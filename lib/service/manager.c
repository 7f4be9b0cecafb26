/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "manager.h"

#include <errno.h>
#include <systemd/sd-daemon.h>

#include "bus-util.h"
#include "conflicts.h"
#include "hypervisor.h"
#include "log.h"
#include "macro.h"
#include "policy.h"
#include "unit-state.h"
#include "util.h"

static const char *const manager_state_table[_MANAGER_STATE_MAX] = {
        [MANAGER_STARTING] = "starting",     [MANAGER_IDLE] = "idle",
        [MANAGER_PRESERVING] = "preserving", [MANAGER_PRESERVED] = "preserved",
        [MANAGER_RESTORING] = "restoring",   [MANAGER_STOPPING] = "stopping",
};
DEFINE_STRING_TABLE(manager_state, ManagerState, _MANAGER_STATE_MAX);

/* Keepalives (guestkeeperd(8), docs/architecture.md): EXTEND_TIMEOUT_USEC of 30 s, re-sent every 10 s while
 * the run will end by itself: before DeadlineSec is spent (the deadline bounds every step), or while it
 * moves or waits on a bounded timer. Never past DeadlineSec plus the time the deadline's
 * poweroffs and the last record write need. A run with nothing bounded left is hung: the
 * keepalives stop and systemd's stop timeout ends it. */
#define KEEPALIVE_EXTEND_USEC   (30 * USEC_PER_SEC)
#define KEEPALIVE_INTERVAL_MSEC 10000
#define DEADLINE_GRACE_USEC     (15 * USEC_PER_SEC)
/* How long an unreachable URI is retried at the start of a run. At shutdown every second
 * counts; at boot libvirtd may still be coming up. */
#define CONNECT_RETRY_PRESERVE_USEC (2 * USEC_PER_SEC)
#define CONNECT_RETRY_RESTORE_USEC  (10 * USEC_PER_SEC)
#define FLUSH_MSEC                  50

static void schedule_flush(Manager *m);
static void start_run(Manager *m, RunKind kind, bool host_shutdown);
static void check_conflicts(Manager *m);

/* ---- notifications and properties ---- */

static void notify(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void notify(const char *fmt, ...)
{
        g_autofree char *s = NULL;
        va_list ap;

        va_start(ap, fmt);
        s = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        (void) sd_notify(0, s);
}

void manager_counts(Manager *m, unsigned *ret_total, unsigned *ret_done, unsigned *ret_failed,
                    double *ret_progress)
{
        if (m->run) {
                engine_counts(m->run, ret_total, ret_done, ret_failed);
                *ret_progress = engine_progress(m->run);
        } else {
                *ret_total = m->last ? m->last->total : 0;
                *ret_done = m->last ? m->last->done : 0;
                *ret_failed = m->last ? m->last->failed : 0;
                *ret_progress = m->last ? m->last->progress : 0.0;
        }
}

bool manager_inhibitor_held(Manager *m)
{
        return m->logind && logind_inhibitor_held(m->logind);
}

static char *status_line(Manager *m)
{
        unsigned total, done, failed, guests, running, n_uris = guest_cache_n_uris(m->cache);
        double progress;

        manager_counts(m, &total, &done, &failed, &progress);
        switch (m->state) {
        case MANAGER_STARTING:
                return g_strdup("Starting");
        case MANAGER_STOPPING:
                return g_strdup("Stopping");
        case MANAGER_PRESERVING:
        case MANAGER_RESTORING: {
                g_autoptr(GPtrArray) gs = m->run ? engine_guests(m->run) : g_ptr_array_new();
                g_autofree char *what = NULL;

                for (guint i = 0; i < gs->len && !what; i++) {
                        const EngineGuest *g = gs->pdata[i];
                        if (g->outcome == OUTCOME_SAVING)
                                what = g_strdup_printf(": saving %s (%.0f%%)", g->name, g->fraction * 100);
                        else if (g->outcome == OUTCOME_SHUTTING_DOWN)
                                what = g_strdup_printf(": shutting down %s", g->name);
                        else if (g->outcome == OUTCOME_RESTORING)
                                what = g_strdup_printf(": starting %s", g->name);
                }
                if (total == 0 && m->run && !engine_is_finished(m->run))
                        return g_strdup_printf("%s: listing the guests of %u URI%s",
                                               m->state == MANAGER_PRESERVING ? "Preserving" : "Restoring",
                                               n_uris, n_uris == 1 ? "" : "s");
                if (failed)
                        return g_strdup_printf("%s %u/%u guests%s, %u failed",
                                               m->state == MANAGER_PRESERVING ? "Preserving" : "Restoring",
                                               done + failed, total, what ?: "", failed);
                return g_strdup_printf("%s %u/%u guests%s",
                                       m->state == MANAGER_PRESERVING ? "Preserving" : "Restoring",
                                       done + failed, total, what ?: "");
        }
        case MANAGER_PRESERVED:
                return g_strdup_printf(
                        "Preserved %u guests: %u saved, %u shut down, %u powered off, %u failed", total,
                        m->last ? m->last->by_outcome[OUTCOME_SAVED] : 0,
                        m->last ? m->last->by_outcome[OUTCOME_SHUTDOWN] : 0,
                        m->last ? m->last->by_outcome[OUTCOME_POWEROFF] : 0, failed);
        case MANAGER_IDLE:
        default:
                guest_cache_count(m->cache, &guests, &running);
                return g_strdup_printf("Watching %u guests (%u running) on %u URI%s; %s", guests, running,
                                       n_uris, n_uris == 1 ? "" : "s",
                                       manager_inhibitor_held(m)
                                               ? "shutdown inhibitor held"
                                               : "no shutdown inhibitor (logind unavailable)");
        }
}

/* The status line, plus the URIs the run could not reach: never silent. */
static char *full_status_line(Manager *m)
{
        g_autofree char *s = status_line(m);
        GPtrArray *un = m->run ? engine_unreachable(m->run) : m->last ? m->last->unreachable : NULL;
        GString *out;

        if ((m->state != MANAGER_PRESERVING && m->state != MANAGER_PRESERVED &&
             m->state != MANAGER_RESTORING) ||
            !un || un->len == 0)
                return g_steal_pointer(&s);
        out = g_string_new(s);
        g_string_append(out, "; UNREACHABLE: ");
        for (guint i = 0; i < un->len; i++)
                g_string_append_printf(out, "%s%s", i ? ", " : "", (char *) un->pdata[i]);
        return g_string_free(out, FALSE);
}

/* Sends STATUS= and PropertiesChanged for what changed. */
static void flush(Manager *m)
{
        g_autofree char *status = full_status_line(m);
        const char *changed[5];
        unsigned total, done, failed, n = 0;
        double progress;

        if (!streq_ptr(status, m->last_status)) {
                notify("STATUS=%s", status);
                g_free(m->last_status);
                m->last_status = g_steal_pointer(&status);
        }
        manager_counts(m, &total, &done, &failed, &progress);
        if (total != m->emitted_total)
                changed[n++] = "GuestsTotal";
        if (done != m->emitted_done)
                changed[n++] = "GuestsDone";
        if (failed != m->emitted_failed)
                changed[n++] = "GuestsFailed";
        if (progress != m->emitted_progress)
                changed[n++] = "Progress";
        changed[n] = NULL;
        m->emitted_total = total;
        m->emitted_done = done;
        m->emitted_failed = failed;
        m->emitted_progress = progress;
        if (n > 0)
                bus_manager_emit(m, changed);
}

static gboolean flush_cb(gpointer p)
{
        Manager *m = p;

        m->flush_source = 0;
        flush(m);
        return G_SOURCE_REMOVE;
}

static void schedule_flush(Manager *m)
{
        if (!m->flush_source)
                m->flush_source = g_timeout_add(FLUSH_MSEC, flush_cb, m);
}

/* State changes are emitted at once (after the counters they summarise). */
static void set_state(Manager *m, ManagerState s)
{
        if (m->state == s)
                return;
        m->state = s;
        flush(m);
        bus_manager_emit(m, (const char *const[]){"State", NULL});
        log_debug("State: %s", manager_state_to_string(s));
}

/* ---- keepalives ---- */

static void send_keepalive(Manager *m, bool force)
{
        guint64 now = now_usec(), extend = KEEPALIVE_EXTEND_USEC;

        if (!m->run || engine_kind(m->run) != RUN_PRESERVE)
                return;
        if (!force && !(m->config->deadline_usec > 0 && now < m->run_started + m->config->deadline_usec) &&
            engine_last_progress_usec(m->run) <= m->last_keepalive && !engine_has_bounded_wait(m->run))
                return; /* nothing bounded and no progress: a hung run must still time out */
        if (m->config->deadline_usec > 0) {
                guint64 end = m->run_started + m->config->deadline_usec + DEADLINE_GRACE_USEC;
                if (now >= end)
                        return;
                extend = MIN(extend, end - now);
        }
        m->last_keepalive = now;
        notify("EXTEND_TIMEOUT_USEC=%" G_GUINT64_FORMAT, extend);
}

static gboolean keepalive_cb(gpointer p)
{
        send_keepalive(p, false);
        return G_SOURCE_CONTINUE;
}

static gboolean watchdog_cb(gpointer p)
{
        notify("WATCHDOG=1");
        return G_SOURCE_CONTINUE;
}

/* ---- other mechanisms acting on the same guests ---- */

static void on_unit_state(const char *unit, const char *unit_file_state, const char *active_state,
                          void *userdata)
{
        Manager *m = userdata;
        /* Testing aid (guestkeeperd(8)): where to look for the files of other mechanisms. */
        g_autoptr(GPtrArray) now = conflicts_detect(g_getenv("GUESTKEEPER_ROOT") ?: "/");
        g_autofree char *line = conflicts_unit_text(unit, unit_file_state, active_state);
        bool changed;

        if (line)
                g_ptr_array_insert(now, 0, g_steal_pointer(&line));
        changed = !m->conflicts || m->conflicts->len != now->len;
        for (guint i = 0; i < now->len; i++) {
                bool known = false;

                for (guint k = 0; m->conflicts && k < m->conflicts->len; k++)
                        known = known || g_str_equal(now->pdata[i], m->conflicts->pdata[k]);
                if (!known) {
                        changed = true;
                        log_full(LOG_WARNING, 0, NULL, MESSAGE_ID_CONFLICT, "CONFLICT: %s",
                                 (char *) now->pdata[i]);
                }
        }
        if (!changed)
                return;
        g_clear_pointer(&m->conflicts, g_ptr_array_unref);
        m->conflicts = g_steal_pointer(&now);
        bus_manager_emit(m, (const char *const[]){"Conflicts", NULL});
}

/* At start-up, on Reload and before each run: systemd's view of libvirt-guests.service (over
 * the bus, if there is one), libvirt's own auto-shutdown (qemu.conf). */
static void check_conflicts(Manager *m)
{
        if (!m->bus || unit_state_query(m->bus, "libvirt-guests.service", on_unit_state, m) < 0)
                on_unit_state("libvirt-guests.service", NULL, NULL, m);
}

/* ---- exit ---- */

static void do_exit(Manager *m, int code)
{
        set_state(m, MANAGER_STOPPING);
        if (m->on_exit)
                m->on_exit(m, code, m->on_exit_userdata);
}

/* Without a bus there is no logind either (unit tests): nothing to take or release. */
static void want_inhibitor(Manager *m, bool want)
{
        if (m->logind)
                logind_want_inhibitor(m->logind, want);
}

/* ---- runs ---- */

static void on_guest_changed(Engine *e, const EngineGuest *g, void *userdata)
{
        Manager *m = userdata;

        if (g->finished && g->outcome == OUTCOME_RESTORED)
                guest_cache_note_running(m->cache, g->uri, g->uuid, g->name, g->persistent);
        g_hash_table_replace(m->outcomes, g_strconcat(g->uri, "\n", g->uuid, NULL),
                             GINT_TO_POINTER(g->outcome));
        if (g->finished && g->outcome == OUTCOME_FAILED)
                log_full(LOG_ERR, 0, &(LogGuest){g->name, g->uuid, g->uri}, MESSAGE_ID_GUEST_FAILED,
                         "%s: %s failed: %s", g->name, run_kind_to_string(engine_kind(e)),
                         g->error ?: "no step left");
        else if (g->finished)
                log_full(LOG_INFO, 0, &(LogGuest){g->name, g->uuid, g->uri}, NULL, "%s: %s", g->name,
                         *outcome_to_string(g->outcome) ? outcome_to_string(g->outcome) : "untouched");
        schedule_flush(m);
}

static void on_message(Engine *e, EngineLevel level, const EngineGuest *g, const char *uri, const char *text,
                       void *userdata)
{
        static const int map[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG};

        log_full(map[level], 0, g ? &(LogGuest){g->name, g->uuid, g->uri} : &(LogGuest){.uri = uri}, NULL,
                 "%s", text);
}

static void on_progress(Engine *e, void *userdata)
{
        schedule_flush(userdata);
}

static void on_finished(Engine *e, void *userdata)
{
        Manager *m = userdata;
        RunKind kind = engine_kind(e);
        unsigned total, done, failed;

        run_summary_free(m->last);
        m->last = engine_summarize(e);
        total = m->last->total;
        done = m->last->done;
        failed = m->last->failed;
        g_clear_pointer(&m->run, engine_unref);
        if (m->keepalive_source) {
                g_source_remove(m->keepalive_source);
                m->keepalive_source = 0;
        }
        log_full(failed ? LOG_WARNING : LOG_NOTICE, 0, NULL, MESSAGE_ID_RUN_FINISHED,
                 "%s run finished: %u guests, %u done, %u failed",
                 kind == RUN_PRESERVE ? "Preserve" : "Restore", total, done, failed);
        bus_manager_emit_run_finished(m, run_kind_to_string(kind), done, failed);

        if (kind == RUN_PRESERVE) {
                set_state(m, MANAGER_PRESERVED);
                /* Every guest has an outcome and the record is on disk: let logind go on. A
                 * rehearsal keeps the lock. */
                if (m->run_is_shutdown && !m->cancel_after_run)
                        want_inhibitor(m, false);
                if (m->exit_after_run) {
                        do_exit(m, 0);
                        return;
                }
                if (m->cancel_after_run) {
                        m->cancel_after_run = false;
                        want_inhibitor(m, true);
                        start_run(m, RUN_RESTORE, false);
                }
                guest_cache_refresh_all(m->cache);
                return;
        }

        set_state(m, MANAGER_IDLE);
        guest_cache_refresh_all(m->cache);
        if (m->preserve_after_run) {
                m->preserve_after_run = false;
                start_run(m, RUN_PRESERVE, true);
        }
}

static const EngineCallbacks engine_callbacks = {
        .guest_changed = on_guest_changed,
        .message = on_message,
        .progress = on_progress,
        .finished = on_finished,
};

static void start_run(Manager *m, RunKind kind, bool host_shutdown)
{
        g_autofree char *save_dir = g_build_filename(m->state_dir, "save", NULL);
        g_autoptr(GPtrArray) hvs = guest_cache_hypervisors(m->cache);
        EngineOptions o = {
                .kind = kind,
                .config = m->config,
                .save_dir = save_dir,
                .connect_retry_usec =
                        kind == RUN_PRESERVE ? CONNECT_RETRY_PRESERVE_USEC : CONNECT_RETRY_RESTORE_USEC,
                .list_timeout_usec = m->config->connect_timeout_usec,
                .progress_interval_usec = 1 * USEC_PER_SEC,
        };

        g_assert(!m->run);
        check_conflicts(m);
        /* The last run's outcomes stay visible until this run touches the guest. */
        m->run = engine_new(&o, (Hypervisor **) hvs->pdata, hvs->len, m->workers, m->record,
                            &engine_callbacks, m);
        /* The cache is kept current by events: a run that starts from it needs no list, so the
         * first save follows the signal by little more than the record's write. */
        for (guint i = 0; i < hvs->len; i++) {
                GPtrArray *known = guest_cache_snapshot(m->cache, i);

                if (known)
                        engine_set_listed(m->run, i, known);
        }
        m->run_is_shutdown = host_shutdown;
        m->run_started = now_usec();
        m->last_keepalive = 0;
        log_full(LOG_NOTICE, 0, NULL, MESSAGE_ID_RUN_STARTED, "%s run started%s",
                 kind == RUN_PRESERVE ? "Preserve" : "Restore",
                 kind == RUN_RESTORE ? ""
                 : host_shutdown     ? " (host shutdown)"
                                     : " (rehearsal)");
        set_state(m, kind == RUN_PRESERVE ? MANAGER_PRESERVING : MANAGER_RESTORING);
        bus_manager_emit(m, (const char *const[]){"LastRun", NULL});
        engine_start(m->run);
        if (kind == RUN_PRESERVE) {
                send_keepalive(m, true);
                m->keepalive_source = g_timeout_add(KEEPALIVE_INTERVAL_MSEC, keepalive_cb, m);
        }
}

int manager_preserve(Manager *m)
{
        if (m->state != MANAGER_IDLE && m->state != MANAGER_PRESERVED)
                return -EBUSY;
        start_run(m, RUN_PRESERVE, false);
        return 0;
}

int manager_restore(Manager *m)
{
        if (m->state != MANAGER_IDLE && m->state != MANAGER_PRESERVED)
                return -EBUSY;
        want_inhibitor(m, true);
        start_run(m, RUN_RESTORE, false);
        return 0;
}

/* ---- logind ---- */

/* With a bus: once the name is ours and the inhibitor is held or known unavailable. Without
 * one (unit tests): at once. */
static void maybe_ready(Manager *m)
{
        guint n_uris = guest_cache_n_uris(m->cache);

        if (m->ready || (m->bus && !m->name_owned) || (m->logind && !logind_settled(m->logind)))
                return;
        m->ready = true;
        notify("READY=1");
        log_info("Ready: %u URI%s, inhibitor %s", n_uris, n_uris == 1 ? "" : "s",
                 manager_inhibitor_held(m) ? "held" : "not available");
        if (m->state != MANAGER_STARTING)
                return; /* a shutdown already started a run */
        if (m->config->restore && m->record->guests->len > 0)
                start_run(m, RUN_RESTORE, false);
        else
                set_state(m, MANAGER_IDLE);
}

static void on_prepare_for_shutdown(Logind *l, bool start, void *userdata)
{
        Manager *m = userdata;

        log_notice("logind: PrepareForShutdown(%s)", start ? "true" : "false");
        if (start) {
                switch (m->state) {
                case MANAGER_PRESERVING:
                        m->run_is_shutdown = true; /* a rehearsal turned real */
                        m->cancel_after_run = false;
                        break;
                case MANAGER_PRESERVED:
                        /* After a rehearsal: guests may have been started since. */
                        start_run(m, RUN_PRESERVE, true);
                        break;
                case MANAGER_RESTORING:
                        m->preserve_after_run = true;
                        engine_cancel(m->run);
                        break;
                case MANAGER_STARTING:
                case MANAGER_IDLE:
                        start_run(m, RUN_PRESERVE, true);
                        break;
                default:
                        break;
                }
                return;
        }
        /* The shutdown was cancelled. */
        switch (m->state) {
        case MANAGER_PRESERVING:
                m->cancel_after_run = true;
                engine_cancel(m->run);
                break;
        case MANAGER_PRESERVED:
                want_inhibitor(m, true);
                start_run(m, RUN_RESTORE, false);
                break;
        case MANAGER_RESTORING:
                m->preserve_after_run = false;
                break;
        default:
                break;
        }
}

static void on_inhibitor_changed(Logind *l, bool held, void *userdata)
{
        Manager *m = userdata;

        log_info("Shutdown inhibitor %s", held ? "taken" : "released");
        bus_manager_emit(m, (const char *const[]){"InhibitorHeld", NULL});
        schedule_flush(m);
}

static void on_logind_settled(Logind *l, const char *error, void *userdata)
{
        Manager *m = userdata;

        if (error)
                log_warning("Cannot take logind's shutdown inhibitor: %s; running without it", error);
        maybe_ready(m);
}

const LogindCallbacks manager_logind_callbacks = {
        .prepare_for_shutdown = on_prepare_for_shutdown,
        .inhibitor_changed = on_inhibitor_changed,
        .settled = on_logind_settled,
};

/* ---- SIGTERM ---- */

static void shutdown_query_done(bool shutting_down, const char *why, void *userdata)
{
        Manager *m = userdata;

        m->querying_shutdown = false;
        if (m->state == MANAGER_PRESERVING || m->state == MANAGER_PRESERVED)
                return; /* PrepareForShutdown won the race: manager_terminate() handled it */
        if (!shutting_down) {
                log_info("SIGTERM and the host is not shutting down (%s): exiting, no guest touched", why);
                do_exit(m, 0);
                return;
        }
        log_notice("SIGTERM while the host is shutting down (%s): preserving the guests first", why);
        m->exit_after_run = true;
        if (m->state == MANAGER_RESTORING) {
                m->preserve_after_run = true;
                engine_cancel(m->run);
                return;
        }
        start_run(m, RUN_PRESERVE, true);
}

void manager_terminate(Manager *m)
{
        notify("STOPPING=1");
        switch (m->state) {
        case MANAGER_PRESERVING:
                /* systemd starts the stop timeout afresh at SIGTERM: extend again now. */
                m->exit_after_run = true;
                send_keepalive(m, true);
                log_notice("SIGTERM during a preserve run: exiting once it is finished");
                return;
        case MANAGER_PRESERVED:
                do_exit(m, 0);
                return;
        case MANAGER_STOPPING:
                return;
        default:
                break;
        }
        if (m->querying_shutdown)
                return;
        if (!m->logind) {
                do_exit(m, 0);
                return;
        }
        m->querying_shutdown = true;
        logind_query_shutting_down(m->logind, shutdown_query_done, m);
}

/* ---- ListGuests, Plan: from the guest cache, never asked on demand ---- */

static void row_free(gpointer p)
{
        GuestRow *r = p;

        g_free(r->uri);
        g_free(r->uuid);
        g_free(r->name);
        g_free(r);
}

static const char *outcome_of(Manager *m, const char *uri, const char *uuid)
{
        g_autofree char *k = g_strconcat(uri, "\n", uuid, NULL);
        gpointer v;

        if (!g_hash_table_lookup_extended(m->outcomes, k, NULL, &v))
                return "";
        return outcome_to_string(GPOINTER_TO_INT(v));
}

typedef struct ListGuests {
        Manager *m;
        GPtrArray *rows;
        GHashTable *seen; /* "uri\nuuid" */
} ListGuests;

static void list_guest(const char *uri, bool reachable, const CachedGuest *g, void *userdata)
{
        ListGuests *l = userdata;
        GuestRow *r = g_new0(GuestRow, 1);

        r->uri = g_strdup(uri);
        r->uuid = g_strdup(g->uuid);
        r->name = g_strdup(g->name);
        r->state = reachable ? guest_state_to_string(g->state) : "unreachable";
        r->outcome = outcome_of(l->m, uri, g->uuid);
        if (!*r->outcome) {
                GuestPolicy policy;

                policy_for_guest(l->m->config, g->name, g->persistent, g->metadata, &policy);
                if (policy.skip)
                        r->outcome = outcome_to_string(OUTCOME_SKIPPED);
                guest_policy_clear(&policy);
        }
        g_ptr_array_add(l->rows, r);
        g_hash_table_add(l->seen, g_strconcat(uri, "\n", g->uuid, NULL));
}

GPtrArray *manager_list_guests(Manager *m)
{
        GPtrArray *rows = g_ptr_array_new_with_free_func(row_free);
        g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

        guest_cache_foreach(m->cache, list_guest, &(ListGuests){m, rows, seen});
        /* The record's guests libvirt does not know now: transient guests saved or stopped. */
        for (guint i = 0; i < m->record->guests->len; i++) {
                RecordGuest *rg = m->record->guests->pdata[i];
                g_autofree char *k = g_strconcat(rg->uri, "\n", rg->uuid, NULL);
                GuestRow *r;

                if (g_hash_table_contains(seen, k))
                        continue;
                r = g_new0(GuestRow, 1);
                r->uri = g_strdup(rg->uri);
                r->uuid = g_strdup(rg->uuid);
                r->name = g_strdup(rg->name);
                r->state = rg->save_file && rg->outcome == OUTCOME_SAVED ? "saved" : "shutoff";
                r->outcome = g_hash_table_contains(m->outcomes, k) ? outcome_of(m, rg->uri, rg->uuid)
                                                                   : outcome_to_string(rg->outcome);
                g_ptr_array_add(rows, r);
        }
        return rows;
}

static void plan_row_free(gpointer p)
{
        PlanRow *r = p;

        g_free(r->uri);
        g_free(r->uuid);
        g_free(r->name);
        g_free(r->steps);
        g_ptr_array_unref(r->settings);
        g_free(r);
}

typedef struct Plan {
        Manager *m;
        GPtrArray *rows;
} Plan;

static void plan_guest(const char *uri, bool reachable, const CachedGuest *g, void *userdata)
{
        Plan *p = userdata;
        GuestPolicy policy;
        PlanRow *r;

        if (!guest_state_is_active(g->state))
                return;
        policy_for_guest(p->m->config, g->name, g->persistent, g->metadata, &policy);
        r = g_new0(PlanRow, 1);
        r->uri = g_strdup(uri);
        r->uuid = g_strdup(g->uuid);
        r->name = g_strdup(g->name);
        r->persistent = g->persistent;
        r->steps = steps_to_string(policy.steps);
        r->settings = g_ptr_array_new_with_free_func(g_free);
        for (GuestKey k = 0; k < _GUEST_KEY_MAX; k++) {
                char *value;

                if (policy.effective.set & (1u << k))
                        value = guest_settings_format(&policy.effective, k);
                else if (k == GUEST_KEY_ACTION)
                        /* From the scopes: the first step they give, if any. */
                        value = g_strdup(policy.steps ? step_to_string(__builtin_ctz(policy.steps))
                                                      : "none");
                else
                        value = g_strdup(""); /* no order */
                g_ptr_array_add(r->settings, g_strdup(guest_key_to_string(k)));
                g_ptr_array_add(r->settings, value);
                g_ptr_array_add(r->settings, g_strdup(policy.source[k]));
        }
        if (policy.error) {
                g_ptr_array_add(r->settings, g_strdup("metadata-error"));
                g_ptr_array_add(r->settings, g_strdup(policy.error));
                g_ptr_array_add(r->settings, g_strdup("metadata"));
        }
        guest_policy_clear(&policy);
        g_ptr_array_add(p->rows, r);
}

GPtrArray *manager_plan(Manager *m)
{
        GPtrArray *rows = g_ptr_array_new_with_free_func(plan_row_free);

        guest_cache_foreach(m->cache, plan_guest, &(Plan){m, rows});
        return rows;
}

/* ---- life cycle ---- */

static void on_cache_changed(GuestCache *c, void *userdata)
{
        schedule_flush(userdata);
}

static const GuestCacheCallbacks cache_callbacks = {
        .changed = on_cache_changed,
};

int manager_new(const ManagerOptions *o, Config *config, Manager **ret)
{
        g_autoptr(Manager) m = g_new0(Manager, 1);
        g_autofree char *record_path = NULL, *problem = NULL;

        m->config = config;
        m->config_path = g_strdup(o->config_path);
        m->config_explicit = o->config_explicit;
        m->state_dir = g_strdup(o->state_dir);
        m->state = MANAGER_STARTING;
        m->workers = workers_new(NULL, 32);
        m->cache = guest_cache_new(m->workers, &cache_callbacks, m);
        m->outcomes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

        /* Neither a missing state directory nor an unreadable record stops the daemon: it
         * reports them and runs on (a run's record writes then fail loudly too). */
        if (g_mkdir_with_parents(m->state_dir, 0700) < 0)
                log_error_errno(errno, "Cannot create the state directory %s: %m", m->state_dir);
        record_path = g_build_filename(m->state_dir, "record", NULL);
        (void) record_load_or_set_aside(record_path, &m->record, &problem);
        if (problem)
                log_error("Unreadable record: %s", problem);
        else if (m->record->guests->len > 0)
                log_info("Record %s lists %u guests", record_path, m->record->guests->len);

        *ret = g_steal_pointer(&m);
        return 0;
}

Manager *manager_free(Manager *m)
{
        if (!m)
                return NULL;
        if (m->run) {
                engine_detach(m->run);
                g_clear_pointer(&m->run, engine_unref);
        }
        if (m->keepalive_source)
                g_source_remove(m->keepalive_source);
        if (m->watchdog_source)
                g_source_remove(m->watchdog_source);
        if (m->flush_source)
                g_source_remove(m->flush_source);
        manager_disconnect_bus(m);
        /* Not waited for: a job stuck in a hung libvirtd must not hang the exit. Jobs hold
         * references to their hypervisors, so these outlive them. */
        g_clear_pointer(&m->workers, workers_abandon);
        guest_cache_free(m->cache);
        g_hash_table_unref(m->outcomes);
        run_summary_free(m->last);
        if (m->conflicts)
                g_ptr_array_unref(m->conflicts);
        record_free(m->record);
        config_free(m->config);
        g_free(m->config_path);
        g_free(m->state_dir);
        g_free(m->last_status);
        g_free(m);
        return NULL;
}

void manager_name_acquired(Manager *m, const char *error)
{
        if (error) {
                log_error("Cannot own the bus name org.guestkeeper1: %s", error);
                do_exit(m, 1);
                return;
        }
        m->name_owned = true;
        maybe_ready(m);
}

void manager_start(Manager *m)
{
        guint64 wd = 0;

        hypervisor_libvirt_global_init();
        guest_cache_set_uris(m->cache, m->config->uris);

        check_conflicts(m);

        if (sd_watchdog_enabled(0, &wd) > 0 && wd > 0)
                m->watchdog_source = g_timeout_add((guint) MAX(1, wd / USEC_PER_MSEC / 2), watchdog_cb, m);
        notify("STATUS=Starting");
        maybe_ready(m);
}

int manager_reload(Manager *m, char **ret_error)
{
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(Config) c = NULL;
        bool uris_changed;
        int r;

        r = config_load(m->config_path, m->config_explicit, &c, warnings, ret_error);
        if (r < 0) {
                log_error("Reload: %s; keeping the old configuration", *ret_error);
                return r;
        }
        for (guint i = 0; i < warnings->len; i++)
                log_warning("%s", (char *) warnings->pdata[i]);
        notify("RELOADING=1");
        uris_changed = !g_strv_equal((const char *const *) c->uris, (const char *const *) m->config->uris);
        config_free(m->config);
        m->config = g_steal_pointer(&c);
        if (uris_changed) {
                if (m->run)
                        log_warning("Reload: URIs= changed; the run under way keeps the old URIs");
                guest_cache_set_uris(m->cache, m->config->uris);
        }
        check_conflicts(m);
        log_info("Reloaded %s", m->config_path);
        notify("READY=1");
        schedule_flush(m);
        return 0;
}
