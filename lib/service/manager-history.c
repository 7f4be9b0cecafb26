/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The runs kept for LastRuns() and guestkeeperctl last-run: why each run happened and who asked
 * (the kind of host shutdown, as logind or systemd tells it), and the write of a finished run to
 * $STATE_DIRECTORY/runs/ on a thread of its own. manager.c starts and ends the runs. */

#include <errno.h>

#include "log.h"
#include "macro.h"
#include "manager-private.h"
#include "unit-state.h"
#include "util.h"

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
void manager_learn_shutdown_type(Manager *m)
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
void manager_run_origin(Manager *m, RunKind kind, bool host_shutdown)
{
        g_free(m->run_requested_by);
        if (kind == RUN_PRESERVE && host_shutdown) {
                g_clear_pointer(&m->shutdown_type, g_free);
                manager_learn_shutdown_type(m);
                m->run_reason = run_reason_from_shutdown_type(m->shutdown_type);
                m->run_requested_by = g_strdup(m->exit_after_run ? "SIGTERM" : "logind");
        } else if (kind == RUN_PRESERVE) {
                m->run_reason = manager_held(m) ? RUN_REASON_MAINTENANCE : RUN_REASON_REHEARSAL;
                m->run_requested_by = g_steal_pointer(&m->requester) ?: g_strdup("unknown");
        } else if (m->cancel_requester) {
                m->run_reason = RUN_REASON_CANCELLED;
                m->run_requested_by = g_steal_pointer(&m->cancel_requester);
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
void manager_keep_run(Manager *m, Engine *e)
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
