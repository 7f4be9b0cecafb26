/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "manager.h"

#include <errno.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-id128.h>

#include "bus-util.h"
#include "conflicts.h"
#include "hypervisor.h"
#include "job.h"
#include "log.h"
#include "macro.h"
#include "policy.h"
#include "preflight-probe.h"
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
/* A burst of lifecycle events is one running-set write. */
#define RUNNING_SET_MSEC 100
/* Failed starts are retried after 2 s, 4 s, … up to every 30 s, within RestoreRetrySec. */
#define RETRY_FIRST_MSEC 2000
#define RETRY_MAX_MSEC   30000

typedef struct Waiting {
        unsigned attempts;
        guint64 next_at; /* monotonic µs */
        bool given_up;   /* RestoreRetrySec spent: kept in the record for the next start-up */
        char *why;
} Waiting;

/* In the state directory: the save speed measured on this host (preflight.h). */
#define SPEED_FILE "save-bandwidth"

static void schedule_flush(Manager *m);
static void note_save_speed(Manager *m, Engine *e);
static void start_run(Manager *m, RunKind kind, bool host_shutdown, GHashTable *only);
static void check_conflicts(Manager *m);
static bool maybe_restore(Manager *m);
static void schedule_running_update(Manager *m);

static char *key_of(const char *uri, const char *uuid)
{
        return g_strconcat(uri, "\n", uuid, NULL);
}

static void waiting_free(gpointer p)
{
        Waiting *w = p;

        g_free(w->why);
        g_free(w);
}

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
        default: {
                g_autoptr(GPtrArray) waiting = manager_restore_waiting(m);
                g_autofree char *extra = NULL;

                if (manager_held(m))
                        extra = g_strdup_printf("; HELD: %u preserved guests stay down until "
                                                "'guestkeeperctl restore'",
                                                m->record->guests->len);
                else if (waiting->len > 0)
                        extra = g_strdup_printf("; %u guest%s waiting to be restored", waiting->len,
                                                waiting->len == 1 ? "" : "s");
                guest_cache_count(m->cache, &guests, &running);
                return g_strdup_printf("Watching %u guests (%u running) on %u URI%s; %s%s", guests, running,
                                       n_uris, n_uris == 1 ? "" : "s",
                                       manager_inhibitor_held(m)
                                               ? "shutdown inhibitor held"
                                               : "no shutdown inhibitor (logind unavailable)",
                                       extra ?: "");
        }
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

        if (g->finished && outcome_is_restored(g->outcome))
                guest_cache_note_running(m->cache, g->uri, g->uuid, g->name, g->persistent);
        g_hash_table_replace(m->outcomes, g_strconcat(g->uri, "\n", g->uuid, NULL),
                             GINT_TO_POINTER(g->outcome));
        if (g->finished && g->outcome == OUTCOME_FAILED)
                log_full(LOG_ERR, 0, &(LogGuest){g->name, g->uuid, g->uri}, MESSAGE_ID_GUEST_FAILED,
                         "%s: %s failed: %s", g->name, run_kind_to_string(engine_kind(e)),
                         g->error ?: "no step left");
        else if (g->finished && g->outcome == OUTCOME_RECOVERED)
                log_full(LOG_NOTICE, 0, &(LogGuest){g->name, g->uuid, g->uri}, NULL,
                         "%s: restored after an unclean stop", g->name);
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

/* Whether the record's entry is one a restore starts. */
static bool restorable(const RecordGuest *rg)
{
        return outcome_is_stopped(rg->outcome) || outcome_is_in_flight(rg->outcome) ||
               rg->outcome == OUTCOME_NONE || rg->outcome == OUTCOME_LOST;
}

static gboolean retry_cb(gpointer p)
{
        Manager *m = p;

        m->retry_source = 0;
        (void) maybe_restore(m);
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
static unsigned note_restore_results(Manager *m, Engine *e)
{
        unsigned n = 0;
        g_autoptr(GPtrArray) gs = engine_guests(e);
        guint64 now = now_usec();
        bool window_spent = now >= m->restore_since + m->config->restore_retry_usec;

        for (guint i = 0; i < gs->len; i++) {
                const EngineGuest *g = gs->pdata[i];
                g_autofree char *k = key_of(g->uri, g->uuid);
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
        return n;
}

/* A cancelled shutdown: what the run stopped comes back. Held guests stay down. */
static void restore_after_cancel(Manager *m)
{
        m->shutdown_cancelled = true;
        want_inhibitor(m, true);
        m->restore_pending = !manager_held(m);
        m->restore_since = now_usec();
        start_run(m, RUN_RESTORE, false, manager_held(m) ? m->last_preserved : NULL);
}

/* ---- the run's history ---- */

static void history_written(gpointer p)
{
        RunHistoryWrite *w = p;

        if (w->r < 0)
                log_error_errno(w->r, "Failed to keep the run in %s: %m", w->path);
}

static void history_write_free(gpointer p)
{
        run_history_write_free(p);
}

static void on_shutdown_target(const char *target, void *userdata)
{
        Manager *m = userdata;

        if (!target)
                return;
        g_free(m->shutdown_type);
        m->shutdown_type = g_strdup(target);
}

/* What kind of host shutdown this is, best effort: logind's metadata (systemd >= 255), else the
 * shutdown target systemd has a job for — queued once logind's delay is over, so a run asks
 * again at SIGTERM. Unknown: "shutdown". */
static void learn_shutdown_type(Manager *m)
{
        const char *type = m->logind ? logind_shutdown_type(m->logind) : NULL;

        if (type) {
                g_free(m->shutdown_type);
                m->shutdown_type = g_strdup(type);
                return;
        }
        if (m->bus)
                (void) unit_state_query_shutdown_target(m->bus, on_shutdown_target, m);
}

/* Why this run, and who asked: for the journal and the run's history. */
static void run_origin(Manager *m, RunKind kind, bool host_shutdown)
{
        g_free(m->run_requested_by);
        if (kind == RUN_PRESERVE && host_shutdown) {
                g_clear_pointer(&m->shutdown_type, g_free);
                learn_shutdown_type(m);
                m->run_reason = run_reason_from_shutdown_type(m->shutdown_type);
                m->run_requested_by = g_strdup(m->exit_after_run ? "SIGTERM" : "logind");
        } else if (kind == RUN_PRESERVE) {
                m->run_reason = manager_held(m) ? RUN_REASON_MAINTENANCE : RUN_REASON_REHEARSAL;
                m->run_requested_by = g_steal_pointer(&m->requester) ?: g_strdup("unknown");
        } else if (m->requester) {
                m->run_reason = RUN_REASON_REQUESTED;
                m->run_requested_by = g_steal_pointer(&m->requester);
        } else if (m->shutdown_cancelled) {
                m->run_reason = RUN_REASON_SHUTDOWN_CANCELLED;
                m->run_requested_by = g_strdup("logind");
        } else {
                m->run_reason = RUN_REASON_START_UP;
                m->run_requested_by = g_strdup("start-up");
        }
        m->shutdown_cancelled = false;
        g_clear_pointer(&m->requester, g_free);
}

/* Once per run, when it is over: in memory for LastRuns() at once, on disk by the history's
 * thread. */
static void keep_run(Manager *m, Engine *e)
{
        RunRecord *r;

        if (engine_kind(e) == RUN_PRESERVE && m->run_is_shutdown &&
            (m->run_reason == RUN_REASON_REHEARSAL || m->run_reason == RUN_REASON_MAINTENANCE)) {
                /* A rehearsal (or a hold) that a host shutdown turned real. */
                g_autofree char *was = g_steal_pointer(&m->run_requested_by);

                m->run_requested_by = g_strdup_printf("logind, during a rehearsal asked by %s", was);
        }
        if (engine_kind(e) == RUN_PRESERVE && m->run_is_shutdown)
                m->run_reason = run_reason_from_shutdown_type(m->shutdown_type);
        r = run_record_from_engine(e, m->run_id, m->run_reason, m->run_requested_by, m->run_started_wall,
                                   g_get_real_time());
        /* As GuestsFailed shows them: a start that is retried has not failed (yet). */
        r->failed = m->last->failed;
        workers_submit(m->history_writer, run_history_add(m->history, r), (WorkerRun) run_history_write,
                       history_written, history_write_free);
}

GPtrArray *manager_last_runs(Manager *m, bool all)
{
        GPtrArray *runs = g_ptr_array_new();
        const RunRecord *p = run_history_last(m->history, RUN_PRESERVE);
        const RunRecord *r = run_history_last(m->history, RUN_RESTORE);

        if (all) {
                for (guint i = 0; i < m->history->runs->len; i++)
                        g_ptr_array_add(runs, m->history->runs->pdata[i]);
                return runs;
        }
        if (p && (!r || p->seq < r->seq))
                g_ptr_array_add(runs, (gpointer) p);
        if (r)
                g_ptr_array_add(runs, (gpointer) r);
        if (p && r && p->seq > r->seq)
                g_ptr_array_add(runs, (gpointer) p);
        return runs;
}

static void on_finished(Engine *e, void *userdata)
{
        Manager *m = userdata;
        RunKind kind = engine_kind(e);
        unsigned total, done, failed;

        run_summary_free(m->last);
        m->last = engine_summarize(e);
        note_save_speed(m, e);
        if (m->keepalive_source) {
                g_source_remove(m->keepalive_source);
                m->keepalive_source = 0;
        }
        if (kind == RUN_RESTORE) {
                /* A start that is retried has not failed (yet). */
                m->last->waiting = note_restore_results(m, e);
                m->last->failed -= MIN(m->last->failed, m->last->waiting);
        } else {
                g_autoptr(GPtrArray) gs = engine_guests(e);

                g_hash_table_remove_all(m->last_preserved);
                for (guint i = 0; i < gs->len; i++) {
                        const EngineGuest *g = gs->pdata[i];

                        g_hash_table_add(m->last_preserved, key_of(g->uri, g->uuid));
                }
        }
        keep_run(m, e);
        total = m->last->total;
        done = m->last->done;
        failed = m->last->failed;
        g_clear_pointer(&m->run, engine_unref);
        g_clear_pointer(&m->run_only, g_hash_table_unref);
        if (kind == RUN_RESTORE && (m->last->by_outcome[OUTCOME_RECOVERED] > 0 || m->last->waiting > 0))
                log_full(m->last->by_outcome[OUTCOME_RECOVERED] ? LOG_WARNING : LOG_NOTICE, 0, NULL,
                         MESSAGE_ID_RUN_FINISHED,
                         "Restore run finished: %u guests, %u done (%u restored after an unclean stop), "
                         "%u failed, %u waiting for a retry",
                         total, done, m->last->by_outcome[OUTCOME_RECOVERED], failed, m->last->waiting);
        else
                log_full(failed ? LOG_WARNING : LOG_NOTICE, 0, NULL, MESSAGE_ID_RUN_FINISHED,
                         "%s run finished: %u guests, %u done, %u failed",
                         kind == RUN_PRESERVE ? "Preserve" : "Restore", total, done, failed);
        log_set_run_id(NULL);
        bus_manager_emit_run_finished(m, run_kind_to_string(kind), done, failed);
        bus_manager_emit(m, (const char *const[]){"Held", NULL});

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
                        restore_after_cancel(m);
                }
                guest_cache_refresh_all(m->cache);
                schedule_running_update(m);
                return;
        }

        set_state(m, MANAGER_IDLE);
        guest_cache_refresh_all(m->cache);
        schedule_running_update(m);
        if (m->preserve_after_run) {
                m->preserve_after_run = false;
                start_run(m, RUN_PRESERVE, true, NULL);
        }
}

static const EngineCallbacks engine_callbacks = {
        .guest_changed = on_guest_changed,
        .message = on_message,
        .progress = on_progress,
        .finished = on_finished,
};

static void start_run(Manager *m, RunKind kind, bool host_shutdown, GHashTable *only)
{
        g_autofree char *save_dir = g_build_filename(m->state_dir, "save", NULL);
        g_autofree char *speed_file = g_build_filename(m->state_dir, SPEED_FILE, NULL);
        g_autoptr(GPtrArray) hvs = guest_cache_hypervisors(m->cache);
        EngineOptions o = {
                .kind = kind,
                .config = m->config,
                .save_dir = save_dir,
                .speed_file = speed_file,
                .connect_retry_usec =
                        kind == RUN_PRESERVE ? CONNECT_RETRY_PRESERVE_USEC : CONNECT_RETRY_RESTORE_USEC,
                .list_timeout_usec = m->config->connect_timeout_usec,
                .progress_interval_usec = 1 * USEC_PER_SEC,
                .restore_only = kind == RUN_RESTORE ? only : NULL,
        };

        g_assert(!m->run);
        if (kind == RUN_PRESERVE) {
                /* The record's guests belong to this shutdown now: no restore until the next
                 * start-up, RestoreGuests() or a cancel. */
                m->restore_pending = false;
                g_hash_table_remove_all(m->waiting);
                if (m->retry_source) {
                        g_source_remove(m->retry_source);
                        m->retry_source = 0;
                }
        }
        if (only)
                m->run_only = g_hash_table_ref(only);
        check_conflicts(m);
        {
                sd_id128_t id;

                if (sd_id128_randomize(&id) < 0)
                        id = SD_ID128_MAKE(00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00);
                sd_id128_to_string(id, m->run_id);
        }
        log_set_run_id(m->run_id);
        run_origin(m, kind, host_shutdown);
        m->run_started_wall = g_get_real_time();
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
        log_full(LOG_NOTICE, 0, NULL, MESSAGE_ID_RUN_STARTED, "%s run started (%s, asked by %s), run ID %s",
                 kind == RUN_PRESERVE ? "Preserve" : "Restore", run_reason_to_string(m->run_reason),
                 m->run_requested_by, m->run_id);
        set_state(m, kind == RUN_PRESERVE ? MANAGER_PRESERVING : MANAGER_RESTORING);
        bus_manager_emit(m, (const char *const[]){"LastRun", NULL});
        engine_start(m->run);
        if (kind == RUN_PRESERVE) {
                send_keepalive(m, true);
                m->keepalive_source = g_timeout_add(KEEPALIVE_INTERVAL_MSEC, keepalive_cb, m);
        }
}

int manager_preserve(Manager *m, bool hold)
{
        if (m->state != MANAGER_IDLE && m->state != MANAGER_PRESERVED)
                return -EBUSY;
        if (hold && !m->record->hold) {
                /* On disk with the run's first record write, before any guest is touched. */
                m->record->hold = true;
                log_notice(
                        "Maintenance hold: the preserved guests stay down until 'guestkeeperctl restore'");
                bus_manager_emit(m, (const char *const[]){"Held", NULL});
        }
        start_run(m, RUN_PRESERVE, false, NULL);
        return 0;
}

int manager_restore(Manager *m)
{
        if (m->state != MANAGER_IDLE && m->state != MANAGER_PRESERVED)
                return -EBUSY;
        if (m->record->hold) {
                m->record->hold = false; /* on disk with the run's record writes */
                log_notice("Maintenance hold released");
                bus_manager_emit(m, (const char *const[]){"Held", NULL});
        }
        want_inhibitor(m, true);
        m->restore_pending = true;
        m->restore_since = now_usec();
        g_hash_table_remove_all(m->waiting);
        start_run(m, RUN_RESTORE, false, NULL);
        return 0;
}

bool manager_held(Manager *m)
{
        return m->record->hold;
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
        running_set_update(m->running, m->cache, m->config, vouched, m->record, all_resolved);
        return G_SOURCE_REMOVE;
}

/* During a run the guests it acts on are in the record; the set follows once it is over. */
static void schedule_running_update(Manager *m)
{
        if (!m->running_source && !m->run)
                m->running_source = g_timeout_add(RUNNING_SET_MSEC, running_update_cb, m);
}

/* The first list of @uri since the start: the guests the running set says were running and that
 * are off now, with no record of ours saying why, stopped while nobody watched. */
static void reconcile(Manager *m, const char *uri)
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
                policy_for_guest(m->config, rg->name, rg->persistent, now ? now->metadata : NULL, &policy);
                skip = policy.skip;
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
                g_hash_table_replace(m->outcomes, key_of(rg->uri, rg->uuid), GINT_TO_POINTER(OUTCOME_LOST));
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
                g_autofree char *k = key_of(rg->uri, rg->uuid);
                Waiting *w = g_hash_table_lookup(m->waiting, k);

                if (!restorable(rg) || !guest_cache_reachable(m->cache, rg->uri) ||
                    (w && (w->given_up || now < w->next_at)))
                        continue;
                g_hash_table_add(only, g_steal_pointer(&k));
        }
        return g_hash_table_size(only) > 0 ? g_steal_pointer(&only) : NULL;
}

static bool maybe_restore(Manager *m)
{
        g_autoptr(GHashTable) only = NULL;

        if (m->run || !m->restore_pending || manager_held(m) ||
            (m->state != MANAGER_IDLE && m->state != MANAGER_STARTING))
                return false;
        only = restorable_now(m);
        if (!only)
                return false;
        start_run(m, RUN_RESTORE, false, only);
        return true;
}

/* Once READY and every URI's first list is back (or ConnectTimeoutSec passed): restore. */
static void maybe_start_up(Manager *m)
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
                set_state(m, MANAGER_IDLE);
                return;
        }
        m->restore_pending = m->config->restore;
        m->restore_since = now_usec();
        if (!maybe_restore(m))
                set_state(m, MANAGER_IDLE);
}

static gboolean settle_cb(gpointer p)
{
        Manager *m = p;

        m->settle_source = 0;
        m->settle_expired = true;
        maybe_start_up(m);
        return G_SOURCE_REMOVE;
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
        if (m->config->connect_timeout_usec > 0 && !guest_cache_all_tried(m->cache))
                m->settle_source = g_timeout_add(
                        (guint) MAX(1, m->config->connect_timeout_usec / USEC_PER_MSEC), settle_cb, m);
        maybe_start_up(m);
}

static void on_prepare_for_shutdown(Logind *l, bool start, void *userdata)
{
        Manager *m = userdata;

        log_notice("logind: PrepareForShutdown(%s)", start ? "true" : "false");
        if (start) {
                switch (m->state) {
                case MANAGER_PRESERVING:
                        learn_shutdown_type(m);
                        m->run_is_shutdown = true; /* a rehearsal turned real */
                        m->cancel_after_run = false;
                        break;
                case MANAGER_PRESERVED:
                        /* After a rehearsal: guests may have been started since. */
                        start_run(m, RUN_PRESERVE, true, NULL);
                        break;
                case MANAGER_RESTORING:
                        m->preserve_after_run = true;
                        engine_cancel(m->run);
                        break;
                case MANAGER_STARTING:
                case MANAGER_IDLE:
                        start_run(m, RUN_PRESERVE, true, NULL);
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
                restore_after_cancel(m);
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
        start_run(m, RUN_PRESERVE, true, NULL);
}

void manager_terminate(Manager *m)
{
        notify("STOPPING=1");
        switch (m->state) {
        case MANAGER_PRESERVING:
                /* systemd starts the stop timeout afresh at SIGTERM: extend again now. */
                m->exit_after_run = true;
                if (m->run_is_shutdown)
                        learn_shutdown_type(m);
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

/* Why the record's guest @k waits to be restored, or NULL if it does not. */
static const char *waiting_why(Manager *m, const char *uri, const char *uuid, const char *k)
{
        RecordGuest *rg = record_find(m->record, uri, uuid);
        Waiting *w;

        if (!m->restore_pending || manager_held(m) || !rg || !restorable(rg) ||
            (m->run_only && g_hash_table_contains(m->run_only, k)))
                return NULL;
        w = g_hash_table_lookup(m->waiting, k);
        if (w)
                return w->given_up ? NULL : w->why;
        if (!guest_cache_reachable(m->cache, uri))
                return "its URI does not answer yet";
        return NULL;
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
        /* A restore that waits shows as such, not as the failure that made it wait. */
        for (guint i = 0; i < rows->len; i++) {
                GuestRow *r = rows->pdata[i];
                g_autofree char *k = key_of(r->uri, r->uuid);

                if (m->state != MANAGER_RESTORING && waiting_why(m, r->uri, r->uuid, k))
                        r->outcome = outcome_to_string(OUTCOME_WAITING);
        }
        return rows;
}

static void waiting_row_free(gpointer p)
{
        WaitingRow *r = p;

        g_free(r->uri);
        g_free(r->uuid);
        g_free(r->name);
        g_free(r->why);
        g_free(r);
}

GPtrArray *manager_restore_waiting(Manager *m)
{
        GPtrArray *rows = g_ptr_array_new_with_free_func(waiting_row_free);

        for (guint i = 0; i < m->record->guests->len; i++) {
                RecordGuest *rg = m->record->guests->pdata[i];
                g_autofree char *k = key_of(rg->uri, rg->uuid);
                const char *why = waiting_why(m, rg->uri, rg->uuid, k);
                WaitingRow *r;

                if (!why)
                        continue;
                r = g_new0(WaitingRow, 1);
                r->uri = g_strdup(rg->uri);
                r->uuid = g_strdup(rg->uuid);
                r->name = g_strdup(rg->name);
                r->why = g_strdup(why);
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

static void plan_setting(PlanRow *r, const char *key, char *value, const char *source)
{
        g_ptr_array_add(r->settings, g_strdup(key));
        g_ptr_array_add(r->settings, value);
        g_ptr_array_add(r->settings, g_strdup(source));
}

typedef struct PlanCall {
        Manager *m;
        GPtrArray *rows;  /* PlanRow* */
        GArray *guests;   /* PreflightGuest, one per row */
        GPtrArray *paths; /* the save directories asked */
        PreflightProbe *probe;
        ManagerPlanDone done;
        void *userdata;
        GDestroyNotify destroy;
} PlanCall;

static void plan_call_free(gpointer p)
{
        PlanCall *c = p;

        preflight_probe_cancel(c->probe);
        g_ptr_array_unref(c->rows);
        for (guint i = 0; i < c->guests->len; i++)
                preflight_guest_clear(&g_array_index(c->guests, PreflightGuest, i));
        g_array_unref(c->guests);
        g_ptr_array_unref(c->paths);
        if (c->destroy)
                c->destroy(c->userdata);
        g_free(c);
}

static int plan_dir(PlanCall *c, const char *dir)
{
        guint k;

        if (!dir)
                return -1;
        for (k = 0; k < c->paths->len && !streq_ptr(c->paths->pdata[k], dir); k++)
                ;
        if (k == c->paths->len)
                g_ptr_array_add(c->paths, g_strdup(dir));
        return (int) k;
}

static void plan_guest(const char *uri, bool reachable, const CachedGuest *g, void *userdata)
{
        PlanCall *c = userdata;
        Manager *m = c->m;
        GuestPolicy policy;
        PlanRow *r;

        if (!guest_state_is_active(g->state))
                return;
        policy_for_guest(m->config, g->name, g->persistent, g->metadata, &policy);
        r = g_new0(PlanRow, 1);
        r->uri = g_strdup(uri);
        r->uuid = g_strdup(g->uuid);
        r->name = g_strdup(g->name);
        r->persistent = g->persistent;
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
                plan_setting(r, guest_key_to_string(k), value, policy.source[k]);
        }
        if (policy.error)
                plan_setting(r, "metadata-error", g_strdup(policy.error), "metadata");
        g_array_append_val(
                c->guests,
                ((PreflightGuest){
                        .memory_bytes = g->memory_kib * 1024,
                        .hostdev = g->hostdev,
                        .steps = policy.steps,
                        .has_order = policy.has_order,
                        .order = policy.order,
                        /* The transient guests' directory is the last one. */
                        .dir = g->persistent ? plan_dir(c, preflight_managed_save_dir(
                                                                   m->config->managed_save_dir, uri))
                                             : -2,
                }));
        guest_policy_clear(&policy);
        g_ptr_array_add(c->rows, r);
}

static gint plan_rank_cmp(gconstpointer a, gconstpointer b)
{
        const PlanRow *x = *(PlanRow *const *) a, *y = *(PlanRow *const *) b;

        return x->rank < y->rank ? -1 : x->rank > y->rank ? 1 : 0;
}

static void plan_probed(const PreflightDir *dirs, guint n_dirs, const SaveSpeed *speed, void *userdata)
{
        PlanCall *c = userdata;
        Manager *m = c->m;
        g_autofree char *warning = NULL;
        PreflightPlan plan;

        c->probe = NULL;
        for (guint i = 0; i < c->guests->len; i++) {
                PreflightGuest *pg = &g_array_index(c->guests, PreflightGuest, i);

                if (!dirs)
                        pg->dir = -1; /* no answer in time: not checked */
                else if (pg->dir == -2)
                        pg->dir = (int) c->paths->len - 1;
        }
        preflight_plan(dirs, n_dirs, speed, m->config->parallel_saves, m->config->deadline_usec,
                       (PreflightGuest *) (void *) c->guests->data, c->guests->len, &plan);
        for (guint i = 0; i < c->rows->len; i++) {
                PlanRow *r = c->rows->pdata[i];
                PreflightGuest *pg = &g_array_index(c->guests, PreflightGuest, i);

                r->steps = steps_to_string(pg->planned);
                r->rank = pg->rank;
                if (pg->estimate_usec > 0) {
                        char buf[G_ASCII_DTOSTR_BUF_SIZE];

                        /* Seconds, a '.' whatever the daemon's locale: a value for programs. */
                        plan_setting(r, "save-estimate",
                                     g_strdup(g_ascii_formatd(buf, sizeof(buf), "%.1f",
                                                              (double) pg->estimate_usec / USEC_PER_SEC)),
                                     "pre-flight");
                }
                if (pg->reason)
                        plan_setting(r, "not-saved", g_strdup(pg->reason), "pre-flight");
        }
        if (!dirs)
                for (guint i = 0; i < c->rows->len; i++)
                        plan_setting(c->rows->pdata[i], "space-unknown",
                                     g_strdup("the save directories did not answer in time"), "pre-flight");
        g_ptr_array_sort(c->rows, plan_rank_cmp);
        warning = preflight_plan_warning(&plan);
        c->done(m, c->rows, &plan, warning, c->userdata);
        g_ptr_array_remove(m->plan_calls, c); /* frees it */
}

void manager_plan(Manager *m, ManagerPlanDone done, void *userdata, GDestroyNotify destroy)
{
        PlanCall *c = g_new0(PlanCall, 1);
        g_autofree char *speed_file = g_build_filename(m->state_dir, SPEED_FILE, NULL);

        c->m = m;
        c->rows = g_ptr_array_new_with_free_func(plan_row_free);
        c->guests = g_array_new(FALSE, TRUE, sizeof(PreflightGuest));
        c->paths = g_ptr_array_new_with_free_func(g_free);
        c->done = done;
        c->userdata = userdata;
        c->destroy = destroy;
        guest_cache_foreach(m->cache, plan_guest, c);
        g_ptr_array_add(c->paths, g_build_filename(m->state_dir, "save", NULL));
        g_ptr_array_add(c->paths, NULL);
        g_ptr_array_add(m->plan_calls, c);
        c->probe = preflight_probe_submit(m->workers, (char *const *) c->paths->pdata, speed_file,
                                          PREFLIGHT_PROBE_TIMEOUT_USEC, plan_probed, c);
        g_ptr_array_remove_index(c->paths, c->paths->len - 1); /* the NULL */
}

static void speed_stored(int r, const char *path, const SaveSpeed *speed)
{
        if (r < 0)
                log_full(LOG_WARNING, -r, NULL, NULL, "Cannot write the save speed to %s: %m", path);
        else
                log_debug("Save speed measured here: %" G_GUINT64_FORMAT " MiB/s after %u runs",
                          speed->bytes_per_sec / (1024 * 1024), speed->runs);
}

/* The saves of a preserve run tell how fast this host saves: the next plans use it. */
static void note_save_speed(Manager *m, Engine *e)
{
        g_autoptr(GPtrArray) gs = engine_guests(e);
        g_autofree char *path = NULL;
        guint64 bytes = 0, usec = 0;
        unsigned saves = 0;

        for (guint i = 0; i < gs->len; i++) {
                const EngineGuest *g = gs->pdata[i];

                if (g->outcome != OUTCOME_SAVED || g->save_usec == 0)
                        continue;
                bytes += g->memory_kib * 1024;
                usec += g->save_usec;
                saves++;
        }
        if (saves == 0)
                return;
        path = g_build_filename(m->state_dir, SPEED_FILE, NULL);
        save_speed_submit_update(m->workers, path, bytes, usec, saves, speed_stored);
}

/* ---- life cycle ---- */

static void on_cache_changed(GuestCache *c, void *userdata)
{
        schedule_flush(userdata);
        schedule_running_update(userdata);
}

static void on_cache_listed(GuestCache *c, const char *uri, bool ok, void *userdata)
{
        Manager *m = userdata;

        /* During a run the record is the engine's: after it, the cache lists again. */
        if (ok && !m->run && !g_hash_table_contains(m->reconciled, uri))
                reconcile(m, uri);
        maybe_start_up(m);
        /* A URI that answers again: the restores that waited for it. */
        if (ok)
                (void) maybe_restore(m);
        bus_manager_emit(m, (const char *const[]){"RestoreWaiting", NULL});
}

static const GuestCacheCallbacks cache_callbacks = {
        .changed = on_cache_changed,
        .listed = on_cache_listed,
};

int manager_new(const ManagerOptions *o, Config *config, Manager **ret)
{
        g_autoptr(Manager) m = g_new0(Manager, 1);
        g_autofree char *record_path = NULL, *running_path = NULL, *problem = NULL, *running_problem = NULL;

        m->config = config;
        m->config_path = g_strdup(o->config_path);
        m->config_explicit = o->config_explicit;
        m->state_dir = g_strdup(o->state_dir);
        m->state = MANAGER_STARTING;
        m->workers = workers_new(NULL, 32);
        m->cache = guest_cache_new(m->workers, &cache_callbacks, m);
        /* The guests are listed on a worker while the state files are read: at start-up the
         * restore waits for that list. Its result is handled once the main loop runs. */
        hypervisor_libvirt_global_init();
        guest_cache_set_uris(m->cache, m->config->uris);
        m->outcomes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        m->reconciled = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        m->waiting = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, waiting_free);
        m->last_preserved = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        m->plan_calls = g_ptr_array_new_with_free_func(plan_call_free);

        /* Neither a missing state directory nor an unreadable record stops the daemon: it
         * reports them and runs on (a run's record writes then fail loudly too). */
        if (g_mkdir_with_parents(m->state_dir, 0700) < 0)
                log_error_errno(errno, "Cannot create the state directory %s: %m", m->state_dir);
        record_path = g_build_filename(m->state_dir, "record", NULL);
        (void) record_load_or_set_aside(record_path, &m->record, &problem);
        if (problem)
                log_error("Unreadable record: %s", problem);
        else if (m->record->guests->len > 0)
                log_info("Record %s lists %u guests%s", record_path, m->record->guests->len,
                         m->record->hold ? " (maintenance hold)" : "");
        running_path = g_build_filename(m->state_dir, "running", NULL);
        m->running = running_set_new(running_path, &running_problem);
        if (running_problem)
                log_error("Unreadable running set: %s", running_problem);
        {
                g_autofree char *runs_dir = g_build_filename(m->state_dir, "runs", NULL);
                g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);

                m->history = run_history_load(runs_dir, problems);
                for (guint i = 0; i < problems->len; i++)
                        log_error("Unreadable run history: %s", (char *) problems->pdata[i]);
                m->history_writer = workers_new(NULL, 1);
        }

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
        if (m->running_source)
                g_source_remove(m->running_source);
        if (m->settle_source)
                g_source_remove(m->settle_source);
        if (m->retry_source)
                g_source_remove(m->retry_source);
        g_ptr_array_unref(m->plan_calls);
        manager_disconnect_bus(m);
        /* Not waited for: a job stuck in a hung libvirtd must not hang the exit. Jobs hold
         * references to their hypervisors, so these outlive them. */
        g_clear_pointer(&m->workers, workers_abandon);
        /* Waited for: the last run reaches the disk before the daemon exits. */
        g_clear_pointer(&m->history_writer, workers_free);
        run_history_free(m->history);
        g_free(m->run_requested_by);
        g_free(m->requester);
        g_free(m->shutdown_type);
        guest_cache_free(m->cache);
        g_hash_table_unref(m->outcomes);
        g_hash_table_unref(m->reconciled);
        g_hash_table_unref(m->waiting);
        g_hash_table_unref(m->last_preserved);
        if (m->run_only)
                g_hash_table_unref(m->run_only);
        /* After the cache: waits for a write in flight. */
        running_set_free(m->running);
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
