/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "record.h"
#include "util.h"
#include "testlib.h"

#define U1 "11111111-2222-4333-8444-555555555555"
#define U2 "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

static char *dir, *path;

static void setup(void)
{
        dir = testlib_tmpdir();
        path = g_build_filename(dir, "record", NULL);
}

static void teardown(void)
{
        testlib_rm_rf(dir);
        g_clear_pointer(&dir, g_free);
        g_clear_pointer(&path, g_free);
}

static Record *sample(void)
{
        Record *r = record_new(path);
        RecordGuest *g;

        g = record_put(r, "qemu:///system", U1, "web1", true);
        g->steps = STEPS_ALL;
        g->outcome = OUTCOME_SAVED;
        g = record_put(r, "qemu:///system", U2, "scratch [tmp] = x", false);
        g->steps = STEP_MASK(STEP_SHUTDOWN) | STEP_MASK(STEP_POWEROFF);
        g->outcome = OUTCOME_POWEROFF;
        record_guest_set_error(g, "did not shut down within 300 s\nsecond line");
        g->xml = g_strdup("<domain type='kvm'>\n  <name>scratch</name>\n</domain>\n");
        return r;
}

START_TEST(test_round_trip)
{
        g_autoptr(Record) r = sample();
        g_autoptr(Record) back = NULL;
        g_autofree char *err = NULL;
        RecordGuest *a, *b;

        ck_assert_int_eq(record_save(r), 0);
        ck_assert_int_eq(record_load(path, &back, &err), 0);
        ck_assert_uint_eq(back->guests->len, 2);
        a = back->guests->pdata[0];
        b = back->guests->pdata[1];
        ck_assert_str_eq(a->uri, "qemu:///system");
        ck_assert_str_eq(a->uuid, U1);
        ck_assert_str_eq(a->name, "web1");
        ck_assert(a->persistent);
        ck_assert_uint_eq(a->steps, STEPS_ALL);
        ck_assert_int_eq(a->outcome, OUTCOME_SAVED);
        ck_assert_ptr_null(a->error);
        ck_assert_str_eq(b->name, "scratch [tmp] = x");
        ck_assert(!b->persistent);
        ck_assert_int_eq(b->outcome, OUTCOME_POWEROFF);
        ck_assert_str_eq(b->error, "did not shut down within 300 s\nsecond line");
        ck_assert_str_eq(b->xml, "<domain type='kvm'>\n  <name>scratch</name>\n</domain>\n");
        ck_assert_ptr_eq(record_find(back, "qemu:///system", U2), b);
}
END_TEST

/* Values that need escaping survive the hand-written serializer + GKeyFile parser. */
START_TEST(test_awkward_values_round_trip)
{
        static const char *const names[] = {
                "  leading",
                "trailing  ",
                " both ",
                "tab\there",
                "back\\slash\\n",
                "new\nline\r\n",
                "[group] = like",
                "#hash;semi",
                "ünïcødé 名前",
                "=",
                "\\s",
                "   ",
                "x \\ \t\n ",
        };
        g_autoptr(Record) r = record_new(path);
        g_autoptr(Record) back = NULL;
        g_autofree char *err = NULL;

        for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
                g_autofree char *u = g_strdup_printf("11111111-2222-4333-8444-%012u", i);
                RecordGuest *g = record_put(r, "test:///default", u, names[i], true);
                record_guest_set_error(g, names[i]);
        }
        /* Not UTF-8: stored repaired, and the record stays readable. */
        record_put(r, "test:///default", U1, "bad\xff\xfename", true);
        ck_assert_int_eq(record_save(r), 0);
        ck_assert_msg(record_load(path, &back, &err) == 0, "%s", err);
        for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
                RecordGuest *g = back->guests->pdata[i];
                ck_assert_str_eq(g->name, names[i]);
                ck_assert_str_eq(g->error, names[i]);
        }
        ck_assert(
                g_utf8_validate(((RecordGuest *) back->guests->pdata[G_N_ELEMENTS(names)])->name, -1, NULL));
}
END_TEST

START_TEST(test_missing_is_enoent)
{
        g_autoptr(Record) r = NULL;
        g_autofree char *err = NULL;

        ck_assert_int_eq(record_load(path, &r, &err), -ENOENT);
}
END_TEST

START_TEST(test_put_replaces_and_remove)
{
        g_autoptr(Record) r = sample();

        record_put(r, "qemu:///system", U1, "web1-renamed", true);
        ck_assert_uint_eq(r->guests->len, 2);
        ck_assert_int_eq(record_find(r, "qemu:///system", U1)->outcome, OUTCOME_NONE);
        /* Same UUID on another URI is another guest. */
        record_put(r, "qemu+ssh://other/system", U1, "web1", true);
        ck_assert_uint_eq(r->guests->len, 3);
        record_remove(r, "qemu:///system", U1);
        ck_assert_ptr_null(record_find(r, "qemu:///system", U1));
        ck_assert_ptr_nonnull(record_find(r, "qemu+ssh://other/system", U1));
        ck_assert_uint_eq(r->guests->len, 2);
}
END_TEST

static void die_before_rename(const char *tmp)
{
        /* A real crash: nothing after this point runs, no atexit, no cleanup. */
        kill(getpid(), SIGKILL);
}

/* A crash after the new record is written to its temp file but before the rename leaves
 * the old record in place, complete. */
START_TEST(test_crash_before_rename_keeps_old)
{
        g_autoptr(Record) old = sample();
        g_autoptr(Record) back = NULL;
        g_autofree char *err = NULL;
        int status = 0;
        pid_t pid;

        ck_assert_int_eq(record_save(old), 0);

        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                g_autoptr(Record) r = record_new(path);
                record_put(r, "test:///default", U1, "new", true);
                write_file_durable_before_rename = die_before_rename;
                (void) record_save(r);
                _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status)); /* it really died in between */
        ck_assert_int_eq(WTERMSIG(status), SIGKILL);

        ck_assert_int_eq(record_load(path, &back, &err), 0);
        ck_assert_uint_eq(back->guests->len, 2);
        ck_assert_str_eq(((RecordGuest *) back->guests->pdata[0])->name, "web1");
}
END_TEST

static void expect_bad(const char *text, const char *needle)
{
        g_autoptr(Record) r = NULL;
        g_autofree char *err = NULL;

        testlib_write(path, text);
        ck_assert_int_eq(record_load(path, &r, &err), -EBADMSG);
        ck_assert_ptr_null(r);
        ck_assert_msg(g_str_has_prefix(err, path), "error does not name the file: %s", err);
        ck_assert_msg(strstr(err, needle), "expected \"%s\" in: %s", needle, err);
}

START_TEST(test_truncated)
{
        g_autoptr(Record) r = sample();
        g_autofree char *data = NULL;
        gsize len = 0;

        data = record_serialize(r, &len);
        /* Every cut short of the whole file is refused. */
        for (gsize cut = 0; cut + 1 < len; cut += 7) {
                g_autoptr(Record) back = NULL;
                g_autofree char *err = NULL;
                g_autofree char *part = g_strndup(data, cut);

                testlib_write(path, part);
                ck_assert_msg(record_load(path, &back, &err) == -EBADMSG, "cut at %zu accepted", cut);
        }
}
END_TEST

START_TEST(test_corrupt_variants)
{
        expect_bad("\x01\x02garbage\xff", "not a record");
        expect_bad("[Record]\nVersion=2\nGuests=0\n[End]\nGuests=0\n", "Version: 2 is not a version");
        expect_bad("[Record]\nVersion=1\nGuests=1\n[End]\nGuests=1\n", "count mismatch");
        expect_bad("[Record]\nVersion=1\nGuests=1\n[Guest 0]\nURI=x\nUUID=nope\nName=a\nPersistent=true\n"
                   "Steps=save\nOutcome=saved\n[End]\nGuests=1\n",
                   "is not a UUID");
        expect_bad("[Record]\nVersion=1\nGuests=1\n[Guest 0]\nURI=x\nUUID=" U1 "\nName=a\nPersistent=true\n"
                   "Steps=save\nOutcome=hibernated\n[End]\nGuests=1\n",
                   "unknown outcome");
        expect_bad("[Record]\nVersion=1\nGuests=1\n[Guest 0]\nURI=x\nUUID=" U1 "\nName=a\nPersistent=false\n"
                   "Steps=save\nOutcome=saved\n[End]\nGuests=1\n",
                   "without SaveFile");
        expect_bad("[Record]\nVersion=1\nGuests=1\n[Guest 0]\nUUID=" U1 "\nName=a\nPersistent=true\n"
                   "Steps=save\nOutcome=saved\n[End]\nGuests=1\n",
                   "URI: missing");
}
END_TEST

START_TEST(test_set_aside)
{
        g_autoptr(Record) r = NULL;
        g_autofree char *problem = NULL;
        g_autoptr(GDir) d = NULL;
        const char *n;
        bool found = false;

        testlib_write(path, "[Record]\nVersion=1\nGuests=3\n");
        ck_assert_int_eq(record_load_or_set_aside(path, &r, &problem), 0);
        ck_assert_uint_eq(r->guests->len, 0);
        ck_assert_ptr_nonnull(problem);
        ck_assert_msg(strstr(problem, path) && strstr(problem, ".corrupt-"), "%s", problem);
        ck_assert(!g_file_test(path, G_FILE_TEST_EXISTS));
        d = g_dir_open(dir, 0, NULL);
        while ((n = g_dir_read_name(d)))
                if (g_str_has_prefix(n, "record.corrupt-"))
                        found = true;
        ck_assert(found);
}
END_TEST

START_TEST(test_unreadable_set_aside)
{
        g_autoptr(Record) r = NULL;
        g_autofree char *problem = NULL;

        /* Reading a directory fails with an I/O error (EISDIR), not a parse error. */
        ck_assert_int_eq(g_mkdir(path, 0700), 0);
        ck_assert_int_eq(record_load_or_set_aside(path, &r, &problem), 0);
        ck_assert_uint_eq(r->guests->len, 0);
        ck_assert_msg(problem && strstr(problem, "cannot read") && strstr(problem, ".unreadable-"), "%s",
                      problem);
        ck_assert(!g_file_test(path, G_FILE_TEST_EXISTS));
}
END_TEST

START_TEST(test_write_durable_mode_and_no_temp_left)
{
        g_autoptr(Record) r = sample();
        g_autoptr(GDir) d = NULL;
        GStatBuf st;
        const char *n;
        unsigned files = 0;

        ck_assert_int_eq(record_save(r), 0);
        ck_assert_int_eq(record_save(r), 0);
        ck_assert_int_eq(g_stat(path, &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0600);
        d = g_dir_open(dir, 0, NULL);
        while ((n = g_dir_read_name(d)))
                files++;
        ck_assert_uint_eq(files, 1);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("record");
        TCase *tc = tcase_create("record");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_awkward_values_round_trip);
        tcase_add_test(tc, test_missing_is_enoent);
        tcase_add_test(tc, test_put_replaces_and_remove);
        tcase_add_test(tc, test_crash_before_rename_keeps_old);
        tcase_add_test(tc, test_truncated);
        tcase_add_test(tc, test_corrupt_variants);
        tcase_add_test(tc, test_set_aside);
        tcase_add_test(tc, test_unreadable_set_aside);
        tcase_add_test(tc, test_write_durable_mode_and_no_temp_left);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
