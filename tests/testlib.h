/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared helpers for the check unit tests. No sleeps: tests iterate the GLib context until
 * a condition holds, with a wall-clock guard that fails the test instead of hanging. */

#include <check.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_SECONDS 20

static inline gboolean testlib_guard_cb(gpointer p)
{
        ck_abort_msg("test did not reach its condition within %d s", GUARD_SECONDS);
        return G_SOURCE_REMOVE;
}

/* Iterates the default context until *flag is true. */
#define RUN_UNTIL(cond)                                                                                     \
        do {                                                                                                \
                guint _guard = g_timeout_add_seconds(GUARD_SECONDS, testlib_guard_cb, NULL);                \
                while (!(cond))                                                                             \
                        g_main_context_iteration(NULL, TRUE);                                               \
                g_source_remove(_guard);                                                                    \
        } while (0)

static inline char *testlib_tmpdir(void)
{
        g_autoptr(GError) error = NULL;
        char *d = g_dir_make_tmp("guestkeeper-test-XXXXXX", &error);

        ck_assert_msg(d, "mkdtemp: %s", error ? error->message : "?");
        return d;
}

static inline void testlib_rm_rf(const char *path)
{
        g_autofree char *cmd = NULL;

        if (!path || !g_str_has_prefix(path, g_get_tmp_dir()))
                return;
        cmd = g_strdup_printf("rm -rf '%s'", path);
        (void) !system(cmd);
}

static inline void testlib_write(const char *path, const char *text)
{
        ck_assert(g_file_set_contents(path, text, -1, NULL));
}

/* Whether one of @messages (char*) contains @needle. */
static inline bool testlib_has_message(GPtrArray *messages, const char *needle)
{
        for (guint i = 0; i < messages->len; i++)
                if (strstr(messages->pdata[i], needle))
                        return true;
        return false;
}

static inline int testlib_run_suite(Suite *s)
{
        SRunner *sr = srunner_create(s);
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
