/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The policy: which steps and values a guest gets, and where each comes from. */
#include "config.h"
#include "import.h"
#include "macro.h"
#include "policy.h"
#include "testlib.h"

static unsigned steps_of(const Config *c, bool persistent)
{
        GuestPolicy p;

        policy_for_guest(c, "guest", persistent, &p);
        return p.steps;
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

int main(void)
{
        Suite *s = suite_create("policy");
        TCase *tc = tcase_create("policy");

        tcase_add_test(tc, test_default_plan);
        tcase_add_loop_test(tc, test_libvirt_guests_matrix, 0, (int) ELEMENTSOF(matrix));
        tcase_add_test(tc, test_libvirt_guests_bad_values);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
