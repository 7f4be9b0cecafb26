/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A restore run: which recorded guests to start, how each is started (resume, restore from
 * its file, re-create from its XML), and the wait for guest agents between order groups.
 * engine.c decides when a start may begin (the scheduler) and hands the results back. */

#include <errno.h>
#include <unistd.h>

#include "engine-private.h"
#include "util.h"

static void submit_ping(Guest *g)
{
        engine_job_submit(engine_job_new(g->engine, JOB_AGENT_PING, g, NULL));
}

void guest_agent_ready(Guest *g)
{
        Engine *e = g->engine;

        if (!g->awaiting_agent)
                return;
        g->awaiting_agent = false;
        engine_drop_source(&g->ping_source);
        e->awaiting_agent--;
        scheduler_finish(e->sched, g, now_usec());
        engine_schedule(e);
        engine_maybe_finish_run(e);
}

static gboolean ping_again_cb(gpointer p)
{
        Guest *g = p;

        g_clear_pointer(&g->ping_source, g_source_unref);
        submit_ping(g);
        return G_SOURCE_REMOVE;
}

void guest_on_ping_done(Guest *g, EngineJob *j)
{
        Engine *e = g->engine;

        if (!g->awaiting_agent)
                return;
        if (j->job.r >= 0 || j->job.r == -EOPNOTSUPP) {
                if (j->job.r >= 0)
                        engine_say(e, ENGINE_LEVEL_INFO, g, NULL, "%s: its guest agent answers",
                                   g->pub.name);
                else
                        engine_say(e, ENGINE_LEVEL_WARNING, g, NULL,
                                   "%s: cannot ask its guest agent (%s); going on", g->pub.name,
                                   j->job.error);
                guest_agent_ready(g);
                return;
        }
        if (e->cancelled || now_usec() >= g->agent_until) {
                engine_say(e, ENGINE_LEVEL_WARNING, g, NULL,
                           "%s: its guest agent did not answer within %g s (%s); going on", g->pub.name,
                           (double) e->config->agent_timeout_usec / (double) USEC_PER_SEC, j->job.error);
                guest_agent_ready(g);
                return;
        }
        g->ping_source = g_timeout_source_new(1000);
        g_source_set_callback(g->ping_source, ping_again_cb, g, NULL);
        g_source_attach(g->ping_source, NULL);
}

/* A restored guest in agent mode holds the next order group back until its agent answers
 * (bounded by AgentTimeoutSec). */
bool guest_await_agent(Guest *g)
{
        Engine *e = g->engine;

        if (e->kind != RUN_RESTORE || !(g->policy.shutdown_mode & SHUTDOWN_MODE_AGENT) || e->cancelled)
                return false;
        g->awaiting_agent = true;
        g->agent_until = now_usec() + e->config->agent_timeout_usec;
        e->awaiting_agent++;
        submit_ping(g);
        return true;
}

Outcome guest_restored_outcome(Guest *g)
{
        return g->prior == OUTCOME_LOST ? OUTCOME_RECOVERED : OUTCOME_RESTORED;
}

void guest_start_restore(Guest *g)
{
        Engine *e = g->engine;
        EngineJob *j;

        g->gen++;
        g->step = 0;
        guest_history_begin(g, ENGINE_STEP_START);
        guest_set_outcome(g, OUTCOME_RESTORING);

        if (g->pub.persistent) {
                j = engine_job_new(e, JOB_START, g, NULL);
                j->job.flag = e->config->bypass_cache;
        } else if (g->save_file &&
                   (g->prior == OUTCOME_SAVED || g_file_test(g->save_file, G_FILE_TEST_EXISTS))) {
                j = engine_job_new(e, JOB_RESTORE, g, NULL);
                j->job.file = g_strdup(g->save_file);
                j->job.flag = e->config->bypass_cache;
                j->job.channels = e->config->save_channels;
                j->job.concurrent = e->concurrent;
        } else if (g->xml) {
                j = engine_job_new(e, JOB_CREATE, g, NULL);
                j->job.xml = g_strdup(g->xml);
        } else {
                scheduler_release(e->sched, g, 0); /* never started: no delay after it */
                guest_set_error(g, "transient guest without save file or XML: cannot be re-created", NULL);
                engine_say(e, ENGINE_LEVEL_ERR, g, NULL, "%s: %s", g->pub.name, g->pub.error);
                guest_finish(g, OUTCOME_FAILED);
                return;
        }
        engine_job_submit(j);
        engine_note_progress(e);
}

void guest_on_start_done(Guest *g, EngineJob *j)
{
        Engine *e = g->engine;

        guest_release_slots(g); /* a StartDelaySec starts now */
        engine_say_save_outcome(e, g, &j->job);
        if (g->pub.finished)
                return;
        if (j->job.r >= 0) {
                if (j->job.kind == JOB_RESTORE && g->save_file)
                        (void) unlink(g->save_file);
                if (e->config->sync_time && (g->prior == OUTCOME_SAVED || j->job.kind == JOB_RESTORE))
                        guest_submit_job(g, JOB_SYNC_TIME);
                g_clear_pointer(&g->pub.error, g_free);
                guest_finish(g, guest_restored_outcome(g));
                return;
        }
        guest_set_error(g, "start failed", j->job.error);
        engine_say(e, ENGINE_LEVEL_ERR, g, NULL, "Failed to start %s: %s", g->pub.name, j->job.error);
        guest_check_after_failure(g);
}

static HvSlot *slot_for_uri(Engine *e, const char *uri)
{
        for (guint i = 0; i < e->n_slots; i++)
                if (streq_ptr(e->slots[i].uri, uri) || streq_ptr(e->slots[i].hv->uri, uri))
                        return &e->slots[i];
        return NULL;
}

/* The guest's metadata as the restore's list saw it (inactive guests included). */
static const char *listed_metadata(HvSlot *slot, const char *uuid)
{
        const GuestInfo *info = engine_listed(slot, uuid);

        return info ? info->metadata : NULL;
}

void engine_begin_restore(Engine *e)
{
        g_autoptr(GPtrArray) snapshot = g_ptr_array_copy(e->record->guests, NULL, NULL);

        /* The copy inherits the record's free function: it must not free the entries. */
        g_ptr_array_set_free_func(snapshot, NULL);
        for (guint i = 0; i < snapshot->len; i++) {
                RecordGuest *rg = snapshot->pdata[i];
                HvSlot *slot = slot_for_uri(e, rg->uri);
                GuestPolicy policy;
                Guest *g;

                /* "" is a guest that was running when its run began and has no outcome on
                 * disk: the daemon died before writing it (outcomes are group-committed), so
                 * it may have been stopped by us. Like a step in flight: started again if it
                 * is not running, counted if it is. */
                if (!outcome_is_stopped(rg->outcome) && !outcome_is_in_flight(rg->outcome) &&
                    rg->outcome != OUTCOME_NONE && rg->outcome != OUTCOME_LOST) {
                        /* Never stopped by us: failed (still running), or already restored. */
                        record_remove(e->record, rg->uri, rg->uuid);
                        engine_record_touch(e);
                        continue;
                }
                if (e->only) {
                        g_autofree char *k = g_strconcat(rg->uri, "\n", rg->uuid, NULL);

                        if (!g_hash_table_contains(e->only, k))
                                continue; /* not this run's: stays in the record as it is */
                }
                if (!slot) {
                        engine_say(e, ENGINE_LEVEL_WARNING, NULL, rg->uri,
                                   "%s is in the record but its URI %s is not configured; kept for later",
                                   rg->name, rg->uri);
                        continue;
                }
                if (!slot->reachable)
                        continue; /* reported once for the URI; stays in the record */
                if (g_hash_table_contains(slot->guests, rg->uuid))
                        continue;
                policy_for_guest(e->config, rg->uri, rg->name, rg->persistent,
                                 listed_metadata(slot, rg->uuid), &policy);
                /* A guest guestkeeper stopped before libvirt's auto-shutdown was set up is still
                 * guestkeeper's to bring back: libvirt restores only what it saved itself. */
                if (policy.skip && !policy.libvirt) {
                        engine_say(e, ENGINE_LEVEL_NOTICE, NULL, rg->uri,
                                   "%s: not started (Action=skip, from %s); dropped from the record",
                                   rg->name, policy.source[GUEST_KEY_ACTION]);
                        guest_policy_clear(&policy);
                        record_remove(e->record, rg->uri, rg->uuid);
                        engine_record_touch(e);
                        continue;
                }
                g = guest_new(e, slot, rg->uuid, rg->name, rg->persistent);
                g->policy = policy;
                scheduler_add(e->sched, g, g->policy.has_order, g->policy.order);
                g->rec = rg;
                g->prior = rg->outcome;
                g->pub.steps = rg->steps;
                g->save_file = g_strdup(rg->save_file);
                /* A save that completed before its outcome reached the record left its file
                 * at the usual place. */
                if (!g->save_file && !rg->persistent) {
                        g_autofree char *p = g_strdup_printf("%s/%s.save", e->save_dir, rg->uuid);
                        if (g_file_test(p, G_FILE_TEST_IS_REGULAR))
                                g->save_file = g_steal_pointer(&p);
                }
                g->xml = g_strdup(rg->xml);
                g->pub.error = g_strdup(rg->error);
        }
        e->concurrent = e->config->parallel_starts > 0 ? MIN(e->config->parallel_starts, e->guests->len)
                                                       : e->guests->len;
}
