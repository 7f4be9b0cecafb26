/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A preserve run's escalation: each guest's steps (save, graceful shutdown, poweroff) in the
 * order of its policy, with the shutdown's timeout and repeated requests, and the results of
 * those steps. engine.c decides when a step may start (the scheduler) and hands the results
 * back. */

#include <errno.h>
#include <unistd.h>

#include "engine-private.h"
#include "util.h"

/* A preserve step is recorded in the history as the step of the same number. */
G_STATIC_ASSERT((int) ENGINE_STEP_SAVE == STEP_SAVE && (int) ENGINE_STEP_SHUTDOWN == STEP_SHUTDOWN &&
                (int) ENGINE_STEP_POWEROFF == STEP_POWEROFF);

static void submit_shutdown(Guest *g, bool repeat)
{
        EngineJob *j = engine_job_new(g->engine, JOB_SHUTDOWN, g, NULL);

        j->job.mode = g->policy.shutdown_mode;
        j->repeat = repeat;
        g->requests++;
        engine_job_submit(j);
}

static void submit_check(Guest *g, Check check)
{
        EngineJob *j = engine_job_new(g->engine, JOB_STATE, g, NULL);

        j->check = check;
        engine_job_submit(j);
}

void guest_start_step(Guest *g, Step s)
{
        Engine *e = g->engine;

        g->step = s;
        g->last_step = s;
        g->gen++;
        guest_history_begin(g, (EngineStepKind) s);
        switch (s) {
        case STEP_SAVE:
                g->progress_supported = true;
                guest_set_outcome(g, OUTCOME_SAVING);
                {
                        EngineJob *j = engine_job_new(e, JOB_SAVE, g, NULL);
                        j->job.flag = e->config->bypass_cache;
                        j->job.abort_jobs = e->config->abort_jobs;
                        j->job.channels = e->config->save_channels;
                        j->job.memory_kib = g->pub.memory_kib;
                        j->job.concurrent = e->concurrent;
                        if (!g->pub.persistent) {
                                g_free(g->save_file);
                                g->save_file = g_strdup_printf("%s/%s.save", e->save_dir, g->pub.uuid);
                                j->job.file = g_strdup(g->save_file);
                        }
                        engine_job_submit(j);
                }
                break;
        case STEP_SHUTDOWN:
                guest_set_outcome(g, OUTCOME_SHUTTING_DOWN);
                g->requests = 0;
                submit_shutdown(g, false);
                break;
        case STEP_POWEROFF:
                guest_set_outcome(g, OUTCOME_SHUTTING_DOWN);
                engine_say(e, ENGINE_LEVEL_NOTICE, g, NULL, "Powering off %s", g->pub.name);
                guest_submit_job(g, JOB_DESTROY);
                break;
        default:
                g_assert_not_reached();
        }
        engine_note_progress(e);
}

/* Picks the guest's next step, or finishes it when none is left. */
void guest_advance(Guest *g)
{
        Engine *e = g->engine;
        int next = -1;

        if (g->pub.finished)
                return;
        g->step = -1;
        guest_history_end(g, g->pub.error ?: "failed");
        if (g->stopped_seen) {
                guest_finish(g, OUTCOME_SHUTDOWN);
                return;
        }
        if (e->cancelled) {
                /* Untouched from here on: the guest keeps running. */
                guest_finish(g, OUTCOME_NONE);
                return;
        }
        if (e->deadline_passed) {
                if ((g->pub.steps & STEP_MASK(STEP_POWEROFF)) && g->last_step < STEP_POWEROFF)
                        next = STEP_POWEROFF;
        } else
                for (int s = g->last_step + 1; s < _STEP_MAX; s++)
                        if (g->pub.steps & STEP_MASK(s)) {
                                next = s;
                                break;
                        }

        if (next < 0) {
                engine_say(e, ENGINE_LEVEL_ERR, g, NULL,
                           "%s is STILL RUNNING: no step left to try (last error: %s)", g->pub.name,
                           g->pub.error ? g->pub.error : "none");
                guest_finish(g, OUTCOME_FAILED);
                return;
        }

        g->last_step = next - 1; /* the step is chosen, it starts when a slot is free */
        scheduler_push(e->sched, g,
                       next == STEP_SAVE       ? SCHED_SAVE
                       : next == STEP_SHUTDOWN ? SCHED_SHUTDOWN
                                               : SCHED_POWEROFF,
                       0);
        engine_schedule(e);
}

static gboolean shutdown_timeout_cb(gpointer p)
{
        Guest *g = p;

        guest_cancel_timeout(g);
        /* The event may have been lost (reconnect): ask once before escalating. */
        g_free(g->pub.error);
        g->pub.error = g_strdup_printf("did not shut down within %" G_GUINT64_FORMAT " s",
                                       g->policy.shutdown_timeout_usec / USEC_PER_SEC);
        submit_check(g, CHECK_AFTER_TIMEOUT);
        return G_SOURCE_REMOVE;
}

void guest_arm_timeout(Guest *g, guint64 t)
{
        g->timeout_at = now_usec() + t;
        g->timeout = g_timeout_source_new((guint) MAX(1, t / USEC_PER_MSEC));
        g_source_set_callback(g->timeout, shutdown_timeout_cb, g, NULL);
        g_source_attach(g->timeout, NULL);
}

static void arm_shutdown_timeout(Guest *g)
{
        guint64 t = g->policy.shutdown_timeout_usec;

        if (g->timeout)
                return;
        if (t == 0) {
                /* No limit, except after a cancel. */
                if (g->engine->cancelled)
                        guest_arm_timeout(g, CANCEL_WAIT_MAX_USEC);
                return;
        }
        guest_arm_timeout(g, t);
}

/* A step failed: did the guest stop anyway? The state job's result decides. */
void guest_check_after_failure(Guest *g)
{
        submit_check(g, CHECK_AFTER_FAILURE);
}

void guest_on_save_done(Guest *g, EngineJob *j)
{
        Engine *e = g->engine;

        if (j->job.aborted)
                engine_say(e, ENGINE_LEVEL_NOTICE, g, NULL, "Aborted the %s job of %s to save it",
                           j->job.aborted, g->pub.name);
        engine_say_save_outcome(e, g, &j->job);

        if (scheduler_holds(e->sched, g, SCHED_SAVE))
                guest_release_slots(g);
        if (g->pub.finished)
                return;
        if (j->gen != g->gen) {
                /* Superseded by the deadline's poweroff, which is in flight. */
                if (j->job.r >= 0)
                        g->late_save_ok = true;
                return;
        }
        if (j->job.r >= 0) {
                if (g->save_total > 0) {
                        g->pub.bytes_written = g->save_total;
                        g->pub.bytes_known = true;
                }
                if (g->rec && g->save_file) {
                        g_free(g->rec->save_file);
                        g->rec->save_file = g_strdup(g->save_file);
                }
                g->pub.save_usec = j->job.save_usec;
                guest_finish(g, OUTCOME_SAVED);
                return;
        }
        guest_set_error(g, "save failed", j->job.error);
        engine_say(e, ENGINE_LEVEL_WARNING, g, NULL, "Save of %s failed: %s", g->pub.name, j->job.error);
        if (g->save_file)
                (void) unlink(g->save_file);
        guest_check_after_failure(g);
}

static gboolean repeat_cb(gpointer p)
{
        Guest *g = p;

        g_clear_pointer(&g->repeat, g_source_unref);
        /* After a cancel the request already sent is awaited, never repeated: the host is
         * staying up. */
        if (g->pub.finished || g->step != STEP_SHUTDOWN || g->engine->cancelled)
                return G_SOURCE_REMOVE;
        engine_say(g->engine, ENGINE_LEVEL_INFO, g, NULL, "%s is still running: shutdown request %u",
                   g->pub.name, g->requests + 1);
        submit_shutdown(g, true);
        return G_SOURCE_REMOVE;
}

/* Guests that miss a request (still booting, a screensaver) hear the next one. */
static void arm_repeat(Guest *g)
{
        guint64 t = g->engine->config->shutdown_repeat_usec;

        if (t == 0 || g->repeat || g->pub.finished || g->step != STEP_SHUTDOWN)
                return;
        g->repeat = g_timeout_source_new((guint) MAX(1, t / USEC_PER_MSEC));
        g_source_set_callback(g->repeat, repeat_cb, g, NULL);
        g_source_attach(g->repeat, NULL);
}

void guest_on_shutdown_done(Guest *g, EngineJob *j)
{
        if (g->pub.finished || j->gen != g->gen)
                return;
        if (j->repeat) {
                if (j->job.r < 0 && j->job.r != -ENOENT && j->job.r != -EINVAL)
                        engine_say(g->engine, ENGINE_LEVEL_INFO, g, NULL,
                                   "Repeated shutdown request for %s failed: %s", g->pub.name, j->job.error);
                arm_repeat(g);
                return;
        }
        if (j->job.r < 0) {
                guest_set_error(g, "shutdown request failed", j->job.error);
                engine_say(g->engine, ENGINE_LEVEL_WARNING, g, NULL, "Shutdown request for %s failed: %s",
                           g->pub.name, j->job.error);
                guest_release_slots(g);
                guest_check_after_failure(g);
                return;
        }
        if (g->stopped_seen) {
                guest_finish(g, OUTCOME_SHUTDOWN);
                return;
        }
        arm_shutdown_timeout(g);
        arm_repeat(g);
        /* Covers a stop that happened before we listened (no event will come). */
        submit_check(g, CHECK_AFTER_REQUEST);
}

void guest_on_destroy_done(Guest *g, EngineJob *j)
{
        if (g->pub.finished)
                return;
        if (j->job.r >= 0) {
                guest_finish(g, OUTCOME_POWEROFF);
                return;
        }
        guest_set_error(g, "poweroff failed", j->job.error);
        engine_say(g->engine, ENGINE_LEVEL_ERR, g, NULL, "Poweroff of %s failed: %s", g->pub.name,
                   j->job.error);
        guest_check_after_failure(g);
}

void guest_on_state_done(Guest *g, EngineJob *j)
{
        bool gone = j->job.r == -ENOENT || (j->job.r >= 0 && !guest_state_is_active(j->job.state));

        if (g->pub.finished || j->gen != g->gen)
                return;

        if (g->engine->kind == RUN_RESTORE) {
                /* After a failed start: maybe it is running after all (autostart, a race). */
                if (j->job.r >= 0 && guest_state_is_active(j->job.state)) {
                        g_clear_pointer(&g->pub.error, g_free);
                        guest_finish(g, guest_restored_outcome(g));
                } else
                        guest_finish(g, OUTCOME_FAILED);
                return;
        }

        if (gone) {
                if (g->late_save_ok || (j->job.r >= 0 && j->job.state == GUEST_STATE_SAVED))
                        guest_finish(g, OUTCOME_SAVED);
                else
                        guest_finish(g, OUTCOME_SHUTDOWN);
                return;
        }

        switch (j->check) {
        case CHECK_AFTER_REQUEST:
                return; /* still running: the event or the timeout will tell */
        case CHECK_AFTER_TIMEOUT:
                engine_say(g->engine, ENGINE_LEVEL_WARNING, g, NULL, "%s %s", g->pub.name, g->pub.error);
                break;
        case CHECK_AFTER_FAILURE:
                break;
        }
        guest_release_slots(g);
        engine_drop_source(&g->repeat);
        if (g->engine->cancelled) {
                guest_finish(g, OUTCOME_NONE);
                return;
        }
        guest_advance(g);
}

static gint rank_cmp(gconstpointer a, gconstpointer b, gpointer ranks)
{
        guint x = GPOINTER_TO_UINT(g_hash_table_lookup(ranks, *(Guest *const *) a));
        guint y = GPOINTER_TO_UINT(g_hash_table_lookup(ranks, *(Guest *const *) b));

        return x < y ? -1 : x > y ? 1 : 0;
}

/* Before the record is written: drops the saves that cannot be done (host devices, no space),
 * estimates the saves, and orders them shortest first when they would outlast the deadline. */
static void engine_preflight(Engine *e)
{
        g_autofree PreflightGuest *pg = g_new0(PreflightGuest, MAX(e->guests->len, 1));
        g_autoptr(GHashTable) ranks = g_hash_table_new(NULL, NULL);
        g_autofree char *total = NULL, *warning = NULL;
        PreflightPlan plan;

        if (e->guests->len == 0)
                return;
        if (e->probe_timed_out)
                engine_say_about(
                        e, ENGINE_LEVEL_WARNING, ENGINE_TOPIC_PREFLIGHT, NULL, NULL,
                        "Free space of the save directories unknown (no answer within %" G_GUINT64_FORMAT
                        " s): saving without checking it",
                        PREFLIGHT_PROBE_TIMEOUT_USEC / USEC_PER_SEC);
        for (guint i = 0; i < e->guests->len; i++) {
                Guest *g = e->guests->pdata[i];

                pg[i] = (PreflightGuest){
                        .memory_bytes = g->pub.memory_kib * 1024,
                        .hostdev = g->hostdev,
                        .steps = g->pub.steps,
                        .has_order = g->policy.has_order,
                        .order = g->policy.order,
                        .dir = !e->dirs            ? -1
                               : g->pub.persistent ? g->slot->save_dir
                                                   : e->transient_dir,
                };
        }
        preflight_plan(e->dirs, e->n_dirs, &e->speed, e->config->parallel_saves, e->config->deadline_usec,
                       pg, e->guests->len, &plan);
        e->concurrent =
                e->config->parallel_saves > 0 ? MIN(e->config->parallel_saves, plan.saves) : plan.saves;
        for (guint i = 0; i < e->guests->len; i++) {
                Guest *g = e->guests->pdata[i];

                g->pub.estimate_usec = pg[i].estimate_usec;
                g_hash_table_insert(ranks, g, GUINT_TO_POINTER(pg[i].rank));
                if (pg[i].reason) {
                        g->pub.steps = g->rec->steps = pg[i].planned;
                        g_free(g->pub.error);
                        g->pub.error = g_strdup(pg[i].reason);
                        engine_say_about(
                                e, ENGINE_LEVEL_WARNING, ENGINE_TOPIC_PREFLIGHT, g, NULL,
                                "%s will not be saved: %s; %s", g->pub.name, pg[i].reason,
                                pg[i].planned & STEP_MASK(STEP_SHUTDOWN)   ? "shutting it down instead"
                                : pg[i].planned & STEP_MASK(STEP_POWEROFF) ? "powering it off instead"
                                                                           : "no other step is allowed");
                }
                preflight_guest_clear(&pg[i]);
        }
        total = format_usec(plan.total_usec);
        engine_say(e, ENGINE_LEVEL_INFO, NULL, NULL, "Pre-flight: %u saves, estimated %s%s", plan.saves,
                   total, plan.dropped ? "; some saves dropped" : "");
        warning = preflight_plan_warning(&plan);
        if (warning)
                engine_say_about(e, ENGINE_LEVEL_WARNING, ENGINE_TOPIC_PREFLIGHT, NULL, NULL,
                                 "Pre-flight: %s", warning);
        /* The run order is the order the steps are queued in. */
        g_ptr_array_sort_with_data(e->guests, rank_cmp, ranks);
}

void engine_begin_preserve(Engine *e)
{
        for (guint i = 0; i < e->n_slots; i++) {
                HvSlot *slot = &e->slots[i];

                if (!slot->listed)
                        continue;
                for (guint k = 0; k < slot->listed->len; k++) {
                        GuestInfo *info = slot->listed->pdata[k];
                        GuestPolicy policy;
                        Guest *g;

                        if (!guest_state_is_active(info->state) ||
                            g_hash_table_contains(slot->guests, info->uuid))
                                continue;
                        if (e->only) {
                                g_autofree char *key = g_strconcat(slot->uri, "\n", info->uuid, NULL);

                                if (!g_hash_table_contains(e->only, key))
                                        continue; /* not named: left alone, not in the record */
                        }
                        policy_for_guest(e->config, slot->uri, info->name, info->persistent, info->metadata,
                                         &policy);
                        if (policy.error)
                                engine_say(e, ENGINE_LEVEL_WARNING, NULL, slot->uri, "%s: %s", info->name,
                                           policy.error);
                        if (policy.libvirt)
                                engine_say(e, ENGINE_LEVEL_WARNING, NULL, slot->uri,
                                           "%s: left to libvirt's own auto-shutdown (auto_shutdown_* in "
                                           "qemu.conf): one mechanism per guest",
                                           info->name);
                        else if (policy.skip)
                                engine_say(e, ENGINE_LEVEL_INFO, NULL, slot->uri,
                                           "%s: skipped (Action=skip, from %s)", info->name,
                                           policy.source[GUEST_KEY_ACTION]);
                        if (policy.skip) {
                                guest_policy_clear(&policy);
                                continue;
                        }
                        g = guest_new(e, slot, info->uuid, info->name, info->persistent);
                        g->pub.memory_kib = info->memory_kib;
                        g->hostdev = info->hostdev;
                        g->policy = policy;
                        g->pub.steps = g->policy.steps;
                        scheduler_add(e->sched, g, g->policy.has_order, g->policy.order);
                        /* A guest enters the record before anything is done to it. */
                        g->rec = record_put(e->record, slot->uri, info->uuid, info->name, info->persistent);
                        g->rec->steps = g->pub.steps;
                        if (!info->persistent)
                                g->rec->xml = g_strdup(info->xml);
                }
        }

        engine_preflight(e);
        if (e->guests->len > 0 && g_mkdir_with_parents(e->save_dir, 0700) < 0)
                engine_say(e, ENGINE_LEVEL_ERR, NULL, NULL, "Cannot create %s: %s", e->save_dir,
                           g_strerror(errno));
}
