/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"
#include "import.h"
#include "testlib.h"

static Config *import_and_load(const char *text, GPtrArray *notes)
{
        g_autofree char *conf = NULL, *err = NULL;
        Config *c = config_new_default();

        ck_assert_msg(import_libvirt_guests("lg", text, &conf, notes, &err) == 0, "%s", err);
        /* What it prints is a config guestkeeper reads without a warning. */
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        ck_assert_msg(config_apply_data(c, "imported", conf, strlen(conf), warnings, &err) == 0, "%s\n%s",
                      err, conf);
        ck_assert_uint_eq(warnings->len, 0);
        return c;
}

START_TEST(test_defaults_of_the_script)
{
        g_autoptr(Config) c = import_and_load("", NULL);

        /* Debian 12's libvirt-guests.sh: ON_SHUTDOWN=shutdown, ON_BOOT=ignore */
        ck_assert_int_eq(c->save, SCOPE_NONE);
        ck_assert_int_eq(c->shutdown, SCOPE_ALL);
        ck_assert(!c->restore);
        ck_assert_uint_eq(c->shutdown_timeout_usec, 300 * G_USEC_PER_SEC);
        ck_assert_uint_eq(c->parallel_shutdowns, 1); /* its 0 means one at a time */
}
END_TEST

START_TEST(test_full_file)
{
        g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(Config) c = import_and_load("# a comment\n"
                                              "export URIS='qemu:///system  xen:///'   # trailing comment\n"
                                              "ON_BOOT=start\n"
                                              "ON_SHUTDOWN=\"suspend\"\n"
                                              "PERSISTENT_ONLY=true\n"
                                              "START_DELAY=5\n"
                                              "SHUTDOWN_TIMEOUT=0\n"
                                              "PARALLEL_SHUTDOWN=8\n"
                                              "BYPASS_CACHE=1\nSYNC_TIME=1\n"
                                              "RETRIES_SLEEP=2\nMYSTERY=x\nnot an assignment\n",
                                              notes);

        ck_assert_str_eq(c->uris[0], "qemu:///system");
        ck_assert_str_eq(c->uris[1], "xen:///");
        ck_assert_int_eq(c->save, SCOPE_PERSISTENT);
        ck_assert_int_eq(c->shutdown, SCOPE_PERSISTENT);
        ck_assert_int_eq(c->poweroff, SCOPE_PERSISTENT);
        ck_assert(c->restore);
        ck_assert_uint_eq(c->start_delay_usec, 5 * G_USEC_PER_SEC);
        ck_assert_uint_eq(c->parallel_starts, 1);
        ck_assert_uint_eq(c->shutdown_timeout_usec, 0);
        ck_assert_uint_eq(c->parallel_shutdowns, 8);
        ck_assert(c->bypass_cache);
        ck_assert(c->sync_time);
        /* nothing dropped silently */
        ck_assert_uint_eq(notes->len, 3);
}
END_TEST

START_TEST(test_blank_uris_mean_default)
{
        /* found by fuzz-import */
        g_autoptr(Config) c = import_and_load("URIS=\"\t \"\n", NULL);

        ck_assert_str_eq(c->uris[0], "default");
        ck_assert_ptr_null(c->uris[1]);
}
END_TEST

START_TEST(test_suspend_all)
{
        g_autoptr(Config) c = import_and_load("ON_SHUTDOWN=suspend\nPERSISTENT_ONLY=false\n", NULL);

        ck_assert_int_eq(c->save, SCOPE_ALL);
}
END_TEST

START_TEST(test_bad_values)
{
        static const char *const bad[] = {
                "ON_SHUTDOWN=hibernate\n", "ON_BOOT=maybe\n", "SHUTDOWN_TIMEOUT=5m\n", "BYPASS_CACHE=yes\n",
                "URIS='unterminated\n",    "BAD-NAME=1\n",    "PERSISTENT_ONLY=1\n",   "START_DELAY=-1\n",
        };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autofree char *conf = NULL, *err = NULL;
                ck_assert_msg(import_libvirt_guests("lg", bad[i], &conf, NULL, &err) == -EINVAL,
                              "%s accepted", bad[i]);
                ck_assert_ptr_nonnull(err);
        }
}
END_TEST

int main(void)
{
        Suite *s = suite_create("import");
        TCase *tc = tcase_create("import");

        tcase_add_test(tc, test_defaults_of_the_script);
        tcase_add_test(tc, test_full_file);
        tcase_add_test(tc, test_suspend_all);
        tcase_add_test(tc, test_blank_uris_mean_default);
        tcase_add_test(tc, test_bad_values);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
