/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* One run, the parts both kinds share: the object, the lists of the URIs, the scheduler's
 * steps and the deadline. What a step does is in engine-preserve.c (the escalation) and
 * engine-restore.c (the starts); what the hypervisor says back (job results, lifecycle
 * events, progress) in engine-results.c. */

#include <errno.h>

#include "engine-private.h"
#include "util.h"

static const char *const run_kind_table[_RUN_KIND_MAX] = {
        [RUN_PRESERVE] = "preserve",
        [RUN_RESTORE] = "restore",
};
DEFINE_STRING_TABLE(run_kind, RunKind, _RUN_KIND_MAX);

static const char *const engine_step_kind_table[_ENGINE_STEP_KIND_MAX] = {
        [ENGINE_STEP_SAVE] = "save",
        [ENGINE_STEP_SHUTDOWN] = "shutdown",
        [ENGINE_STEP_POWEROFF] = "poweroff",
        [ENGINE_STEP_START] = "start",
};
DEFINE_STRING_TABLE(engine_step_kind, EngineStepKind, _ENGINE_STEP_KIND_MAX);

static void engine_begin(Engine *e);
static void engine_go(Engine *e);

/* ---- callbacks to the owner ---- */

void engine_say_about(Engine *e, EngineLevel level, EngineTopic topic, Guest *g, const char *uri,
                      const char *fmt, ...)
{
        g_autofree char *text = NULL;
        va_list ap;

        if (!e->cb || !e->cb->message)
                return;
        va_start(ap, fmt);
        text = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        e->cb->message(e, level, topic, g ? &g->pub : NULL, uri ? uri : (g ? g->pub.uri : NULL), text,
                       e->userdata);
}

void engine_say_save_outcome(Engine *e, Guest *g, const Job *j)
{
        if (j->outcome.note)
                engine_say(e, ENGINE_LEVEL_WARNING, g, NULL, "%s", j->outcome.note);
        if (j->r >= 0 && j->outcome.channels > 0)
                engine_say(e, ENGINE_LEVEL_INFO, g, NULL, "%s %s in the sparse format over %u channel%s",
                           j->kind == JOB_SAVE ? "Saved" : "Restored", g->pub.name, j->outcome.channels,
                           j->outcome.channels == 1 ? "" : "s");
}

void engine_note_progress(Engine *e)
{
        e->last_progress = now_usec();
        if (e->cb && e->cb->progress)
                e->cb->progress(e, e->userdata);
}

void guest_set_outcome(Guest *g, Outcome o)
{
        Engine *e = g->engine;

        g->pub.outcome = o;
        if (e->cb && e->cb->guest_changed)
                e->cb->guest_changed(e, &g->pub, e->userdata);
}

/* ---- record ---- */

static void finish_run(Engine *e)
{
        e->phase = PHASE_DONE;
        e->end_usec = now_usec();
        g_clear_pointer(&e->deadline_source, g_source_destroy);
        g_clear_pointer(&e->progress_source, g_source_destroy);
        if (e->cb && e->cb->finished)
                e->cb->finished(e, e->userdata);
}

static void on_record_written(RecordWriter *w, int r, bool more, void *userdata)
{
        Engine *e = userdata;

        if (e->phase == PHASE_NEW)
                return; /* detached */
        if (r < 0)
                engine_say_about(e, ENGINE_LEVEL_ERR, ENGINE_TOPIC_RECORD_WRITE, NULL, NULL,
                                 "Failed to write the record %s: %s", e->record->path, g_strerror(-r));
        if (e->phase == PHASE_RECORDING) {
                if (r < 0)
                        engine_say(
                                e, ENGINE_LEVEL_ERR, NULL, NULL,
                                "Preserving the guests anyway, but they will not be restored automatically");
                engine_go(e);
                return;
        }
        if (!more && e->phase == PHASE_FLUSHING)
                finish_run(e);
}

void engine_record_touch(Engine *e)
{
        record_writer_touch(e->writer);
}

/* ---- guests ---- */

void guest_cancel_timeout(Guest *g)
{
        if (g->timeout) {
                g_source_destroy(g->timeout);
                g_source_unref(g->timeout);
                g->timeout = NULL;
        }
}

void engine_drop_source(GSource **s)
{
        if (*s) {
                g_source_destroy(*s);
                g_clear_pointer(s, g_source_unref);
        }
}

void guest_release_slots(Guest *g)
{
        scheduler_release(g->engine->sched, g, now_usec());
}

void guest_finish(Guest *g, Outcome o)
{
        Engine *e = g->engine;

        if (g->pub.finished)
                return;
        guest_cancel_timeout(g);
        engine_drop_source(&g->repeat);
        if (!outcome_is_restored(o) || !guest_await_agent(g))
                scheduler_finish(e->sched, g, now_usec());
        g->pub.finished = true;
        guest_history_end(g, o == OUTCOME_FAILED || o == OUTCOME_NONE
                                     ? (g->pub.error ?: (o == OUTCOME_NONE ? "cancelled" : "failed"))
                                     : NULL);
        g->pub.end_usec = now_usec();
        g->step = -1;
        g->pub.fraction = 0;
        e->finished++;
        if (o == OUTCOME_FAILED)
                e->failed++;
        else if (o != OUTCOME_NONE)
                e->done++;

        if (g->rec) {
                if (e->kind == RUN_PRESERVE) {
                        g->rec->outcome = o;
                        record_guest_set_error(g->rec, g->pub.error);
                } else if (outcome_is_restored(o)) {
                        record_remove(e->record, g->pub.uri, g->pub.uuid);
                        g->rec = NULL;
                } else
                        record_guest_set_error(g->rec, g->pub.error);
                engine_record_touch(e);
        }
        guest_set_outcome(g, o);
        engine_note_progress(e);
        engine_maybe_finish_run(e);
        engine_schedule(e);
}

void guest_history_begin(Guest *g, EngineStepKind kind)
{
        EngineStepRun *s;

        /* Only the deadline's poweroff replaces a step under way. */
        guest_history_end(g, "cut short: the deadline was spent");
        if (g->pub.n_history >= ENGINE_STEPS_MAX)
                return;
        s = &g->pub.history[g->pub.n_history++];
        s->kind = kind;
        s->start_usec = now_usec();
}

void guest_history_end(Guest *g, const char *error)
{
        EngineStepRun *s = g->pub.n_history > 0 ? &g->pub.history[g->pub.n_history - 1] : NULL;

        if (!s || s->end_usec != 0)
                return;
        s->end_usec = now_usec();
        s->error = g_strdup(error);
}

void guest_set_error(Guest *g, const char *what, const char *error)
{
        g_free(g->pub.error);
        g->pub.error = error ? g_strdup_printf("%s: %s", what, error) : g_strdup(what);
}

/* ---- run ---- */

static gboolean wake_cb(gpointer p)
{
        Engine *e = p;

        g_clear_pointer(&e->wake_source, g_source_unref);
        engine_schedule(e);
        return G_SOURCE_REMOVE;
}

/* The journal shows when each order group begins: the evidence of the ordering. */
static void say_group(Engine *e)
{
        bool has_order;
        int order;

        if (!scheduler_current_group(e->sched, &has_order, &order) ||
            (e->group_known && has_order == e->group_has_order && order == e->group_order))
                return;
        if (e->group_known || has_order) {
                g_autofree char *which =
                        has_order ? g_strdup_printf("order %d", order) : g_strdup("without an order");

                engine_say(e, ENGINE_LEVEL_INFO, NULL, NULL, "%s: the guests %s begin",
                           e->kind == RUN_PRESERVE ? "Shutdown" : "Start-up", which);
        }
        e->group_known = true;
        e->group_has_order = has_order;
        e->group_order = order;
}

/* Starts every step the scheduler allows now; wakes up when a delay ends. */
void engine_schedule(Engine *e)
{
        guint64 now, at;
        SchedKind k;
        Guest *g;

        if (e->phase != PHASE_RUNNING)
                return;
        say_group(e);
        while ((g = scheduler_pop(e->sched, now_usec(), &k)))
                switch (k) {
                case SCHED_SAVE:
                        guest_start_step(g, STEP_SAVE);
                        break;
                case SCHED_SHUTDOWN:
                        guest_start_step(g, STEP_SHUTDOWN);
                        break;
                case SCHED_POWEROFF:
                        guest_start_step(g, STEP_POWEROFF);
                        break;
                case SCHED_START:
                        guest_start_restore(g);
                        break;
                default:
                        g_assert_not_reached();
                }
        at = scheduler_wake_at(e->sched);
        now = now_usec();
        if (at > now && !e->wake_source) {
                e->wake_source = g_timeout_source_new((guint) MAX(1, (at - now + 999) / USEC_PER_MSEC));
                g_source_set_callback(e->wake_source, wake_cb, e, NULL);
                g_source_attach(e->wake_source, NULL);
        }
}

void engine_maybe_finish_run(Engine *e)
{
        if (e->phase != PHASE_RUNNING || e->finished < e->guests->len || e->awaiting_agent > 0)
                return;
        e->phase = PHASE_FLUSHING;
        /* Always pass through a write: the finished callback comes after the record. */
        record_writer_write_now(e->writer);
}

static gboolean deadline_cb(gpointer p)
{
        Engine *e = p;
        g_autoptr(GPtrArray) snapshot = g_ptr_array_copy(e->guests, NULL, NULL);

        e->deadline_source = NULL;
        e->deadline_passed = true;
        scheduler_open_all(e->sched);
        engine_say_about(e, ENGINE_LEVEL_WARNING, ENGINE_TOPIC_DEADLINE, NULL, NULL,
                         "Deadline of %" G_GUINT64_FORMAT " s spent: powering off every guest still running",
                         e->config->deadline_usec / USEC_PER_SEC);

        for (guint i = 0; i < snapshot->len; i++) {
                Guest *g = snapshot->pdata[i];

                if (g->pub.finished || g->step == STEP_POWEROFF)
                        continue;
                if (g->step == STEP_SAVE && !(g->pub.steps & STEP_MASK(STEP_POWEROFF)))
                        continue; /* nothing better to do than let the save finish */
                guest_cancel_timeout(g);
                guest_release_slots(g);
                if (!(g->pub.steps & STEP_MASK(STEP_POWEROFF)) || g->last_step >= STEP_POWEROFF) {
                        /* Waiting for a slot or for a graceful shutdown, and no poweroff
                         * allowed: the run ends here with the guest still running. */
                        guest_set_error(g, "deadline spent before it stopped", NULL);
                        engine_say(e, ENGINE_LEVEL_ERR, g, NULL,
                                   "%s is STILL RUNNING: deadline spent and PowerOff= does not cover it",
                                   g->pub.name);
                        guest_finish(g, OUTCOME_FAILED);
                        continue;
                }
                guest_start_step(g, STEP_POWEROFF);
        }
        return G_SOURCE_REMOVE;
}

/* A URI's list came back (@list), failed or timed out (@error), or was given up on by a cancel
 * (neither): once every URI is accounted for, the run begins. */
void engine_slot_listed(Engine *e, HvSlot *slot, const char *error, GPtrArray *list)
{
        if (slot->list_done) {
                if (list)
                        g_ptr_array_unref(list); /* too late: this run goes on without it */
                return;
        }
        slot->list_done = true;
        if (slot->list_timeout) {
                g_source_destroy(slot->list_timeout);
                g_clear_pointer(&slot->list_timeout, g_source_unref);
        }
        slot->uri = hypervisor_get_uri(slot->hv);
        if (!list && !error)
                slot->reachable = false; /* given up on by a cancel: not unreachable, not listed */
        else if (!list) {
                slot->reachable = false;
                g_ptr_array_add(e->unreachable, g_strdup_printf("%s: %s", slot->uri, error));
                engine_say_about(e, ENGINE_LEVEL_ERR, ENGINE_TOPIC_UNREACHABLE, NULL, slot->uri,
                                 "Cannot reach %s: %s; its guests are not %s", slot->uri, error,
                                 e->kind == RUN_PRESERVE ? "preserved" : "restored");
        } else {
                slot->reachable = true;
                slot->listed = list;
                slot->listed_by_uuid = g_hash_table_new(g_str_hash, g_str_equal);
                for (guint k = 0; k < list->len; k++)
                        g_hash_table_insert(slot->listed_by_uuid, ((GuestInfo *) list->pdata[k])->uuid,
                                            list->pdata[k]);
        }
        g_assert(e->lists_pending > 0);
        if (--e->lists_pending == 0)
                engine_begin(e);
}

void engine_probed(const PreflightDir *dirs, guint n_dirs, const SaveSpeed *speed, void *engine)
{
        Engine *e = engine;

        e->probe = NULL;
        e->speed = *speed;
        if (dirs) {
                /* The paths point into probe_paths, which the engine keeps. */
                e->dirs = g_memdup2(dirs, sizeof(PreflightDir) * n_dirs);
                e->n_dirs = n_dirs;
                for (guint i = 0; i < n_dirs; i++)
                        e->dirs[i].path = e->probe_paths[i];
        } else
                e->probe_timed_out = true;
        g_assert(e->lists_pending > 0);
        if (--e->lists_pending == 0)
                engine_begin(e);
}

/* Where the saves of this run go: each URI's managed-save directory (if known) and the
 * transient guests' directory; their free space and the save speed are read on a worker
 * while the URIs are listed. */
static void start_probe(Engine *e)
{
        g_autoptr(GPtrArray) paths = g_ptr_array_new();

        for (guint i = 0; i < e->n_slots; i++) {
                g_autofree char *uri = hypervisor_get_uri(e->slots[i].hv);
                const char *dir = preflight_managed_save_dir(e->config->managed_save_dir, uri);
                guint k;

                e->slots[i].save_dir = -1;
                if (!dir)
                        continue;
                for (k = 0; k < paths->len && !streq_ptr(paths->pdata[k], dir); k++)
                        ;
                if (k == paths->len)
                        g_ptr_array_add(paths, g_strdup(dir));
                e->slots[i].save_dir = (int) k;
        }
        e->transient_dir = (int) paths->len;
        g_ptr_array_add(paths, g_strdup(e->save_dir));
        g_ptr_array_add(paths, NULL);
        e->probe_paths = (char **) g_ptr_array_free(g_steal_pointer(&paths), FALSE);
        e->lists_pending++;
        e->probe = preflight_probe_submit(e->workers, e->probe_paths, e->speed_file,
                                          PREFLIGHT_PROBE_TIMEOUT_USEC, engine_probed, e);
}

static gboolean list_timeout_cb(gpointer p)
{
        HvSlot *slot = p;
        Engine *e = slot->engine;
        g_autofree char *why = g_strdup_printf("no answer within %" G_GUINT64_FORMAT " s",
                                               e->list_timeout_usec / USEC_PER_SEC);

        /* The worker stays blocked in libvirt; its result is dropped when it comes. */
        engine_slot_listed(e, slot, why, NULL);
        return G_SOURCE_REMOVE;
}

const GuestInfo *engine_listed(HvSlot *slot, const char *uuid)
{
        return slot->listed_by_uuid ? g_hash_table_lookup(slot->listed_by_uuid, uuid) : NULL;
}

Guest *guest_new(Engine *e, HvSlot *slot, const char *uuid, const char *name, bool persistent)
{
        Guest *g = g_new0(Guest, 1);

        g->engine = e;
        g->slot = slot;
        g->pub.uri = g_strdup(slot->uri);
        g->pub.uuid = g_strdup(uuid);
        g->pub.name = g_strdup(name);
        g->pub.persistent = persistent;
        g->last_step = -1;
        g->step = -1;
        g_ptr_array_add(e->guests, g);
        g_hash_table_insert(slot->guests, g->pub.uuid, g);
        return g;
}

static void engine_begin(Engine *e)
{
        e->failed += e->unreachable->len;

        if (e->kind == RUN_PRESERVE) {
                engine_begin_preserve(e);
                /* No action before the list of guests is on disk. */
                e->phase = PHASE_RECORDING;
                record_writer_write_now(e->writer);
                return;
        }
        engine_begin_restore(e);
        engine_go(e);
}

/* A guest the cancel reaches before its next step: a preserve leaves it running, untouched;
 * a restore leaves it in the record, to be started at the next start-up. */
static void cancel_guest(Guest *g)
{
        if (g->engine->kind == RUN_RESTORE && !g->pub.error)
                g->pub.error = g_strdup("restore cancelled before it was started");
        guest_finish(g, g->engine->kind == RUN_PRESERVE ? OUTCOME_NONE : OUTCOME_FAILED);
}

static void engine_go(Engine *e)
{
        e->phase = PHASE_RUNNING;
        if (e->kind == RUN_PRESERVE && e->progress_interval_usec > 0) {
                e->progress_source =
                        g_timeout_source_new((guint) (e->progress_interval_usec / USEC_PER_MSEC));
                g_source_set_callback(e->progress_source, engine_progress_tick, e, NULL);
                g_source_attach(e->progress_source, NULL);
                g_source_unref(e->progress_source);
        }
        engine_note_progress(e);

        for (guint i = 0; i < e->guests->len; i++) {
                Guest *g = e->guests->pdata[i];
                HvSlot *slot = g->slot;
                const GuestInfo *info;

                if (e->kind == RUN_PRESERVE) {
                        guest_advance(g);
                        continue;
                }
                /* Restore: one list per URI told us what is running already. */
                info = engine_listed(slot, g->pub.uuid);
                if (info && guest_state_is_active(info->state)) {
                        engine_say(e, ENGINE_LEVEL_INFO, g, NULL, "%s is already running", g->pub.name);
                        g_clear_pointer(&g->pub.error, g_free);
                        guest_finish(g, guest_restored_outcome(g));
                }
                if (g->pub.finished)
                        continue;
                if (e->cancelled)
                        cancel_guest(g); /* cancelled while listing: a cancel is a cancel */
                else
                        scheduler_push(e->sched, g, SCHED_START, g->policy.start_delay_usec);
        }
        engine_schedule(e);
        engine_maybe_finish_run(e);
}

/* ---- object ---- */

Engine *engine_new(const EngineOptions *opts, Hypervisor *const *hvs, guint n_hvs, Workers *workers,
                   Record *record, const EngineCallbacks *cb, void *userdata)
{
        Engine *e = g_new0(Engine, 1);

        e->ref = 1;
        e->kind = opts->kind;
        e->config = config_copy(opts->config);
        e->save_dir = g_strdup(opts->save_dir);
        e->connect_retry_usec = opts->connect_retry_usec;
        e->list_timeout_usec = opts->list_timeout_usec;
        e->progress_interval_usec = opts->progress_interval_usec;
        if (opts->only) {
                GHashTableIter it;
                gpointer k;

                e->only = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
                g_hash_table_iter_init(&it, opts->only);
                while (g_hash_table_iter_next(&it, &k, NULL))
                        g_hash_table_add(e->only, g_strdup(k));
        }
        e->speed_file = g_strdup(opts->speed_file);
        save_speed_default(&e->speed);
        e->workers = workers;
        e->writer = record_writer_new(record, on_record_written, e);
        e->record = record;
        if (cb) {
                e->cb_copy = *cb;
                e->cb = &e->cb_copy;
        }
        e->userdata = userdata;
        e->guests = g_ptr_array_new();
        e->unreachable = g_ptr_array_new_with_free_func(g_free);
        e->sched = scheduler_new(e->kind == RUN_RESTORE);
        scheduler_set_cap(e->sched, SCHED_SAVE, e->config->parallel_saves);
        scheduler_set_cap(e->sched, SCHED_SHUTDOWN, e->config->parallel_shutdowns);
        scheduler_set_cap(e->sched, SCHED_START, e->config->parallel_starts);

        e->n_slots = n_hvs;
        e->slots = g_new0(HvSlot, n_hvs);
        for (guint i = 0; i < n_hvs; i++) {
                e->slots[i].engine = e;
                e->slots[i].hv = hypervisor_ref(hvs[i]);
                e->slots[i].guests = g_hash_table_new(g_str_hash, g_str_equal);
        }
        return e;
}

Engine *engine_ref(Engine *e)
{
        e->ref++;
        return e;
}

static void guest_free(Guest *g)
{
        guest_cancel_timeout(g);
        engine_drop_source(&g->repeat);
        engine_drop_source(&g->ping_source);
        guest_policy_clear(&g->policy);
        g_free(g->pub.uri);
        g_free(g->pub.uuid);
        g_free(g->pub.name);
        g_free(g->pub.error);
        for (unsigned i = 0; i < g->pub.n_history; i++)
                g_free(g->pub.history[i].error);
        g_free(g->save_file);
        g_free(g->xml);
        g_free(g);
}

static void engine_stop_sources(Engine *e)
{
        g_clear_pointer(&e->probe, preflight_probe_cancel);
        g_clear_pointer(&e->deadline_source, g_source_destroy);
        g_clear_pointer(&e->progress_source, g_source_destroy);
        if (e->wake_source) {
                g_source_destroy(e->wake_source);
                g_clear_pointer(&e->wake_source, g_source_unref);
        }
        for (guint i = 0; i < e->guests->len; i++) {
                Guest *g = e->guests->pdata[i];

                /* A detached run sends no further request, ping included. */
                guest_cancel_timeout(g);
                engine_drop_source(&g->repeat);
                engine_drop_source(&g->ping_source);
        }
        for (guint i = 0; i < e->n_slots; i++)
                if (e->slots[i].list_timeout) {
                        g_source_destroy(e->slots[i].list_timeout);
                        g_clear_pointer(&e->slots[i].list_timeout, g_source_unref);
                }
}

Engine *engine_unref(Engine *e)
{
        if (!e || --e->ref > 0)
                return NULL;

        engine_stop_sources(e);
        /* Waits for a record write in flight: it completes, it is never cut. */
        record_writer_free(e->writer);
        for (guint i = 0; i < e->n_slots; i++) {
                if (e->slots[i].listener)
                        hypervisor_remove_listener(e->slots[i].hv, e->slots[i].listener);
                hypervisor_unref(e->slots[i].hv);
                g_hash_table_unref(e->slots[i].guests);
                g_free(e->slots[i].uri);
                if (e->slots[i].listed)
                        g_ptr_array_unref(e->slots[i].listed);
                if (e->slots[i].listed_by_uuid)
                        g_hash_table_unref(e->slots[i].listed_by_uuid);
                if (e->slots[i].preset)
                        g_ptr_array_unref(e->slots[i].preset);
        }
        g_free(e->slots);
        for (guint i = 0; i < e->guests->len; i++)
                guest_free(e->guests->pdata[i]);
        g_ptr_array_unref(e->guests);
        g_ptr_array_unref(e->unreachable);
        scheduler_free(e->sched);
        config_free(e->config);
        g_free(e->save_dir);
        if (e->only)
                g_hash_table_unref(e->only);
        g_free(e->speed_file);
        g_strfreev(e->probe_paths);
        g_free(e->dirs);
        g_free(e);
        return NULL;
}

void engine_start(Engine *e)
{
        g_return_if_fail(e->phase == PHASE_NEW);

        e->phase = PHASE_LISTING;
        e->start_usec = now_usec();
        e->lists_pending = e->n_slots;
        if (e->kind == RUN_PRESERVE)
                start_probe(e);
        /* The deadline covers the whole run, listing included. */
        if (e->kind == RUN_PRESERVE && e->config->deadline_usec > 0) {
                e->deadline_source =
                        g_timeout_source_new((guint) (e->config->deadline_usec / USEC_PER_MSEC));
                g_source_set_callback(e->deadline_source, deadline_cb, e, NULL);
                g_source_attach(e->deadline_source, NULL);
                g_source_unref(e->deadline_source);
        }
        for (guint i = 0; i < e->n_slots; i++)
                e->slots[i].listener = hypervisor_add_listener(e->slots[i].hv, engine_on_event, e);
        for (guint i = 0; i < e->n_slots && e->phase == PHASE_LISTING; i++) {
                EngineJob *j;

                if (e->slots[i].preset) {
                        /* Known already (the guest cache): no round trip before the first step. */
                        engine_slot_listed(e, &e->slots[i], NULL, g_steal_pointer(&e->slots[i].preset));
                        continue;
                }
                j = engine_job_new(e, JOB_LIST, NULL, &e->slots[i]);
                /* A restore needs to know which recorded guests run already. */
                j->job.flag = e->kind == RUN_RESTORE;
                j->job.retry_usec = e->connect_retry_usec;
                if (e->list_timeout_usec > 0) {
                        j->job.retry_usec = MIN(j->job.retry_usec, e->list_timeout_usec);
                        e->slots[i].list_timeout =
                                g_timeout_source_new((guint) MAX(1, e->list_timeout_usec / USEC_PER_MSEC));
                        g_source_set_callback(e->slots[i].list_timeout, list_timeout_cb, &e->slots[i], NULL);
                        g_source_attach(e->slots[i].list_timeout, NULL);
                }
                engine_job_submit(j);
        }
        /* No URI at all, and no probe (a restore): nothing to wait for. */
        if (e->phase == PHASE_LISTING && e->lists_pending == 0)
                engine_begin(e);
}

void engine_set_listed(Engine *e, guint slot, GPtrArray *list)
{
        g_return_if_fail(e->phase == PHASE_NEW && slot < e->n_slots);
        if (e->slots[slot].preset)
                g_ptr_array_unref(e->slots[slot].preset);
        e->slots[slot].preset = list;
}

void engine_cancel(Engine *e)
{
        g_autoptr(GPtrArray) snapshot = NULL;

        if (e->cancelled || e->phase == PHASE_DONE || e->phase == PHASE_FLUSHING)
                return;
        e->cancelled = true;
        if (e->phase == PHASE_LISTING && e->probe) {
                g_clear_pointer(&e->probe, preflight_probe_cancel);
                if (--e->lists_pending == 0)
                        engine_begin(e);
        }
        if (e->phase == PHASE_LISTING)
                /* A cancel does not wait for lists still out (a URI that does not answer): the
                 * run begins with what it has, and every guest finds it cancelled. */
                for (guint i = 0; i < e->n_slots && e->phase == PHASE_LISTING; i++)
                        if (!e->slots[i].list_done)
                                engine_slot_listed(e, &e->slots[i],
                                                   "the run was cancelled before it answered", NULL);
        if (e->phase != PHASE_RUNNING)
                return; /* recording: engine_go() finds every guest cancelled */

        snapshot = g_ptr_array_copy(e->guests, NULL, NULL);
        for (guint i = 0; i < snapshot->len; i++) {
                Guest *g = snapshot->pdata[i];

                guest_agent_ready(g); /* a cancel waits for no agent */
                if (!g->pub.finished && g->step < 0)
                        cancel_guest(g);
                else if (g->step == STEP_SHUTDOWN && !g->timeout && g->policy.shutdown_timeout_usec == 0)
                        guest_arm_timeout(g, CANCEL_WAIT_MAX_USEC);
        }
        engine_maybe_finish_run(e);
}

void engine_detach(Engine *e)
{
        engine_stop_sources(e);
        e->cb = NULL;
        e->phase = PHASE_NEW;
}

RunKind engine_kind(Engine *e)
{
        return e->kind;
}

bool engine_is_finished(Engine *e)
{
        return e->phase == PHASE_DONE;
}

bool engine_is_cancelled(Engine *e)
{
        return e->cancelled;
}

GPtrArray *engine_guests(Engine *e)
{
        GPtrArray *a = g_ptr_array_sized_new(e->guests->len);

        for (guint i = 0; i < e->guests->len; i++)
                g_ptr_array_add(a, &((Guest *) e->guests->pdata[i])->pub);
        return a;
}

void engine_counts(Engine *e, unsigned *ret_total, unsigned *ret_done, unsigned *ret_failed)
{
        if (ret_total)
                *ret_total = e->guests->len + e->unreachable->len;
        if (ret_done)
                *ret_done = e->done;
        if (ret_failed)
                *ret_failed = e->failed;
}

double engine_progress(Engine *e)
{
        double sum = 0;
        unsigned total = e->guests->len + e->unreachable->len;

        if (e->phase == PHASE_DONE || e->phase == PHASE_FLUSHING)
                return 1.0;
        if (total == 0)
                return 0.0;
        sum = e->finished + e->unreachable->len;
        for (guint i = 0; i < e->guests->len; i++) {
                Guest *g = e->guests->pdata[i];
                if (!g->pub.finished)
                        sum += g->pub.fraction;
        }
        return MIN(1.0, sum / total);
}

void engine_times(Engine *e, guint64 *ret_start_usec, guint64 *ret_end_usec)
{
        if (ret_start_usec)
                *ret_start_usec = e->start_usec;
        if (ret_end_usec)
                *ret_end_usec = e->end_usec;
}

guint64 engine_last_progress_usec(Engine *e)
{
        return e->last_progress;
}

GPtrArray *engine_unreachable(Engine *e)
{
        return e->unreachable;
}

void engine_peaks(Engine *e, unsigned *ret_saves, unsigned *ret_shutdowns, unsigned *ret_starts)
{
        if (ret_saves)
                *ret_saves = scheduler_peak(e->sched, SCHED_SAVE);
        if (ret_shutdowns)
                *ret_shutdowns = scheduler_peak(e->sched, SCHED_SHUTDOWN);
        if (ret_starts)
                *ret_starts = scheduler_peak(e->sched, SCHED_START);
}

RunSummary *engine_summarize(Engine *e)
{
        RunSummary *s = g_new0(RunSummary, 1);

        s->kind = e->kind;
        engine_counts(e, &s->total, &s->done, &s->failed);
        for (guint i = 0; i < e->guests->len; i++)
                s->by_outcome[((Guest *) e->guests->pdata[i])->pub.outcome]++;
        s->unreachable = g_ptr_array_new_with_free_func(g_free);
        for (guint i = 0; i < e->unreachable->len; i++)
                g_ptr_array_add(s->unreachable, g_strdup(e->unreachable->pdata[i]));
        s->progress = engine_progress(e);
        return s;
}

RunSummary *run_summary_free(RunSummary *s)
{
        if (!s)
                return NULL;
        g_ptr_array_unref(s->unreachable);
        g_free(s);
        return NULL;
}

bool engine_has_bounded_wait(Engine *e)
{
        if (e->phase == PHASE_LISTING) {
                for (guint i = 0; i < e->n_slots; i++)
                        if (e->slots[i].list_timeout)
                                return true;
                return false;
        }
        if (e->phase != PHASE_RUNNING)
                return false;
        for (guint i = 0; i < e->guests->len; i++) {
                Guest *g = e->guests->pdata[i];
                if (!g->pub.finished && (g->timeout || g->retry_pending))
                        return true;
        }
        return false;
}
