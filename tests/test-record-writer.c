/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Group commits: changes of one main-loop turn share a write, changes during a write go into
 * the next one, a burst of changes is a few writes, and what is on disk after the last callback
 * is the last state. */
#include "macro.h"
#include "record-writer.h"
#include "testlib.h"
#include "util.h"

typedef struct Seen {
        unsigned calls;
        bool idle; /* the last callback said no write follows */
        int r;
} Seen;

static void on_written(RecordWriter *w, int r, bool more, void *userdata)
{
        Seen *s = userdata;

        s->calls++;
        s->idle = !more;
        s->r = r;
}

static Record *load(const char *path)
{
        g_autofree char *error = NULL;
        Record *r = NULL;

        ck_assert_msg(record_load(path, &r, &error) >= 0, "%s", error);
        return r;
}

START_TEST(test_one_turn_one_write)
{
        g_autofree char *dir = testlib_tmpdir(), *path = g_build_filename(dir, "record", NULL);
        g_autoptr(Record) rec = record_new(path);
        Seen seen = {};
        g_autoptr(RecordWriter) w = record_writer_new(rec, on_written, &seen);
        g_autoptr(Record) back = NULL;

        for (int i = 0; i < 100; i++) {
                g_autofree char *uuid = g_strdup_printf("00000000-0000-0000-0000-%012d", i);
                record_put(rec, "test:///default", uuid, uuid, true);
                record_writer_touch(w);
        }
        RUN_UNTIL(seen.calls > 0 && seen.idle);
        ck_assert_uint_eq(record_writer_writes(w), 1);
        ck_assert_int_eq(seen.r, 0);
        back = load(path);
        ck_assert_uint_eq(back->guests->len, 100);
        testlib_rm_rf(dir);
}
END_TEST

START_TEST(test_change_during_write_follows)
{
        g_autofree char *dir = testlib_tmpdir(), *path = g_build_filename(dir, "record", NULL);
        g_autoptr(Record) rec = record_new(path);
        Seen seen = {};
        g_autoptr(RecordWriter) w = record_writer_new(rec, on_written, &seen);
        g_autoptr(Record) back = NULL;

        record_put(rec, "test:///default", "00000000-0000-0000-0000-00000000000a", "a", true);
        record_writer_write_now(w); /* in flight now */
        record_put(rec, "test:///default", "00000000-0000-0000-0000-00000000000b", "b", true);
        record_writer_touch(w);
        RUN_UNTIL(seen.calls > 0 && seen.idle);
        ck_assert_uint_eq(record_writer_writes(w), 2);
        back = load(path);
        ck_assert_uint_eq(back->guests->len, 2);
        testlib_rm_rf(dir);
}
END_TEST

START_TEST(test_failed_write_reported)
{
        g_autoptr(Record) rec = record_new("/nonexistent-dir/record");
        Seen seen = {};
        g_autoptr(RecordWriter) w = record_writer_new(rec, on_written, &seen);

        record_writer_write_now(w);
        RUN_UNTIL(seen.calls > 0);
        ck_assert_int_lt(seen.r, 0);
}
END_TEST

START_TEST(test_free_waits_for_the_write)
{
        g_autofree char *dir = testlib_tmpdir(), *path = g_build_filename(dir, "record", NULL);
        g_autoptr(Record) rec = record_new(path);
        RecordWriter *w = record_writer_new(rec, NULL, NULL);
        g_autoptr(Record) back = NULL;

        record_put(rec, "test:///default", "00000000-0000-0000-0000-00000000000a", "a", true);
        record_writer_write_now(w);
        record_writer_free(w);
        back = load(path);
        ck_assert_uint_eq(back->guests->len, 1);
        testlib_rm_rf(dir);
}
END_TEST

START_TEST(test_burst_is_a_few_writes)
{
        g_autofree char *dir = testlib_tmpdir(), *path = g_build_filename(dir, "record", NULL);
        g_autoptr(Record) rec = record_new(path);
        Seen seen = {};
        g_autoptr(RecordWriter) w = record_writer_new(rec, on_written, &seen);
        g_autoptr(Record) back = NULL;
        guint64 start = now_usec(), elapsed;

        /* A change every millisecond for 300 ms, each in a main-loop turn of its own. */
        for (int i = 0; i < 300; i++) {
                g_autofree char *uuid = g_strdup_printf("00000000-0000-0000-0000-%012d", i);

                record_put(rec, "test:///default", uuid, uuid, true);
                record_writer_touch(w);
                while (g_main_context_iteration(NULL, FALSE))
                        ;
                g_usleep(1000);
        }
        RUN_UNTIL(seen.calls > 0 && seen.idle);
        elapsed = now_usec() - start;
        /* One write, then one per gap at most. */
        ck_assert_uint_le(record_writer_writes(w), 2 + elapsed / (50 * USEC_PER_MSEC));
        back = load(path);
        ck_assert_uint_eq(back->guests->len, 300);
        testlib_rm_rf(dir);
}
END_TEST

START_TEST(test_write_now_skips_the_gap)
{
        g_autofree char *dir = testlib_tmpdir(), *path = g_build_filename(dir, "record", NULL);
        g_autoptr(Record) rec = record_new(path);
        Seen seen = {};
        g_autoptr(RecordWriter) w = record_writer_new(rec, on_written, &seen);

        record_writer_write_now(w);
        RUN_UNTIL(seen.calls == 1);
        record_put(rec, "test:///default", "00000000-0000-0000-0000-00000000000a", "a", true);
        record_writer_touch(w);
        while (g_main_context_iteration(NULL, FALSE))
                ;
        ck_assert_uint_eq(record_writer_writes(w), 1); /* in the gap after the first write */
        record_writer_write_now(w);
        ck_assert_uint_eq(record_writer_writes(w), 2);
        RUN_UNTIL(seen.calls == 2 && seen.idle);
        testlib_rm_rf(dir);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("record-writer");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_one_turn_one_write);
        tcase_add_test(tc, test_change_during_write_follows);
        tcase_add_test(tc, test_failed_write_reported);
        tcase_add_test(tc, test_free_waits_for_the_write);
        tcase_add_test(tc, test_burst_is_a_few_writes);
        tcase_add_test(tc, test_write_now_skips_the_gap);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
