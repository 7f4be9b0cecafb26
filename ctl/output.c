/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* guestkeeperctl's output: JSON through json-glib, tables, colour and the pager, the way
 * systemd's tools do them. */
#include "gk-build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "macro.h"

static bool use_color;
static pid_t pager_pid;

/* SYSTEMD_COLORS=0/no/false forces colour off, 1/yes/true on; NO_COLOR (any value) and a dumb
 * terminal turn it off; otherwise colour when stdout is a terminal. */
void color_init(void)
{
        const char *sc = g_getenv("SYSTEMD_COLORS"), *term = g_getenv("TERM");

        if (sc && g_strv_contains((const char *const[]){"0", "no", "false", "off", NULL}, sc))
                use_color = false;
        else if (sc && g_strv_contains((const char *const[]){"1", "yes", "true", "on", NULL}, sc))
                use_color = true;
        else
                use_color = !g_getenv("NO_COLOR") && !streq_ptr(term, "dumb") && isatty(STDOUT_FILENO);
}

const char *ansi_red(void)
{
        return use_color ? "\033[0;1;31m" : "";
}

const char *ansi_yellow(void)
{
        return use_color ? "\033[0;1;33m" : "";
}

const char *ansi_normal(void)
{
        return use_color ? "\033[0m" : "";
}

void pager_open(bool enabled)
{
        const char *pager = g_getenv("SYSTEMD_PAGER");
        int fd[2];
        pid_t pid;

        if (!enabled || pager_pid > 0 || !isatty(STDOUT_FILENO))
                return;
        if (!pager)
                pager = g_getenv("PAGER");
        if (pager && (!*pager || g_str_equal(pager, "cat")))
                return;
        if (pipe2(fd, O_CLOEXEC) < 0)
                return;
        fflush(stdout);
        pid = fork();
        if (pid < 0) {
                close(fd[0]);
                close(fd[1]);
                return;
        }
        if (pid == 0) {
                if (dup2(fd[0], STDIN_FILENO) < 0)
                        _exit(EXIT_FAILED);
                setenv("LESS", g_getenv("LESS") ?: "FRX", 1);
                if (pager)
                        execl("/bin/sh", "sh", "-c", pager, (char *) NULL);
                else {
                        execlp("less", "less", (char *) NULL);
                        execlp("more", "more", (char *) NULL);
                }
                /* No pager after all: the output still reaches the terminal. */
                execlp("cat", "cat", (char *) NULL);
                _exit(EXIT_FAILED);
        }
        close(fd[0]);
        if (dup2(fd[1], STDOUT_FILENO) < 0) {
                close(fd[1]);
                kill(pid, SIGTERM);
                (void) waitpid(pid, NULL, 0);
                return;
        }
        close(fd[1]);
        /* The user may quit the pager before the end: a write then fails, not a signal. */
        signal(SIGPIPE, SIG_IGN);
        pager_pid = pid;
}

void pager_close(void)
{
        if (pager_pid <= 0)
                return;
        fflush(stdout);
        fclose(stdout);
        while (waitpid(pager_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        pager_pid = 0;
}

void table(const char *const *header, GPtrArray *rows, guint ncols, const char *what, CellColor color)
{
        g_autofree guint *w = g_new0(guint, ncols);

        for (guint c = 0; c < ncols; c++)
                w[c] = arg_legend ? strlen(header[c]) : 0;
        for (guint i = 0; i < rows->len; i++)
                for (guint c = 0; c < ncols; c++)
                        w[c] = MAX(w[c], (guint) g_utf8_strlen(((char **) rows->pdata[i])[c], -1));
        if (arg_legend)
                for (guint c = 0; c < ncols; c++)
                        printf("%-*s%s", c + 1 < ncols ? (int) w[c] : 0, header[c],
                               c + 1 < ncols ? " " : "\n");
        for (guint i = 0; i < rows->len; i++)
                for (guint c = 0; c < ncols; c++) {
                        const char *v = ((char **) rows->pdata[i])[c];
                        const char *on = color ? color(c, v) : NULL;

                        printf("%s%s%s%*s%s", on && *on ? on : "", v, on && *on ? ansi_normal() : "",
                               c + 1 < ncols ? (int) (w[c] - g_utf8_strlen(v, -1)) : 0, "",
                               c + 1 < ncols ? " " : "\n");
                }
        if (arg_legend)
                printf("\n%u %s listed.\n", rows->len, what);
}

void json_add_string(JsonBuilder *b, const char *key, const char *v)
{
        g_autofree char *valid = g_utf8_make_valid(v ?: "", -1);

        if (key)
                json_builder_set_member_name(b, key);
        json_builder_add_string_value(b, valid);
}

void json_add_optional_string(JsonBuilder *b, const char *key, const char *v)
{
        if (v && *v) {
                json_add_string(b, key, v);
                return;
        }
        if (key)
                json_builder_set_member_name(b, key);
        json_builder_add_null_value(b);
}

void json_add_strv(JsonBuilder *b, const char *key, char **v, gssize n)
{
        if (key)
                json_builder_set_member_name(b, key);
        json_builder_begin_array(b);
        for (gssize i = 0; v && (n < 0 ? v[i] != NULL : i < n); i++)
                json_add_string(b, NULL, v[i]);
        json_builder_end_array(b);
}

void json_add_bool(JsonBuilder *b, const char *key, bool v)
{
        if (key)
                json_builder_set_member_name(b, key);
        json_builder_add_boolean_value(b, v);
}

void json_add_int(JsonBuilder *b, const char *key, gint64 v)
{
        if (key)
                json_builder_set_member_name(b, key);
        json_builder_add_int_value(b, v);
}

void json_add_double(JsonBuilder *b, const char *key, double v)
{
        if (key)
                json_builder_set_member_name(b, key);
        json_builder_add_double_value(b, v);
}

void json_print_bool(const char *key, bool v)
{
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_add_bool(b, key, v);
        json_builder_end_object(b);
        json_print(b);
}

void json_print(JsonBuilder *b)
{
        g_autoptr(JsonGenerator) g = json_generator_new();
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autofree char *text = NULL;

        json_generator_set_root(g, root);
        json_generator_set_pretty(g, arg_json == JSON_PRETTY);
        text = json_generator_to_data(g, NULL);
        printf("%s\n", text);
}
