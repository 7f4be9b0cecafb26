/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The file writer: the newest text reaches the file, texts handed in during a write are
 * skipped but the last, the mode holds whatever the umask, errors are reported. */
#include <sys/stat.h>

#include "file-writer.h"
#include "testlib.h"

typedef struct Seen {
        unsigned writes;
        int last_r;
        char *last_path;
} Seen;

/* Whether @path holds @text now. */
static bool file_holds(const char *path, const char *text)
{
        g_autofree char *data = NULL;

        return g_file_get_contents(path, &data, NULL, NULL) && g_str_equal(data, text);
}

static void on_written(FileWriter *w, const char *path, int r, void *userdata)
{
        Seen *s = userdata;

        s->writes++;
        s->last_r = r;
        g_free(s->last_path);
        s->last_path = g_strdup(path);
}

START_TEST(test_newest_text_wins)
{
        g_autofree char *dir = g_dir_make_tmp("gk-fw-XXXXXX", NULL);
        g_autofree char *path = g_build_filename(dir, "x.prom", NULL);
        Seen seen = {};
        FileWriter *w = file_writer_new(0644, on_written, &seen);
        mode_t old = umask(077);
        struct stat st;

        for (int i = 0; i < 100; i++) {
                g_autofree char *text = g_strdup_printf("v %d\n", i);

                file_writer_write(w, path, text);
        }
        RUN_UNTIL(seen.writes > 0 && file_holds(path, "v 99\n"));
        /* The first write, then only the newest of the 99 that came while it ran. */
        RUN_UNTIL(seen.writes == 2);
        ck_assert_int_eq(seen.last_r, 0);
        ck_assert_str_eq(seen.last_path, path);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0644);
        umask(old);
        file_writer_free(w);
        g_free(seen.last_path);
        ck_assert_int_eq(g_unlink(path), 0);
        ck_assert_int_eq(g_rmdir(dir), 0); /* no temp file left */
}
END_TEST

START_TEST(test_error_reported)
{
        Seen seen = {};
        FileWriter *w = file_writer_new(0644, on_written, &seen);

        file_writer_write(w, "/nonexistent-gk-dir/x.prom", "v 1\n");
        RUN_UNTIL(seen.writes == 1);
        ck_assert_int_eq(seen.last_r, -ENOENT);
        ck_assert_str_eq(seen.last_path, "/nonexistent-gk-dir/x.prom");
        /* A text waiting when the writer goes is dropped, the write in flight ends. */
        file_writer_write(w, "/nonexistent-gk-dir/x.prom", "v 2\n");
        file_writer_write(w, "/nonexistent-gk-dir/x.prom", "v 3\n");
        file_writer_free(w);
        g_free(seen.last_path);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("file-writer");
        TCase *tc = tcase_create("file-writer");

        tcase_add_test(tc, test_newest_text_wins);
        tcase_add_test(tc, test_error_reported);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
