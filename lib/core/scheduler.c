/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "scheduler.h"

#include "macro.h"

typedef struct Group {
        bool has_order;
        int order;
        unsigned unfinished;
} Group;

typedef struct SchedItem {
        gpointer item;
        Group *group;
        int queued;  /* SchedKind waited for, -1 none */
        int holding; /* SchedKind of the slot held, -1 none */
        guint64 delay_usec;
        bool finished;
} SchedItem;

struct Scheduler {
        bool ascending;
        bool open_all;
        unsigned cap[_SCHED_KIND_MAX];
        unsigned active[_SCHED_KIND_MAX];
        unsigned peak[_SCHED_KIND_MAX];
        unsigned exclusive[_SCHED_KIND_MAX]; /* exclusive steps under way */
        guint64 delay_until[_SCHED_KIND_MAX];
        GQueue queue[_SCHED_KIND_MAX]; /* SchedItem* */
        GHashTable *items;             /* item → SchedItem* */
        GPtrArray *groups;             /* Group*, in run order */
};

Scheduler *scheduler_new(bool ascending)
{
        Scheduler *s = g_new0(Scheduler, 1);

        s->ascending = ascending;
        s->items = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
        s->groups = g_ptr_array_new_with_free_func(g_free);
        for (int k = 0; k < _SCHED_KIND_MAX; k++)
                g_queue_init(&s->queue[k]);
        return s;
}

Scheduler *scheduler_free(Scheduler *s)
{
        if (!s)
                return NULL;
        for (int k = 0; k < _SCHED_KIND_MAX; k++)
                g_queue_clear(&s->queue[k]);
        g_hash_table_unref(s->items);
        g_ptr_array_unref(s->groups);
        g_free(s);
        return NULL;
}

void scheduler_set_cap(Scheduler *s, SchedKind k, unsigned cap)
{
        s->cap[k] = cap;
}

int scheduler_group_cmp(bool ascending, bool a_has, int a, bool b_has, int b)
{
        if (a_has != b_has)
                /* Without an order: first at shutdown, last at boot. */
                return (a_has ? 1 : -1) * (ascending ? -1 : 1);
        if (!a_has || a == b)
                return 0;
        return (a < b ? -1 : 1) * (ascending ? 1 : -1);
}

void scheduler_add(Scheduler *s, gpointer item, bool has_order, int order)
{
        SchedItem *si = g_new0(SchedItem, 1);
        Group *grp = NULL;
        guint i;

        for (i = 0; i < s->groups->len; i++) {
                Group *g = s->groups->pdata[i];
                int c = scheduler_group_cmp(s->ascending, has_order, order, g->has_order, g->order);

                if (c == 0)
                        grp = g;
                if (c <= 0)
                        break;
        }
        if (!grp) {
                grp = g_new0(Group, 1);
                grp->has_order = has_order;
                grp->order = has_order ? order : 0;
                g_ptr_array_insert(s->groups, (gint) i, grp);
        }
        grp->unfinished++;
        si->item = item;
        si->group = grp;
        si->queued = -1;
        si->holding = -1;
        g_hash_table_replace(s->items, item, si);
}

static Group *open_group(Scheduler *s)
{
        for (guint i = 0; i < s->groups->len; i++) {
                Group *g = s->groups->pdata[i];
                if (g->unfinished > 0)
                        return g;
        }
        return NULL;
}

bool scheduler_current_group(Scheduler *s, bool *ret_has_order, int *ret_order)
{
        Group *g = open_group(s);

        if (!g)
                return false;
        *ret_has_order = g->has_order;
        *ret_order = g->order;
        return true;
}

static void unqueue(Scheduler *s, SchedItem *si)
{
        if (si->queued < 0)
                return;
        g_queue_remove(&s->queue[si->queued], si);
        si->queued = -1;
}

void scheduler_push(Scheduler *s, gpointer item, SchedKind kind, guint64 delay_usec)
{
        SchedItem *si = g_hash_table_lookup(s->items, item);

        g_return_if_fail(si && !si->finished && si->holding < 0);
        unqueue(s, si);
        si->queued = kind;
        si->delay_usec = delay_usec;
        g_queue_push_tail(&s->queue[kind], si);
}

static bool may_start(Scheduler *s, SchedKind k, const SchedItem *si, guint64 now)
{
        if (s->exclusive[k] > 0 || now < s->delay_until[k])
                return false;
        if (si->delay_usec > 0)
                return s->active[k] == 0;
        return s->cap[k] == 0 || s->active[k] < s->cap[k];
}

gpointer scheduler_pop(Scheduler *s, guint64 now, SchedKind *ret_kind)
{
        Group *open = s->open_all ? NULL : open_group(s);

        for (int k = 0; k < _SCHED_KIND_MAX; k++)
                for (GList *l = s->queue[k].head; l; l = l->next) {
                        SchedItem *si = l->data;

                        if (!s->open_all && si->group != open)
                                continue;
                        /* FIFO within the open group: the first eligible one decides. */
                        if (!may_start(s, k, si, now))
                                break;
                        g_queue_delete_link(&s->queue[k], l);
                        si->queued = -1;
                        si->holding = k;
                        s->active[k]++;
                        s->peak[k] = MAX(s->peak[k], s->active[k]);
                        if (si->delay_usec > 0)
                                s->exclusive[k]++;
                        if (ret_kind)
                                *ret_kind = k;
                        return si->item;
                }
        return NULL;
}

void scheduler_release(Scheduler *s, gpointer item, guint64 now)
{
        SchedItem *si = g_hash_table_lookup(s->items, item);

        if (!si)
                return;
        unqueue(s, si);
        if (si->holding < 0)
                return;
        s->active[si->holding]--;
        if (si->delay_usec > 0) {
                s->exclusive[si->holding]--;
                s->delay_until[si->holding] = MAX(s->delay_until[si->holding], now + si->delay_usec);
        }
        si->holding = -1;
}

void scheduler_finish(Scheduler *s, gpointer item, guint64 now)
{
        SchedItem *si = g_hash_table_lookup(s->items, item);

        if (!si || si->finished)
                return;
        scheduler_release(s, item, now);
        si->finished = true;
        si->group->unfinished--;
}

bool scheduler_holds(Scheduler *s, gpointer item, SchedKind k)
{
        SchedItem *si = g_hash_table_lookup(s->items, item);

        return si && si->holding == (int) k;
}

guint64 scheduler_wake_at(Scheduler *s)
{
        guint64 at = 0;

        for (int k = 0; k < _SCHED_KIND_MAX; k++)
                if (s->delay_until[k] > 0 && s->queue[k].length > 0 && (at == 0 || s->delay_until[k] < at))
                        at = s->delay_until[k];
        return at;
}

void scheduler_open_all(Scheduler *s)
{
        s->open_all = true;
}

unsigned scheduler_active(Scheduler *s, SchedKind k)
{
        return s->active[k];
}

unsigned scheduler_peak(Scheduler *s, SchedKind k)
{
        return s->peak[k];
}
