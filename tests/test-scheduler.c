/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The scheduler alone: caps, FIFO, group barriers both ways, delays, the deadline's opening.
 * Items are plain integers cast to pointers; the clock is passed in. */
#include "scheduler.h"
#include "testlib.h"

#define IT(n) GINT_TO_POINTER(n)

static int pop(Scheduler *s, guint64 now, SchedKind *ret_kind)
{
        return GPOINTER_TO_INT(scheduler_pop(s, now, ret_kind));
}

START_TEST(test_caps_and_fifo)
{
        g_autoptr(Scheduler) s = scheduler_new(false);
        SchedKind k;

        scheduler_set_cap(s, SCHED_SAVE, 2);
        for (int i = 1; i <= 4; i++) {
                scheduler_add(s, IT(i), false, 0);
                scheduler_push(s, IT(i), SCHED_SAVE, 0);
        }
        ck_assert_int_eq(pop(s, 0, &k), 1);
        ck_assert_int_eq(k, SCHED_SAVE);
        ck_assert_int_eq(pop(s, 0, NULL), 2);
        ck_assert_int_eq(pop(s, 0, NULL), 0); /* cap */
        ck_assert_uint_eq(scheduler_active(s, SCHED_SAVE), 2);
        scheduler_release(s, IT(1), 0);
        ck_assert_int_eq(pop(s, 0, NULL), 3);
        /* Kinds have their own caps: a shutdown is not held back by saves. */
        scheduler_release(s, IT(2), 0);
        scheduler_push(s, IT(2), SCHED_SHUTDOWN, 0);
        ck_assert_int_eq(pop(s, 0, NULL), 4);
        ck_assert_int_eq(pop(s, 0, &k), 2);
        ck_assert_int_eq(k, SCHED_SHUTDOWN);
        ck_assert_uint_eq(scheduler_peak(s, SCHED_SAVE), 2);
}
END_TEST

/* Shutdown: no order first, then high to low; a group opens only when the one before is
 * finished, whatever the caps. */
START_TEST(test_barriers_descending)
{
        g_autoptr(Scheduler) s = scheduler_new(false);
        bool has;
        int order;

        scheduler_add(s, IT(1), true, 10);
        scheduler_add(s, IT(2), true, 20);
        scheduler_add(s, IT(3), false, 0);
        scheduler_add(s, IT(4), true, 20);
        for (int i = 1; i <= 4; i++)
                scheduler_push(s, IT(i), SCHED_POWEROFF, 0);
        ck_assert(scheduler_current_group(s, &has, &order));
        ck_assert(!has);
        ck_assert_int_eq(pop(s, 0, NULL), 3);
        ck_assert_int_eq(pop(s, 0, NULL), 0); /* group of 20 waits for 3's outcome */
        scheduler_finish(s, IT(3), 0);
        ck_assert_int_eq(pop(s, 0, NULL), 2);
        ck_assert_int_eq(pop(s, 0, NULL), 4);
        ck_assert_int_eq(pop(s, 0, NULL), 0);
        scheduler_finish(s, IT(2), 0);
        ck_assert_int_eq(pop(s, 0, NULL), 0); /* 4 not finished yet */
        scheduler_finish(s, IT(4), 0);
        ck_assert(scheduler_current_group(s, &has, &order));
        ck_assert(has);
        ck_assert_int_eq(order, 10);
        ck_assert_int_eq(pop(s, 0, NULL), 1);
        scheduler_finish(s, IT(1), 0);
        ck_assert(!scheduler_current_group(s, &has, &order));
}
END_TEST

/* Boot: low to high, no order last. */
START_TEST(test_barriers_ascending)
{
        g_autoptr(Scheduler) s = scheduler_new(true);

        scheduler_add(s, IT(1), false, 0);
        scheduler_add(s, IT(2), true, 20);
        scheduler_add(s, IT(3), true, -5);
        for (int i = 1; i <= 3; i++)
                scheduler_push(s, IT(i), SCHED_START, 0);
        ck_assert_int_eq(pop(s, 0, NULL), 3);
        ck_assert_int_eq(pop(s, 0, NULL), 0);
        scheduler_finish(s, IT(3), 0);
        ck_assert_int_eq(pop(s, 0, NULL), 2);
        scheduler_finish(s, IT(2), 0);
        ck_assert_int_eq(pop(s, 0, NULL), 1);
}
END_TEST

/* The deadline lifts the barriers: later groups start at once. */
START_TEST(test_open_all)
{
        g_autoptr(Scheduler) s = scheduler_new(false);

        scheduler_add(s, IT(1), true, 1);
        scheduler_add(s, IT(2), true, 2);
        scheduler_push(s, IT(1), SCHED_POWEROFF, 0);
        scheduler_push(s, IT(2), SCHED_POWEROFF, 0);
        ck_assert_int_eq(pop(s, 0, NULL), 2);
        ck_assert_int_eq(pop(s, 0, NULL), 0);
        scheduler_open_all(s);
        ck_assert_int_eq(pop(s, 0, NULL), 1);
}
END_TEST

/* A delayed start is exclusive and holds the next start back for its delay. */
START_TEST(test_delays)
{
        g_autoptr(Scheduler) s = scheduler_new(true);

        for (int i = 1; i <= 3; i++)
                scheduler_add(s, IT(i), false, 0);
        scheduler_push(s, IT(1), SCHED_START, 1000);
        scheduler_push(s, IT(2), SCHED_START, 0);
        scheduler_push(s, IT(3), SCHED_START, 0);
        ck_assert_int_eq(pop(s, 100, NULL), 1);
        ck_assert_int_eq(pop(s, 100, NULL), 0); /* exclusive while it starts */
        ck_assert_uint_eq(scheduler_wake_at(s), 0);
        scheduler_release(s, IT(1), 200); /* started at 200: nothing before 1200 */
        ck_assert_uint_eq(scheduler_wake_at(s), 1200);
        ck_assert_int_eq(pop(s, 1199, NULL), 0);
        ck_assert_int_eq(pop(s, 1200, NULL), 2);
        ck_assert_int_eq(pop(s, 1200, NULL), 3);    /* no delay of their own: in parallel */
        ck_assert_uint_eq(scheduler_wake_at(s), 0); /* nobody waits */
}
END_TEST

/* A finished item leaves its queue: it is never popped. */
START_TEST(test_finish_unqueues)
{
        g_autoptr(Scheduler) s = scheduler_new(false);

        scheduler_add(s, IT(1), false, 0);
        scheduler_add(s, IT(2), false, 0);
        scheduler_push(s, IT(1), SCHED_SAVE, 0);
        scheduler_push(s, IT(2), SCHED_SAVE, 0);
        scheduler_finish(s, IT(1), 0);
        ck_assert_int_eq(pop(s, 0, NULL), 2);
        ck_assert(scheduler_holds(s, IT(2), SCHED_SAVE));
        scheduler_finish(s, IT(2), 0);
        ck_assert(!scheduler_holds(s, IT(2), SCHED_SAVE));
        ck_assert_uint_eq(scheduler_active(s, SCHED_SAVE), 0);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("scheduler");
        TCase *tc = tcase_create("scheduler");

        tcase_add_test(tc, test_caps_and_fifo);
        tcase_add_test(tc, test_barriers_descending);
        tcase_add_test(tc, test_barriers_ascending);
        tcase_add_test(tc, test_open_all);
        tcase_add_test(tc, test_delays);
        tcase_add_test(tc, test_finish_unqueues);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
