/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* guestkeeperctl: the command-line client of org.guestkeeper1 (docs/guestkeeperctl.1.rst). */
#include "gk-build-config.h"

#include <getopt.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "import.h"
#include "macro.h"
#include "takeover.h"
#include "terms.h"
#include "util.h"

JsonFormat arg_json;
bool arg_legend = true;
bool arg_full;
bool arg_all;
bool arg_hold;
bool arg_no_block;
bool arg_yes;
static bool arg_takeover;
static bool arg_pager = true;
static bool arg_value;
static char **arg_properties;
static const char *arg_defaults;

int fail(const char *fmt, ...)
{
        va_list ap;

        fputs("guestkeeperctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return EXIT_FAILED;
}

/* Connects and checks the daemon is there: no bus activation for a status query. */
static int connect_bus(sd_bus **ret)
{
        g_autoptr(sd_bus) bus = NULL;
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r, has = 0;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return fail("cannot connect to the system bus: %s", g_strerror(-r));
        {
                g_autoptr(sd_bus_message) reply = NULL;
                r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "NameHasOwner", &e, &reply, "s", NAME);
                if (r >= 0)
                        r = sd_bus_message_read(reply, "b", &has);
        }
        if (r < 0)
                return fail("cannot ask the bus about %s: %s", NAME, e.message ?: g_strerror(-r));
        if (!has) {
                fail("guestkeeperd is not running (%s is not on the system bus); "
                     "start it with: systemctl start guestkeeper",
                     NAME);
                return EXIT_NOT_RUNNING;
        }
        *ret = g_steal_pointer(&bus);
        return 0;
}

int call(sd_bus *bus, const char *method, sd_bus_message **ret_reply)
{
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, NAME, PATH, IFACE, method, &e, ret_reply, "");
        if (r < 0)
                return fail("%s: %s", method, e.message ?: g_strerror(-r));
        return 0;
}

typedef struct Props {
        char *version, *state, *last_run;
        int inhibitor, held;
        GPtrArray *waiting; /* GStrv: uri, uuid, name, why */
        char **uris;
        char **conflicts;
        unsigned total, done, failed;
        double progress;
} Props;

static void props_clear(Props *p)
{
        g_free(p->version);
        g_free(p->state);
        g_free(p->last_run);
        g_strfreev(p->uris);
        g_strfreev(p->conflicts);
        if (p->waiting)
                g_ptr_array_unref(p->waiting);
}

static int get_props(sd_bus *bus, Props *p)
{
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
        g_autoptr(sd_bus_message) reply = NULL;
        const char *key;
        int r;

        r = sd_bus_call_method(bus, NAME, PATH, "org.freedesktop.DBus.Properties", "GetAll", &e, &reply, "s",
                               IFACE);
        if (r < 0)
                return fail("cannot read the properties: %s", e.message ?: g_strerror(-r));
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *s;
                unsigned u;

                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        break;
                if (g_str_equal(key, "Version") || g_str_equal(key, "State") ||
                    g_str_equal(key, "LastRun")) {
                        r = sd_bus_message_read(reply, "v", "s", &s);
                        char **dst = g_str_equal(key, "Version") ? &p->version
                                     : g_str_equal(key, "State") ? &p->state
                                                                 : &p->last_run;
                        *dst = g_strdup(s);
                } else if (g_str_equal(key, "InhibitorHeld"))
                        r = sd_bus_message_read(reply, "v", "b", &p->inhibitor);
                else if (g_str_equal(key, "Held"))
                        r = sd_bus_message_read(reply, "v", "b", &p->held);
                else if (g_str_equal(key, "RestoreWaiting")) {
                        const char *uri, *uuid, *name, *why;

                        p->waiting = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
                        r = sd_bus_message_enter_container(reply, 'v', "a(ssss)");
                        if (r >= 0)
                                r = sd_bus_message_enter_container(reply, 'a', "(ssss)");
                        while (r >= 0 &&
                               (r = sd_bus_message_read(reply, "(ssss)", &uri, &uuid, &name, &why)) > 0)
                                g_ptr_array_add(p->waiting,
                                                g_strdupv((char *[]){(char *) uri, (char *) uuid,
                                                                     (char *) name, (char *) why, NULL}));
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                } else if (g_str_equal(key, "URIs") || g_str_equal(key, "Conflicts")) {
                        r = sd_bus_message_enter_container(reply, 'v', "as");
                        if (r >= 0)
                                r = sd_bus_message_read_strv(
                                        reply, g_str_equal(key, "URIs") ? &p->uris : &p->conflicts);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                } else if (g_str_equal(key, "Progress"))
                        r = sd_bus_message_read(reply, "v", "d", &p->progress);
                else if (g_strv_contains(
                                 (const char *const[]){"GuestsTotal", "GuestsDone", "GuestsFailed", NULL},
                                 key)) {
                        r = sd_bus_message_read(reply, "v", "u", &u);
                        if (g_str_equal(key, "GuestsTotal"))
                                p->total = u;
                        else if (g_str_equal(key, "GuestsDone"))
                                p->done = u;
                        else
                                p->failed = u;
                } else
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0)
                return fail("cannot parse the properties: %s", g_strerror(-r));
        return 0;
}

/* The guests whose last outcome is "recovered" (started again after an unclean stop), as GStrv
 * of uri, uuid, name. */
static int get_recovered(sd_bus *bus, GPtrArray **ret)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
        const char *uri, *uuid, *name, *state, *outcome;
        int r;

        if (call(bus, "ListGuests", &reply))
                return 1;
        r = sd_bus_message_enter_container(reply, 'a', "(sssss)");
        while (r >= 0 &&
               (r = sd_bus_message_read(reply, "(sssss)", &uri, &uuid, &name, &state, &outcome)) > 0)
                if (g_str_equal(outcome, outcome_to_string(OUTCOME_RECOVERED)))
                        g_ptr_array_add(out, g_strdupv((char *[]){(char *) uri, (char *) uuid, (char *) name,
                                                                  NULL}));
        if (r < 0)
                return fail("cannot parse ListGuests(): %s", g_strerror(-r));
        *ret = g_steal_pointer(&out);
        return 0;
}

/* Guests as JSON objects: uri, uuid, name[, why] from GStrv. */
static void json_add_guests(JsonBuilder *b, const char *key, GPtrArray *guests)
{
        json_builder_set_member_name(b, key);
        json_builder_begin_array(b);
        for (guint i = 0; guests && i < guests->len; i++) {
                char **g = guests->pdata[i];

                json_builder_begin_object(b);
                json_add_string(b, "uri", g[0]);
                json_add_string(b, "uuid", g[1]);
                json_add_string(b, "name", g[2]);
                if (g[3])
                        json_add_string(b, "why", g[3]);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
}

/* Exit status EXIT_CONFLICTS when other mechanisms would act on the guests at shutdown. */
static int cmd_status(sd_bus *bus)
{
        g_autoptr(GPtrArray) recovered = NULL;
        Props p = {};
        int r = get_props(bus, &p);

        if (r)
                return r;
        r = get_recovered(bus, &recovered);
        if (r) {
                props_clear(&p);
                return r;
        }
        if (arg_json) {
                g_autoptr(JsonBuilder) b = json_builder_new();

                json_builder_begin_object(b);
                json_add_string(b, "version", p.version);
                json_add_string(b, "state", p.state);
                json_add_bool(b, "inhibitor_held", p.inhibitor);
                json_add_strv(b, "uris", p.uris, -1);
                json_add_strv(b, "conflicts", p.conflicts, -1);
                json_add_string(b, "last_run", p.last_run);
                json_add_bool(b, "held", p.held);
                json_add_guests(b, "restore_waiting", p.waiting);
                json_add_guests(b, "recovered", recovered);
                json_add_int(b, "guests_total", p.total);
                json_add_int(b, "guests_done", p.done);
                json_add_int(b, "guests_failed", p.failed);
                json_add_double(b, "progress", p.progress);
                json_builder_end_object(b);
                json_print(b);
        } else {
                g_autofree char *uris = g_strjoinv(" ", p.uris);
                printf("guestkeeperd %s: %s\n", p.version, p.state);
                printf("    Inhibitor: %s%s%s\n", p.inhibitor ? "" : ansi_yellow(),
                       p.inhibitor ? "held (shutdown waits for guestkeeper)" : "not held",
                       p.inhibitor ? "" : ansi_normal());
                printf("         URIs: %s\n", uris);
                if (p.last_run && *p.last_run)
                        printf("     Last run: %s, %u guests: %u done, %s%u failed%s (%.0f%%)\n", p.last_run,
                               p.total, p.done, p.failed ? ansi_red() : "", p.failed,
                               p.failed ? ansi_normal() : "", p.progress * 100);
                else
                        printf("     Last run: none since the daemon started\n");
                for (guint i = 0; i < recovered->len; i++)
                        printf("%s %s (%s): restored after an unclean stop\n",
                               i == 0 ? "    Recovered:" : "              ",
                               ((char **) recovered->pdata[i])[2], ((char **) recovered->pdata[i])[0]);
                if (p.held)
                        printf("         %sHELD%s: maintenance: preserved guests stay down until "
                               "'guestkeeperctl restore'\n",
                               ansi_yellow(), ansi_normal());
                for (guint i = 0; p.waiting && i < p.waiting->len; i++) {
                        char **w = p.waiting->pdata[i];

                        printf("%s %s (%s): %s\n", i == 0 ? "      Waiting:" : "              ", w[2], w[0],
                               w[3]);
                }
                for (char **c = p.conflicts; c && *c; c++)
                        printf("%s%s%s %s\n", ansi_yellow(),
                               c == p.conflicts ? "    CONFLICTS:" : "              ", ansi_normal(), *c);
        }
        r = p.conflicts && *p.conflicts ? EXIT_CONFLICTS : EXIT_OK;
        props_clear(&p);
        return r;
}

/* Starts a guest's JSON object in list's and plan's arrays. */
static void json_guest_begin(JsonBuilder *b, const char *uri, const char *uuid, const char *name)
{
        json_builder_begin_object(b);
        json_add_string(b, "uri", uri);
        json_add_string(b, "uuid", uuid);
        json_add_string(b, "name", name);
}

/* Ends the JSON array built by list and plan, or prints the table. */
static int finish_rows(JsonBuilder *b, int r, const char *method, const char *const *header, GPtrArray *rows,
                       guint ncols, const char *what, CellColor color)
{
        if (r < 0)
                return fail("cannot parse %s(): %s", method, g_strerror(-r));
        if (arg_json) {
                json_builder_end_array(b);
                json_print(b);
        } else
                table(header, rows, ncols, what, color);
        return 0;
}

static const char *list_color(guint column, const char *v)
{
        if ((column == 1 && g_str_equal(v, "unreachable")) || (column == 2 && g_str_equal(v, "failed")))
                return ansi_red();
        if (column == 2 && (g_str_equal(v, "lost") || g_str_equal(v, "waiting")))
                return ansi_yellow();
        return NULL;
}

static int cmd_list(sd_bus *bus)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
        const char *uri, *uuid, *name, *state, *outcome;
        g_autoptr(JsonBuilder) o = json_builder_new();
        int r;

        if (call(bus, "ListGuests", &reply))
                return EXIT_FAILED;
        json_builder_begin_array(o);
        r = sd_bus_message_enter_container(reply, 'a', "(sssss)");
        while (r >= 0 &&
               (r = sd_bus_message_read(reply, "(sssss)", &uri, &uuid, &name, &state, &outcome)) > 0) {
                if (arg_json) {
                        json_guest_begin(o, uri, uuid, name);
                        json_add_string(o, "state", state);
                        json_add_string(o, "outcome", outcome);
                        json_builder_end_object(o);
                } else {
                        char **row = g_new0(char *, 6);
                        row[0] = g_strdup(name);
                        row[1] = g_strdup(state);
                        row[2] = g_strdup(*outcome ? outcome : "-");
                        row[3] = g_strdup(uri);
                        row[4] = g_strdup(uuid);
                        g_ptr_array_add(rows, row);
                }
        }
        return finish_rows(o, r, "ListGuests",
                           (const char *const[]){"NAME", "STATE", "LAST OUTCOME", "URI", "UUID"}, rows,
                           arg_full ? 5 : 4, "guests", list_color);
}

/* A value for the plan table: "-" for none, its source in brackets unless it is the default. */
static char *plan_cell(const char *value, const char *source)
{
        const char *v = value && *value ? value : "-";

        if (!source || g_str_equal(source, "default"))
                return g_strdup(v);
        return g_strdup_printf("%s [%s]", v, source);
}

/* The keys of Plan()'s settings, in the table's order after the steps. */
static const char *const plan_keys[] = {"order", "shutdown-timeout", "shutdown-mode", "start-delay"};

/* After the plan's table: why saves were dropped, the estimate of the saves, and a warning when
 * they would outlast the deadline (on stderr with --json, whose output stays the array). */
static int plan_summary(sd_bus *bus, GPtrArray *notes)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autofree char *total = NULL, *deadline = NULL;
        guint64 estimate_usec, deadline_usec;
        unsigned saves, in_time, dropped;
        const char *warning;
        int r;

        if (call(bus, "PlanSummary", &reply))
                return 1;
        r = sd_bus_message_read(reply, "ttuuus", &estimate_usec, &deadline_usec, &saves, &in_time, &dropped,
                                &warning);
        if (r < 0)
                return fail("cannot parse PlanSummary(): %s", g_strerror(-r));
        if (!arg_json) {
                total = format_usec(estimate_usec);
                deadline = format_usec(deadline_usec);
                if (notes->len > 0 || saves > 0)
                        printf("\n");
                for (guint i = 0; i < notes->len; i++)
                        printf("%s\n", (char *) notes->pdata[i]);
                if (saves > 0)
                        printf("%u save%s, estimated %s (deadline %s)\n", saves, saves == 1 ? "" : "s",
                               total, deadline);
        }
        if (*warning && arg_json)
                fprintf(stderr, "guestkeeperctl: Warning: %s\n", warning);
        else if (*warning)
                printf("%sWarning:%s %s\n", ansi_yellow(), ansi_normal(), warning);
        return 0;
}

static const char *plan_color(guint column, const char *v)
{
        return column == 2 && g_str_has_prefix(v, "NOTHING") ? ansi_red() : NULL;
}

static int cmd_plan(sd_bus *bus)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
        g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
        const char *uri, *uuid, *name, *steps;
        g_autoptr(JsonBuilder) o = json_builder_new();
        int persistent, r;

        if (call(bus, "Plan", &reply))
                return EXIT_FAILED;
        json_builder_begin_array(o);
        r = sd_bus_message_enter_container(reply, 'a', "(ssssba(sss))");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "ssssba(sss)")) > 0) {
                g_autoptr(GHashTable) value = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
                g_autoptr(GHashTable) source =
                        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
                g_autoptr(GPtrArray) settings = g_ptr_array_new_with_free_func(g_free);
                const char *k, *v, *src;

                r = sd_bus_message_read(reply, "ssssb", &uri, &uuid, &name, &steps, &persistent);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "(sss)");
                while (r >= 0 && (r = sd_bus_message_read(reply, "(sss)", &k, &v, &src)) > 0) {
                        g_hash_table_replace(value, g_strdup(k), g_strdup(v));
                        g_hash_table_replace(source, g_strdup(k), g_strdup(src));
                        g_ptr_array_add(settings, g_strdup(k));
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        break;
                if (arg_json) {
                        g_auto(GStrv) parts = *steps ? g_strsplit(steps, ",", -1) : g_new0(char *, 1);
                        json_guest_begin(o, uri, uuid, name);
                        json_add_bool(o, "persistent", persistent);
                        json_add_strv(o, "steps", parts, -1);
                        json_builder_set_member_name(o, "settings");
                        json_builder_begin_object(o);
                        for (guint i = 0; i < settings->len; i++) {
                                json_builder_set_member_name(o, settings->pdata[i]);
                                json_builder_begin_object(o);
                                json_add_string(o, "value", g_hash_table_lookup(value, settings->pdata[i]));
                                json_add_string(o, "source",
                                                g_hash_table_lookup(source, settings->pdata[i]));
                                json_builder_end_object(o);
                        }
                        json_builder_end_object(o);
                        json_builder_end_object(o);
                } else {
                        g_auto(GStrv) parts = g_strsplit(steps, ",", -1);
                        const char *action = g_hash_table_lookup(value, "action");
                        const char *error = g_hash_table_lookup(value, "metadata-error");
                        const char *not_saved = g_hash_table_lookup(value, "not-saved");
                        const char *estimate = g_hash_table_lookup(value, "save-estimate");
                        char **row = g_new0(char *, 10);
                        g_autofree char *what = NULL;

                        if (streq_ptr(action, "skip"))
                                what = g_strdup_printf("skipped [%s]",
                                                       (char *) g_hash_table_lookup(source, "action"));
                        else if (*steps) {
                                g_autofree char *arrows = g_strjoinv(" → ", parts);
                                what = plan_cell(arrows, g_hash_table_lookup(source, "action"));
                        } else
                                what = g_strdup("NOTHING: left running, dies with the host");
                        if (error)
                                fprintf(stderr, "guestkeeperctl: %s: %s\n", name, error);
                        if (not_saved)
                                g_ptr_array_add(notes,
                                                g_strdup_printf("%s is not saved: %s", name, not_saved));
                        row[0] = g_strdup(name);
                        row[1] = g_strdup(persistent ? "persistent" : "transient");
                        row[2] = g_steal_pointer(&what);
                        row[3] = estimate ? g_strdup_printf("%s s", estimate) : g_strdup("-");
                        for (guint c = 0; c < G_N_ELEMENTS(plan_keys); c++)
                                row[4 + c] = plan_cell(g_hash_table_lookup(value, plan_keys[c]),
                                                       g_hash_table_lookup(source, plan_keys[c]));
                        row[8] = g_strdup(uri);
                        g_ptr_array_add(rows, row);
                }
        }
        r = finish_rows(o, r, "Plan",
                        (const char *const[]){"NAME", "KIND", "AT SHUTDOWN", "SAVE EST.", "ORDER", "TIMEOUT",
                                              "MODE", "START DELAY", "URI"},
                        rows, 9, "running guests", plan_color);
        if (r != 0)
                return r;
        return plan_summary(bus, notes);
}

/* With --json its steps go to stderr: stdout keeps one JSON document. */
static int takeover(const char *conf)
{
        int saved = -1, r;

        if (arg_json) {
                fflush(stdout);
                saved = dup(STDOUT_FILENO);
                if (saved < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                        return fail("cannot redirect the output: %m");
        }
        r = takeover_libvirt_guests(conf, conf ? CONFIG_DEFAULT_PATH ".d/50-libvirt-guests.conf" : NULL);
        if (saved >= 0) {
                fflush(stdout);
                (void) dup2(saved, STDOUT_FILENO);
                close(saved);
                json_print_bool("switched", r >= 0);
        }
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

/* ---- show ---- */

/* One D-Bus value: into @b as JSON, and into @text as systemctl show writes it (booleans
 * yes/no, arrays space-separated, structures in parentheses). Returns 0 at the end of a
 * container. */
static int read_value(sd_bus_message *m, JsonBuilder *b, GString *text)
{
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r <= 0)
                return r;
        switch (type) {
        case 'v':
                r = sd_bus_message_enter_container(m, type, contents);
                if (r >= 0)
                        r = read_value(m, b, text);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                return r < 0 ? r : 1;
        case 'a':
        case 'r': {
                bool first = true;

                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;
                json_builder_begin_array(b);
                if (type == 'r')
                        g_string_append_c(text, '(');
                for (;;) {
                        gsize mark = text->len;

                        if (!first)
                                g_string_append(text, type == 'r' ? ", " : " ");
                        r = read_value(m, b, text);
                        if (r <= 0) {
                                g_string_truncate(text, mark);
                                break;
                        }
                        first = false;
                }
                json_builder_end_array(b);
                if (type == 'r')
                        g_string_append_c(text, ')');
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                return r < 0 ? r : 1;
        }
        case 's':
        case 'o':
        case 'g': {
                const char *s;

                r = sd_bus_message_read_basic(m, type, &s);
                if (r >= 0) {
                        json_add_string(b, NULL, s);
                        g_string_append(text, s);
                }
                return r < 0 ? r : 1;
        }
        case 'b': {
                int v;

                r = sd_bus_message_read_basic(m, type, &v);
                if (r >= 0) {
                        json_builder_add_boolean_value(b, v);
                        g_string_append(text, v ? "yes" : "no");
                }
                return r < 0 ? r : 1;
        }
        case 'd': {
                char buf[G_ASCII_DTOSTR_BUF_SIZE];
                double v;

                r = sd_bus_message_read_basic(m, type, &v);
                if (r >= 0) {
                        json_builder_add_double_value(b, v);
                        g_string_append(text, g_ascii_formatd(buf, sizeof buf, "%g", v));
                }
                return r < 0 ? r : 1;
        }
        case 'u':
        case 't': {
                uint64_t v = 0;
                uint32_t u;

                r = sd_bus_message_read_basic(m, type, type == 'u' ? (void *) &u : (void *) &v);
                if (type == 'u')
                        v = u;
                if (r >= 0) {
                        json_builder_add_int_value(b, (gint64) v);
                        g_string_append_printf(text, "%" G_GUINT64_FORMAT, (guint64) v);
                }
                return r < 0 ? r : 1;
        }
        default:
                r = sd_bus_message_skip(m, (char[]){type, 0});
                return r < 0 ? r : 1;
        }
}

/* Does -p ask for @name? Every property without -p. */
static bool property_wanted(const char *name)
{
        return !arg_properties || g_strv_contains((const char *const *) arg_properties, name);
}

/* Every property of the Manager as NAME=VALUE (systemctl show), or only -p's; --value: the
 * values alone. */
static int cmd_show(sd_bus *bus)
{
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(GString) text = g_string_new(NULL);
        const char *key;
        int r;

        r = sd_bus_call_method(bus, NAME, PATH, "org.freedesktop.DBus.Properties", "GetAll", &e, &reply, "s",
                               IFACE);
        if (r < 0)
                return fail("cannot read the properties: %s", e.message ?: g_strerror(-r));
        json_builder_begin_object(b);
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                g_autoptr(JsonBuilder) value = json_builder_new();
                g_autoptr(GString) v = g_string_new(NULL);

                g_autoptr(JsonNode) root = NULL;

                /* In an array: a builder takes no value at its root. */
                json_builder_begin_array(value);
                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0)
                        r = read_value(reply, value, v);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r < 0 || !property_wanted(key))
                        continue;
                json_builder_end_array(value);
                root = json_builder_get_root(value);
                json_builder_set_member_name(b, key);
                json_builder_add_value(b,
                                       json_node_copy(json_array_get_element(json_node_get_array(root), 0)));
                if (arg_value)
                        g_string_append_printf(text, "%s\n", v->str);
                else
                        g_string_append_printf(text, "%s=%s\n", key, v->str);
        }
        if (r < 0)
                return fail("cannot parse the properties: %s", g_strerror(-r));
        json_builder_end_object(b);
        if (arg_json)
                json_print(b);
        else
                fputs(text->str, stdout);
        return EXIT_OK;
}

/* The text as the daemon gives it: for a scraper, a pipe or a file (no JSON form). */
static int cmd_metrics(sd_bus *bus)
{
        g_autoptr(sd_bus_message) reply = NULL;
        const char *text;

        if (call(bus, "Metrics", &reply))
                return EXIT_FAILED;
        if (sd_bus_message_read(reply, "s", &text) < 0)
                return fail("Metrics: unexpected reply");
        fputs(text, stdout);
        return fflush(stdout) == 0 ? EXIT_OK : fail("cannot write the metrics: %m");
}

static int cmd_import(const char *file)
{
        static const char *const candidates[] = {"/etc/default/libvirt-guests",
                                                 "/etc/sysconfig/libvirt-guests"};
        g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL, *conf = NULL, *why = NULL;
        ImportDefaults defaults;

        for (size_t i = 0; !file && i < ELEMENTSOF(candidates); i++)
                if (access(candidates[i], R_OK) == 0)
                        file = candidates[i];
        if (!file && arg_takeover)
                return takeover(NULL); /* nothing to import: the defaults */
        if (!file)
                return fail("no libvirt-guests configuration found (%s, %s); name one", candidates[0],
                            candidates[1]);
        defaults = arg_defaults ? import_defaults_from_string(arg_defaults) : import_defaults_for_path(file);
        if (!g_file_get_contents(file, &text, NULL, &error))
                return fail("%s", error->message);
        if (import_libvirt_guests(file, defaults, text, &conf, notes, warnings, &why) < 0)
                return fail("%s: %s", file, why);
        if (arg_takeover) {
                for (guint i = 0; i < warnings->len; i++)
                        fprintf(stderr, "warning: %s\n", (char *) warnings->pdata[i]);
                return takeover(conf);
        }
        if (arg_json) {
                g_autoptr(JsonBuilder) b = json_builder_new();

                json_builder_begin_object(b);
                json_add_string(b, "file", file);
                json_add_string(b, "defaults", import_defaults_to_string(defaults));
                json_add_string(b, "config", conf);
                json_add_strv(b, "notes", (char **) notes->pdata, notes->len);
                json_add_strv(b, "warnings", (char **) warnings->pdata, warnings->len);
                json_builder_end_object(b);
                json_print(b);
                return 0;
        }
        fputs(conf, stdout);
        for (guint i = 0; i < notes->len; i++)
                fprintf(stderr, "note: %s\n", (char *) notes->pdata[i]);
        for (guint i = 0; i < warnings->len; i++)
                fprintf(stderr, "warning: %s\n", (char *) warnings->pdata[i]);
        return 0;
}

static void help(void)
{
        printf("Usage: guestkeeperctl [OPTION...] COMMAND\n\n"
               "Commands:\n"
               "  status                    the daemon's state, inhibitor, last run (exit status 3:\n"
               "                            conflicts)\n"
               "  show [-p PROP...] [--value]  the daemon's properties as NAME=VALUE\n"
               "  list                      every guest: state and last outcome\n"
               "  plan                      what a host shutdown would do to each running guest now\n"
               "  preserve [GUEST...]       preserve the guests now (a rehearsal; all of them after\n"
               "                            a question on a terminal) and follow the run\n"
               "  preserve --hold [GUEST...]  maintenance: preserve, and keep the guests down across\n"
               "                            restarts and reboots until restore\n"
               "  restore [GUEST...]        restore the recorded guests now (all of them: ends a hold)\n"
               "                            and follow the run\n"
               "  cancel                    stop a rehearsal (its guests come back) or a restore\n"
               "  reload                    re-read the configuration\n"
               "  last-run [--all]          the last preserve and restore runs (--all: every run\n"
               "                            kept): per guest its steps, outcome, time, bytes\n"
               "  metrics                   the daemon's metrics as OpenMetrics text\n"
               "  import-libvirt-guests [FILE]  print the guestkeeper.conf equivalent to a\n"
               "                            libvirt-guests configuration\n"
               "  import-libvirt-guests --takeover [FILE]  switch this host from libvirt-guests\n"
               "                            to guestkeeper, touching no guest\n\n"
               "Options:\n"
               "  --json=pretty|short|off   JSON output (--json: short)\n"
               "  --no-legend               no column headers and footers\n"
               "  --no-pager                do not pipe the output into a pager\n"
               "  -l, --full                show UUIDs in list\n"
               "  --all                     last-run: every run kept, not only the last of each kind\n"
               "  -p, --property=NAME       show: this property only (repeat, or NAME,NAME)\n"
               "  --value                   show: the values only\n"
               "  --no-block                preserve, restore: return once the run started\n"
               "  -y, --yes                 preserve: no question before preserving every guest\n"
               "  --no-ask-password         no polkit agent: a call polkit would ask a password for\n"
               "                            is refused\n"
               "  --defaults=debian|upstream  import-libvirt-guests: whose libvirt-guests.sh\n"
               "                            reads FILE (default: upstream under /etc/sysconfig, else "
               "Debian)\n"
               "  --version, -h/--help\n");
}

static int run(int argc, char **argv)
{
        enum {
                ARG_JSON = 0x100,
                ARG_NO_LEGEND,
                ARG_NO_PAGER,
                ARG_DEFAULTS,
                ARG_VERSION,
                ARG_TAKEOVER,
                ARG_HOLD,
                ARG_ALL,
                ARG_VALUE,
                ARG_NO_BLOCK,
                ARG_NO_ASK_PASSWORD,
        };
        static const struct option options[] = {
                {"json", optional_argument, NULL, ARG_JSON},
                {"no-legend", no_argument, NULL, ARG_NO_LEGEND},
                {"no-pager", no_argument, NULL, ARG_NO_PAGER},
                {"full", no_argument, NULL, 'l'},
                {"defaults", required_argument, NULL, ARG_DEFAULTS},
                {"version", no_argument, NULL, ARG_VERSION},
                {"help", no_argument, NULL, 'h'},
                {"takeover", no_argument, NULL, ARG_TAKEOVER},
                {"hold", no_argument, NULL, ARG_HOLD},
                {"all", no_argument, NULL, ARG_ALL},
                {"property", required_argument, NULL, 'p'},
                {"value", no_argument, NULL, ARG_VALUE},
                {"no-block", no_argument, NULL, ARG_NO_BLOCK},
                {"yes", no_argument, NULL, 'y'},
                {"no-ask-password", no_argument, NULL, ARG_NO_ASK_PASSWORD},
                {},
        };
        g_autoptr(GPtrArray) props = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(sd_bus) bus = NULL;
        const char *cmd;
        char **args;
        int c, nargs, r;

        while ((c = getopt_long(argc, argv, "hlp:y", options, NULL)) >= 0)
                switch (c) {
                case ARG_JSON:
                        if (!optarg || g_str_equal(optarg, "short"))
                                arg_json = JSON_SHORT;
                        else if (g_str_equal(optarg, "pretty"))
                                arg_json = JSON_PRETTY;
                        else if (g_str_equal(optarg, "off"))
                                arg_json = JSON_OFF;
                        else
                                return fail("--json=%s: expected pretty, short or off", optarg), EXIT_USAGE;
                        break;
                case ARG_NO_LEGEND:
                        arg_legend = false;
                        break;
                case ARG_NO_PAGER:
                        arg_pager = false;
                        break;
                case ARG_NO_ASK_PASSWORD:
                        arg_ask_password = false;
                        break;
                case 'l':
                        arg_full = true;
                        break;
                case ARG_DEFAULTS:
                        if (import_defaults_from_string(optarg) < 0)
                                return fail("--defaults=%s: expected debian or upstream", optarg),
                                       EXIT_USAGE;
                        arg_defaults = optarg;
                        break;
                case ARG_TAKEOVER:
                        arg_takeover = true;
                        break;
                case ARG_HOLD:
                        arg_hold = true;
                        break;
                case ARG_ALL:
                        arg_all = true;
                        break;
                case 'p': {
                        g_auto(GStrv) names = g_strsplit(optarg, ",", -1);

                        for (char **n = names; *n; n++)
                                if (**n)
                                        g_ptr_array_add(props, g_strdup(*n));
                        break;
                }
                case ARG_VALUE:
                        arg_value = true;
                        break;
                case ARG_NO_BLOCK:
                        arg_no_block = true;
                        break;
                case 'y':
                        arg_yes = true;
                        break;
                case ARG_VERSION:
                        printf("guestkeeperctl %s\n", PACKAGE_VERSION);
                        return EXIT_OK;
                case 'h':
                        help();
                        return EXIT_OK;
                default:
                        return EXIT_USAGE;
                }
        if (props->len > 0) {
                g_ptr_array_add(props, NULL);
                arg_properties = (char **) props->pdata;
        }
        cmd = optind < argc ? argv[optind] : "status";
        args = optind + 1 < argc ? argv + optind + 1 : NULL;
        nargs = MAX(0, argc - optind - 1);
        if (!g_strv_contains((const char *const[]){"status", "show", "list", "plan", "preserve", "restore",
                                                   "cancel", "reload", "last-run", "metrics",
                                                   "import-libvirt-guests", NULL},
                             cmd))
                return fail("unknown command \"%s\" (see --help)", cmd), EXIT_USAGE;
        if (g_str_equal(cmd, "import-libvirt-guests") && nargs > 1)
                return fail("import-libvirt-guests takes at most one FILE"), EXIT_USAGE;
        if (nargs > 0 &&
            !g_strv_contains((const char *const[]){"import-libvirt-guests", "preserve", "restore", NULL},
                             cmd))
                return fail("%s takes no arguments", cmd), EXIT_USAGE;
        if (arg_defaults && !g_str_equal(cmd, "import-libvirt-guests"))
                return fail("--defaults is for import-libvirt-guests only"), EXIT_USAGE;
        if (arg_takeover && !g_str_equal(cmd, "import-libvirt-guests"))
                return fail("--takeover is for import-libvirt-guests only"), EXIT_USAGE;
        if (arg_hold && !g_str_equal(cmd, "preserve"))
                return fail("--hold is for preserve only"), EXIT_USAGE;
        if (arg_yes && !g_str_equal(cmd, "preserve"))
                return fail("--yes is for preserve only"), EXIT_USAGE;
        if (arg_no_block && !g_str_equal(cmd, "preserve") && !g_str_equal(cmd, "restore"))
                return fail("--no-block is for preserve and restore only"), EXIT_USAGE;
        if (arg_all && !g_str_equal(cmd, "last-run"))
                return fail("--all is for last-run only"), EXIT_USAGE;
        if ((arg_properties || arg_value) && !g_str_equal(cmd, "show"))
                return fail("--property and --value are for show only"), EXIT_USAGE;
        if (arg_json && g_str_equal(cmd, "metrics"))
                return fail("metrics has no JSON form: it prints OpenMetrics text"), EXIT_USAGE;

        color_init();
        if (g_str_equal(cmd, "import-libvirt-guests")) {
                pager_open(arg_pager && !arg_takeover);
                return cmd_import(nargs > 0 ? args[0] : NULL);
        }
        r = connect_bus(&bus);
        if (r)
                return r;
        if (g_strv_contains((const char *const[]){"preserve", "restore", "cancel", "reload", NULL}, cmd))
                polkit_agent_open(bus);
        if (g_str_equal(cmd, "preserve") || g_str_equal(cmd, "restore"))
                return cmd_run(bus, g_str_equal(cmd, "preserve"), nargs > 0 ? args : NULL);
        if (g_str_equal(cmd, "cancel"))
                return cmd_cancel(bus);
        if (g_str_equal(cmd, "reload")) {
                if (call(bus, "Reload", NULL))
                        return EXIT_FAILED;
                if (arg_json)
                        json_print_bool("reloaded", true);
                else
                        puts("configuration reloaded");
                return EXIT_OK;
        }
        if (g_str_equal(cmd, "metrics"))
                return cmd_metrics(bus);
        pager_open(arg_pager);
        if (g_str_equal(cmd, "status"))
                return cmd_status(bus);
        if (g_str_equal(cmd, "show"))
                return cmd_show(bus);
        if (g_str_equal(cmd, "list"))
                return cmd_list(bus);
        if (g_str_equal(cmd, "plan"))
                return cmd_plan(bus);
        return cmd_last_run(bus);
}

int main(int argc, char **argv)
{
        int r;

        setlocale(LC_ALL, "");
        r = run(argc, argv);
        polkit_agent_close();
        pager_close();
        return r;
}
