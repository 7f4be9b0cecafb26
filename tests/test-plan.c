/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"
#include "macro.h"
#include "plan.h"
#include "testlib.h"

START_TEST(test_strings_round_trip)
{
        for (Scope s = 0; s < _SCOPE_MAX; s++)
                ck_assert_int_eq(scope_from_string(scope_to_string(s)), s);
        for (Outcome o = 0; o < _OUTCOME_MAX; o++)
                ck_assert_int_eq(outcome_from_string(outcome_to_string(o)), o);
        ck_assert_int_eq(scope_from_string("All"), _SCOPE_INVALID);
        ck_assert_int_eq(outcome_from_string("saved "), _OUTCOME_INVALID);
        ck_assert_ptr_null(scope_to_string(_SCOPE_MAX));
}
END_TEST

START_TEST(test_steps_string)
{
        g_autofree char *all = steps_to_string(STEPS_ALL);
        g_autofree char *none = steps_to_string(0);

        ck_assert_str_eq(all, "save,shutdown,poweroff");
        ck_assert_str_eq(none, "");
        ck_assert_int_eq(steps_from_string("poweroff,save"),
                         STEP_MASK(STEP_SAVE) | STEP_MASK(STEP_POWEROFF));
        ck_assert_int_eq(steps_from_string(""), 0);
        ck_assert_int_eq(steps_from_string("save,,shutdown"), -EINVAL);
        ck_assert_int_eq(steps_from_string("suspend"), -EINVAL);
}
END_TEST

/* Every scope against both kinds of guest. */
START_TEST(test_scope_includes)
{
        ck_assert(!scope_includes(SCOPE_NONE, true));
        ck_assert(!scope_includes(SCOPE_NONE, false));
        ck_assert(scope_includes(SCOPE_PERSISTENT, true));
        ck_assert(!scope_includes(SCOPE_PERSISTENT, false));
        ck_assert(!scope_includes(SCOPE_TRANSIENT, true));
        ck_assert(scope_includes(SCOPE_TRANSIENT, false));
        ck_assert(scope_includes(SCOPE_ALL, true));
        ck_assert(scope_includes(SCOPE_ALL, false));
}
END_TEST

START_TEST(test_default_plan)
{
        g_autoptr(Config) c = config_new_default();

        /* Persistent guests: managed save first; transient: shutdown (libvirt-guests would
         * leave them to be killed), both can be forced off as a last resort. */
        ck_assert_uint_eq(plan_steps(c, true), STEPS_ALL);
        ck_assert_uint_eq(plan_steps(c, false), STEP_MASK(STEP_SHUTDOWN) | STEP_MASK(STEP_POWEROFF));
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

        ck_assert_int_eq(plan_scopes_from_libvirt_guests(matrix[_i].on_shutdown, matrix[_i].persistent_only,
                                                         &c->save, &c->shutdown, &c->poweroff),
                         0);
        t = plan_steps(c, false);
        p = plan_steps(c, true);
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

        ck_assert_int_eq(plan_scopes_from_libvirt_guests("hibernate", "true", &a, &b, &c), -EINVAL);
        ck_assert_int_eq(plan_scopes_from_libvirt_guests("suspend", "yes", &a, &b, &c), -EINVAL);
}
END_TEST

START_TEST(test_outcome_classes)
{
        ck_assert(outcome_is_stopped(OUTCOME_SAVED));
        ck_assert(outcome_is_stopped(OUTCOME_SHUTDOWN));
        ck_assert(outcome_is_stopped(OUTCOME_POWEROFF));
        ck_assert(!outcome_is_stopped(OUTCOME_FAILED));
        ck_assert(!outcome_is_stopped(OUTCOME_NONE));
        ck_assert(!outcome_is_stopped(OUTCOME_RESTORED));
        ck_assert(outcome_is_in_flight(OUTCOME_SAVING));
        ck_assert(outcome_is_in_flight(OUTCOME_SHUTTING_DOWN));
        ck_assert(!outcome_is_in_flight(OUTCOME_SAVED));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("plan");
        TCase *tc = tcase_create("plan");

        tcase_add_test(tc, test_strings_round_trip);
        tcase_add_test(tc, test_steps_string);
        tcase_add_test(tc, test_scope_includes);
        tcase_add_test(tc, test_default_plan);
        tcase_add_loop_test(tc, test_libvirt_guests_matrix, 0, (int) ELEMENTSOF(matrix));
        tcase_add_test(tc, test_libvirt_guests_bad_values);
        tcase_add_test(tc, test_outcome_classes);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
