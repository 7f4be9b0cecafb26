/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The metrics (guestkeeper-metrics(7)): OpenMetrics text built from what the manager keeps (the
 * guest cache, the record, the run history), never by asking libvirt. Nothing in it moves while a
 * run goes (no byte progress): the textfile is rewritten only when the text changes. Label
 * cardinality is bounded: states, actions and outcomes are fixed lists, and per-guest series
 * come only from the last run of each kind, one per guest of that run and step. */
#include "gk-build-config.h"

#include "manager-private.h"
#include "log.h"
#include "openmetrics.h"
#include "util.h"

/* The outcomes each kind of run shows, 0 included; any other one that occurs is added. */
static const Outcome preserve_outcomes[] = {OUTCOME_SAVED, OUTCOME_SHUTDOWN, OUTCOME_POWEROFF,
                                            OUTCOME_FAILED, OUTCOME_NONE};
static const Outcome restore_outcomes[] = {OUTCOME_RESTORED, OUTCOME_RECOVERED, OUTCOME_FAILED,
                                           OUTCOME_NONE};

static const char *outcome_label(Outcome o)
{
        return o == OUTCOME_NONE ? "none" : outcome_to_string(o);
}

static void sample_kind(OpenMetrics *om, RunKind kind, double v)
{
        openmetrics_sample(om, (const char *const[]){"kind", run_kind_to_string(kind), NULL}, v);
}

static double usec_to_sec(gint64 usec)
{
        return (double) usec / USEC_PER_SEC;
}

typedef struct Planned {
        Manager *m;
        unsigned actions[_STEP_MAX + 1]; /* the first step, or _STEP_MAX: none */
        GArray *guests;                  /* PreflightGuest */
} Planned;

static void planned_guest(const char *uri, bool reachable, const CachedGuest *g, void *userdata)
{
        Planned *p = userdata;
        GuestPolicy policy;
        PreflightGuest pg;

        if (!guest_state_is_active(g->state))
                return;
        policy_for_guest(p->m->config, uri, g->name, g->persistent, g->metadata, &policy);
        pg = manager_preflight_guest(g, &policy, -1);
        g_array_append_val(p->guests, pg);
        guest_policy_clear(&policy);
}

/* As Plan() answers, without its probe of the free space (a save dropped for host devices
 * counts, one dropped for want of space does not). */
static void count_planned(Manager *m, Planned *p)
{
        PreflightPlan plan;
        SaveSpeed speed;

        p->m = m;
        p->guests = g_array_new(FALSE, TRUE, sizeof(PreflightGuest));
        guest_cache_foreach(m->cache, planned_guest, p);
        save_speed_default(&speed);
        preflight_plan(NULL, 0, &speed, m->config->parallel_saves, m->config->deadline_usec,
                       (PreflightGuest *) (void *) p->guests->data, p->guests->len, &plan);
        for (guint i = 0; i < p->guests->len; i++) {
                PreflightGuest *pg = &g_array_index(p->guests, PreflightGuest, i);

                p->actions[pg->planned ? __builtin_ctz(pg->planned) : _STEP_MAX]++;
                preflight_guest_clear(pg);
        }
        g_array_unref(p->guests);
}

static void guests_metrics(Manager *m, OpenMetrics *om)
{
        g_autoptr(GPtrArray) rows = manager_list_guests(m);
        unsigned by_state[_GUEST_STATE_MAX] = {};
        Planned planned = {};

        for (guint i = 0; i < rows->len; i++) {
                const GuestRow *r = rows->pdata[i];
                GuestState s = guest_state_from_string(r->state);

                if (s >= 0)
                        by_state[s]++;
        }
        openmetrics_family(
                om, "guestkeeper_guests", NULL,
                "Guests by libvirt state, as ListGuests() shows them (saved: a managed-save image "
                "or a save file; unreachable: their URI does not answer).");
        for (GuestState s = 0; s < _GUEST_STATE_MAX; s++)
                openmetrics_sample(om, (const char *const[]){"state", guest_state_to_string(s), NULL},
                                   by_state[s]);

        count_planned(m, &planned);
        openmetrics_family(om, "guestkeeper_guests_planned", NULL,
                           "Running and paused guests by the first step a host shutdown now would take "
                           "(none: left running).");
        for (Step s = 0; s <= _STEP_MAX; s++)
                openmetrics_sample(
                        om,
                        (const char *const[]){"action", s < _STEP_MAX ? step_to_string(s) : "none", NULL},
                        planned.actions[s]);
}

/* The step durations of a run's guests: one series per guest and step kind (a kind that
 * occurs twice is summed, so a series is never repeated). */
static void step_samples(OpenMetrics *om, const RunRecord *run)
{
        for (guint i = 0; i < run->guests->len; i++) {
                const RunGuestRecord *g = run->guests->pdata[i];
                guint64 usec[_ENGINE_STEP_KIND_MAX] = {};
                bool seen[_ENGINE_STEP_KIND_MAX] = {};

                for (unsigned k = 0; k < g->n_steps; k++)
                        if (g->steps[k].kind >= 0 && g->steps[k].kind < _ENGINE_STEP_KIND_MAX) {
                                usec[g->steps[k].kind] += g->steps[k].duration_usec;
                                seen[g->steps[k].kind] = true;
                        }
                for (EngineStepKind k = 0; k < _ENGINE_STEP_KIND_MAX; k++)
                        if (seen[k])
                                openmetrics_sample(
                                        om,
                                        (const char *const[]){"kind", run_kind_to_string(run->kind), "uri",
                                                              g->uri, "guest", g->name, "step",
                                                              engine_step_kind_to_string(k), NULL},
                                        usec_to_sec((gint64) usec[k]));
        }
}

static void outcome_samples(OpenMetrics *om, const RunRecord *run)
{
        unsigned n[_OUTCOME_MAX] = {};
        bool listed[_OUTCOME_MAX] = {};
        const Outcome *fixed = run->kind == RUN_PRESERVE ? preserve_outcomes : restore_outcomes;
        size_t n_fixed =
                run->kind == RUN_PRESERVE ? ELEMENTSOF(preserve_outcomes) : ELEMENTSOF(restore_outcomes);

        for (guint i = 0; i < run->guests->len; i++) {
                const RunGuestRecord *g = run->guests->pdata[i];

                if (g->outcome >= 0 && g->outcome < _OUTCOME_MAX)
                        n[g->outcome]++;
        }
        for (size_t i = 0; i < n_fixed; i++) {
                listed[fixed[i]] = true;
                openmetrics_sample(om,
                                   (const char *const[]){"kind", run_kind_to_string(run->kind), "outcome",
                                                         outcome_label(fixed[i]), NULL},
                                   n[fixed[i]]);
        }
        for (Outcome o = 0; o < _OUTCOME_MAX; o++)
                if (n[o] > 0 && !listed[o])
                        openmetrics_sample(om,
                                           (const char *const[]){"kind", run_kind_to_string(run->kind),
                                                                 "outcome", outcome_label(o), NULL},
                                           n[o]);
}

static void runs_metrics(Manager *m, OpenMetrics *om)
{
        const RunRecord *runs[] = {run_history_last(m->history, RUN_PRESERVE),
                                   run_history_last(m->history, RUN_RESTORE)};

        openmetrics_family(om, "guestkeeper_last_run_start_timestamp_seconds", "seconds",
                           "When the last run of each kind started (wall clock).");
        for (size_t i = 0; i < ELEMENTSOF(runs); i++)
                if (runs[i])
                        sample_kind(om, runs[i]->kind, usec_to_sec(runs[i]->started));
        openmetrics_family(om, "guestkeeper_last_run_end_timestamp_seconds", "seconds",
                           "When the last run of each kind ended (wall clock).");
        for (size_t i = 0; i < ELEMENTSOF(runs); i++)
                if (runs[i])
                        sample_kind(om, runs[i]->kind, usec_to_sec(runs[i]->finished));
        openmetrics_family(om, "guestkeeper_last_run_duration_seconds", "seconds",
                           "How long the last run of each kind took (monotonic clock).");
        for (size_t i = 0; i < ELEMENTSOF(runs); i++)
                if (runs[i])
                        sample_kind(om, runs[i]->kind, usec_to_sec((gint64) runs[i]->duration_usec));
        openmetrics_family(om, "guestkeeper_last_run_cancelled", NULL,
                           "1 if the last run of each kind was cancelled, else 0.");
        for (size_t i = 0; i < ELEMENTSOF(runs); i++)
                if (runs[i])
                        sample_kind(om, runs[i]->kind, runs[i]->cancelled);
        openmetrics_family(om, "guestkeeper_last_run_unreachable_uris", NULL,
                           "URIs the last run of each kind could not reach.");
        for (size_t i = 0; i < ELEMENTSOF(runs); i++)
                if (runs[i])
                        sample_kind(om, runs[i]->kind, runs[i]->unreachable->len);
        openmetrics_family(om, "guestkeeper_last_run_guests", NULL,
                           "Guests of the last run of each kind by outcome (none: untouched, e.g. the run "
                           "was cancelled first).");
        for (size_t i = 0; i < ELEMENTSOF(runs); i++)
                if (runs[i])
                        outcome_samples(om, runs[i]);
        openmetrics_family(
                om, "guestkeeper_last_run_saved_bytes", "bytes",
                "Bytes the saves of the last preserve run wrote (as libvirt last reported them).");
        if (runs[0]) {
                guint64 bytes = 0;

                for (guint i = 0; i < runs[0]->guests->len; i++) {
                        const RunGuestRecord *g = runs[0]->guests->pdata[i];

                        if (g->bytes > 0)
                                bytes += (guint64) g->bytes;
                }
                sample_kind(om, RUN_PRESERVE, (double) bytes);
        }
        openmetrics_family(om, "guestkeeper_last_run_step_duration_seconds", "seconds",
                           "How long each step of each guest of the last run of each kind took.");
        for (size_t i = 0; i < ELEMENTSOF(runs); i++)
                if (runs[i])
                        step_samples(om, runs[i]);
}

char *manager_metrics(Manager *m)
{
        g_autoptr(GPtrArray) waiting = manager_restore_waiting(m);
        OpenMetrics *om = openmetrics_new();

        openmetrics_family(om, "guestkeeper_build_info", NULL, "guestkeeperd's version; always 1.");
        openmetrics_sample(om, (const char *const[]){"version", PACKAGE_VERSION, NULL}, 1);
        openmetrics_family(
                om, "guestkeeper_state", NULL,
                "The daemon's state (the State property): 1 for the current one, 0 for the others.");
        for (ManagerState s = 0; s < _MANAGER_STATE_MAX; s++)
                openmetrics_sample(om, (const char *const[]){"state", manager_state_to_string(s), NULL},
                                   s == m->state);
        openmetrics_family(om, "guestkeeper_inhibitor_held", NULL,
                           "1 while logind's shutdown delay inhibitor is held, else 0.");
        openmetrics_sample(om, NULL, manager_inhibitor_held(m));
        openmetrics_family(
                om, "guestkeeper_maintenance_hold", NULL,
                "1 while a maintenance hold keeps the preserved guests down (the Held property).");
        openmetrics_sample(om, NULL, manager_held(m));
        openmetrics_family(
                om, "guestkeeper_conflicts", NULL,
                "Other mechanisms that would act on the guests at shutdown (the Conflicts property).");
        openmetrics_sample(om, NULL, m->conflicts ? m->conflicts->len : 0);
        openmetrics_family(om, "guestkeeper_restore_waiting_guests", NULL,
                           "Recorded guests whose restore waits: for their URI, or for a retry.");
        openmetrics_sample(om, NULL, waiting->len);
        guests_metrics(m, om);
        runs_metrics(m, om);
        return openmetrics_finish(om);
}

static void metrics_written(FileWriter *w, const char *path, int r, void *userdata)
{
        Manager *m = userdata;

        if (r < 0 && !streq_ptr(path, m->metrics_failed_path)) {
                log_error_errno(r, "Cannot write the metrics textfile %s: %m", path);
                g_free(m->metrics_failed_path);
                m->metrics_failed_path = g_strdup(path);
        } else if (r >= 0 && streq_ptr(path, m->metrics_failed_path)) {
                log_info("Metrics textfile %s written again", path);
                g_clear_pointer(&m->metrics_failed_path, g_free);
        }
}

void manager_update_metrics_file(Manager *m)
{
        const char *path = m->config->metrics_textfile;
        g_autofree char *text = NULL;

        if (!path) {
                if (m->metrics_path) {
                        log_info("Metrics textfile %s: no longer updated (TextfilePath= is gone)",
                                 m->metrics_path);
                        file_writer_cancel(m->metrics_writer);
                }
                g_clear_pointer(&m->metrics_path, g_free);
                g_clear_pointer(&m->metrics_text, g_free);
                return;
        }
        text = manager_metrics(m);
        if (streq_ptr(path, m->metrics_path) && streq_ptr(text, m->metrics_text))
                return;
        if (!m->metrics_writer)
                m->metrics_writer = file_writer_new(0644, metrics_written, m);
        if (!streq_ptr(path, m->metrics_path)) {
                log_info("Metrics textfile: %s", path);
                g_clear_pointer(&m->metrics_failed_path, g_free);
                g_free(m->metrics_path);
                m->metrics_path = g_strdup(path);
        }
        file_writer_write(m->metrics_writer, path, text);
        g_free(m->metrics_text);
        m->metrics_text = g_steal_pointer(&text);
}
