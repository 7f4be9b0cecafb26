/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "preflight.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "config.h"
#include "scheduler.h"
#include "terms.h"
#include "util.h"

#define MIB ((guint64) 1024 * 1024)
/* A measurement outside these is a glitch (a save of a guest with no memory, a clock jump). */
#define SAVE_SPEED_MIN_BPS (1 * MIB)
#define SAVE_SPEED_MAX_BPS (100 * 1024 * MIB)

void save_speed_default(SaveSpeed *ret)
{
        *ret = (SaveSpeed){
                .fixed_usec = SAVE_SPEED_DEFAULT_FIXED_USEC,
                .bytes_per_sec = SAVE_SPEED_DEFAULT_BPS,
        };
}

guint64 save_speed_estimate(const SaveSpeed *s, guint64 bytes)
{
        guint64 bps = MAX(s->bytes_per_sec, 1);

        return s->fixed_usec + (guint64) ((double) bytes / (double) bps * (double) USEC_PER_SEC);
}

void save_speed_update(SaveSpeed *s, guint64 bytes, guint64 usec, unsigned saves)
{
        guint64 fixed = (guint64) saves * s->fixed_usec, variable, bps;

        if (saves == 0 || bytes == 0)
                return;
        /* A save quicker than the fixed cost still took some time per byte. */
        variable = MAX(usec > fixed ? usec - fixed : 0, (guint64) saves * 100 * USEC_PER_MSEC);
        bps = (guint64) ((double) bytes / ((double) variable / (double) USEC_PER_SEC));
        bps = CLAMP(bps, SAVE_SPEED_MIN_BPS, SAVE_SPEED_MAX_BPS);
        /* Half the new run, half the history: one odd run does not decide alone. */
        s->bytes_per_sec = s->runs == 0 ? bps : (s->bytes_per_sec + bps) / 2;
        s->runs++;
}

int save_speed_parse(const char *text, SaveSpeed *ret)
{
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        SaveSpeed s = {};
        unsigned seen = 0;

        for (char **l = lines; *l; l++) {
                const char *eq = strchr(*l, '=');
                guint64 v;
                char *end;

                if (**l == '\0')
                        continue;
                if (!eq)
                        return -EINVAL;
                errno = 0;
                v = g_ascii_strtoull(eq + 1, &end, 10);
                if (errno != 0 || end == eq + 1 || *end != '\0')
                        return -EINVAL;
                if (g_str_has_prefix(*l, "fixed_usec="))
                        s.fixed_usec = v, seen |= 1;
                else if (g_str_has_prefix(*l, "bytes_per_sec="))
                        s.bytes_per_sec = v, seen |= 2;
                else if (g_str_has_prefix(*l, "runs="))
                        s.runs = (unsigned) MIN(v, G_MAXUINT), seen |= 4;
        }
        if (seen != 7 || s.bytes_per_sec < SAVE_SPEED_MIN_BPS || s.bytes_per_sec > SAVE_SPEED_MAX_BPS ||
            s.fixed_usec > 600 * USEC_PER_SEC)
                return -EINVAL;
        *ret = s;
        return 0;
}

char *save_speed_format(const SaveSpeed *s)
{
        return g_strdup_printf("fixed_usec=%" G_GUINT64_FORMAT "\nbytes_per_sec=%" G_GUINT64_FORMAT
                               "\nruns=%u\n",
                               s->fixed_usec, s->bytes_per_sec, s->runs);
}

const char *preflight_managed_save_dir(const char *configured, const char *uri)
{
        g_autoptr(GUri) u = NULL;
        const char *scheme;

        if (configured)
                return *configured ? configured : NULL;
        u = uri ? g_uri_parse(uri, G_URI_FLAGS_NONE, NULL) : NULL;
        if (!u)
                return NULL;
        scheme = g_uri_get_scheme(u);
        /* Local only: a remote host's disk is not ours to measure. */
        if ((!streq_ptr(scheme, "qemu") && !streq_ptr(scheme, "qemu+unix")) ||
            (g_uri_get_host(u) && *g_uri_get_host(u)) || !streq_ptr(g_uri_get_path(u), "/system"))
                return NULL;
        return PREFLIGHT_QEMU_MANAGED_SAVE_DIR;
}

void preflight_guest_clear(PreflightGuest *g)
{
        g_clear_pointer(&g->reason, g_free);
}

typedef struct Sort {
        const PreflightGuest *guests;
        bool shortest_first;
} Sort;

static int run_order_cmp(gconstpointer a, gconstpointer b, gpointer userdata)
{
        const Sort *s = userdata;
        const PreflightGuest *x = &s->guests[*(const guint *) a], *y = &s->guests[*(const guint *) b];
        int c = scheduler_group_cmp(false, x->has_order, x->order, y->has_order, y->order);

        if (c != 0 || !s->shortest_first)
                return c;
        return x->estimate_usec < y->estimate_usec ? -1 : x->estimate_usec > y->estimate_usec ? 1 : 0;
}

static bool same_group(const PreflightGuest *x, const PreflightGuest *y)
{
        return scheduler_group_cmp(false, x->has_order, x->order, y->has_order, y->order) == 0;
}

/* One pass in the order @order: host devices, then space (first fit), then the times. */
static void plan_pass(const PreflightDir *dirs, guint n_dirs, unsigned cap, PreflightGuest *guests,
                      const guint *order, guint n, PreflightPlan *p)
{
        g_autofree guint64 *left = g_new0(guint64, MAX(n_dirs, 1));
        g_autofree guint64 *slots = NULL;
        guint64 group_start = 0, group_end = 0;
        unsigned n_slots = 0;

        for (guint d = 0; d < n_dirs; d++)
                left[d] = dirs[d].free_bytes;
        p->saves = p->saves_in_time = p->dropped = 0;

        for (guint i = 0; i < n; i++) {
                PreflightGuest *g = &guests[order[i]];

                g->rank = i;
                g->planned = g->steps;
                g->end_usec = 0;
                g_clear_pointer(&g->reason, g_free);
                if (!(g->steps & STEP_MASK(STEP_SAVE)))
                        continue;
                if (g->hostdev)
                        g->reason = g_strdup("host device passthrough cannot be saved");
                else if (g->dir >= 0 && (guint) g->dir < n_dirs && dirs[g->dir].known) {
                        /* The pool of the directory's filesystem: its first directory. */
                        guint pool = (guint) g->dir;

                        for (guint d = 0; d < (guint) g->dir; d++)
                                if (dirs[d].known && dirs[d].fs == dirs[g->dir].fs) {
                                        pool = d;
                                        break;
                                }
                        if (g->memory_bytes > left[pool])
                                g->reason =
                                        g_strdup_printf("not enough space in %s: needs %" G_GUINT64_FORMAT
                                                        " MiB, %" G_GUINT64_FORMAT " MiB free",
                                                        dirs[g->dir].path, (g->memory_bytes + MIB - 1) / MIB,
                                                        left[pool] / MIB);
                        else
                                left[pool] -= g->memory_bytes;
                }
                if (g->reason) {
                        g->planned &= ~STEP_MASK(STEP_SAVE);
                        p->dropped++;
                }
        }

        /* The saves' times: a group starts when the one before has ended; within it each save
         * takes the slot that frees first. */
        slots = g_new0(guint64, cap > 0 ? cap : MAX(n, 1));
        for (guint i = 0; i < n; i++) {
                PreflightGuest *g = &guests[order[i]];
                guint best = 0;

                if (i == 0 || !same_group(&guests[order[i - 1]], g)) {
                        group_start = group_end;
                        n_slots = 0;
                }
                if (!(g->planned & STEP_MASK(STEP_SAVE)))
                        continue;
                if (cap == 0 || n_slots < cap)
                        slots[best = n_slots++] = group_start;
                else
                        for (guint s = 1; s < n_slots; s++)
                                if (slots[s] < slots[best])
                                        best = s;
                slots[best] += g->estimate_usec;
                g->end_usec = slots[best];
                group_end = MAX(group_end, g->end_usec);
                p->saves++;
                if (g->end_usec <= p->deadline_usec)
                        p->saves_in_time++;
        }
        p->total_usec = group_end;
        p->over_deadline = p->total_usec > p->deadline_usec;
}

void preflight_plan(const PreflightDir *dirs, guint n_dirs, const SaveSpeed *speed, unsigned parallel_saves,
                    guint64 deadline_usec, PreflightGuest *guests, guint n_guests, PreflightPlan *ret)
{
        g_autofree guint *order = g_new(guint, MAX(n_guests, 1));
        Sort sort = {guests, false};
        PreflightPlan p = {
                .deadline_usec = deadline_usec > 0
                                         ? deadline_usec
                                         : (guint64) CONFIG_POWEROFF_JOB_TIMEOUT_SEC * USEC_PER_SEC,
        };

        for (guint i = 0; i < n_guests; i++) {
                PreflightGuest *g = &guests[i];

                order[i] = i;
                g->estimate_usec = (g->steps & STEP_MASK(STEP_SAVE)) && !g->hostdev
                                           ? save_speed_estimate(speed, g->memory_bytes)
                                           : 0;
        }
        g_qsort_with_data(order, (gint) n_guests, sizeof(guint), run_order_cmp, &sort);
        plan_pass(dirs, n_dirs, parallel_saves, guests, order, n_guests, &p);
        if (p.over_deadline) {
                /* Shortest first: the most saves end before the deadline (and fit on the disk). */
                for (guint i = 0; i < n_guests; i++)
                        order[i] = i;
                sort.shortest_first = true;
                g_qsort_with_data(order, (gint) n_guests, sizeof(guint), run_order_cmp, &sort);
                plan_pass(dirs, n_dirs, parallel_saves, guests, order, n_guests, &p);
                p.shortest_first = true;
        }
        for (guint i = 0; i < n_guests; i++)
                if (!(guests[i].planned & STEP_MASK(STEP_SAVE)))
                        guests[i].estimate_usec = 0;
        *ret = p;
}

char *preflight_plan_warning(const PreflightPlan *p)
{
        g_autofree char *total = NULL, *deadline = NULL;

        if (!p->over_deadline)
                return NULL;
        total = format_usec(p->total_usec);
        deadline = format_usec(p->deadline_usec);
        return g_strdup_printf("the saves are estimated to take %s, more than the deadline of %s: "
                               "%u of %u saves are expected to end in time (shortest first)",
                               total, deadline, p->saves_in_time, p->saves);
}
