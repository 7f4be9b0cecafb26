/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The journal fields of an entry (what journalctl filters by) and the plain line on stderr. */
#include <stdio.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "testlib.h"

static bool has_field(GPtrArray *fields, const char *field)
{
        for (guint i = 0; i < fields->len; i++)
                if (streq_ptr(fields->pdata[i], field))
                        return true;
        return false;
}

static bool has_name(GPtrArray *fields, const char *name)
{
        for (guint i = 0; i < fields->len; i++)
                if (g_str_has_prefix(fields->pdata[i], name) &&
                    ((const char *) fields->pdata[i])[strlen(name)] == '=')
                        return true;
        return false;
}

START_TEST(test_guest_fields)
{
        LogGuest g = {.name = "web1",
                      .uuid = "8d4c2a4e-0f1b-4c3d-9e5f-6a7b8c9d0e1f",
                      .uri = "qemu:///system",
                      .step = "shutdown",
                      .outcome = "failed"};
        g_autoptr(GPtrArray) f =
                log_entry_fields(LOG_ERR, 5, &g, MESSAGE_ID_GUEST_FAILED, NULL, "web1: failed");

        ck_assert(has_field(f, "MESSAGE=web1: failed"));
        ck_assert(has_field(f, "PRIORITY=3"));
        ck_assert(has_field(f, "ERRNO=5"));
        ck_assert(has_field(f, "SYSLOG_IDENTIFIER=guestkeeperd"));
        ck_assert(has_field(f, "MESSAGE_ID=" MESSAGE_ID_GUEST_FAILED));
        ck_assert(has_field(f, "GUEST_NAME=web1"));
        ck_assert(has_field(f, "GUEST_UUID=8d4c2a4e-0f1b-4c3d-9e5f-6a7b8c9d0e1f"));
        ck_assert(has_field(f, "GUEST_URI=qemu:///system"));
        ck_assert(has_field(f, "GUESTKEEPER_STEP=shutdown"));
        ck_assert(has_field(f, "GUESTKEEPER_OUTCOME=failed"));
        ck_assert(!has_name(f, "GUESTKEEPER_RUN_ID"));
}
END_TEST

/* A URI's entry: no guest fields but the URI; no ERRNO without an error. */
START_TEST(test_partial_guest)
{
        g_autoptr(GPtrArray) f =
                log_entry_fields(LOG_ERR, 0, &(LogGuest){.uri = "test:///x"}, NULL, NULL, "x");

        ck_assert(has_field(f, "GUEST_URI=test:///x"));
        ck_assert(!has_name(f, "GUEST_NAME"));
        ck_assert(!has_name(f, "GUESTKEEPER_STEP"));
        ck_assert(!has_name(f, "GUESTKEEPER_OUTCOME"));
        ck_assert(!has_name(f, "ERRNO"));
        ck_assert(!has_name(f, "MESSAGE_ID"));
}
END_TEST

/* Every entry of a run carries its id, kind and reason; none after it. */
START_TEST(test_run_context)
{
        const char *extra[] = {"GUESTKEEPER_DURATION_USEC=1500", "GUESTKEEPER_GUESTS_FAILED=0", NULL};
        g_autoptr(GPtrArray) during = NULL, end = NULL, after = NULL;

        log_set_run("0123456789abcdef0123456789abcdef", "preserve", "rehearsal");
        during = log_entry_fields(LOG_INFO, 0, NULL, NULL, NULL, "a");
        ck_assert(has_field(during, "GUESTKEEPER_RUN_ID=0123456789abcdef0123456789abcdef"));
        ck_assert(has_field(during, "GUESTKEEPER_RUN_KIND=preserve"));
        ck_assert(has_field(during, "GUESTKEEPER_RUN_REASON=rehearsal"));
        ck_assert(!has_name(during, "GUESTKEEPER_DURATION_USEC"));

        log_set_run("0123456789abcdef0123456789abcdef", "preserve", "reboot");
        end = log_entry_fields(LOG_NOTICE, 0, NULL, MESSAGE_ID_RUN_FINISHED, extra, "b");
        ck_assert(has_field(end, "GUESTKEEPER_RUN_REASON=reboot"));
        ck_assert(has_field(end, "GUESTKEEPER_DURATION_USEC=1500"));
        ck_assert(has_field(end, "GUESTKEEPER_GUESTS_FAILED=0"));

        log_set_run(NULL, NULL, NULL);
        after = log_entry_fields(LOG_INFO, 0, NULL, NULL, NULL, "c");
        ck_assert(!has_name(after, "GUESTKEEPER_RUN_ID"));
        ck_assert(!has_name(after, "GUESTKEEPER_RUN_KIND"));
        ck_assert(!has_name(after, "GUESTKEEPER_RUN_REASON"));
}
END_TEST

/* Run by hand: the message alone, with the level's prefix; the fields stay in the journal. */
START_TEST(test_stderr_line)
{
        const char *extra[] = {"GUESTKEEPER_CALLER_UID=1000", NULL};
        char buf[512] = "";
        int fds[2], saved;
        ssize_t n;

        ck_assert_int_eq(pipe(fds), 0);
        saved = dup(STDERR_FILENO);
        ck_assert_int_ge(saved, 0);
        ck_assert_int_ge(dup2(fds[1], STDERR_FILENO), 0);
        log_set_run("0123456789abcdef0123456789abcdef", "restore", "start-up");
        log_full_fields(LOG_WARNING, 0, &(LogGuest){.name = "web1", .step = "start"},
                        MESSAGE_ID_GUEST_FAILED, extra, "web1: %s", "restore failed");
        ck_assert_int_eq(log_full(LOG_ERR, 2, NULL, NULL, "Cannot open it: %m"), -2);
        log_set_run(NULL, NULL, NULL);
        fflush(stderr);
        ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
        close(saved);
        close(fds[1]);
        n = read(fds[0], buf, sizeof buf - 1);
        close(fds[0]);
        ck_assert_int_gt(n, 0);
        ck_assert_str_eq(
                buf, "warning: web1: restore failed\nerror: Cannot open it: No such file or directory\n");
}
END_TEST

int main(void)
{
        Suite *s = suite_create("log");
        TCase *tc = tcase_create("log");

        tcase_add_test(tc, test_guest_fields);
        tcase_add_test(tc, test_partial_guest);
        tcase_add_test(tc, test_run_context);
        tcase_add_test(tc, test_stderr_line);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
