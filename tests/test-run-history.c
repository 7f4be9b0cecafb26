/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The run history: its format (round trip, strict parse), its bounds, and files that cannot be
 * read. */
#include <unistd.h>

#include "run-history.h"
#include "util.h"
#include "testlib.h"

#define U1 "11111111-2222-4333-8444-555555555555"
#define U2 "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
#define ID "0123456789abcdef0123456789abcdef"

static char *dir, *runs;

static void setup(void)
{
        dir = testlib_tmpdir();
        runs = g_build_filename(dir, "runs", NULL);
}

static void teardown(void)
{
        testlib_rm_rf(dir);
        g_clear_pointer(&dir, g_free);
        g_clear_pointer(&runs, g_free);
}

static RunRecord *sample(const char *id, RunKind kind, unsigned n_guests)
{
        RunRecord *r = run_record_new();

        r->id = g_strdup(id);
        r->kind = kind;
        r->reason = kind == RUN_PRESERVE ? RUN_REASON_REBOOT : RUN_REASON_START_UP;
        r->requested_by = g_strdup(kind == RUN_PRESERVE ? "logind" : "start-up");
        r->started = 1795000000123456;
        r->finished = 1795000035654321;
        r->duration_usec = 35531234;
        r->total = n_guests + 1;
        r->done = n_guests;
        r->failed = 1;
        g_ptr_array_add(r->unreachable, g_strdup("qemu+ssh://far/system: no route to host"));
        for (unsigned i = 0; i < n_guests; i++) {
                RunGuestRecord *g = g_new0(RunGuestRecord, 1);

                g->uri = g_strdup("qemu:///system");
                g->uuid = g_strdup(i % 2 ? U2 : U1);
                g->name = g_strdup_printf(" web %u = [x]\n ", i);
                g->outcome = OUTCOME_POWEROFF;
                g->duration_usec = 31000000;
                g->bytes = i % 2 ? -1 : 536870912;
                g->error = g_strdup("did not shut down within 30 s");
                g->n_steps = 3;
                g->steps[0] =
                        (RunStepRecord){ENGINE_STEP_SAVE, 10, 500000, g_strdup("save failed: ENOSPC\\ok")};
                g->steps[1] = (RunStepRecord){ENGINE_STEP_SHUTDOWN, 500010, 30000000,
                                              g_strdup("did not shut down within 30 s")};
                g->steps[2] = (RunStepRecord){ENGINE_STEP_POWEROFF, 30500010, 1200000, NULL};
                g_ptr_array_add(r->guests, g);
        }
        return r;
}

START_TEST(test_round_trip)
{
        g_autoptr(RunRecord) r = sample(ID, RUN_PRESERVE, 2);
        g_autoptr(RunRecord) back = NULL;
        g_autofree char *data = NULL, *err = NULL;
        RunGuestRecord *a, *b;
        gsize len;

        data = run_record_serialize(r, &len);
        ck_assert_msg(run_record_parse(data, len, "x", &back, &err) == 0, "%s", err);
        ck_assert_str_eq(back->id, ID);
        ck_assert_int_eq(back->kind, RUN_PRESERVE);
        ck_assert_int_eq(back->reason, RUN_REASON_REBOOT);
        ck_assert_str_eq(back->requested_by, "logind");
        ck_assert_int_eq(back->started, r->started);
        ck_assert_int_eq(back->finished, r->finished);
        ck_assert_uint_eq(back->duration_usec, r->duration_usec);
        ck_assert_uint_eq(back->total, 3);
        ck_assert_uint_eq(back->done, 2);
        ck_assert_uint_eq(back->failed, 1);
        ck_assert_uint_eq(back->unreachable->len, 1);
        ck_assert_str_eq(back->unreachable->pdata[0], "qemu+ssh://far/system: no route to host");
        ck_assert_uint_eq(back->guests->len, 2);
        a = back->guests->pdata[0];
        b = back->guests->pdata[1];
        ck_assert_str_eq(a->name, " web 0 = [x]\n ");
        ck_assert_str_eq(a->uuid, U1);
        ck_assert_int_eq(a->outcome, OUTCOME_POWEROFF);
        ck_assert_int_eq(a->bytes, 536870912);
        ck_assert_int_eq(b->bytes, -1);
        ck_assert_uint_eq(a->n_steps, 3);
        ck_assert_int_eq(a->steps[1].kind, ENGINE_STEP_SHUTDOWN);
        ck_assert_uint_eq(a->steps[1].start_usec, 500010);
        ck_assert_uint_eq(a->steps[1].duration_usec, 30000000);
        ck_assert_str_eq(a->steps[0].error, "save failed: ENOSPC\\ok");
        ck_assert_ptr_null(a->steps[2].error);
        ck_assert_str_eq(a->error, "did not shut down within 30 s");
}
END_TEST

START_TEST(test_reasons)
{
        ck_assert_int_eq(run_reason_from_shutdown_type("reboot.target"), RUN_REASON_REBOOT);
        ck_assert_int_eq(run_reason_from_shutdown_type("power-off"), RUN_REASON_POWEROFF);
        ck_assert_int_eq(run_reason_from_shutdown_type("poweroff.target"), RUN_REASON_POWEROFF);
        ck_assert_int_eq(run_reason_from_shutdown_type("kexec"), RUN_REASON_KEXEC);
        ck_assert_int_eq(run_reason_from_shutdown_type("soft-reboot.target"), RUN_REASON_SOFT_REBOOT);
        ck_assert_int_eq(run_reason_from_shutdown_type("rehearsal"), RUN_REASON_SHUTDOWN);
        ck_assert_int_eq(run_reason_from_shutdown_type(NULL), RUN_REASON_SHUTDOWN);
        ck_assert_str_eq(run_reason_to_string(RUN_REASON_SHUTDOWN_CANCELLED), "shutdown-cancelled");
}
END_TEST

/* Every way a file can be off is refused, naming the file. */
START_TEST(test_strict_parse)
{
        g_autoptr(RunRecord) r = sample(ID, RUN_RESTORE, 1);
        g_autofree char *good = NULL;
        gsize len;
        static const struct {
                const char *from, *to;
        } edits[] = {
                {"Version=1", "Version=2"},
                {"Kind=restore", "Kind=nap"},
                {"Reason=start-up", "Reason=whim"},
                {"ID=" ID, "ID=0123"},
                {"ID=" ID, "ID=0123456789ABCDEF0123456789ABCDEF"},
                {"Started=2026", "Started=yesterday 2026"},
                {"DurationUSec=35531234", "DurationUSec=-1"},
                {"Done=1", "Done=9"},
                {"Cancelled=false", "Cancelled=maybe"},
                {"Outcome=poweroff", "Outcome=exploded"},
                {"UUID=" U1, "UUID=nope"},
                {"Steps=3", "Steps=5"},
                {"Step2=poweroff", "Step2=dance"},
                {"Step1StartUSec=500010", "Step1StartUSec=soon"},
                {"Bytes=536870912", "Bytes=lots"},
                {"[Guest 0]", "[Guest 1]"},
                {"[End]\nGuests=1", "[End]\nGuests=2"},
        };

        good = run_record_serialize(r, &len);
        for (size_t i = 0; i < G_N_ELEMENTS(edits); i++) {
                g_autoptr(GString) bad = g_string_new(good);
                g_autoptr(RunRecord) back = NULL;
                g_autofree char *err = NULL;

                ck_assert_msg(g_string_replace(bad, edits[i].from, edits[i].to, 1) == 1, "no %s",
                              edits[i].from);
                ck_assert_msg(run_record_parse(bad->str, bad->len, "FILE", &back, &err) == -EBADMSG,
                              "accepted %s", edits[i].to);
                ck_assert_msg(g_str_has_prefix(err, "FILE: "), "%s", err);
                ck_assert_ptr_null(back);
        }
        /* Cut short anywhere: refused. */
        for (gsize cut = 0; cut + 1 < len; cut += 37) {
                g_autoptr(RunRecord) back = NULL;
                g_autofree char *err = NULL;

                ck_assert_msg(run_record_parse(good, cut, "FILE", &back, &err) == -EBADMSG,
                              "accepted %zu bytes", cut);
        }
}
END_TEST

static RunHistory *add_and_write(RunHistory *h, RunRecord *r)
{
        RunHistoryWrite *w = run_history_add(h, r);

        run_history_write(w);
        ck_assert_int_eq(w->r, 0);
        run_history_write_free(w);
        return h;
}

static unsigned count_files(const char *suffix)
{
        g_autoptr(GDir) d = g_dir_open(runs, 0, NULL);
        const char *n;
        unsigned c = 0;

        while (d && (n = g_dir_read_name(d)))
                c += g_str_has_suffix(n, suffix);
        return c;
}

START_TEST(test_bounded_by_count_and_survives_reload)
{
        g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(RunHistory) h = run_history_load(runs, problems);
        g_autoptr(RunHistory) again = NULL;

        ck_assert_uint_eq(h->runs->len, 0);
        ck_assert_ptr_null(run_history_last(h, RUN_PRESERVE));
        for (unsigned i = 0; i < RUN_HISTORY_MAX_RUNS + 5; i++) {
                g_autofree char *id = g_strdup_printf("%032x", i);
                add_and_write(h, sample(id, i % 2 ? RUN_RESTORE : RUN_PRESERVE, 2));
        }
        ck_assert_uint_eq(h->runs->len, RUN_HISTORY_MAX_RUNS);
        ck_assert_uint_eq(count_files(".run"), RUN_HISTORY_MAX_RUNS);
        /* The oldest went. */
        ck_assert_uint_eq(((RunRecord *) h->runs->pdata[0])->seq, 5);

        again = run_history_load(runs, problems);
        ck_assert_uint_eq(problems->len, 0);
        ck_assert_uint_eq(again->runs->len, RUN_HISTORY_MAX_RUNS);
        ck_assert_uint_eq(again->next_seq, RUN_HISTORY_MAX_RUNS + 5);
        ck_assert_str_eq(run_history_last(again, RUN_PRESERVE)->id, "0000000000000000000000000000000e");
        ck_assert_str_eq(run_history_last(again, RUN_RESTORE)->id, "0000000000000000000000000000000d");
}
END_TEST

/* Many restores (a deferred restore retried) do not push the last preserve out. */
START_TEST(test_newest_of_each_kind_kept)
{
        g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(RunHistory) h = run_history_load(runs, problems);
        g_autoptr(RunHistory) again = NULL;

        add_and_write(h, sample("0000000000000000000000000000000a", RUN_PRESERVE, 1));
        add_and_write(h, sample("0000000000000000000000000000000b", RUN_PRESERVE, 1));
        for (unsigned i = 0; i < 2 * RUN_HISTORY_MAX_RUNS; i++) {
                g_autofree char *id = g_strdup_printf("%032x", 0x100 + i);
                add_and_write(h, sample(id, RUN_RESTORE, 1));
        }
        ck_assert_uint_eq(h->runs->len, RUN_HISTORY_MAX_RUNS);
        ck_assert_str_eq(((RunRecord *) h->runs->pdata[0])->id, "0000000000000000000000000000000b");
        ck_assert_uint_eq(count_files(".run"), RUN_HISTORY_MAX_RUNS);
        again = run_history_load(runs, problems);
        ck_assert_str_eq(run_history_last(again, RUN_PRESERVE)->id, "0000000000000000000000000000000b");
        ck_assert_str_eq(run_history_last(again, RUN_RESTORE)->id, "00000000000000000000000000000113");
}
END_TEST

START_TEST(test_bounded_by_size_newest_kept)
{
        g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(RunHistory) h = run_history_load(runs, problems);
        gsize one, total = 0;

        /* Runs of ~2 MiB: the size cap keeps fewer than RUN_HISTORY_MAX_RUNS. */
        add_and_write(h, sample("00000000000000000000000000000001", RUN_PRESERVE, 4000));
        one = ((RunRecord *) h->runs->pdata[0])->size;
        ck_assert_uint_gt(one, RUN_HISTORY_MAX_BYTES / 8);
        for (unsigned i = 2; i < 8; i++) {
                g_autofree char *id = g_strdup_printf("%032x", i);
                add_and_write(h, sample(id, RUN_PRESERVE, 4000));
        }
        for (guint i = 0; i < h->runs->len; i++)
                total += ((RunRecord *) h->runs->pdata[i])->size;
        ck_assert_uint_le(total, RUN_HISTORY_MAX_BYTES);
        ck_assert_uint_lt(h->runs->len, 7);
        ck_assert_uint_eq(count_files(".run"), h->runs->len);
        ck_assert_str_eq(run_history_last(h, RUN_PRESERVE)->id, "00000000000000000000000000000007");
}
END_TEST

START_TEST(test_corrupt_file_set_aside)
{
        g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(RunHistory) h = run_history_load(runs, problems);
        g_autoptr(RunHistory) again = NULL;
        g_autofree char *bad = NULL, *data = NULL, *readme = g_build_filename(runs, "README", NULL);
        RunRecord *r;

        add_and_write(h, sample("00000000000000000000000000000001", RUN_PRESERVE, 1));
        add_and_write(h, sample("00000000000000000000000000000002", RUN_RESTORE, 1));
        r = h->runs->pdata[1];
        bad = g_strdup_printf("%s/%08u-%s.run", runs, r->seq, r->id);
        ck_assert(g_file_get_contents(bad, &data, NULL, NULL));
        data[strlen(data) / 2] = '\0'; /* cut short */
        testlib_write(bad, data);
        testlib_write(readme, "not ours");

        again = run_history_load(runs, problems);
        ck_assert_uint_eq(again->runs->len, 1);
        ck_assert_uint_eq(problems->len, 1);
        ck_assert_msg(strstr(problems->pdata[0], bad) && strstr(problems->pdata[0], ".corrupt"), "%s",
                      (char *) problems->pdata[0]);
        ck_assert(!g_file_test(bad, G_FILE_TEST_EXISTS));
        ck_assert_uint_eq(count_files(".run.corrupt"), 1);
        /* Numbered after the file set aside; and it goes once the runs of its age go. */
        ck_assert_uint_eq(again->next_seq, 2);
        for (unsigned i = 3; i < 3 + RUN_HISTORY_MAX_RUNS; i++) {
                g_autofree char *id = g_strdup_printf("%032x", i);
                add_and_write(again, sample(id, RUN_PRESERVE, 1));
        }
        ck_assert_uint_eq(count_files(".run.corrupt"), 0);
        ck_assert_uint_eq(count_files(".run"), RUN_HISTORY_MAX_RUNS);
        ck_assert(g_file_test(readme, G_FILE_TEST_EXISTS));
}
END_TEST

START_TEST(test_unreadable_dir_reported)
{
        g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(RunHistory) h = NULL;

        testlib_write(runs, "a file where the directory should be");
        h = run_history_load(runs, problems);
        ck_assert_uint_eq(h->runs->len, 0);
        ck_assert_uint_eq(problems->len, 1);
        ck_assert_msg(strstr(problems->pdata[0], "cannot read"), "%s", (char *) problems->pdata[0]);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("run-history");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_reasons);
        tcase_add_test(tc, test_strict_parse);
        tcase_add_test(tc, test_bounded_by_count_and_survives_reload);
        tcase_add_test(tc, test_newest_of_each_kind_kept);
        tcase_add_test(tc, test_bounded_by_size_newest_kept);
        tcase_add_test(tc, test_corrupt_file_set_aside);
        tcase_add_test(tc, test_unreadable_dir_reported);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
