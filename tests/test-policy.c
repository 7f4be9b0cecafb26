/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The policy: which steps and values a guest gets, and where each comes from. */
#include <string.h>

#include "config.h"
#include "conflicts.h"
#include "import.h"
#include "macro.h"
#include "policy.h"
#include "testlib.h"
#include "util.h"

static unsigned steps_of(const Config *c, bool persistent)
{
        GuestPolicy p;
        unsigned steps;

        policy_for_guest(c, "qemu:///system", "guest", persistent, NULL, &p);
        steps = p.steps;
        guest_policy_clear(&p);
        return steps;
}

START_TEST(test_default_plan)
{
        g_autoptr(Config) c = config_new_default();

        /* Persistent guests: managed save first; transient: shutdown (libvirt-guests would
         * leave them to be killed), both can be forced off as a last resort. */
        ck_assert_uint_eq(steps_of(c, true), STEPS_ALL);
        ck_assert_uint_eq(steps_of(c, false), STEP_MASK(STEP_SHUTDOWN) | STEP_MASK(STEP_POWEROFF));
}
END_TEST

#define NOTHING  NULL
#define SUSPEND  "save"
#define SHUTDOWN "shutdown"

/* libvirt-guests(8), the table under PERSISTENT_ONLY: what happens to each kind of guest. */
static const struct {
        const char *on_shutdown, *persistent_only;
        const char *transient, *persistent;
} matrix[] = {
        {"shutdown", "true", NOTHING, SHUTDOWN},     {"shutdown", "false", SHUTDOWN, SHUTDOWN},
        {"shutdown", "default", SHUTDOWN, SHUTDOWN}, {"suspend", "true", NOTHING, SUSPEND},
        {"suspend", "false", SUSPEND, SUSPEND},      {"suspend", "default", NOTHING, SUSPEND},
};

static const char *first_step(unsigned mask)
{
        for (Step s = 0; s < _STEP_MAX; s++)
                if (mask & STEP_MASK(s))
                        return step_to_string(s);
        return NOTHING;
}

START_TEST(test_libvirt_guests_matrix)
{
        g_autoptr(Config) c = config_new_default();
        unsigned t, p;

        ck_assert_int_eq(import_scopes_from_libvirt_guests(matrix[_i].on_shutdown,
                                                           matrix[_i].persistent_only, &c->save,
                                                           &c->shutdown, &c->poweroff),
                         0);
        t = steps_of(c, false);
        p = steps_of(c, true);
        ck_assert_msg(streq_ptr(first_step(t), matrix[_i].transient),
                      "ON_SHUTDOWN=%s PERSISTENT_ONLY=%s transient: %s", matrix[_i].on_shutdown,
                      matrix[_i].persistent_only, first_step(t));
        ck_assert_msg(streq_ptr(first_step(p), matrix[_i].persistent),
                      "ON_SHUTDOWN=%s PERSISTENT_ONLY=%s persistent: %s", matrix[_i].on_shutdown,
                      matrix[_i].persistent_only, first_step(p));
        /* Where libvirt-guests acts, we never stop at a failed first step. */
        if (p)
                ck_assert(p & STEP_MASK(STEP_POWEROFF));
        if (t)
                ck_assert(t & STEP_MASK(STEP_POWEROFF));
        /* A save that fails falls through to a graceful shutdown. */
        if (p & STEP_MASK(STEP_SAVE))
                ck_assert(p & STEP_MASK(STEP_SHUTDOWN));
}
END_TEST

START_TEST(test_libvirt_guests_bad_values)
{
        Scope a, b, c;

        ck_assert_int_eq(import_scopes_from_libvirt_guests("hibernate", "true", &a, &b, &c), -EINVAL);
        ck_assert_int_eq(import_scopes_from_libvirt_guests("suspend", "yes", &a, &b, &c), -EINVAL);
}
END_TEST

static Config *config_from(const char *text)
{
        Config *c = config_new_default();
        g_autofree char *error = NULL;

        ck_assert_msg(config_apply_data(c, "test.conf", text, strlen(text), NULL, &error) >= 0, "%s", error);
        return c;
}

#define META(body) "<gk:guest xmlns:gk=\"https://guestkeeper.org/xmlns/guest/1\">" body "</gk:guest>"

/* The precedence table: metadata, then the last matching section per key, then the globals. */
START_TEST(test_precedence)
{
        g_autoptr(Config) c = config_from("[Shutdown]\nShutdownTimeoutSec=300\nShutdownMode=acpi\n"
                                          "[Guest web-*]\nShutdownTimeoutSec=60\nOrder=20\n"
                                          "[Guest web-1]\nOrder=30\nShutdownMode=agent,acpi\n"
                                          "[Guest db  cache-?]\nAction=skip\n");
        GuestPolicy p;

        /* Globals only. */
        policy_for_guest(c, "qemu:///system", "other", true, NULL, &p);
        ck_assert_uint_eq(p.shutdown_timeout_usec, 300 * USEC_PER_SEC);
        ck_assert(!p.has_order);
        ck_assert_uint_eq(p.shutdown_mode, SHUTDOWN_MODE_ACPI);
        for (GuestKey k = 0; k < _GUEST_KEY_MAX; k++)
                ck_assert_str_eq(p.source[k], "default");
        guest_policy_clear(&p);

        /* Two sections match: the later one wins for the keys it sets, the earlier keeps its. */
        policy_for_guest(c, "qemu:///system", "web-1", true, NULL, &p);
        ck_assert_uint_eq(p.shutdown_timeout_usec, 60 * USEC_PER_SEC);
        ck_assert_str_eq(p.source[GUEST_KEY_SHUTDOWN_TIMEOUT], "Guest web-*");
        ck_assert(p.has_order);
        ck_assert_int_eq(p.order, 30);
        ck_assert_str_eq(p.source[GUEST_KEY_ORDER], "Guest web-1");
        ck_assert_uint_eq(p.shutdown_mode, SHUTDOWN_MODE_AGENT | SHUTDOWN_MODE_ACPI);
        guest_policy_clear(&p);

        /* Metadata beats every section. */
        policy_for_guest(c, "qemu:///system", "web-1", true,
                         META("<gk:order>5</gk:order><gk:shutdown-timeout>2min</gk:shutdown-timeout>"), &p);
        ck_assert_int_eq(p.order, 5);
        ck_assert_str_eq(p.source[GUEST_KEY_ORDER], "metadata");
        ck_assert_uint_eq(p.shutdown_timeout_usec, 120 * USEC_PER_SEC);
        ck_assert_str_eq(p.source[GUEST_KEY_SHUTDOWN_MODE], "Guest web-1");
        ck_assert_ptr_null(p.error);
        guest_policy_clear(&p);

        /* skip: no step at all. */
        policy_for_guest(c, "qemu:///system", "db", true, NULL, &p);
        ck_assert(p.skip);
        ck_assert_uint_eq(p.steps, 0);
        ck_assert_str_eq(p.source[GUEST_KEY_ACTION], "Guest db  cache-?");
        guest_policy_clear(&p);
        policy_for_guest(c, "qemu:///system", "cache-1", true, NULL, &p);
        ck_assert(p.skip);
        guest_policy_clear(&p);
        policy_for_guest(c, "qemu:///system", "cache-10", true, NULL, &p);
        ck_assert(!p.skip);
        guest_policy_clear(&p);

        /* ... unless the metadata says otherwise. */
        policy_for_guest(c, "qemu:///system", "db", true, META("<gk:action>shutdown</gk:action>"), &p);
        ck_assert(!p.skip);
        ck_assert_uint_eq(p.steps, STEP_MASK(STEP_SHUTDOWN) | STEP_MASK(STEP_POWEROFF));
        guest_policy_clear(&p);
}
END_TEST

/* Action picks the first step; the later ones follow the global scopes. */
START_TEST(test_actions)
{
        g_autoptr(Config) c = config_from("[Shutdown]\nSave=none\nPowerOff=none\n");
        GuestPolicy p;

        policy_for_guest(c, "qemu:///system", "g", false, META("<action>save</action>"), &p);
        ck_assert_uint_eq(p.steps, STEP_MASK(STEP_SAVE) | STEP_MASK(STEP_SHUTDOWN));
        guest_policy_clear(&p);
        policy_for_guest(c, "qemu:///system", "g", true, META("<action>poweroff</action>"), &p);
        ck_assert_uint_eq(p.steps, STEP_MASK(STEP_POWEROFF));
        guest_policy_clear(&p);
        policy_for_guest(c, "qemu:///system", "g", true, META("<action>shutdown</action>"), &p);
        ck_assert_uint_eq(p.steps, STEP_MASK(STEP_SHUTDOWN));
        guest_policy_clear(&p);
}
END_TEST

/* Bad metadata is reported and ignored as a whole: sections and globals still apply. */
START_TEST(test_bad_metadata)
{
        static const char *const bad[] = {
                "not xml <",
                "<other/>",
                META("<gk:acton>save</gk:acton>"),
                META("<gk:action>hibernate</gk:action>"),
                META("<gk:order>ten</gk:order>"),
                META("<gk:shutdown-timeout>-1</gk:shutdown-timeout>"),
                META("<gk:shutdown-mode>serial</gk:shutdown-mode>"),
                META("<gk:order><gk:x/></gk:order>"),
        };
        g_autoptr(Config) c = config_from("[Guest *]\nOrder=7\n");

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                GuestPolicy p;

                policy_for_guest(c, "qemu:///system", "g", true, bad[i], &p);
                ck_assert_msg(p.error, "accepted: %s", bad[i]);
                ck_assert_int_eq(p.order, 7);
                ck_assert_str_eq(p.source[GUEST_KEY_ORDER], "Guest *");
                ck_assert_uint_eq(p.steps, STEPS_ALL);
                guest_policy_clear(&p);
        }
}
END_TEST

START_TEST(test_metadata_forms)
{
        GuestSettings s;
        g_autofree char *error = NULL;

        /* As `virsh metadata` shows it: default namespace, whitespace around values. */
        ck_assert_int_eq(policy_parse_metadata("<guest xmlns=\"https://guestkeeper.org/xmlns/guest/1\">\n"
                                               "  <action> save </action>\n  <order>-3</order>\n"
                                               "  <start-delay>30</start-delay>\n</guest>",
                                               &s, &error),
                         0);
        ck_assert_uint_eq(s.set, (1u << GUEST_KEY_ACTION) | (1u << GUEST_KEY_ORDER) |
                                         (1u << GUEST_KEY_START_DELAY));
        ck_assert_int_eq(s.order, -3);
        ck_assert_uint_eq(s.start_delay_usec, 30 * USEC_PER_SEC);
}
END_TEST

/* libvirt's own auto-shutdown set in qemu.conf: its guests of the local QEMU system driver are
 * left to it whatever else says; the others stay guestkeeper's. */
START_TEST(test_libvirt_auto_shutdown)
{
        g_autoptr(Config) c = config_from("[Guest *]\nAction=save\n");
        static const struct {
                const char *uri;
                bool persistent, left;
        } cases[] = {
                {"qemu:///system", true, true},
                {"qemu+unix:///system?socket=/run/x/libvirt-sock", true, true},
                {"qemu:///system", false, false}, /* transient: outside "persistent" */
                {"qemu:///session", true, false},
                {"qemu+ssh://host/system", true, false}, /* another host's qemu.conf */
                {"qemu+tcp://host/system", true, false},
                {"test:///default", true, false},
                {"default", true, false}, /* LIBVIRT_DEFAULT_URI=test:///default (tests/meson.build) */
        };

        c->libvirt_auto_shutdown = SCOPE_PERSISTENT;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                GuestPolicy p;

                policy_for_guest(c, cases[i].uri, "g", cases[i].persistent,
                                 META("<gk:action>poweroff</gk:action>"), &p);
                ck_assert_msg(p.skip == cases[i].left && p.libvirt == cases[i].left, "%s", cases[i].uri);
                ck_assert_str_eq(p.source[GUEST_KEY_ACTION],
                                 cases[i].left ? POLICY_SOURCE_LIBVIRT : "metadata");
                ck_assert_uint_eq(p.steps, cases[i].left ? 0 : STEP_MASK(STEP_POWEROFF));
                guest_policy_clear(&p);
        }
        /* "default" is the local QEMU driver for root when nothing else is said. */
        {
                g_autofree char *env = g_strdup(g_getenv("LIBVIRT_DEFAULT_URI"));
                GuestPolicy p;

                g_unsetenv("LIBVIRT_DEFAULT_URI");
                policy_for_guest(c, "default", "g", true, NULL, &p);
                ck_assert(p.skip && p.libvirt);
                guest_policy_clear(&p);
                g_setenv("LIBVIRT_DEFAULT_URI", "qemu:///session", TRUE);
                ck_assert(!uri_is_local_qemu_system("default"));
                if (env)
                        g_setenv("LIBVIRT_DEFAULT_URI", env, TRUE);
                else
                        g_unsetenv("LIBVIRT_DEFAULT_URI");
        }
        /* The user's own Action=skip stays the user's (never started at boot): not libvirt's. */
        {
                GuestPolicy p;

                policy_for_guest(c, "qemu:///system", "g", true, META("<gk:action>skip</gk:action>"), &p);
                ck_assert(p.skip && !p.libvirt);
                ck_assert_str_eq(p.source[GUEST_KEY_ACTION], "metadata");
                guest_policy_clear(&p);
        }
        c->libvirt_auto_shutdown = SCOPE_NONE;
        ck_assert_uint_eq(steps_of(c, true), STEPS_ALL);
}
END_TEST

/* The scopes of qemu.conf's auto_shutdown_* keys, as libvirt reads them. */
START_TEST(test_qemu_conf_scopes)
{
        static const struct {
                const char *conf;
                Scope scope;
        } cases[] = {
                {"", SCOPE_NONE},
                {"#auto_shutdown_try_save = \"all\"\n", SCOPE_NONE},
                {"auto_shutdown_try_save = \"none\"\nauto_shutdown_poweroff=\"none\"\n", SCOPE_NONE},
                {"auto_shutdown_try_save = \"persistent\"\n", SCOPE_PERSISTENT},
                {"  auto_shutdown_poweroff=\"transient\"  \n", SCOPE_TRANSIENT},
                {"auto_shutdown_try_save = \"persistent\"\nauto_shutdown_try_shutdown = \"transient\"\n",
                 SCOPE_ALL},
                {"auto_shutdown_try_shutdown = \"all\"\n", SCOPE_ALL},
                {"auto_shutdown_try_save = \"sometimes\"\n", SCOPE_ALL}, /* never guess ours */
                {"auto_shutdown_restore = 1\nauto_save_bypass_cache = 1\n", SCOPE_NONE},
                /* As libvirt's own reader (virconf.c) takes them. */
                {"auto_shutdown_try_save = \"none\"  # off for now\n", SCOPE_NONE},
                {"auto_shutdown_try_save = 'none'\n", SCOPE_NONE},
                {"auto_shutdown_poweroff='transient';\n", SCOPE_TRANSIENT},
                {"auto_shutdown_try_save = \"none\"\nauto_shutdown_try_save = \"all\"\n", SCOPE_NONE},
                {"auto_shutdown_try_save = \"persistent\" # saved\nauto_shutdown_try_save = \"all\"\n",
                 SCOPE_PERSISTENT},
                {"auto_shutdown_try_save_x = \"all\"\nx_auto_shutdown_try_save = \"all\"\n", SCOPE_NONE},
                /* Not a string: libvirt refuses it; never guessed to be "none". */
                {"auto_shutdown_try_save = [ \"all\" ]\n", SCOPE_ALL},
        };
        g_autofree char *root = testlib_tmpdir();
        g_autofree char *etc = g_build_filename(root, "etc", "libvirt", NULL);
        g_autofree char *path = g_build_filename(etc, "qemu.conf", NULL);

        ck_assert_int_eq(conflicts_libvirt_auto_shutdown(root, LIBVIRT_AUTO_SHUTDOWN_VERSION), SCOPE_NONE);
        ck_assert_int_eq(g_mkdir_with_parents(etc, 0755), 0);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                g_autoptr(GPtrArray) lines = NULL;

                testlib_write(path, cases[i].conf);
                ck_assert_msg(conflicts_libvirt_auto_shutdown(root, 11003000) == cases[i].scope, "%s",
                              cases[i].conf);
                lines = conflicts_detect(root, 11003000);
                ck_assert_msg((lines->len > 0) == (cases[i].scope != SCOPE_NONE), "%s", cases[i].conf);
        }
        /* A libvirt before 11.2 ignores the keys: nothing is left to it, and the line says so. */
        {
                g_autoptr(GPtrArray) lines = NULL;

                testlib_write(path, "auto_shutdown_try_save = \"all\"\n");
                ck_assert_int_eq(conflicts_libvirt_auto_shutdown(root, 9000000), SCOPE_NONE);
                lines = conflicts_detect(root, 9000000);
                ck_assert_uint_eq(lines->len, 1);
                ck_assert_ptr_nonnull(strstr(lines->pdata[0], "libvirt 9.0.0 here ignores it"));
                ck_assert_int_eq(conflicts_libvirt_auto_shutdown(root, 11002000), SCOPE_ALL);
        }
        testlib_rm_rf(root);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("policy");
        TCase *tc = tcase_create("policy");

        tcase_add_test(tc, test_default_plan);
        tcase_add_loop_test(tc, test_libvirt_guests_matrix, 0, (int) ELEMENTSOF(matrix));
        tcase_add_test(tc, test_libvirt_guests_bad_values);
        tcase_add_test(tc, test_precedence);
        tcase_add_test(tc, test_actions);
        tcase_add_test(tc, test_bad_metadata);
        tcase_add_test(tc, test_metadata_forms);
        tcase_add_test(tc, test_libvirt_auto_shutdown);
        tcase_add_test(tc, test_qemu_conf_scopes);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
