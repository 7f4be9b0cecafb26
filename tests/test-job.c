/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Jobs on a worker against the fake backend: the request reaches the backend, the result and
 * the error come back on the main context; the backoff helper's sequence. */
#include "hypervisor-fake.h"
#include "job.h"
#include "testlib.h"

typedef struct Box {
        Job job;
        bool done;
} Box;

static void box_done(gpointer p)
{
        ((Box *) p)->done = true;
}

static void run_job(Workers *w, Box *b)
{
        workers_submit(w, b, job_run, box_done, NULL);
        RUN_UNTIL(b->done);
}

START_TEST(test_save_and_list)
{
        g_autoptr(Workers) w = workers_new(NULL, 2);
        g_autoptr(Hypervisor) hv = hypervisor_fake_new("fake:///job", NULL);
        const char *uuid = fake_add_guest(hv, &(FakeGuestSpec){.name = "web", .persistent = true});
        Box save = {}, list = {}, again = {};

        job_init(&save.job, JOB_SAVE, hv, uuid);
        run_job(w, &save);
        ck_assert_int_eq(save.job.r, 0);
        ck_assert(fake_has_managed_save(hv, "web"));

        job_init(&list.job, JOB_LIST, hv, NULL);
        list.job.flag = true;
        run_job(w, &list);
        ck_assert_int_eq(list.job.r, 0);
        ck_assert_uint_eq(list.job.list->len, 1);
        ck_assert_int_eq(((GuestInfo *) list.job.list->pdata[0])->state, GUEST_STATE_SAVED);

        job_init_copy(&again.job, &save.job);
        ck_assert_str_eq(again.job.uuid, uuid);
        ck_assert_int_eq(again.job.kind, JOB_SAVE);
        run_job(w, &again);
        ck_assert_int_lt(again.job.r, 0); /* not running any more */
        ck_assert_ptr_nonnull(again.job.error);

        job_clear(&save.job);
        job_clear(&list.job);
        job_clear(&again.job);
}
END_TEST

START_TEST(test_unreachable_list)
{
        g_autoptr(Workers) w = workers_new(NULL, 2);
        g_autoptr(Hypervisor) hv = hypervisor_fake_new("fake:///down", NULL);
        Box list = {};

        fake_set_unreachable(hv, true);
        job_init(&list.job, JOB_LIST, hv, NULL);
        run_job(w, &list);
        ck_assert_int_eq(list.job.r, -ENOTCONN);
        ck_assert_ptr_nonnull(list.job.error);
        job_clear(&list.job);
}
END_TEST

START_TEST(test_backoff)
{
        ck_assert_uint_eq(backoff_ms(0, 500, 4000), 500);
        ck_assert_uint_eq(backoff_ms(1, 500, 4000), 1000);
        ck_assert_uint_eq(backoff_ms(2, 500, 4000), 2000);
        ck_assert_uint_eq(backoff_ms(3, 500, 4000), 4000);
        ck_assert_uint_eq(backoff_ms(50, 500, 4000), 4000);
        ck_assert_uint_eq(backoff_ms(40, 1000, 30000), 30000);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("job");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_save_and_list);
        tcase_add_test(tc, test_unreachable_list);
        tcase_add_test(tc, test_backoff);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
