/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "manager-private.h"

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

/* How long an unreachable URI is retried at the start of a run. At shutdown every second
 * counts; at boot libvirtd may still be coming up. */
#define CONNECT_RETRY_PRESERVE_USEC (2 * USEC_PER_SEC)
#define CONNECT_RETRY_RESTORE_USEC  (10 * USEC_PER_SEC)

void manager_start_run(Manager *m, RunKind kind, bool host_shutdown, GHashTable *only);
static void check_conflicts(Manager *m);

char *manager_key_of(const char *uri, const char *uuid)
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

/* ---- other mechanisms acting on the same guests ---- */

static void on_unit_state(const char *unit, const char *unit_file_state, const char *active_state,
                          void *userdata)
{
        Manager *m = userdata;
        /* Testing aid (guestkeeperd(8)): where to look for the files of other mechanisms. */
        g_autoptr(GPtrArray) now =
                conflicts_detect(g_getenv("GUESTKEEPER_ROOT") ?: "/", hypervisor_libvirt_version());
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
        manager_schedule_flush(m); /* the metrics */
}

/* At start-up, on Reload and before each run: systemd's view of libvirt-guests.service (over
 * the bus, if there is one), libvirt's own auto-shutdown (qemu.conf). */
static void check_conflicts(Manager *m)
{
        /* Read here, not in the answer: the run about to start must already leave libvirt's
         * guests alone. */
        m->config->libvirt_auto_shutdown = conflicts_libvirt_auto_shutdown(
                g_getenv("GUESTKEEPER_ROOT") ?: "/", hypervisor_libvirt_version());
        if (!m->bus || unit_state_query(m->bus, "libvirt-guests.service", on_unit_state, m) < 0)
                on_unit_state("libvirt-guests.service", NULL, NULL, m);
}

/* ---- exit ---- */

static void do_exit(Manager *m, int code)
{
        manager_set_state(m, MANAGER_STOPPING);
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

/* A guest of the run for the journal: where it stands (GUESTKEEPER_STEP=, GUESTKEEPER_OUTCOME=). */
static LogGuest log_guest(const EngineGuest *g)
{
        const char *outcome = outcome_to_string(g->outcome);

        return (LogGuest){
                .name = g->name,
                .uuid = g->uuid,
                .uri = g->uri,
                .step = g->n_history > 0 ? engine_step_kind_to_string(g->history[g->n_history - 1].kind)
                                         : NULL,
                .outcome = outcome && *outcome ? outcome : NULL,
        };
}

static void on_guest_changed(Engine *e, const EngineGuest *g, void *userdata)
{
        Manager *m = userdata;
        LogGuest lg = log_guest(g);
        char duration[64] = "";
        const char *extra[] = {duration, NULL};

        if (g->finished && outcome_is_restored(g->outcome))
                guest_cache_note_running(m->cache, g->uri, g->uuid, g->name, g->persistent);
        g_hash_table_replace(m->outcomes, g_strconcat(g->uri, "\n", g->uuid, NULL),
                             GINT_TO_POINTER(g->outcome));
        /* How long its last step took, on the entry that gives its outcome. */
        if (g->finished && g->n_history > 0 && g->history[g->n_history - 1].end_usec > 0)
                g_snprintf(duration, sizeof duration, "GUESTKEEPER_DURATION_USEC=%" G_GUINT64_FORMAT,
                           g->history[g->n_history - 1].end_usec - g->history[g->n_history - 1].start_usec);
        else
                extra[0] = NULL;
        if (g->finished && g->outcome == OUTCOME_FAILED)
                log_full_fields(LOG_ERR, 0, &lg, MESSAGE_ID_GUEST_FAILED, extra, "%s: %s failed: %s",
                                g->name, run_kind_to_string(engine_kind(e)), g->error ?: "no step left");
        else if (g->finished && g->outcome == OUTCOME_RECOVERED)
                log_full_fields(LOG_NOTICE, 0, &lg, NULL, extra, "%s: restored after an unclean stop",
                                g->name);
        else if (g->finished)
                log_full_fields(LOG_INFO, 0, &lg, NULL, extra, "%s: %s", g->name,
                                *outcome_to_string(g->outcome) ? outcome_to_string(g->outcome)
                                                               : "untouched");
        manager_schedule_flush(m);
}

static void on_message(Engine *e, EngineLevel level, EngineTopic topic, const EngineGuest *g,
                       const char *uri, const char *text, void *userdata)
{
        static const int map[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG};
        static const char *const message_ids[] = {
                [ENGINE_TOPIC_NONE] = NULL,
                [ENGINE_TOPIC_PREFLIGHT] = MESSAGE_ID_PREFLIGHT,
                [ENGINE_TOPIC_UNREACHABLE] = MESSAGE_ID_UNREACHABLE,
                [ENGINE_TOPIC_DEADLINE] = MESSAGE_ID_DEADLINE,
                [ENGINE_TOPIC_RECORD_WRITE] = MESSAGE_ID_RECORD_WRITE_FAILED,
        };
        LogGuest lg = g ? log_guest(g) : (LogGuest){.uri = uri};

        log_full(map[level], 0, &lg, message_ids[topic], "%s", text);
}

static void on_progress(Engine *e, void *userdata)
{
        manager_schedule_flush(userdata);
}

/* A cancelled shutdown: what the run stopped comes back. Held guests stay down. */
static void restore_after_cancel(Manager *m)
{
        m->shutdown_cancelled = true;
        want_inhibitor(m, true);
        m->restore_pending = !manager_held(m);
        m->restore_since = now_usec();
        manager_start_run(m, RUN_RESTORE, false, manager_held(m) ? m->last_preserved : NULL);
}

/* The run's last entry: its figures as fields too, for the catalog and for filters. */
static void log_run_finished(Manager *m, Engine *e, unsigned total, unsigned done, unsigned failed)
{
        RunKind kind = engine_kind(e);
        guint64 start, end;
        g_autofree char *f_duration = NULL, *f_total = NULL, *f_done = NULL, *f_failed = NULL;
        const char *extra[5];

        engine_times(e, &start, &end);
        f_duration = g_strdup_printf("GUESTKEEPER_DURATION_USEC=%" G_GUINT64_FORMAT,
                                     end > start ? end - start : 0);
        f_total = g_strdup_printf("GUESTKEEPER_GUESTS_TOTAL=%u", total);
        f_done = g_strdup_printf("GUESTKEEPER_GUESTS_DONE=%u", done);
        f_failed = g_strdup_printf("GUESTKEEPER_GUESTS_FAILED=%u", failed);
        extra[0] = f_duration;
        extra[1] = f_total;
        extra[2] = f_done;
        extra[3] = f_failed;
        extra[4] = NULL;
        /* The reason is the history's: a rehearsal that a host shutdown turned real says so. */
        log_set_run(m->run_id, run_kind_to_string(kind), run_reason_to_string(m->run_reason));
        if (kind == RUN_RESTORE && (m->last->by_outcome[OUTCOME_RECOVERED] > 0 || m->last->waiting > 0))
                log_full_fields(
                        failed || m->last->by_outcome[OUTCOME_RECOVERED] ? LOG_WARNING : LOG_NOTICE, 0, NULL,
                        failed ? MESSAGE_ID_RUN_FAILED : MESSAGE_ID_RUN_FINISHED, extra,
                        "Restore run finished: %u guests, %u done (%u restored after an unclean stop), "
                        "%u failed, %u waiting for a retry",
                        total, done, m->last->by_outcome[OUTCOME_RECOVERED], failed, m->last->waiting);
        else
                log_full_fields(failed ? LOG_WARNING : LOG_NOTICE, 0, NULL,
                                failed ? MESSAGE_ID_RUN_FAILED : MESSAGE_ID_RUN_FINISHED, extra,
                                "%s run finished: %u guests, %u done, %u failed",
                                kind == RUN_PRESERVE ? "Preserve" : "Restore", total, done, failed);
}

/* Cancel() of a preserve run: the guests it stopped come back, and a hold it set is released. */
static void restore_after_request_cancel(Manager *m)
{
        if (m->run_set_hold) {
                m->record->hold = false; /* on disk with the run's record writes */
                log_notice("Maintenance hold released: its preserve run was cancelled");
                bus_manager_emit(m, (const char *const[]){"Held", NULL});
                manager_schedule_flush(m); /* the metrics */
        }
        want_inhibitor(m, true);
        manager_start_run(m, RUN_RESTORE, false, m->last_preserved);
}

static void on_finished(Engine *e, void *userdata)
{
        Manager *m = userdata;
        RunKind kind = engine_kind(e);
        unsigned total, done, failed;

        run_summary_free(m->last);
        m->last = engine_summarize(e);
        manager_note_save_speed(m, e);
        if (m->keepalive_source) {
                g_source_remove(m->keepalive_source);
                m->keepalive_source = 0;
        }
        if (kind == RUN_RESTORE) {
                /* A start that is retried has not failed (yet). */
                m->last->waiting = manager_note_restore_results(m, e);
                m->last->failed -= MIN(m->last->failed, m->last->waiting);
        } else {
                g_autoptr(GPtrArray) gs = engine_guests(e);

                g_hash_table_remove_all(m->last_preserved);
                for (guint i = 0; i < gs->len; i++) {
                        const EngineGuest *g = gs->pdata[i];

                        g_hash_table_add(m->last_preserved, manager_key_of(g->uri, g->uuid));
                }
        }
        manager_keep_run(m, e);
        total = m->last->total;
        done = m->last->done;
        failed = m->last->failed;
        log_run_finished(m, e, total, done, failed);
        log_set_run(NULL, NULL, NULL);
        g_clear_pointer(&m->run, engine_unref);
        g_clear_pointer(&m->run_only, g_hash_table_unref);
        bus_manager_emit_run_finished(m, run_kind_to_string(kind), done, failed);
        bus_manager_emit(m, (const char *const[]){"Held", NULL});
        manager_schedule_flush(m); /* the metrics */

        if (kind == RUN_PRESERVE) {
                manager_set_state(m, MANAGER_PRESERVED);
                /* Every guest has an outcome and the record is on disk: let logind go on. A
                 * rehearsal keeps the lock. */
                if (m->run_is_shutdown && !m->cancel_after_run)
                        want_inhibitor(m, false);
                if (m->exit_after_run) {
                        do_exit(m, 0);
                        return;
                }
                if (m->preserve_after_run) {
                        /* A shutdown came after Cancel(): the guests left running are preserved. */
                        m->preserve_after_run = false;
                        manager_start_run(m, RUN_PRESERVE, true, NULL);
                        return;
                }
                if (m->cancel_after_run) {
                        m->cancel_after_run = false;
                        restore_after_cancel(m);
                } else if (m->cancel_requester)
                        restore_after_request_cancel(m);
                g_clear_pointer(&m->cancel_requester, g_free);
                guest_cache_refresh_all(m->cache);
                manager_schedule_running_update(m);
                return;
        }

        manager_set_state(m, MANAGER_IDLE);
        guest_cache_refresh_all(m->cache);
        manager_schedule_running_update(m);
        if (m->preserve_after_run) {
                m->preserve_after_run = false;
                manager_start_run(m, RUN_PRESERVE, true, NULL);
        }
}

static const EngineCallbacks engine_callbacks = {
        .guest_changed = on_guest_changed,
        .message = on_message,
        .progress = on_progress,
        .finished = on_finished,
};

void manager_start_run(Manager *m, RunKind kind, bool host_shutdown, GHashTable *only)
{
        g_autofree char *save_dir = g_build_filename(m->state_dir, "save", NULL);
        g_autofree char *speed_file = g_build_filename(m->state_dir, SPEED_FILE, NULL);
        g_autoptr(GPtrArray) hvs = guest_cache_hypervisors(m->cache);
        /* libvirt's auto-shutdown acts only when the host shuts down: a rehearsal, a named
         * preserve or a maintenance hold acts on its guests too. */
        g_autoptr(Config) own = NULL;
        EngineOptions o = {
                .kind = kind,
                .config = m->config,
                .save_dir = save_dir,
                .speed_file = speed_file,
                .connect_retry_usec =
                        kind == RUN_PRESERVE ? CONNECT_RETRY_PRESERVE_USEC : CONNECT_RETRY_RESTORE_USEC,
                .list_timeout_usec = m->config->connect_timeout_usec,
                .progress_interval_usec = 1 * USEC_PER_SEC,
                .only = only,
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
        if (kind == RUN_PRESERVE && !host_shutdown && m->config->libvirt_auto_shutdown != SCOPE_NONE) {
                own = config_copy(m->config);
                own->libvirt_auto_shutdown = SCOPE_NONE;
                o.config = own; /* engine_new() takes its own copy */
        }
        {
                sd_id128_t id;

                if (sd_id128_randomize(&id) < 0)
                        id = SD_ID128_MAKE(00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00);
                sd_id128_to_string(id, m->run_id);
        }
        manager_run_origin(m, kind, host_shutdown);
        log_set_run(m->run_id, run_kind_to_string(kind), run_reason_to_string(m->run_reason));
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
        manager_set_state(m, kind == RUN_PRESERVE ? MANAGER_PRESERVING : MANAGER_RESTORING);
        bus_manager_emit(m, (const char *const[]){"LastRun", NULL});
        engine_start(m->run);
        if (kind == RUN_PRESERVE) {
                manager_send_keepalive(m, true);
                m->keepalive_source = g_timeout_add(KEEPALIVE_INTERVAL_MSEC, manager_keepalive_cb, m);
        }
}

int manager_preserve(Manager *m, bool hold)
{
        return manager_preserve_guests(m, hold, NULL);
}

int manager_preserve_guests(Manager *m, bool hold, GHashTable *only)
{
        bool set_hold = hold && !m->record->hold;

        if (m->state != MANAGER_IDLE && m->state != MANAGER_PRESERVED)
                return -EBUSY;
        if (set_hold) {
                /* On disk with the run's first record write, before any guest is touched. */
                m->record->hold = true;
                log_notice(
                        "Maintenance hold: the preserved guests stay down until 'guestkeeperctl restore'");
                bus_manager_emit(m, (const char *const[]){"Held", NULL});
                manager_schedule_flush(m); /* the metrics */
        }
        manager_start_run(m, RUN_PRESERVE, false, only);
        m->run_set_hold = set_hold;
        return 0;
}

int manager_restore(Manager *m)
{
        return manager_restore_guests(m, NULL);
}

/* The hold and the restores retried by the daemon itself are about every recorded guest: a
 * restore of some (@only) leaves both as they are. */
int manager_restore_guests(Manager *m, GHashTable *only)
{
        if (m->state != MANAGER_IDLE && m->state != MANAGER_PRESERVED)
                return -EBUSY;
        if (only) {
                want_inhibitor(m, true);
                manager_start_run(m, RUN_RESTORE, false, only);
                return 0;
        }
        if (m->record->hold) {
                m->record->hold = false; /* on disk with the run's record writes */
                log_notice("Maintenance hold released");
                bus_manager_emit(m, (const char *const[]){"Held", NULL});
                manager_schedule_flush(m); /* the metrics */
        }
        want_inhibitor(m, true);
        m->restore_pending = true;
        m->restore_since = now_usec();
        g_hash_table_remove_all(m->waiting);
        manager_start_run(m, RUN_RESTORE, false, NULL);
        return 0;
}

int manager_cancel(Manager *m, char **ret_error)
{
        g_autofree char *by = g_steal_pointer(&m->requester) ?: g_strdup("unknown");

        if (!m->run || engine_is_cancelled(m->run) || m->cancel_after_run) {
                *ret_error = g_strdup("No rehearsal or restore run is under way");
                return -ESRCH;
        }
        if (m->run_is_shutdown || m->preserve_after_run) {
                *ret_error =
                        g_strdup("The run answers a host shutdown: guestkeeper cannot cancel it (cancel "
                                 "the shutdown itself, e.g. 'shutdown -c')");
                return -EBUSY;
        }
        if (m->exit_after_run) {
                *ret_error = g_strdup("guestkeeperd is stopping: the run ends, then the daemon exits");
                return -EBUSY;
        }
        log_notice("Cancel() called by %s: the %s run stops", by, run_kind_to_string(engine_kind(m->run)));
        if (engine_kind(m->run) == RUN_PRESERVE)
                m->cancel_requester = g_steal_pointer(&by);
        else {
                /* What is not started stays in the record for a later restore: no retries. */
                m->restore_pending = false;
                g_hash_table_remove_all(m->waiting);
                if (m->retry_source) {
                        g_source_remove(m->retry_source);
                        m->retry_source = 0;
                }
        }
        engine_cancel(m->run);
        return 0;
}

bool manager_held(Manager *m)
{
        return m->record->hold;
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
        manager_notify("READY=1");
        log_info("Ready: %u URI%s, inhibitor %s", n_uris, n_uris == 1 ? "" : "s",
                 manager_inhibitor_held(m) ? "held" : "not available");
        if (m->state != MANAGER_STARTING)
                return; /* a shutdown already started a run */
        if (m->config->connect_timeout_usec > 0 && !guest_cache_all_tried(m->cache))
                m->settle_source =
                        g_timeout_add((guint) MAX(1, m->config->connect_timeout_usec / USEC_PER_MSEC),
                                      manager_settle_cb, m);
        manager_maybe_start_up(m);
}

static void on_prepare_for_shutdown(Logind *l, bool start, void *userdata)
{
        Manager *m = userdata;

        log_notice("logind: PrepareForShutdown(%s)", start ? "true" : "false");
        if (start) {
                switch (m->state) {
                case MANAGER_PRESERVING:
                        if (m->cancel_requester) {
                                /* A cancelled rehearsal preserves nothing more: a run of its own. */
                                g_clear_pointer(&m->cancel_requester, g_free);
                                m->preserve_after_run = true;
                                break;
                        }
                        manager_learn_shutdown_type(m);
                        m->run_is_shutdown = true; /* a rehearsal turned real */
                        m->cancel_after_run = false;
                        break;
                case MANAGER_PRESERVED:
                        /* After a rehearsal: guests may have been started since. */
                        manager_start_run(m, RUN_PRESERVE, true, NULL);
                        break;
                case MANAGER_RESTORING:
                        m->preserve_after_run = true;
                        engine_cancel(m->run);
                        break;
                case MANAGER_STARTING:
                case MANAGER_IDLE:
                        manager_start_run(m, RUN_PRESERVE, true, NULL);
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
        manager_schedule_flush(m);
}

static void on_logind_settled(Logind *l, const char *error, void *userdata)
{
        Manager *m = userdata;

        if (error)
                log_full(LOG_WARNING, 0, NULL, MESSAGE_ID_NO_INHIBITOR,
                         "Cannot take logind's shutdown inhibitor: %s; running without it", error);
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
        manager_start_run(m, RUN_PRESERVE, true, NULL);
}

void manager_terminate(Manager *m)
{
        manager_notify("STOPPING=1");
        switch (m->state) {
        case MANAGER_PRESERVING:
                /* systemd starts the stop timeout afresh at SIGTERM: extend again now. */
                m->exit_after_run = true;
                if (m->run_is_shutdown)
                        manager_learn_shutdown_type(m);
                manager_send_keepalive(m, true);
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

/* ---- life cycle ---- */

static void on_cache_changed(GuestCache *c, void *userdata)
{
        manager_schedule_flush(userdata);
        manager_schedule_running_update(userdata);
}

static void on_cache_listed(GuestCache *c, const char *uri, bool ok, void *userdata)
{
        Manager *m = userdata;

        /* During a run the record is the engine's: after it, the cache lists again. */
        if (ok && !m->run && !g_hash_table_contains(m->reconciled, uri))
                manager_reconcile(m, uri);
        manager_maybe_start_up(m);
        /* A URI that answers again: the restores that waited for it. */
        if (ok)
                (void) manager_maybe_restore(m);
        bus_manager_emit(m, (const char *const[]){"RestoreWaiting", NULL});
        manager_schedule_flush(m); /* the metrics */
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
        m->plan_calls = g_ptr_array_new_with_free_func(manager_plan_call_free);

        /* Neither a missing state directory nor an unreadable record stops the daemon: it
         * reports them and runs on (a run's record writes then fail loudly too). */
        if (g_mkdir_with_parents(m->state_dir, 0700) < 0)
                log_error_errno(errno, "Cannot create the state directory %s: %m", m->state_dir);
        record_path = g_build_filename(m->state_dir, "record", NULL);
        (void) record_load_or_set_aside(record_path, &m->record, &problem);
        if (problem)
                log_full(LOG_ERR, 0, NULL, MESSAGE_ID_RECORD_UNREADABLE, "Unreadable record: %s", problem);
        else if (m->record->guests->len > 0)
                log_info("Record %s lists %u guests%s", record_path, m->record->guests->len,
                         m->record->hold ? " (maintenance hold)" : "");
        running_path = g_build_filename(m->state_dir, "running", NULL);
        m->running = running_set_new(running_path, &running_problem);
        if (running_problem)
                log_full(LOG_ERR, 0, NULL, MESSAGE_ID_RECORD_UNREADABLE, "Unreadable running set: %s",
                         running_problem);
        {
                g_autofree char *runs_dir = g_build_filename(m->state_dir, "runs", NULL);
                g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);

                m->history = run_history_load(runs_dir, problems);
                for (guint i = 0; i < problems->len; i++)
                        log_full(LOG_ERR, 0, NULL, MESSAGE_ID_RECORD_UNREADABLE,
                                 "Unreadable run history: %s", (char *) problems->pdata[i]);
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
        /* Waits for a write in flight: a few KiB, no fsync. */
        file_writer_free(m->metrics_writer);
        g_free(m->metrics_path);
        g_free(m->metrics_text);
        g_free(m->metrics_failed_path);
        manager_disconnect_bus(m);
        /* Not waited for: a job stuck in a hung libvirtd must not hang the exit. Jobs hold
         * references to their hypervisors, so these outlive them. */
        g_clear_pointer(&m->workers, workers_abandon);
        /* Waited for: the last run reaches the disk before the daemon exits. */
        g_clear_pointer(&m->history_writer, workers_free);
        run_history_free(m->history);
        g_free(m->run_requested_by);
        g_free(m->requester);
        g_free(m->cancel_requester);
        g_free(m->emitted_in_flight);
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
                m->watchdog_source =
                        g_timeout_add((guint) MAX(1, wd / USEC_PER_MSEC / 2), manager_watchdog_cb, m);
        manager_notify("STATUS=Starting");
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
        manager_notify("RELOADING=1");
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
        manager_notify("READY=1");
        manager_schedule_flush(m);
        return 0;
}
