/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"
#include "import.h"
#include "testlib.h"

static Config *import_as(ImportDefaults defaults, const char *text, GPtrArray *notes, GPtrArray *warnings)
{
        g_autofree char *conf = NULL, *err = NULL;
        Config *c = config_new_default();

        ck_assert_msg(import_libvirt_guests("lg", defaults, text, &conf, notes, warnings, &err) == 0, "%s",
                      err);
        /* What it prints is a config guestkeeper reads without a warning. */
        g_autoptr(GPtrArray) config_warnings = g_ptr_array_new_with_free_func(g_free);
        ck_assert_msg(config_apply_data(c, "imported", conf, strlen(conf), config_warnings, &err) == 0,
                      "%s\n%s", err, conf);
        ck_assert_uint_eq(config_warnings->len, 0);
        return c;
}

static Config *import_and_load(const char *text, GPtrArray *notes)
{
        return import_as(IMPORT_DEFAULTS_DEBIAN, text, notes, NULL);
}

START_TEST(test_defaults_of_the_script)
{
        g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(Config) c = import_as(IMPORT_DEFAULTS_DEBIAN, "", notes, warnings);

        /* Debian 12's libvirt-guests.sh: ON_SHUTDOWN=shutdown, ON_BOOT=ignore */
        ck_assert_int_eq(c->save, SCOPE_NONE);
        ck_assert_int_eq(c->shutdown, SCOPE_ALL);
        ck_assert(!c->restore);
        ck_assert_uint_eq(c->shutdown_timeout_usec, 300 * G_USEC_PER_SEC);
        ck_assert_uint_eq(c->parallel_shutdowns, 1); /* its 0 means one at a time */
        ck_assert_uint_eq(c->deadline_usec, 1500 * G_USEC_PER_SEC);
        /* one at a time, 300 s each: past 5 stuck guests the deadline comes first */
        ck_assert_uint_eq(warnings->len, 0);
        ck_assert_uint_eq(notes->len, 1);
        ck_assert_msg(strstr(notes->pdata[0], "one at a time") && strstr(notes->pdata[0], "past 5 guests"),
                      "%s", (char *) notes->pdata[0]);
}
END_TEST

START_TEST(test_upstream_defaults)
{
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(Config) c = import_as(IMPORT_DEFAULTS_UPSTREAM, "", NULL, warnings);

        /* libvirt's own libvirt-guests.sh (/etc/sysconfig): ON_SHUTDOWN=suspend, ON_BOOT=start */
        ck_assert_int_eq(c->save, SCOPE_PERSISTENT);
        ck_assert_int_eq(c->shutdown, SCOPE_PERSISTENT);
        ck_assert(c->restore);
        ck_assert_uint_eq(c->shutdown_timeout_usec, 300 * G_USEC_PER_SEC);
        ck_assert_uint_eq(warnings->len, 0);
}
END_TEST

START_TEST(test_defaults_by_path)
{
        ck_assert_int_eq(import_defaults_for_path("/etc/default/libvirt-guests"), IMPORT_DEFAULTS_DEBIAN);
        ck_assert_int_eq(import_defaults_for_path("/etc/sysconfig/libvirt-guests"),
                         IMPORT_DEFAULTS_UPSTREAM);
        ck_assert_int_eq(import_defaults_for_path("/srv/host2/etc/sysconfig/libvirt-guests"),
                         IMPORT_DEFAULTS_UPSTREAM);
        ck_assert_int_eq(import_defaults_for_path("libvirt-guests"), IMPORT_DEFAULTS_DEBIAN);
        ck_assert_int_eq(import_defaults_from_string("upstream"), IMPORT_DEFAULTS_UPSTREAM);
        ck_assert_int_eq(import_defaults_from_string("redhat"), -EINVAL);
        ck_assert_str_eq(import_defaults_to_string(IMPORT_DEFAULTS_DEBIAN), "debian");
}
END_TEST

/* libvirt-guests(8): with PARALLEL_SHUTDOWN>1, SHUTDOWN_TIMEOUT is for all the guests of a URI
 * together, and URIs come one after another. */
START_TEST(test_parallel_timeout_is_a_total)
{
        g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(Config) c = import_as(IMPORT_DEFAULTS_DEBIAN,
                                        "URIS='qemu:///system lxc:///'\nSHUTDOWN_TIMEOUT=120\n"
                                        "PARALLEL_SHUTDOWN=4\n",
                                        notes, warnings);

        ck_assert_uint_eq(c->parallel_shutdowns, 4);
        ck_assert_uint_eq(c->shutdown_timeout_usec, 120 * G_USEC_PER_SEC);
        ck_assert_uint_eq(c->deadline_usec, 240 * G_USEC_PER_SEC);
        ck_assert_uint_eq(warnings->len, 0);
        ck_assert_uint_eq(notes->len, 1);
        ck_assert_msg(strstr(notes->pdata[0], "all the guests of a URI together"), "%s",
                      (char *) notes->pdata[0]);
}
END_TEST

static const struct {
        const char *text;
        const char *warning; /* NULL: none */
        unsigned deadline_sec;
} timings[] = {
        /* suspending, libvirt-guests uses neither variable */
        {"ON_SHUTDOWN=suspend\nSHUTDOWN_TIMEOUT=1700\nPARALLEL_SHUTDOWN=4\n", NULL, 1500},
        {"SHUTDOWN_TIMEOUT=0\n", "SHUTDOWN_TIMEOUT=0: libvirt-guests waits for ever", 1500},
        {"SHUTDOWN_TIMEOUT=0\nPARALLEL_SHUTDOWN=3\n", "consider ShutdownTimeoutSec=300", 1500},
        {"ON_SHUTDOWN=suspend\nSHUTDOWN_TIMEOUT=0\n", "SHUTDOWN_TIMEOUT=0", 1500},
        {"SHUTDOWN_TIMEOUT=1700\n",
         "would wait up to 1700 s for one guest, longer than guestkeeper's DeadlineSec=1500", 1500},
        {"SHUTDOWN_TIMEOUT=1700\n", "set DeadlineSec=1700 to wait as long", 1500},
        {"SHUTDOWN_TIMEOUT=1000\nPARALLEL_SHUTDOWN=2\nURIS='a:/// b:///'\n",
         "would wait up to 2000 s for the guests of its URIs", 1500},
        {"SHUTDOWN_TIMEOUT=1000\nPARALLEL_SHUTDOWN=2\nURIS='a:/// b:///'\n", "at most DeadlineSec=1800",
         1500},
        {"SHUTDOWN_TIMEOUT=750\nPARALLEL_SHUTDOWN=2\nURIS='a:/// b:///'\n", NULL, 1500},
        {"SHUTDOWN_TIMEOUT=10\nPARALLEL_SHUTDOWN=2\n", NULL, 10},
        {"SHUTDOWN_TIMEOUT=1500\n", NULL, 1500},
};

START_TEST(test_timing_against_the_deadline)
{
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(Config) c = import_as(IMPORT_DEFAULTS_DEBIAN, timings[_i].text, NULL, warnings);

        ck_assert_uint_eq(c->deadline_usec, timings[_i].deadline_sec * G_USEC_PER_SEC);
        if (!timings[_i].warning) {
                ck_assert_msg(warnings->len == 0, "%s", warnings->len ? (char *) warnings->pdata[0] : "");
                return;
        }
        ck_assert_uint_eq(warnings->len, 1);
        ck_assert_msg(strstr(warnings->pdata[0], timings[_i].warning), "%s", (char *) warnings->pdata[0]);
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
                ck_assert_msg(import_libvirt_guests("lg", IMPORT_DEFAULTS_DEBIAN, bad[i], &conf, NULL, NULL,
                                                    &err) == -EINVAL,
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
        tcase_add_test(tc, test_upstream_defaults);
        tcase_add_test(tc, test_defaults_by_path);
        tcase_add_test(tc, test_parallel_timeout_is_a_total);
        tcase_add_loop_test(tc, test_timing_against_the_deadline, 0, G_N_ELEMENTS(timings));
        tcase_add_test(tc, test_full_file);
        tcase_add_test(tc, test_suspend_all);
        tcase_add_test(tc, test_blank_uris_mean_default);
        tcase_add_test(tc, test_bad_values);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
