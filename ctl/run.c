/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* guestkeeperctl preserve, restore and cancel: start a run, follow it from the daemon's
 * signals (PropertiesChanged for the progress and the guests in flight, RunFinished for the
 * end), or stop it. */
#include "gk-build-config.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ctl.h"
#include "util.h"

typedef struct Follow {
        const char *kind;
        bool finished, gone, changed;
        unsigned total, done, failed;
        double progress;
        char *state;
        GPtrArray *in_flight; /* "saving web1" */
} Follow;

static int on_run_finished(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
        Follow *f = userdata;
        const char *kind;
        unsigned done, failed;

        if (sd_bus_message_read(m, "suu", &kind, &done, &failed) >= 0 && g_str_equal(kind, f->kind)) {
                f->finished = true;
                f->done = done;
                f->failed = failed;
        }
        return 0;
}

static int on_owner(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
        const char *name, *old, *new;

        if (sd_bus_message_read(m, "sss", &name, &old, &new) >= 0 && g_str_equal(name, NAME) && !*new)
                ((Follow *) userdata)->gone = true;
        return 0;
}

/* One property of a PropertiesChanged or a GetAll: those the progress line shows. */
static int read_follow_property(sd_bus_message *m, Follow *f)
{
        const char *key, *s, *uri, *uuid, *name, *outcome;
        int r;

        r = sd_bus_message_read(m, "s", &key);
        if (r < 0)
                return r;
        if (g_str_equal(key, "State")) {
                r = sd_bus_message_read(m, "v", "s", &s);
                if (r >= 0) {
                        g_free(f->state);
                        f->state = g_strdup(s);
                }
        } else if (g_str_equal(key, "GuestsTotal"))
                r = sd_bus_message_read(m, "v", "u", &f->total);
        else if (g_str_equal(key, "GuestsDone"))
                r = sd_bus_message_read(m, "v", "u", &f->done);
        else if (g_str_equal(key, "GuestsFailed"))
                r = sd_bus_message_read(m, "v", "u", &f->failed);
        else if (g_str_equal(key, "Progress"))
                r = sd_bus_message_read(m, "v", "d", &f->progress);
        else if (g_str_equal(key, "GuestsInFlight")) {
                g_ptr_array_set_size(f->in_flight, 0);
                r = sd_bus_message_enter_container(m, 'v', "a(ssss)");
                if (r >= 0)
                        r = sd_bus_message_enter_container(m, 'a', "(ssss)");
                while (r >= 0 && (r = sd_bus_message_read(m, "(ssss)", &uri, &uuid, &name, &outcome)) > 0)
                        g_ptr_array_add(f->in_flight, g_strdup_printf("%s %s", outcome, name));
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        } else
                r = sd_bus_message_skip(m, "v");
        return r;
}

/* Reads an a{sv} of properties into @f. */
static int read_follow_properties(sd_bus_message *m, Follow *f)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = read_follow_property(m, f);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        f->changed = true;
        return r;
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
        const char *iface;

        if (sd_bus_message_read(m, "s", &iface) < 0 || !g_str_equal(iface, IFACE))
                return 0;
        (void) read_follow_properties(m, userdata);
        return 0;
}

static unsigned terminal_columns(void)
{
        struct winsize ws = {};

        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_col < 20)
                return 80;
        return ws.ws_col;
}

/* "preserving [######          ]  40%  2/5 guests  saving web1, shutting-down db1", cut to
 * the terminal's width. */
static void show_progress(Follow *f)
{
        g_autoptr(GString) line = g_string_new(NULL);
        unsigned cols = terminal_columns();
        int bar = (int) (CLAMP(f->progress, 0.0, 1.0) * 30);

        g_string_append_printf(line, "%-10s [%.*s%*s] %3.0f%%  %u/%u guests", f->state ?: "", bar,
                               "##############################", 30 - bar, "", f->progress * 100,
                               f->done + f->failed, f->total);
        for (guint i = 0; i < f->in_flight->len; i++)
                g_string_append_printf(line, "%s%s", i ? ", " : "  ", (char *) f->in_flight->pdata[i]);
        if (g_utf8_strlen(line->str, -1) >= cols)
                g_string_truncate(line, g_utf8_offset_to_pointer(line->str, cols - 2) - line->str);
        printf("\r\033[K%s", line->str);
        if (f->failed)
                printf("  %s(%u failed)%s", ansi_red(), f->failed, ansi_normal());
        fflush(stdout);
}

/* The running guests, for the question before preserving them all. */
static int count_running(sd_bus *bus, unsigned *ret)
{
        g_autoptr(sd_bus_message) reply = NULL;
        const char *uri, *uuid, *name, *state, *outcome;
        unsigned n = 0;
        int r;

        if (call(bus, "ListGuests", &reply))
                return EXIT_FAILED;
        r = sd_bus_message_enter_container(reply, 'a', "(sssss)");
        while (r >= 0 &&
               (r = sd_bus_message_read(reply, "(sssss)", &uri, &uuid, &name, &state, &outcome)) > 0)
                n += g_str_equal(state, "running") || g_str_equal(state, "paused");
        if (r < 0)
                return fail("cannot parse ListGuests(): %s", g_strerror(-r));
        *ret = n;
        return 0;
}

/* On a terminal, unless --yes: "Preserve all N running guests now? [y/N]". */
static int confirm_preserve_all(sd_bus *bus)
{
        char answer[16] = "";
        unsigned n = 0;
        int r;

        if (arg_yes || !isatty(STDIN_FILENO))
                return 0;
        r = count_running(bus, &n);
        if (r)
                return r;
        fprintf(stderr, "Preserve all %u running guest%s now%s? [y/N] ", n, n == 1 ? "" : "s",
                arg_hold ? ", and keep them down until 'guestkeeperctl restore'" : "");
        if (!fgets(answer, sizeof answer, stdin) || (answer[0] != 'y' && answer[0] != 'Y'))
                return fail("not confirmed: no guest touched");
        return 0;
}

/* Starts the run: PreserveGuests(WithFlags|Named) or RestoreGuests(Named). */
static int start_run(sd_bus *bus, bool preserve, char **guests)
{
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
        g_autoptr(sd_bus_message) m = NULL;
        const char *method = preserve ? (guests     ? "PreserveGuestsNamed"
                                         : arg_hold ? "PreserveGuestsWithFlags"
                                                    : "PreserveGuests")
                                      : (guests ? "RestoreGuestsNamed" : "RestoreGuests");
        int r;

        r = sd_bus_message_new_method_call(bus, &m, NAME, PATH, IFACE, method);
        if (r >= 0 && guests)
                r = sd_bus_message_append_strv(m, guests);
        if (r >= 0 && preserve && (guests || arg_hold))
                r = sd_bus_message_append(m, "t", arg_hold ? GK_PRESERVE_HOLD : UINT64_C(0));
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, &e, NULL);
        if (r < 0)
                return fail("%s: %s", method, e.message ?: g_strerror(-r));
        return 0;
}

/* Starts a run and follows it until RunFinished; exit status 0 only if nothing failed. */
int cmd_run(sd_bus *bus, bool preserve, char **guests)
{
        g_autoptr(sd_bus_slot) s1 = NULL, s2 = NULL, s3 = NULL;
        g_autoptr(GPtrArray) in_flight = g_ptr_array_new_with_free_func(g_free);
        const char *kind = preserve ? "preserve" : "restore";
        Follow f = {.kind = kind, .in_flight = in_flight};
        bool tty = isatty(STDOUT_FILENO) && !arg_json;
        int r;

        if (preserve && !guests) {
                r = confirm_preserve_all(bus);
                if (r)
                        return r;
        }
        if (arg_no_block) {
                r = start_run(bus, preserve, guests);
                if (r)
                        return r;
                if (arg_json) {
                        g_autoptr(JsonBuilder) b = json_builder_new();

                        json_builder_begin_object(b);
                        json_add_string(b, "kind", kind);
                        json_add_bool(b, "started", true);
                        json_builder_end_object(b);
                        json_print(b);
                } else
                        printf("%s run started; 'guestkeeperctl status' follows it\n", kind);
                return 0;
        }

        /* Subscribe first: the run may end before the call returns. */
        r = sd_bus_match_signal(bus, &s1, NAME, PATH, IFACE, "RunFinished", on_run_finished, &f);
        /* Only our name: every client leaving the bus broadcasts NameOwnerChanged for its
         * unique name, and a busy bus has many. */
        if (r >= 0)
                r = sd_bus_add_match(bus, &s2,
                                     "type='signal',sender='org.freedesktop.DBus',"
                                     "path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',"
                                     "member='NameOwnerChanged',arg0='" NAME "'",
                                     on_owner, &f);
        if (r >= 0 && tty)
                r = sd_bus_match_signal(bus, &s3, NAME, PATH, "org.freedesktop.DBus.Properties",
                                        "PropertiesChanged", on_properties_changed, &f);
        if (r < 0)
                return fail("cannot subscribe to the daemon's signals: %s", g_strerror(-r));
        r = start_run(bus, preserve, guests);
        if (r)
                return r;
        if (tty) {
                /* Where the run stands now; the signals say what changes. */
                __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
                g_autoptr(sd_bus_message) reply = NULL;

                if (sd_bus_call_method(bus, NAME, PATH, "org.freedesktop.DBus.Properties", "GetAll", &e,
                                       &reply, "s", IFACE) >= 0)
                        (void) read_follow_properties(reply, &f);
        }
        while (!f.finished && !f.gone) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return fail("lost the bus: %s", g_strerror(-r));
                if (r > 0)
                        continue;
                if (tty && f.changed) {
                        show_progress(&f);
                        f.changed = false;
                }
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0)
                        return fail("lost the bus: %s", g_strerror(-r));
        }
        g_free(f.state);
        if (tty)
                printf("\r\033[K");
        if (f.gone)
                return fail("guestkeeperd went away during the %s run", kind);
        if (arg_json) {
                g_autoptr(JsonBuilder) b = json_builder_new();

                json_builder_begin_object(b);
                json_add_string(b, "kind", kind);
                json_add_int(b, "done", f.done);
                json_add_int(b, "failed", f.failed);
                json_builder_end_object(b);
                json_print(b);
        } else
                printf("%s run finished: %u done, %s%u failed%s%s\n", kind, f.done,
                       f.failed ? ansi_red() : "", f.failed, f.failed ? ansi_normal() : "",
                       f.failed ? " (guestkeeperctl list shows which)" : "");
        return f.failed ? EXIT_FAILED : EXIT_OK;
}

int cmd_cancel(sd_bus *bus)
{
        if (call(bus, "Cancel", NULL))
                return EXIT_FAILED;
        if (arg_json)
                json_print_bool("cancelled", true);
        else
                printf("Cancelled: a rehearsal's guests are restored; a restore starts no further guest\n");
        return EXIT_OK;
}
