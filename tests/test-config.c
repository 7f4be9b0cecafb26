/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "gk-build-config.h"
#include "config.h"
#include "macro.h"
#include "testlib.h"

static char *dir;

static void setup(void)
{
        dir = testlib_tmpdir();
}

static void teardown(void)
{
        testlib_rm_rf(dir);
        g_clear_pointer(&dir, g_free);
}

static char *file_in(const char *name, const char *text)
{
        char *p = g_build_filename(dir, name, NULL);
        testlib_write(p, text);
        return p;
}

START_TEST(test_defaults)
{
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL;
        g_autofree char *p = g_build_filename(dir, "missing.conf", NULL);

        ck_assert_int_eq(config_load(p, false, &c, NULL, &err), 0);
        ck_assert_str_eq(c->uris[0], "default");
        ck_assert_ptr_null(c->uris[1]);
        ck_assert_ptr_null(c->metrics_textfile); /* off */
        ck_assert_int_eq(c->save, SCOPE_PERSISTENT);
        ck_assert_int_eq(c->shutdown, SCOPE_ALL);
        ck_assert_int_eq(c->poweroff, SCOPE_ALL);
        ck_assert_uint_eq(c->shutdown_timeout_usec, 300 * USEC_PER_SEC);
        ck_assert_uint_eq(c->deadline_usec, 1500 * USEC_PER_SEC);
        ck_assert_uint_eq(c->parallel_saves, 4);
        ck_assert_uint_eq(c->parallel_shutdowns, 0);
        ck_assert(!c->bypass_cache);
        ck_assert_uint_eq(c->save_channels, CONFIG_SAVE_CHANNELS_AUTO);
        ck_assert(c->restore);
        ck_assert_uint_eq(c->start_delay_usec, 0);
        ck_assert_uint_eq(c->parallel_starts, 4);
        ck_assert(!c->sync_time);
        ck_assert_uint_eq(c->shutdown_mode, SHUTDOWN_MODE_ACPI);
        ck_assert_uint_eq(c->shutdown_repeat_usec, 5 * USEC_PER_SEC);
        ck_assert_uint_eq(c->agent_timeout_usec, 60 * USEC_PER_SEC);
        ck_assert_uint_eq(c->guest_sections->len, 0);
}
END_TEST

START_TEST(test_missing_required_file)
{
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL;
        g_autofree char *p = g_build_filename(dir, "missing.conf", NULL);
        g_autofree char *expect = NULL;

        ck_assert_int_lt(config_load(p, true, &c, NULL, &err), 0);
        ck_assert_ptr_null(c);
        expect = g_strdup_printf("%s: cannot read", p);
        ck_assert_msg(g_str_has_prefix(err, expect), "got: %s", err);
}
END_TEST

START_TEST(test_every_key)
{
        g_autofree char *p = file_in("g.conf", "[Guests]\n"
                                               "URIs=qemu:///system  test:///default\n"
                                               "[Shutdown]\n"
                                               "Save=all\n"
                                               "Shutdown=transient\n"
                                               "PowerOff=none\n"
                                               "ShutdownTimeoutSec=12\n"
                                               "DeadlineSec=0\n"
                                               "ParallelSaves=0\n"
                                               "ParallelShutdowns=7\n"
                                               "BypassCache=yes\n"
                                               "SaveChannels=3\n"
                                               "[Boot]\n"
                                               "Restore=no\n"
                                               "StartDelaySec=3\n"
                                               "ParallelStarts=1\n"
                                               "SyncTime=true\n"
                                               "[Metrics]\n"
                                               "TextfilePath=/var/lib/prometheus/node-exporter/gk.prom\n");
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL;
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);

        ck_assert_int_eq(config_load(p, true, &c, warnings, &err), 0);
        ck_assert_str_eq(c->uris[0], "qemu:///system");
        ck_assert_str_eq(c->uris[1], "test:///default");
        ck_assert_ptr_null(c->uris[2]);
        ck_assert_int_eq(c->save, SCOPE_ALL);
        ck_assert_int_eq(c->shutdown, SCOPE_TRANSIENT);
        ck_assert_int_eq(c->poweroff, SCOPE_NONE);
        ck_assert_uint_eq(c->shutdown_timeout_usec, 12 * USEC_PER_SEC);
        ck_assert_uint_eq(c->deadline_usec, 0);
        ck_assert_uint_eq(c->parallel_saves, 0);
        ck_assert_uint_eq(c->parallel_shutdowns, 7);
        ck_assert(c->bypass_cache);
        ck_assert_uint_eq(c->save_channels, 3);
        ck_assert(!c->restore);
        ck_assert_uint_eq(c->start_delay_usec, 3 * USEC_PER_SEC);
        ck_assert_uint_eq(c->parallel_starts, 1);
        ck_assert(c->sync_time);
        ck_assert_str_eq(c->metrics_textfile, "/var/lib/prometheus/node-exporter/gk.prom");
        /* DeadlineSec=0 means no limit: said as a warning. */
        ck_assert_uint_eq(warnings->len, 1);
        ck_assert_msg(strstr(warnings->pdata[0], "DeadlineSec") && strstr(warnings->pdata[0], "no limit"),
                      "%s", (char *) warnings->pdata[0]);
}
END_TEST

/* Each bad value: the message names file, section, key and the value. */
static const struct {
        const char *group, *key, *value, *what;
} bad_values[] = {
        {"Guests", "URIs", "   ", "needs at least one URI (use \"default\" for libvirt's default)"},
        {"Shutdown", "Save", "sometimes", "\"sometimes\" is not one of none, persistent, transient, all"},
        {"Shutdown", "Shutdown", "ALL", "\"ALL\" is not one of none, persistent, transient, all"},
        {"Shutdown", "PowerOff", "", "\"\" is not one of none, persistent, transient, all"},
        {"Shutdown", "ShutdownTimeoutSec", "5mins",
         "\"5mins\" is not a time span (seconds, or e.g. \"5min\", \"1h 30s\")"},
        {"Shutdown", "ShutdownTimeoutSec", "-1",
         "\"-1\" is not a time span (seconds, or e.g. \"5min\", \"1h 30s\")"},
        {"Shutdown", "DeadlineSec", "99999999999",
         "\"99999999999\" is too large (at most 604800 seconds, a week)"},
        {"Shutdown", "DeadlineSec", "1w 1s", "\"1w 1s\" is too large (at most 604800 seconds, a week)"},
        {"Shutdown", "DeadlineSec", "1,5",
         "\"1,5\" is not a time span (seconds, or e.g. \"5min\", \"1h 30s\")"},
        {"Shutdown", "DeadlineSec", "0.0000001s",
         "\"0.0000001s\" is below a microsecond (0 means no limit)"},
        {"Shutdown", "ParallelSaves", "two", "\"two\" is not a non-negative integer"},
        {"Shutdown", "ParallelShutdowns", "0x10", "\"0x10\" is not a non-negative integer"},
        {"Shutdown", "BypassCache", "maybe", "\"maybe\" is not a boolean (yes/no)"},
        {"Shutdown", "SaveChannels", "256", "\"256\" is not auto or a number of channels from 0 to 255"},
        {"Shutdown", "SaveChannels", "Auto", "\"Auto\" is not auto or a number of channels from 0 to 255"},
        {"Boot", "Restore", "2", "\"2\" is not a boolean (yes/no)"},
        {"Boot", "StartDelaySec", "abc",
         "\"abc\" is not a time span (seconds, or e.g. \"5min\", \"1h 30s\")"},
        {"Boot", "ParallelStarts", "1000000", "\"1000000\" is too large (at most 100000)"},
        {"Boot", "SyncTime", "y e s", "\"y e s\" is not a boolean (yes/no)"},
        {"Shutdown", "ShutdownMode", "serial", "\"serial\" is not one of acpi, agent, agent,acpi"},
        {"Shutdown", "ShutdownRepeatSec", "often",
         "\"often\" is not a time span (seconds, or e.g. \"5min\", \"1h 30s\")"},
        {"Boot", "AgentTimeoutSec", "-5",
         "\"-5\" is not a time span (seconds, or e.g. \"5min\", \"1h 30s\")"},
        {"Guest web-*", "Action", "hibernate", "\"hibernate\" is not one of save, shutdown, poweroff, skip"},
        {"Guest web-*", "Order", "1e3", "\"1e3\" is not an integer from -100000 to 100000"},
        {"Guest web-*", "Order", "100001", "\"100001\" is not an integer from -100000 to 100000"},
        {"Guest web-*", "ShutdownMode", "agent,", "\"agent,\" is not one of acpi, agent, agent,acpi"},
        {"Metrics", "TextfilePath", "gk.prom",
         "\"gk.prom\" is not an absolute path of a file ending in \".prom\""},
        {"Metrics", "TextfilePath", "/var/lib/gk.txt",
         "\"/var/lib/gk.txt\" is not an absolute path of a file ending in \".prom\""},
        {"Metrics", "TextfilePath", "/var/lib/.prom",
         "\"/var/lib/.prom\" is not an absolute path of a file ending in \".prom\""},
        {"Guest db", "StartDelaySec", "soon",
         "\"soon\" is not a time span (seconds, or e.g. \"5min\", \"1h 30s\")"},
};

START_TEST(test_bad_value)
{
        g_autofree char *text = g_strdup_printf("[%s]\n%s=%s\n", bad_values[_i].group, bad_values[_i].key,
                                                bad_values[_i].value);
        g_autofree char *p = file_in("bad.conf", text);
        g_autofree char *expect = g_strdup_printf("%s: [%s] %s: %s", p, bad_values[_i].group,
                                                  bad_values[_i].key, bad_values[_i].what);
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL;

        ck_assert_int_eq(config_load(p, true, &c, NULL, &err), -EINVAL);
        ck_assert_ptr_null(c);
        ck_assert_str_eq(err, expect);
}
END_TEST

/* systemd.time(7) spans, as systemd-INI users write them. */
static const struct {
        const char *text;
        guint64 usec;
} good_spans[] = {
        {"300", 300 * USEC_PER_SEC},
        {"0", 0},
        {"0s", 0},
        {" 5min ", 300 * USEC_PER_SEC},
        {"1h 30s", 3630 * USEC_PER_SEC},
        {"1min30s", 90 * USEC_PER_SEC},
        {"1h30", 3630 * USEC_PER_SEC}, /* no unit: seconds */
        {"2 hours", 7200 * USEC_PER_SEC},
        {"1.5s", 1500000},
        {".5s", 500000},
        {"1.5min", 90 * USEC_PER_SEC},
        {"500ms", 500000},
        {"20msec 3us", 20003},
        {"7µs", 7},
        {"0.0000015s", 1}, /* below a µs drops off */
        {"1d 1hr 1m 1sec", 90061 * USEC_PER_SEC},
        {"1w", 604800 * USEC_PER_SEC},
        {"6days 23h 59min 59s 999999us", 604800 * USEC_PER_SEC - 1},
};

START_TEST(test_timespan_good)
{
        guint64 usec = 42;

        ck_assert_msg(config_parse_timespan(good_spans[_i].text, &usec) == 0, "%s refused",
                      good_spans[_i].text);
        ck_assert_msg(usec == good_spans[_i].usec, "%s: %" G_GUINT64_FORMAT, good_spans[_i].text, usec);
}
END_TEST

static const struct {
        const char *text;
        int r;
} bad_spans[] = {
        {"", -EINVAL},
        {"   ", -EINVAL},
        {"min", -EINVAL},
        {"5mins", -EINVAL},
        {"5 parsecs", -EINVAL},
        {"-1", -EINVAL},
        {"+1", -EINVAL},
        {"1e3", -EINVAL},
        {"0x10", -EINVAL},
        {"infinity", -EINVAL},
        {"1M", -EINVAL}, /* systemd's month: beyond a week anyway */
        {"1.2.3", -EINVAL},
        {"1,5s", -EINVAL},
        {"5min;", -EINVAL},
        {"1w1us", -ERANGE},
        {"8d", -ERANGE},
        {"604801", -ERANGE},
        {"99999999999999999999999999", -ERANGE},
        {"0.0000001s", -EDOM},
};

START_TEST(test_timespan_bad)
{
        guint64 usec = 42;

        ck_assert_int_eq(config_parse_timespan(bad_spans[_i].text, &usec), bad_spans[_i].r);
        ck_assert_uint_eq(usec, 42); /* untouched on error */
}
END_TEST

START_TEST(test_spans_and_semicolon_comments)
{
        g_autofree char *p = file_in("spans.conf", "; systemd-INI comments start with ';' too\n"
                                                   "[Shutdown]\n"
                                                   ";Save=none\n"
                                                   "   ; indented\n"
                                                   "# and '#'\n"
                                                   "ShutdownTimeoutSec=2min 30s\n"
                                                   "DeadlineSec=20min\n"
                                                   "[Boot]\n"
                                                   "StartDelaySec=1.5s\n"
                                                   "URIs_are_not_here=a;b\n");
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL;
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);

        ck_assert_msg(config_load(p, true, &c, warnings, &err) == 0, "%s", err);
        ck_assert_int_eq(c->save, SCOPE_PERSISTENT);
        ck_assert_uint_eq(c->shutdown_timeout_usec, 150 * USEC_PER_SEC);
        ck_assert_uint_eq(c->deadline_usec, 1200 * USEC_PER_SEC);
        ck_assert_uint_eq(c->start_delay_usec, 1500000);
        /* a ';' inside a line is not a comment */
        ck_assert_uint_eq(warnings->len, 1);
        ck_assert_msg(strstr(warnings->pdata[0], "URIs_are_not_here: unknown key"), "%s",
                      (char *) warnings->pdata[0]);
}
END_TEST

START_TEST(test_deadline_beyond_poweroff_target_warns)
{
        g_autofree char *p = file_in("gk.conf", "[Shutdown]\nDeadlineSec=30min\n");
        g_autofree char *d = g_build_filename(dir, "gk.conf.d", NULL);
        g_autoptr(Config) c = NULL, c2 = NULL;
        g_autofree char *err = NULL, *dropin = NULL, *expect = NULL;
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);

        /* 30 min is still inside poweroff.target's job timeout */
        ck_assert_int_eq(config_load(p, true, &c, warnings, &err), 0);
        ck_assert_uint_eq(warnings->len, 0);

        ck_assert_int_eq(g_mkdir(d, 0755), 0);
        dropin = file_in("gk.conf.d/50-long.conf", "[Shutdown]\nDeadlineSec=40min\n");
        ck_assert_int_eq(config_load(p, true, &c2, warnings, &err), 0);
        ck_assert_uint_eq(c2->deadline_usec, 2400 * USEC_PER_SEC);
        ck_assert_uint_eq(warnings->len, 1);
        /* it names the file that set the value */
        expect = g_strdup_printf("%s: [Shutdown] DeadlineSec: 2400 s is longer than systemd's", dropin);
        ck_assert_msg(g_str_has_prefix(warnings->pdata[0], expect), "%s", (char *) warnings->pdata[0]);
}
END_TEST

START_TEST(test_syntax_error)
{
        g_autofree char *p = file_in("syntax.conf", "[Shutdown\nSave=all\n");
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL;
        g_autofree char *prefix = g_strdup_printf("%s: ", p);

        ck_assert_int_eq(config_load(p, true, &c, NULL, &err), -EINVAL);
        ck_assert_msg(g_str_has_prefix(err, prefix), "got: %s", err);
}
END_TEST

START_TEST(test_unknown_keys_warn)
{
        g_autofree char *p = file_in("u.conf", "[Shutdown]\nSave=all\nColour=blue\n[Frobnicate]\nX=1\n");
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL;
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *w1 = NULL, *w2 = NULL;

        ck_assert_int_eq(config_load(p, true, &c, warnings, &err), 0);
        ck_assert_int_eq(c->save, SCOPE_ALL);
        ck_assert_uint_eq(warnings->len, 2);
        w1 = g_strdup_printf("%s: [Shutdown] Colour: unknown key, ignored", p);
        w2 = g_strdup_printf("%s: [Frobnicate]: unknown section, ignored", p);
        ck_assert_str_eq(warnings->pdata[0], w1);
        ck_assert_str_eq(warnings->pdata[1], w2);
}
END_TEST

/* [Guest GLOB] sections: in the order read, drop-ins after the main file; the new global keys. */
START_TEST(test_guest_sections)
{
        g_autofree char *p = file_in("g.conf", "[Shutdown]\nShutdownMode=agent,acpi\nShutdownRepeatSec=2s\n"
                                               "[Boot]\nAgentTimeoutSec=30\n"
                                               "[Guest web-*]\nAction=shutdown\nOrder=-20\nColour=red\n"
                                               "[Guest  db?]\nShutdownTimeoutSec=2min\nStartDelaySec=15\n");
        g_autofree char *d = g_build_filename(dir, "g.conf.d", NULL);
        g_autofree char *drop = NULL, *w = NULL;
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(Config) c = NULL, copy = NULL;
        g_autofree char *err = NULL;
        const GuestSection *s;

        ck_assert_int_eq(g_mkdir(d, 0755), 0);
        drop = file_in("g.conf.d/10.conf", "[Guest web-*]\nShutdownMode=acpi\n");
        ck_assert_int_eq(config_load(p, true, &c, warnings, &err), 0);
        ck_assert_uint_eq(c->shutdown_mode, SHUTDOWN_MODE_AGENT | SHUTDOWN_MODE_ACPI);
        ck_assert_uint_eq(c->shutdown_repeat_usec, 2 * USEC_PER_SEC);
        ck_assert_uint_eq(c->agent_timeout_usec, 30 * USEC_PER_SEC);
        ck_assert_uint_eq(c->guest_sections->len, 3);
        s = c->guest_sections->pdata[0];
        ck_assert_str_eq(s->name, "Guest web-*");
        ck_assert_str_eq(s->glob, "web-*");
        ck_assert_uint_eq(s->settings.set, (1u << GUEST_KEY_ACTION) | (1u << GUEST_KEY_ORDER));
        ck_assert_int_eq(s->settings.action, ACTION_SHUTDOWN);
        ck_assert_int_eq(s->settings.order, -20);
        s = c->guest_sections->pdata[1];
        ck_assert_str_eq(s->glob, "db?");
        ck_assert_uint_eq(s->settings.shutdown_timeout_usec, 120 * USEC_PER_SEC);
        s = c->guest_sections->pdata[2];
        ck_assert_str_eq(s->glob, "web-*");
        ck_assert_uint_eq(s->settings.set, 1u << GUEST_KEY_SHUTDOWN_MODE);
        w = g_strdup_printf("%s: [Guest web-*] Colour: unknown key, ignored", p);
        ck_assert_uint_eq(warnings->len, 1);
        ck_assert_str_eq(warnings->pdata[0], w);

        copy = config_copy(c);
        ck_assert_uint_eq(copy->guest_sections->len, 3);
        ck_assert_str_eq(((GuestSection *) copy->guest_sections->pdata[1])->glob, "db?");
}
END_TEST

START_TEST(test_guest_section_needs_pattern)
{
        g_autofree char *p = file_in("g.conf", "[Guest]\nAction=skip\n");
        g_autofree char *expect = NULL;
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL;

        expect = g_strdup_printf("%s: [Guest]: needs a pattern of guest names, e.g. [Guest web-*]", p);
        ck_assert_int_eq(config_load(p, true, &c, NULL, &err), -EINVAL);
        ck_assert_str_eq(err, expect);
}
END_TEST

START_TEST(test_dropins_lexical_later_wins)
{
        g_autofree char *p = file_in("gk.conf", "[Shutdown]\nSave=none\nParallelSaves=3\n");
        g_autofree char *d = g_build_filename(dir, "gk.conf.d", NULL);
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL;
        g_autofree char *a = NULL, *b = NULL, *ignored = NULL;

        ck_assert_int_eq(g_mkdir(d, 0755), 0);
        /* written in reverse order: the result must follow the names, not creation */
        b = file_in("gk.conf.d/20-b.conf", "[Shutdown]\nSave=all\n");
        a = file_in("gk.conf.d/10-a.conf", "[Shutdown]\nSave=transient\nParallelSaves=5\n");
        ignored = file_in("gk.conf.d/30-c.conf.disabled", "[Shutdown]\nSave=persistent\n");

        ck_assert_int_eq(config_load(p, true, &c, NULL, &err), 0);
        ck_assert_int_eq(c->save, SCOPE_ALL);    /* 20-b over 10-a over the main file */
        ck_assert_uint_eq(c->parallel_saves, 5); /* 10-a over the main file */
}
END_TEST

START_TEST(test_dropin_error_names_dropin)
{
        g_autofree char *p = file_in("gk.conf", "[Shutdown]\nSave=none\n");
        g_autofree char *d = g_build_filename(dir, "gk.conf.d", NULL);
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL, *bad = NULL, *expect = NULL;

        ck_assert_int_eq(g_mkdir(d, 0755), 0);
        bad = file_in("gk.conf.d/50-bad.conf", "[Boot]\nParallelStarts=-3\n");
        expect = g_strdup_printf("%s: [Boot] ParallelStarts: \"-3\" is not a non-negative integer", bad);
        ck_assert_int_eq(config_load(p, true, &c, NULL, &err), -EINVAL);
        ck_assert_str_eq(err, expect);
}
END_TEST

START_TEST(test_dropins_without_main_file)
{
        g_autofree char *p = g_build_filename(dir, "gk.conf", NULL);
        g_autofree char *d = g_build_filename(dir, "gk.conf.d", NULL);
        g_autoptr(Config) c = NULL;
        g_autofree char *err = NULL, *x = NULL;

        ck_assert_int_eq(g_mkdir(d, 0755), 0);
        x = file_in("gk.conf.d/x.conf", "[Boot]\nRestore=off\n");
        ck_assert_int_eq(config_load(p, false, &c, NULL, &err), 0);
        ck_assert(!c->restore);
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("config");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_missing_required_file);
        tcase_add_test(tc, test_every_key);
        tcase_add_loop_test(tc, test_bad_value, 0, (int) ELEMENTSOF(bad_values));
        tcase_add_loop_test(tc, test_timespan_good, 0, (int) ELEMENTSOF(good_spans));
        tcase_add_loop_test(tc, test_timespan_bad, 0, (int) ELEMENTSOF(bad_spans));
        tcase_add_test(tc, test_spans_and_semicolon_comments);
        tcase_add_test(tc, test_deadline_beyond_poweroff_target_warns);
        tcase_add_test(tc, test_syntax_error);
        tcase_add_test(tc, test_unknown_keys_warn);
        tcase_add_test(tc, test_guest_sections);
        tcase_add_test(tc, test_guest_section_needs_pattern);
        tcase_add_test(tc, test_dropins_lexical_later_wins);
        tcase_add_test(tc, test_dropin_error_names_dropin);
        tcase_add_test(tc, test_dropins_without_main_file);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return testlib_run_suite(suite());
}
