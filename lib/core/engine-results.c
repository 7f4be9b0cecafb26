/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* One run: what the hypervisor says back. Jobs out and their results in (dispatched to the
 * escalation or the restore), the retry of a call whose connection dropped, a save's progress,
 * and lifecycle events (a guest that stopped by itself). */

#include <errno.h>

#include "engine-private.h"
#include "util.h"

/* A call that failed because the connection is down (libvirtd restarting) is retried, the
 * same step, while the backend reconnects: 0.5 s, 1 s, 2 s, then every 4 s, about 40 s in
 * all. The deadline still applies. */
#define CONN_RETRY_MAX 12

static void job_free(gpointer p)
{
        EngineJob *j = p;

        job_clear(&j->job);
        engine_unref(j->engine);
        g_free(j);
}

static void job_done(gpointer p);

EngineJob *engine_job_new(Engine *e, JobKind kind, Guest *g, HvSlot *slot)
{
        EngineJob *j = g_new0(EngineJob, 1);

        j->engine = engine_ref(e);
        j->guest = g;
        j->slot = g ? g->slot : slot;
        job_init(&j->job, kind, j->slot->hv, g ? g->pub.uuid : NULL);
        if (g) {
                j->gen = g->gen;
                g->jobs++;
        }
        return j;
}

void engine_job_submit(EngineJob *j)
{
        workers_submit(j->engine->workers, j, job_run, job_done, job_free);
}

void guest_submit_job(Guest *g, JobKind kind)
{
        engine_job_submit(engine_job_new(g->engine, kind, g, NULL));
}

gboolean engine_progress_tick(gpointer p)
{
        Engine *e = p;

        for (guint i = 0; i < e->guests->len; i++) {
                Guest *g = e->guests->pdata[i];

                if (g->step != STEP_SAVE || !g->progress_supported || g->progress_query || g->pub.finished)
                        continue;
                g->progress_query = true;
                {
                        /* Not a step: carries no generation change. */
                        EngineJob *j = engine_job_new(e, JOB_PROGRESS, g, NULL);
                        engine_job_submit(j);
                }
        }
        return G_SOURCE_CONTINUE;
}

static void on_progress_done(Guest *g, EngineJob *j)
{
        double f;

        g->progress_query = false;
        if (j->job.r == -EOPNOTSUPP) {
                g->progress_supported = false;
                return;
        }
        if (j->job.r < 0 || j->job.total == 0 || g->step != STEP_SAVE)
                return;
        g->save_total = j->job.total;
        f = MIN(1.0, (double) j->job.processed / (double) j->job.total);
        if (f > g->pub.fraction) {
                g->pub.fraction = f;
                guest_set_outcome(g, g->pub.outcome);
                engine_note_progress(g->engine);
        }
}

void engine_on_event(Hypervisor *h, const char *uuid, GuestEvent event, int detail, void *userdata)
{
        HvSlot *slot = NULL;
        Engine *e = userdata;
        Guest *g;

        if (!uuid || e->phase != PHASE_RUNNING)
                return;
        for (guint i = 0; i < e->n_slots; i++)
                if (e->slots[i].hv == h)
                        slot = &e->slots[i];
        if (!slot || !(g = g_hash_table_lookup(slot->guests, uuid)) || g->pub.finished)
                return;
        if (e->kind != RUN_PRESERVE)
                return;
        if (event != GUEST_EVENT_STOPPED && event != GUEST_EVENT_UNDEFINED)
                return;
        if (detail == STOP_REASON_SAVED && g->step == STEP_SAVE)
                return; /* our own save; its job's result decides */
        if (detail == STOP_REASON_DESTROYED && g->step == STEP_POWEROFF)
                return;
        if (event == GUEST_EVENT_UNDEFINED && g->step >= 0)
                return; /* a transient guest going away after its save/destroy: the job decides */

        g->stopped_seen = true;
        if (g->step == STEP_SHUTDOWN) {
                guest_finish(g, OUTCOME_SHUTDOWN);
        } else if (g->step < 0) {
                /* Waiting for a slot: it stopped by itself. */
                engine_say(e, ENGINE_LEVEL_INFO, g, NULL, "%s stopped by itself", g->pub.name);
                guest_finish(g, OUTCOME_SHUTDOWN);
        }
        /* During a save or poweroff the job's result (and the state check) decides. */
}

static gboolean retry_cb(gpointer p)
{
        EngineJob *j = p;

        j->guest->retry_pending = false;
        engine_job_submit(j);
        return G_SOURCE_REMOVE;
}

/* The connection is down: run the same call again later, the step stays under way. */
static bool retry_on_disconnect(EngineJob *j)
{
        Guest *g = j->guest;
        EngineJob *again;
        guint ms;

        if (!g || j->job.r != -ENOTCONN || j->job.kind == JOB_PROGRESS || j->job.kind == JOB_SYNC_TIME ||
            j->job.kind == JOB_AGENT_PING || j->repeat || g->pub.finished || j->gen != g->gen ||
            g->conn_retries >= CONN_RETRY_MAX || j->engine->phase != PHASE_RUNNING)
                return false;
        ms = backoff_ms(g->conn_retries, 500, 4000);
        if (g->conn_retries == 0)
                engine_say(j->engine, ENGINE_LEVEL_WARNING, g, NULL,
                           "Lost the connection to %s during %s of %s: %s; retrying", g->pub.uri,
                           j->job.kind == JOB_SAVE ? "the save" : "a step", g->pub.name, j->job.error);
        g->conn_retries++;
        g->retry_pending = true;
        again = g_new0(EngineJob, 1);
        job_init_copy(&again->job, &j->job);
        again->engine = engine_ref(j->engine);
        again->guest = g;
        again->slot = j->slot;
        again->gen = g->gen;
        again->check = j->check;
        g->jobs++;
        g_timeout_add_full(G_PRIORITY_DEFAULT, ms, retry_cb, again, NULL);
        return true;
}

static void job_done(gpointer p)
{
        EngineJob *j = p;
        Guest *g = j->guest;

        if (g)
                g->jobs--;
        if (j->engine->phase == PHASE_NEW)
                return; /* detached */
        if (retry_on_disconnect(j))
                return;
        if (g && j->job.r != -ENOTCONN)
                g->conn_retries = 0;

        switch (j->job.kind) {
        case JOB_LIST:
                break;
        case JOB_SAVE:
                guest_on_save_done(g, j);
                return;
        case JOB_SHUTDOWN:
                guest_on_shutdown_done(g, j);
                return;
        case JOB_DESTROY:
                guest_on_destroy_done(g, j);
                return;
        case JOB_STATE:
                guest_on_state_done(g, j);
                return;
        case JOB_PROGRESS:
                on_progress_done(g, j);
                return;
        case JOB_START:
        case JOB_RESTORE:
        case JOB_CREATE:
                guest_on_start_done(g, j);
                return;
        case JOB_AGENT_PING:
                guest_on_ping_done(g, j);
                return;
        case JOB_SYNC_TIME:
                if (j->job.r < 0)
                        engine_say(j->engine, ENGINE_LEVEL_WARNING, g, NULL,
                                   "Could not set the clock of %s: %s", g->pub.name, j->job.error);
                return;
        }

        /* JOB_LIST */
        if (j->job.r < 0)
                engine_slot_listed(j->engine, j->slot, j->job.error, NULL);
        else
                engine_slot_listed(j->engine, j->slot, NULL, g_steal_pointer(&j->job.list));
}
