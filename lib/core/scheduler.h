/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Who may start a step now: pure bookkeeping, no clock of its own, no I/O.
 *
 * Items (the engine's guests) belong to order groups. Groups run one after another: an item
 * of a group starts a step only when every item of the groups before it is finished (a
 * barrier). At shutdown (descending) the guests without an order come first, then the highest
 * order down to the lowest; at boot (ascending) the lowest order first, the guests without an
 * order last. Within the open group, each step kind has a cap (0 = no limit) and a FIFO queue.
 *
 * A step pushed with a delay (StartDelaySec) is exclusive: it starts when no step of its kind
 * is under way and no delay runs, nothing of its kind starts beside it, and after it ends
 * nothing of its kind starts for that long. */

#include <stdbool.h>
#include <glib.h>

typedef enum SchedKind {
        SCHED_SAVE,
        SCHED_SHUTDOWN,
        SCHED_POWEROFF,
        SCHED_START,
        _SCHED_KIND_MAX,
} SchedKind;

typedef struct Scheduler Scheduler;

Scheduler *scheduler_new(bool ascending);
Scheduler *scheduler_free(Scheduler *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Scheduler, scheduler_free);

/* Run order of two order groups: negative when @a's group runs first. */
int scheduler_group_cmp(bool ascending, bool a_has, int a, bool b_has, int b);

void scheduler_set_cap(Scheduler *s, SchedKind k, unsigned cap);
/* @item joins the run, in its group. Before its first push. */
void scheduler_add(Scheduler *s, gpointer item, bool has_order, int order);
/* @item waits for a @kind slot. */
void scheduler_push(Scheduler *s, gpointer item, SchedKind kind, guint64 delay_usec);
/* The next item that may start now; it holds its slot until scheduler_release(). NULL when
 * none may. */
gpointer scheduler_pop(Scheduler *s, guint64 now, SchedKind *ret_kind);
/* @item's step ended (or never started: it leaves its queue): its slot is free; an exclusive
 * step's delay starts at @now. */
void scheduler_release(Scheduler *s, gpointer item, guint64 now);
/* @item is done for the barrier (it has its outcome; at boot: it runs and is ready). Leaves
 * its queue and slot. */
void scheduler_finish(Scheduler *s, gpointer item, guint64 now);
bool scheduler_holds(Scheduler *s, gpointer item, SchedKind k);
/* When a delay ends and a pop may succeed again (0: no delay runs). */
guint64 scheduler_wake_at(Scheduler *s);
/* Lifts the barriers: every group is open (the deadline). */
void scheduler_open_all(Scheduler *s);
/* The open group: whether it has an order and which (for messages). FALSE when all are done. */
bool scheduler_current_group(Scheduler *s, bool *ret_has_order, int *ret_order);
unsigned scheduler_active(Scheduler *s, SchedKind k);
unsigned scheduler_peak(Scheduler *s, SchedKind k);
