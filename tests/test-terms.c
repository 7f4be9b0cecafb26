/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The words users see: every table round-trips, the step lists, the scope and outcome classes. */
#include "macro.h"
#include "terms.h"
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
        Suite *s = suite_create("terms");
        TCase *tc = tcase_create("terms");

        tcase_add_test(tc, test_strings_round_trip);
        tcase_add_test(tc, test_steps_string);
        tcase_add_test(tc, test_scope_includes);
        tcase_add_test(tc, test_outcome_classes);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
