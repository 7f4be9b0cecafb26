/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* What the bus shows of the guests, answered from the guest cache and the record, never by
 * asking libvirt on demand: ListGuests() rows, the restores that wait, and Plan() with its
 * pre-flight (the free space read on a worker). manager.c owns the state these read. */

#include <errno.h>

#include "log.h"
#include "macro.h"
#include "manager-private.h"
#include "policy.h"
#include "preflight-probe.h"
#include "util.h"

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

        if (!m->restore_pending || manager_held(m) || !rg || !manager_restorable(rg) ||
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

                policy_for_guest(l->m->config, uri, g->name, g->persistent, g->metadata, &policy);
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
                g_autofree char *k = manager_key_of(r->uri, r->uuid);

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
                g_autofree char *k = manager_key_of(rg->uri, rg->uuid);
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

void manager_plan_call_free(gpointer p)
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
        PreflightGuest pg;
        PlanRow *r;

        if (!guest_state_is_active(g->state))
                return;
        policy_for_guest(m->config, uri, g->name, g->persistent, g->metadata, &policy);
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
        /* The transient guests' directory is the last one. */
        pg = manager_preflight_guest(
                g, &policy,
                g->persistent ? plan_dir(c, preflight_managed_save_dir(m->config->managed_save_dir, uri))
                              : -2);
        g_array_append_val(c->guests, pg);
        guest_policy_clear(&policy);
        g_ptr_array_add(c->rows, r);
}

PreflightGuest manager_preflight_guest(const CachedGuest *g, const GuestPolicy *policy, int dir)
{
        return (PreflightGuest){
                .memory_bytes = g->memory_kib * 1024,
                .hostdev = g->hostdev,
                .steps = policy->steps,
                .has_order = policy->has_order,
                .order = policy->order,
                .dir = dir,
        };
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
void manager_note_save_speed(Manager *m, Engine *e)
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
