/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The OpenMetrics text: families, units only where the name ends in them, escaped label values
 * and HELP texts, values, the closing "# EOF". */
#include "openmetrics.h"
#include "testlib.h"

START_TEST(test_families_and_samples)
{
        OpenMetrics *om = openmetrics_new();
        g_autofree char *text = NULL;

        openmetrics_family(om, "gk_up", NULL, "Whether it runs.");
        openmetrics_sample(om, NULL, 1);
        openmetrics_family(om, "gk_run_duration_seconds", "seconds", "How long.");
        openmetrics_sample(om, (const char *const[]){"kind", "preserve", NULL}, 2.5);
        openmetrics_sample(om, (const char *const[]){"kind", "restore", "step", "start", NULL}, 0);
        openmetrics_family(om, "gk_saved_bytes", "bytes", "Bytes.");
        openmetrics_sample(om, NULL, 4294967296.0);
        openmetrics_family(om, "gk_empty", NULL, "No sample.");
        text = openmetrics_finish(om);
        ck_assert_str_eq(text, "# HELP gk_up Whether it runs.\n"
                               "# TYPE gk_up gauge\n"
                               "gk_up 1\n"
                               "# HELP gk_run_duration_seconds How long.\n"
                               "# TYPE gk_run_duration_seconds gauge\n"
                               "# UNIT gk_run_duration_seconds seconds\n"
                               "gk_run_duration_seconds{kind=\"preserve\"} 2.5\n"
                               "gk_run_duration_seconds{kind=\"restore\",step=\"start\"} 0\n"
                               "# HELP gk_saved_bytes Bytes.\n"
                               "# TYPE gk_saved_bytes gauge\n"
                               "# UNIT gk_saved_bytes bytes\n"
                               "gk_saved_bytes 4294967296\n"
                               "# HELP gk_empty No sample.\n"
                               "# TYPE gk_empty gauge\n"
                               "# EOF\n");
}
END_TEST

/* A unit that is not the name's suffix (or only part of its last word) gets no UNIT line. */
START_TEST(test_unit_only_as_suffix)
{
        OpenMetrics *om = openmetrics_new();
        g_autofree char *text = NULL;

        openmetrics_family(om, "gk_guests", "seconds", "x");
        openmetrics_family(om, "gk_milliseconds", "seconds", "x");
        openmetrics_family(om, "seconds", "seconds", "x");
        text = openmetrics_finish(om);
        ck_assert_ptr_null(strstr(text, "# UNIT"));
}
END_TEST

START_TEST(test_escaping)
{
        OpenMetrics *om = openmetrics_new();
        g_autofree char *text = NULL;

        openmetrics_family(om, "gk_guest", NULL, "A \"quoted\" back\\slash\nand a new line.");
        openmetrics_sample(om, (const char *const[]){"guest", "a\"b\\c\nd", "uri", "qemu:///system", NULL},
                           1);
        /* Invalid UTF-8 is replaced: both formats are UTF-8. */
        openmetrics_sample(om, (const char *const[]){"guest", "x\xff", NULL}, 0.125);
        openmetrics_sample(om, NULL, 1.0 / 0.0);
        openmetrics_sample(om, NULL, -1.0 / 0.0);
        text = openmetrics_finish(om);
        ck_assert_str_eq(text, "# HELP gk_guest A 'quoted' back\\\\slash\\nand a new line.\n"
                               "# TYPE gk_guest gauge\n"
                               "gk_guest{guest=\"a\\\"b\\\\c\\nd\",uri=\"qemu:///system\"} 1\n"
                               "gk_guest{guest=\"x\xef\xbf\xbd\"} 0.125\n"
                               "gk_guest +Inf\n"
                               "gk_guest -Inf\n"
                               "# EOF\n");
}
END_TEST

/* Timestamps in seconds keep their microseconds, whatever the locale. */
START_TEST(test_values)
{
        OpenMetrics *om = openmetrics_new();
        g_autofree char *text = NULL;

        openmetrics_family(om, "gk_start_timestamp_seconds", "seconds", "x");
        openmetrics_sample(om, NULL, 1764625000123456 / 1e6);
        openmetrics_sample(om, NULL, 8782 / 1e6);
        openmetrics_sample(om, NULL, 0.1 + 0.2); /* needs all 17 digits */
        openmetrics_sample(om, NULL, 1e300);
        text = openmetrics_finish(om);
        ck_assert_str_eq(text, "# HELP gk_start_timestamp_seconds x\n"
                               "# TYPE gk_start_timestamp_seconds gauge\n"
                               "# UNIT gk_start_timestamp_seconds seconds\n"
                               "gk_start_timestamp_seconds 1764625000.123456\n"
                               "gk_start_timestamp_seconds 0.008782\n"
                               "gk_start_timestamp_seconds 0.30000000000000004\n"
                               "gk_start_timestamp_seconds 1e+300\n"
                               "# EOF\n");
}
END_TEST

int main(void)
{
        Suite *s = suite_create("openmetrics");
        TCase *tc = tcase_create("openmetrics");

        tcase_add_test(tc, test_families_and_samples);
        tcase_add_test(tc, test_unit_only_as_suffix);
        tcase_add_test(tc, test_escaping);
        tcase_add_test(tc, test_values);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
