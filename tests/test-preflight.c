/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Pre-flight alone: host devices, free space (first fit, shared filesystems), the estimates,
 * ParallelSaves and order groups in the total, shortest first past the deadline, the speed
 * file, and which URIs have a managed-save directory to check. */
#include "preflight.h"
#include "terms.h"
#include "util.h"
#include "testlib.h"

#define MIB  ((guint64) 1024 * 1024)
#define SAVE (STEP_MASK(STEP_SAVE) | STEP_MASK(STEP_SHUTDOWN) | STEP_MASK(STEP_POWEROFF))
#define SEC  USEC_PER_SEC

/* 1 s fixed + 100 MiB/s: a guest of N × 100 MiB takes 1 + N s. */
static const SaveSpeed speed = {.fixed_usec = SEC, .bytes_per_sec = 100 * MIB};

static PreflightGuest guest(guint64 mib, int dir)
{
        return (PreflightGuest){.memory_bytes = mib * MIB, .steps = SAVE, .dir = dir};
}

static void clear(PreflightGuest *g, guint n)
{
        for (guint i = 0; i < n; i++)
                preflight_guest_clear(&g[i]);
}

START_TEST(test_hostdev)
{
        PreflightGuest g[] = {guest(100, -1), guest(100, -1)};
        PreflightPlan p;

        g[1].hostdev = true;
        preflight_plan(NULL, 0, &speed, 4, 0, g, 2, &p);
        ck_assert_uint_eq(g[0].planned, SAVE);
        ck_assert_ptr_null(g[0].reason);
        ck_assert_uint_eq(g[1].planned, STEP_MASK(STEP_SHUTDOWN) | STEP_MASK(STEP_POWEROFF));
        ck_assert_str_eq(g[1].reason, "host device passthrough cannot be saved");
        ck_assert_uint_eq(g[1].estimate_usec, 0);
        ck_assert_uint_eq(p.saves, 1);
        ck_assert_uint_eq(p.dropped, 1);
        ck_assert_uint_eq(p.total_usec, 2 * SEC);
        /* 0 = no DeadlineSec: poweroff.target's 30 min. */
        ck_assert_uint_eq(p.deadline_usec, 30 * 60 * SEC);
        clear(g, 2);
}
END_TEST

START_TEST(test_space_first_fit)
{
        /* Two directories on one filesystem share it; a third is elsewhere; one unknown. */
        PreflightDir d[] = {
                {.path = "/save", .known = true, .free_bytes = 700 * MIB, .fs = 1},
                {.path = "/state/save", .known = true, .free_bytes = 700 * MIB, .fs = 1},
                {.path = "/other", .known = true, .free_bytes = 100 * MIB, .fs = 2},
                {.path = "/nfs", .known = false},
        };
        PreflightGuest g[] = {guest(512, 0), guest(512, 1),  guest(128, 1),
                              guest(128, 2), guest(4096, 3), guest(4096, -1)};
        PreflightPlan p;

        preflight_plan(d, G_N_ELEMENTS(d), &speed, 0, 0, g, G_N_ELEMENTS(g), &p);
        ck_assert_ptr_null(g[0].reason);
        ck_assert_str_eq(g[1].reason, "not enough space in /state/save: needs 512 MiB, 188 MiB free");
        ck_assert_uint_eq(g[1].planned & STEP_MASK(STEP_SAVE), 0);
        ck_assert_uint_eq(g[1].planned & STEP_MASK(STEP_SHUTDOWN), STEP_MASK(STEP_SHUTDOWN));
        /* First fit: a later, smaller guest still fits. */
        ck_assert_ptr_null(g[2].reason);
        ck_assert_str_eq(g[3].reason, "not enough space in /other: needs 128 MiB, 100 MiB free");
        /* Unknown free space, or no directory to check: no check. */
        ck_assert_ptr_null(g[4].reason);
        ck_assert_ptr_null(g[5].reason);
        ck_assert_uint_eq(p.dropped, 2);
        clear(g, G_N_ELEMENTS(g));
}
END_TEST

START_TEST(test_save_only_dropped)
{
        PreflightDir d = {.path = "/save", .known = true, .free_bytes = 10 * MIB, .fs = 1};
        PreflightGuest g = guest(100, 0);
        PreflightPlan p;

        /* Nothing after the save (Shutdown=none): no step left, the guest stays running. */
        g.steps = STEP_MASK(STEP_SAVE);
        preflight_plan(&d, 1, &speed, 4, 0, &g, 1, &p);
        ck_assert_uint_eq(g.planned, 0);
        ck_assert_ptr_nonnull(g.reason);
        ck_assert_uint_eq(p.total_usec, 0);
        preflight_guest_clear(&g);
}
END_TEST

START_TEST(test_total_parallel_and_groups)
{
        /* Estimates 2, 3, 4, 5 s without an order, then 2 s with order 1 (after the first
         * group at shutdown), and a guest that is only shut down. */
        PreflightGuest g[] = {guest(100, -1), guest(200, -1), guest(300, -1),
                              guest(400, -1), guest(100, -1), guest(100, -1)};
        PreflightPlan p;

        g[4].has_order = true;
        g[4].order = 1;
        g[5].steps = STEP_MASK(STEP_SHUTDOWN);
        preflight_plan(NULL, 0, &speed, 2, 0, g, G_N_ELEMENTS(g), &p);
        ck_assert_uint_eq(g[0].estimate_usec, 2 * SEC);
        ck_assert_uint_eq(g[3].estimate_usec, 5 * SEC);
        ck_assert_uint_eq(g[5].estimate_usec, 0);
        /* Two slots: 2+4 and 3+5 → the group ends at 8 s; then the order-1 group 2 s. */
        ck_assert_uint_eq(g[2].end_usec, 6 * SEC);
        ck_assert_uint_eq(g[3].end_usec, 8 * SEC);
        ck_assert_uint_eq(g[4].end_usec, 10 * SEC);
        ck_assert_uint_eq(p.total_usec, 10 * SEC);
        ck_assert_uint_eq(g[4].rank, 5); /* runs last */
        ck_assert(!p.over_deadline);
        ck_assert(!p.shortest_first);
        ck_assert_ptr_null(preflight_plan_warning(&p));

        /* No cap: every save of a group at once. */
        preflight_plan(NULL, 0, &speed, 0, 0, g, G_N_ELEMENTS(g), &p);
        ck_assert_uint_eq(p.total_usec, 7 * SEC);
        /* One at a time. */
        preflight_plan(NULL, 0, &speed, 1, 0, g, G_N_ELEMENTS(g), &p);
        ck_assert_uint_eq(p.total_usec, 16 * SEC);
        clear(g, G_N_ELEMENTS(g));
}
END_TEST

START_TEST(test_deadline_shortest_first)
{
        /* One at a time, 10 s of deadline: 9 s, 2 s, 3 s, 4 s in listing order would save only
         * the first before it; shortest first saves three. */
        PreflightGuest g[] = {guest(800, -1), guest(100, -1), guest(200, -1), guest(300, -1)};
        g_autofree char *warning = NULL;
        PreflightPlan p;

        preflight_plan(NULL, 0, &speed, 1, 10 * SEC, g, G_N_ELEMENTS(g), &p);
        ck_assert(p.over_deadline);
        ck_assert(p.shortest_first);
        ck_assert_uint_eq(p.total_usec, 18 * SEC);
        ck_assert_uint_eq(g[1].rank, 0);
        ck_assert_uint_eq(g[2].rank, 1);
        ck_assert_uint_eq(g[3].rank, 2);
        ck_assert_uint_eq(g[0].rank, 3);
        ck_assert_uint_eq(p.saves_in_time, 3);
        ck_assert_uint_eq(p.saves, 4);
        warning = preflight_plan_warning(&p);
        ck_assert_str_eq(warning,
                         "the saves are estimated to take 18.0 s, more than the deadline of 10.0 s: "
                         "3 of 4 saves are expected to end in time (shortest first)");
        clear(g, G_N_ELEMENTS(g));
}
END_TEST

START_TEST(test_deadline_keeps_groups)
{
        /* Shortest first only within a group: the order-5 guest still comes after. */
        PreflightGuest g[] = {guest(800, -1), guest(100, -1)};
        PreflightPlan p;

        g[1].has_order = true;
        g[1].order = 5;
        preflight_plan(NULL, 0, &speed, 1, 5 * SEC, g, 2, &p);
        ck_assert(p.shortest_first);
        ck_assert_uint_eq(g[0].rank, 0);
        ck_assert_uint_eq(g[1].rank, 1);
        clear(g, 2);
}
END_TEST

START_TEST(test_speed_file)
{
        SaveSpeed s, d;
        g_autofree char *text = NULL;

        save_speed_default(&d);
        ck_assert_uint_eq(d.fixed_usec, 1300 * USEC_PER_MSEC);
        ck_assert_uint_eq(d.bytes_per_sec, 350 * MIB);
        ck_assert_uint_eq(save_speed_estimate(&d, 350 * MIB), 2300 * USEC_PER_MSEC);

        /* Two saves of 200 MiB in 5 s in all: 3 s beyond the fixed cost → 133 MiB/s. */
        s = d;
        save_speed_update(&s, 400 * MIB, 5300 * USEC_PER_MSEC, 2);
        ck_assert_uint_eq(s.runs, 1);
        ck_assert_uint_le(s.bytes_per_sec - 400 * MIB * 10 / 27 + 1, 2);
        /* The next run is averaged with it. */
        save_speed_update(&s, 100 * MIB, 2300 * USEC_PER_MSEC, 1);
        ck_assert_uint_eq(s.runs, 2);
        ck_assert_uint_le(s.bytes_per_sec - (400 * MIB * 10 / 27 + 100 * MIB) / 2 + 1, 2);
        /* Nothing measured: unchanged. */
        save_speed_update(&s, 0, 0, 0);
        ck_assert_uint_eq(s.runs, 2);

        text = save_speed_format(&s);
        ck_assert_int_eq(save_speed_parse(text, &d), 0);
        ck_assert_uint_eq(d.bytes_per_sec, s.bytes_per_sec);
        ck_assert_uint_eq(d.fixed_usec, s.fixed_usec);
        ck_assert_uint_eq(d.runs, 2);
        ck_assert_int_eq(save_speed_parse("fixed_usec=1\nbytes_per_sec=x\nruns=1\n", &d), -EINVAL);
        ck_assert_int_eq(save_speed_parse("fixed_usec=1\nruns=1\n", &d), -EINVAL);
        ck_assert_int_eq(save_speed_parse("fixed_usec=1\nbytes_per_sec=0\nruns=1\n", &d), -EINVAL);
        ck_assert_int_eq(save_speed_parse("garbage", &d), -EINVAL);
}
END_TEST

START_TEST(test_managed_save_dir)
{
        ck_assert_str_eq(preflight_managed_save_dir(NULL, "qemu:///system"),
                         PREFLIGHT_QEMU_MANAGED_SAVE_DIR);
        ck_assert_str_eq(preflight_managed_save_dir(NULL, "qemu+unix:///system?socket=/tmp/s"),
                         PREFLIGHT_QEMU_MANAGED_SAVE_DIR);
        ck_assert_ptr_null(preflight_managed_save_dir(NULL, "qemu:///session"));
        ck_assert_ptr_null(preflight_managed_save_dir(NULL, "qemu+ssh://host/system"));
        ck_assert_ptr_null(preflight_managed_save_dir(NULL, "test:///default"));
        ck_assert_ptr_null(preflight_managed_save_dir(NULL, "default"));
        ck_assert_ptr_null(preflight_managed_save_dir(NULL, NULL));
        ck_assert_str_eq(preflight_managed_save_dir("/srv/save", "test:///default"), "/srv/save");
        ck_assert_ptr_null(preflight_managed_save_dir("", "qemu:///system"));
}
END_TEST

START_TEST(test_format)
{
        g_autofree char *a = format_usec(1500 * USEC_PER_MSEC);
        g_autofree char *b = format_usec(80 * SEC);
        g_autofree char *c = format_usec(3 * 3600 * SEC + 120 * SEC);

        ck_assert_str_eq(a, "1.5 s");
        ck_assert_str_eq(b, "1 min 20 s");
        ck_assert_str_eq(c, "3 h 2 min");
}
END_TEST

int main(void)
{
        Suite *s = suite_create("preflight");
        TCase *tc = tcase_create("preflight");

        tcase_add_test(tc, test_hostdev);
        tcase_add_test(tc, test_space_first_fit);
        tcase_add_test(tc, test_save_only_dropped);
        tcase_add_test(tc, test_total_parallel_and_groups);
        tcase_add_test(tc, test_deadline_shortest_first);
        tcase_add_test(tc, test_deadline_keeps_groups);
        tcase_add_test(tc, test_speed_file);
        tcase_add_test(tc, test_managed_save_dir);
        tcase_add_test(tc, test_format);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
