/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* guestkeeperctl: the command-line client of org.guestkeeper1 (docs/guestkeeperctl.1.rst). */
#include "gk-build-config.h"

#include <getopt.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bus-names.h"
#include "bus-util.h"
#include "config.h"
#include "import.h"
#include "takeover.h"
#include "macro.h"
#include "util.h"
#include "terms.h"

#define NAME  GK_BUS_NAME
#define PATH  GK_OBJECT_PATH
#define IFACE GK_INTERFACE

static bool arg_json;
static bool arg_takeover;
static bool arg_hold;
static bool arg_legend = true;
static bool arg_full;
static bool arg_all;
static const char *arg_defaults;

static int fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static int fail(const char *fmt, ...)
{
        va_list ap;

        fputs("guestkeeperctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

static void json_string(GString *out, const char *s)
{
        g_string_append_c(out, '"');
        for (; s && *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c == '"' || c == '\\')
                        g_string_append_printf(out, "\\%c", c);
                else if (c < 0x20)
                        g_string_append_printf(out, "\\u%04x", c);
                else
                        g_string_append_c(out, (char) c);
        }
        g_string_append_c(out, '"');
}

/* A JSON array of the first @n strings of @v, or all of them when @n < 0 (NULL @v: empty). */
static void json_string_array(GString *out, char **v, gssize n)
{
        g_string_append_c(out, '[');
        for (gssize i = 0; v && (n < 0 ? v[i] != NULL : i < n); i++) {
                if (i > 0)
                        g_string_append_c(out, ',');
                json_string(out, v[i]);
        }
        g_string_append_c(out, ']');
}

static void table(const char *const *header, GPtrArray *rows, guint ncols, const char *what);

/* Starts a guest's JSON object in an array: ',{"uri":…,"uuid":…,"name":…' (list and plan). */
static void json_guest_begin(GString *o, const char *uri, const char *uuid, const char *name)
{
        if (o->len > 1)
                g_string_append_c(o, ',');
        g_string_append(o, "{\"uri\":");
        json_string(o, uri);
        g_string_append(o, ",\"uuid\":");
        json_string(o, uuid);
        g_string_append(o, ",\"name\":");
        json_string(o, name);
}

/* Ends a JSON array built by list and plan, or prints the table. */
static int finish_rows(GString *o, int r, const char *method, const char *const *header, GPtrArray *rows,
                       guint ncols, const char *what)
{
        if (r < 0) {
                g_string_free(o, TRUE);
                return fail("cannot parse %s(): %s", method, g_strerror(-r));
        }
        if (arg_json)
                printf("%s]\n", o->str);
        else
                table(header, rows, ncols, what);
        g_string_free(o, TRUE);
        return 0;
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
        if (!has)
                return fail("guestkeeperd is not running (%s is not on the system bus); "
                            "start it with: systemctl start guestkeeper",
                            NAME);
        *ret = g_steal_pointer(&bus);
        return 0;
}

static int call(sd_bus *bus, const char *method, sd_bus_message **ret_reply)
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
                else if (g_str_has_prefix(key, "Guests")) {
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

/* A JSON array of guests, each GStrv uri, uuid, name[, why]. Built apart: json_guest_begin() puts
 * its comma by the length of the string it appends to. */
static void json_guest_array(GString *o, GPtrArray *guests)
{
        GString *a = g_string_new("[");

        for (guint i = 0; guests && i < guests->len; i++) {
                char **g = guests->pdata[i];

                json_guest_begin(a, g[0], g[1], g[2]);
                if (g[3]) {
                        g_string_append(a, ",\"why\":");
                        json_string(a, g[3]);
                }
                g_string_append_c(a, '}');
        }
        g_string_append_c(a, ']');
        g_string_append(o, a->str);
        g_string_free(a, TRUE);
}

static int cmd_status(sd_bus *bus)
{
        char progress[G_ASCII_DTOSTR_BUF_SIZE];
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
                GString *o = g_string_new("{\"version\":");
                json_string(o, p.version);
                g_string_append(o, ",\"state\":");
                json_string(o, p.state);
                g_string_append_printf(o,
                                       ",\"inhibitor_held\":%s,\"uris\":", p.inhibitor ? "true" : "false");
                json_string_array(o, p.uris, -1);
                g_string_append(o, ",\"conflicts\":");
                json_string_array(o, p.conflicts, -1);
                g_string_append(o, ",\"last_run\":");
                json_string(o, p.last_run);
                g_string_append_printf(o, ",\"held\":%s,\"restore_waiting\":", p.held ? "true" : "false");
                json_guest_array(o, p.waiting);
                g_string_append(o, ",\"recovered\":");
                json_guest_array(o, recovered);
                /* Not printf's %f: it follows LC_NUMERIC, and "0,500" is not JSON. */
                g_string_append_printf(o,
                                       ",\"guests_total\":%u,\"guests_done\":%u,\"guests_failed\":%u,"
                                       "\"progress\":%s}\n",
                                       p.total, p.done, p.failed,
                                       g_ascii_formatd(progress, sizeof progress, "%.3f", p.progress));
                fputs(o->str, stdout);
                g_string_free(o, TRUE);
        } else {
                g_autofree char *uris = g_strjoinv(" ", p.uris);
                printf("guestkeeperd %s: %s\n", p.version, p.state);
                printf("    Inhibitor: %s\n",
                       p.inhibitor ? "held (shutdown waits for guestkeeper)" : "not held");
                printf("         URIs: %s\n", uris);
                if (p.last_run && *p.last_run)
                        printf("     Last run: %s, %u guests: %u done, %u failed (%.0f%%)\n", p.last_run,
                               p.total, p.done, p.failed, p.progress * 100);
                else
                        printf("     Last run: none since the daemon started\n");
                for (guint i = 0; i < recovered->len; i++)
                        printf("%s %s (%s): restored after an unclean stop\n",
                               i == 0 ? "    Recovered:" : "              ",
                               ((char **) recovered->pdata[i])[2], ((char **) recovered->pdata[i])[0]);
                if (p.held)
                        printf("         HELD: maintenance: preserved guests stay down until "
                               "'guestkeeperctl restore'\n");
                for (guint i = 0; p.waiting && i < p.waiting->len; i++) {
                        char **w = p.waiting->pdata[i];

                        printf("%s %s (%s): %s\n", i == 0 ? "      Waiting:" : "              ", w[2], w[0],
                               w[3]);
                }
                for (char **c = p.conflicts; c && *c; c++)
                        printf("%s %s\n", c == p.conflicts ? "    CONFLICTS:" : "              ", *c);
        }
        props_clear(&p);
        return 0;
}

/* Prints a table; rows are GStrv of @ncols columns. */
static void table(const char *const *header, GPtrArray *rows, guint ncols, const char *what)
{
        g_autofree guint *w = g_new0(guint, ncols);

        for (guint c = 0; c < ncols; c++)
                w[c] = arg_legend ? strlen(header[c]) : 0;
        for (guint i = 0; i < rows->len; i++)
                for (guint c = 0; c < ncols; c++)
                        w[c] = MAX(w[c], (guint) g_utf8_strlen(((char **) rows->pdata[i])[c], -1));
        if (arg_legend) {
                for (guint c = 0; c < ncols; c++)
                        printf("%-*s%s", c + 1 < ncols ? (int) w[c] : 0, header[c],
                               c + 1 < ncols ? " " : "\n");
        }
        for (guint i = 0; i < rows->len; i++)
                for (guint c = 0; c < ncols; c++) {
                        const char *v = ((char **) rows->pdata[i])[c];
                        printf("%s%*s%s", v, c + 1 < ncols ? (int) (w[c] - g_utf8_strlen(v, -1)) : 0, "",
                               c + 1 < ncols ? " " : "\n");
                }
        if (arg_legend)
                printf("\n%u %s listed.\n", rows->len, what);
}

static int cmd_list(sd_bus *bus)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
        const char *uri, *uuid, *name, *state, *outcome;
        GString *o = g_string_new("[");
        int r;

        if (call(bus, "ListGuests", &reply))
                return 1;
        r = sd_bus_message_enter_container(reply, 'a', "(sssss)");
        while (r >= 0 &&
               (r = sd_bus_message_read(reply, "(sssss)", &uri, &uuid, &name, &state, &outcome)) > 0) {
                if (arg_json) {
                        json_guest_begin(o, uri, uuid, name);
                        g_string_append(o, ",\"state\":");
                        json_string(o, state);
                        g_string_append(o, ",\"outcome\":");
                        json_string(o, outcome);
                        g_string_append_c(o, '}');
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
                           arg_full ? 5 : 4, "guests");
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
        if (*warning)
                fprintf(arg_json ? stderr : stdout, "%sWarning: %s\n", arg_json ? "guestkeeperctl: " : "",
                        warning);
        return 0;
}

static int cmd_plan(sd_bus *bus)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
        g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
        const char *uri, *uuid, *name, *steps;
        GString *o = g_string_new("[");
        int persistent, r;

        if (call(bus, "Plan", &reply))
                return 1;
        r = sd_bus_message_enter_container(reply, 'a', "(ssssba(sss))");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "ssssba(sss)")) > 0) {
                g_autoptr(GHashTable) value = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
                g_autoptr(GHashTable) source =
                        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
                g_autoptr(GString) settings = g_string_new("{");
                const char *k, *v, *src;

                r = sd_bus_message_read(reply, "ssssb", &uri, &uuid, &name, &steps, &persistent);
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "(sss)");
                while (r >= 0 && (r = sd_bus_message_read(reply, "(sss)", &k, &v, &src)) > 0) {
                        g_hash_table_replace(value, g_strdup(k), g_strdup(v));
                        g_hash_table_replace(source, g_strdup(k), g_strdup(src));
                        if (settings->len > 1)
                                g_string_append_c(settings, ',');
                        json_string(settings, k);
                        g_string_append(settings, ":{\"value\":");
                        json_string(settings, v);
                        g_string_append(settings, ",\"source\":");
                        json_string(settings, src);
                        g_string_append_c(settings, '}');
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
                        g_string_append_printf(
                                o, ",\"persistent\":%s,\"steps\":", persistent ? "true" : "false");
                        json_string_array(o, parts, -1);
                        g_string_append_printf(o, ",\"settings\":%s}}", settings->str);
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
                        rows, 9, "running guests");
        if (r != 0)
                return r;
        return plan_summary(bus, notes);
}

/* ---- last-run ---- */

typedef struct StepRow {
        char *kind, *error;
        guint64 start, duration;
} StepRow;

typedef struct GuestRowT {
        char *uri, *uuid, *name, *outcome, *error;
        guint64 duration;
        gint64 bytes;
        GArray *steps; /* StepRow */
} GuestRowT;

static char *wall_text(guint64 usec, bool iso)
{
        g_autoptr(GDateTime) t = iso ? g_date_time_new_from_unix_utc((gint64) (usec / G_USEC_PER_SEC))
                                     : g_date_time_new_from_unix_local((gint64) (usec / G_USEC_PER_SEC));
        g_autoptr(GDateTime) precise = t ? g_date_time_add(t, (GTimeSpan) (usec % G_USEC_PER_SEC)) : NULL;

        if (!precise)
                return g_strdup("-");
        return g_date_time_format(precise, iso ? "%Y-%m-%dT%H:%M:%S.%fZ" : "%a %Y-%m-%d %H:%M:%S %Z");
}

static void json_seconds(GString *o, const char *key, guint64 usec)
{
        char buf[G_ASCII_DTOSTR_BUF_SIZE];

        g_string_append_printf(o, ",\"%s\":%s", key,
                               g_ascii_formatd(buf, sizeof buf, "%.6f", (double) usec / 1e6));
}

static void json_optional_string(GString *o, const char *key, const char *v)
{
        g_string_append_printf(o, ",\"%s\":", key);
        if (v && *v)
                json_string(o, v);
        else
                g_string_append(o, "null");
}

/* "web1  saved  1.52 s  512.0 MiB written", then one line per step. */
static void print_run_guest(const GuestRowT *g, int name_width)
{
        g_autofree char *took = g->steps->len ? format_usec(g->duration) : g_strdup("-");
        g_autofree char *bytes =
                g->bytes >= 0 ? g_format_size_full((guint64) g->bytes, G_FORMAT_SIZE_IEC_UNITS) : NULL;

        printf("    %-*s  %-10s %9s%s%s%s\n", name_width, g->name, *g->outcome ? g->outcome : "untouched",
               took, bytes ? "  " : "", bytes ?: "", bytes ? " written" : "");
        for (guint k = 0; k < g->steps->len; k++) {
                const StepRow *s = &g_array_index(g->steps, StepRow, k);
                g_autofree char *at = format_usec(s->start), *len = format_usec(s->duration);

                printf("      %-9s +%-9s %9s%s%s\n", s->kind, at, len, *s->error ? "  failed: " : "",
                       s->error);
        }
        /* The guest's own error, when no step holds it (a guest never started). */
        if (*g->error && g_str_equal(g->outcome, "failed") &&
            (g->steps->len == 0 ||
             !g_str_equal(g_array_index(g->steps, StepRow, g->steps->len - 1).error, g->error)))
                printf("      error: %s\n", g->error);
}

static void step_row_clear(gpointer p)
{
        StepRow *s = p;

        g_free(s->kind);
        g_free(s->error);
}

static void guest_row_t_free(gpointer p)
{
        GuestRowT *g = p;

        g_free(g->uri);
        g_free(g->uuid);
        g_free(g->name);
        g_free(g->outcome);
        g_free(g->error);
        g_array_unref(g->steps);
        g_free(g);
}

/* One run of LastRuns(): read, then printed (or appended to @json). */
static int read_run(sd_bus_message *reply, GString *json, bool first)
{
        const char *id, *kind, *reason, *by;
        uint64_t started, finished, duration;
        unsigned total, done, failed;
        g_auto(GStrv) unreachable = NULL;
        g_autoptr(GPtrArray) guests = g_ptr_array_new_with_free_func(guest_row_t_free);
        int cancelled, r, name_width = 4;

        r = sd_bus_message_enter_container(reply, 'r', "sssstttbuuuasa(sssstxsa(stts))");
        if (r <= 0)
                return r;
        r = sd_bus_message_read(reply, "sssstttbuuu", &id, &kind, &reason, &by, &started, &finished,
                                &duration, &cancelled, &total, &done, &failed);
        if (r >= 0)
                r = sd_bus_message_read_strv(reply, &unreachable);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "(sssstxsa(stts))");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "sssstxsa(stts)")) > 0) {
                GuestRowT *g = g_new0(GuestRowT, 1);
                const char *uri, *uuid, *name, *outcome, *error, *skind, *serror;
                uint64_t gdur, sstart, sdur;
                int64_t bytes;

                g->steps = g_array_new(FALSE, TRUE, sizeof(StepRow));
                g_array_set_clear_func(g->steps, step_row_clear);
                g_ptr_array_add(guests, g);
                r = sd_bus_message_read(reply, "sssstxs", &uri, &uuid, &name, &outcome, &gdur, &bytes,
                                        &error);
                if (r < 0)
                        break;
                g->uri = g_strdup(uri);
                g->uuid = g_strdup(uuid);
                g->name = g_strdup(name);
                g->outcome = g_strdup(outcome);
                g->error = g_strdup(error);
                g->duration = gdur;
                g->bytes = bytes;
                name_width = MAX(name_width, (int) g_utf8_strlen(name, -1));
                r = sd_bus_message_enter_container(reply, 'a', "(stts)");
                while (r >= 0 &&
                       (r = sd_bus_message_read(reply, "(stts)", &skind, &sstart, &sdur, &serror)) > 0) {
                        StepRow s = {g_strdup(skind), g_strdup(serror), sstart, sdur};
                        g_array_append_val(g->steps, s);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;

        if (json) {
                g_autofree char *s = wall_text(started, true), *f = wall_text(finished, true);

                if (json->len > 1)
                        g_string_append_c(json, ',');
                g_string_append(json, "{\"id\":");
                json_string(json, id);
                g_string_append(json, ",\"kind\":");
                json_string(json, kind);
                g_string_append(json, ",\"reason\":");
                json_string(json, reason);
                g_string_append(json, ",\"requested_by\":");
                json_string(json, by);
                g_string_append(json, ",\"started\":");
                json_string(json, s);
                g_string_append(json, ",\"finished\":");
                json_string(json, f);
                json_seconds(json, "duration", duration);
                g_string_append_printf(
                        json, ",\"cancelled\":%s,\"total\":%u,\"done\":%u,\"failed\":%u,\"unreachable\":",
                        cancelled ? "true" : "false", total, done, failed);
                json_string_array(json, unreachable, -1);
                g_string_append(json, ",\"guests\":[");
                for (guint i = 0; i < guests->len; i++) {
                        const GuestRowT *g = guests->pdata[i];

                        g_string_append(json, i ? ",{\"uri\":" : "{\"uri\":");
                        json_string(json, g->uri);
                        g_string_append(json, ",\"uuid\":");
                        json_string(json, g->uuid);
                        g_string_append(json, ",\"name\":");
                        json_string(json, g->name);
                        g_string_append(json, ",\"outcome\":");
                        json_string(json, g->outcome);
                        json_seconds(json, "duration", g->duration);
                        if (g->bytes >= 0)
                                g_string_append_printf(json, ",\"bytes\":%" G_GINT64_FORMAT, g->bytes);
                        else
                                g_string_append(json, ",\"bytes\":null");
                        json_optional_string(json, "error", g->error);
                        g_string_append(json, ",\"steps\":[");
                        for (guint k = 0; k < g->steps->len; k++) {
                                const StepRow *st = &g_array_index(g->steps, StepRow, k);

                                g_string_append(json, k ? ",{\"step\":" : "{\"step\":");
                                json_string(json, st->kind);
                                json_seconds(json, "start", st->start);
                                json_seconds(json, "duration", st->duration);
                                json_optional_string(json, "error", st->error);
                                g_string_append_c(json, '}');
                        }
                        g_string_append(json, "]}");
                }
                g_string_append(json, "]}");
                return 1;
        }

        {
                g_autofree char *s = wall_text(started, false), *f = wall_text(finished, false);
                g_autofree char *took = format_usec(duration);

                printf("%s%s %s run %s%s\n", first ? "" : "\n", failed ? "×" : "●", kind, id,
                       cancelled ? " (cancelled)" : "");
                printf("     Reason: %s\n", reason);
                printf("   Asked by: %s\n", by);
                printf("    Started: %s\n", s);
                printf("   Finished: %s; took %s\n", f, took);
                printf("     Guests: %u: %u done, %u failed\n", total, done, failed);
                for (char **u = unreachable; u && *u; u++)
                        printf("%s %s\n", u == unreachable ? "UNREACHABLE:" : "            ", *u);
                printf("    Journal: journalctl GUESTKEEPER_RUN_ID=%s\n", id);
                if (guests->len > 0)
                        printf("\n");
                for (guint i = 0; i < guests->len; i++)
                        print_run_guest(guests->pdata[i], name_width);
        }
        return 1;
}

static int cmd_last_run(sd_bus *bus)
{
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GString) json = arg_json ? g_string_new("[") : NULL;
        unsigned n = 0;
        int r;

        r = sd_bus_call_method(bus, NAME, PATH, IFACE, "LastRuns", &e, &reply, "b", (int) arg_all);
        if (r < 0)
                return fail("LastRuns: %s", e.message ?: g_strerror(-r));
        r = sd_bus_message_enter_container(reply, 'a', "(sssstttbuuuasa(sssstxsa(stts)))");
        while (r >= 0 && (r = read_run(reply, json, n == 0)) > 0)
                n++;
        if (r < 0)
                return fail("cannot parse LastRuns(): %s", g_strerror(-r));
        if (json)
                printf("%s]\n", json->str);
        else if (n == 0)
                printf("No run kept yet.\n");
        return 0;
}

typedef struct Follow {
        const char *kind;
        bool finished;
        unsigned done, failed;
        bool gone;
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

/* Starts a run and follows it until RunFinished; exit status 0 only if nothing failed. @flags: for
 * PreserveGuestsWithFlags(). */
static int cmd_run(sd_bus *bus, const char *method, const char *kind, uint64_t flags)
{
        g_autoptr(sd_bus_slot) s1 = NULL, s2 = NULL;
        Follow f = {.kind = kind};
        bool tty = isatty(STDOUT_FILENO) && !arg_json;
        int r;

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
        if (r < 0)
                return fail("cannot subscribe to the daemon's signals: %s", g_strerror(-r));
        if (g_str_equal(method, "PreserveGuestsWithFlags")) {
                __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;

                r = sd_bus_call_method(bus, NAME, PATH, IFACE, method, &e, NULL, "t", flags);
                if (r < 0)
                        return fail("%s: %s", method, e.message ?: g_strerror(-r));
        } else if (call(bus, method, NULL))
                return 1;
        while (!f.finished && !f.gone) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return fail("lost the bus: %s", g_strerror(-r));
                if (r > 0)
                        continue;
                if (tty) {
                        Props p = {};
                        if (get_props(bus, &p) == 0) {
                                int bar = (int) (p.progress * 30);
                                printf("\r%-10s [%.*s%*s] %3.0f%%  %u/%u guests%s", p.state, bar,
                                       "##############################", 30 - bar, "", p.progress * 100,
                                       p.done + p.failed, p.total, p.failed ? "  (failures)" : "");
                                fflush(stdout);
                        }
                        props_clear(&p);
                }
                r = sd_bus_wait(bus, tty ? 200000 : UINT64_MAX);
                if (r < 0)
                        return fail("lost the bus: %s", g_strerror(-r));
        }
        if (tty)
                printf("\r%*s\r", 72, "");
        if (f.gone)
                return fail("guestkeeperd went away during the %s run", kind);
        if (arg_json)
                printf("{\"kind\":\"%s\",\"done\":%u,\"failed\":%u}\n", kind, f.done, f.failed);
        else
                printf("%s run finished: %u done, %u failed%s\n", kind, f.done, f.failed,
                       f.failed ? " (guestkeeperctl list shows which)" : "");
        return f.failed ? 1 : 0;
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
                return takeover_libvirt_guests(NULL, NULL) < 0; /* nothing to import: the defaults */
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
                return takeover_libvirt_guests(conf, CONFIG_DEFAULT_PATH ".d/50-libvirt-guests.conf") < 0;
        }
        if (arg_json) {
                g_autoptr(GString) o = g_string_new("{\"file\":");

                json_string(o, file);
                g_string_append(o, ",\"defaults\":");
                json_string(o, import_defaults_to_string(defaults));
                g_string_append(o, ",\"config\":");
                json_string(o, conf);
                g_string_append(o, ",\"notes\":");
                json_string_array(o, (char **) notes->pdata, notes->len);
                g_string_append(o, ",\"warnings\":");
                json_string_array(o, (char **) warnings->pdata, warnings->len);
                g_string_append(o, "}\n");
                fputs(o->str, stdout);
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
               "  status                    the daemon's state, inhibitor, last run\n"
               "  list                      every guest: state and last outcome\n"
               "  plan                      what a host shutdown would do to each running guest now\n"
               "  preserve                  preserve the guests now (a rehearsal) and follow the run\n"
               "  preserve --hold           maintenance: preserve, and keep the guests down across\n"
               "                            restarts and reboots until restore\n"
               "  restore                   restore the recorded guests now (ends a hold) and follow\n"
               "                            the run\n"
               "  reload                    re-read the configuration\n"
               "  last-run [--all]          the last preserve and restore runs (--all: every run\n"
               "                            kept): per guest its steps, outcome, time, bytes\n"
               "  import-libvirt-guests [FILE]  print the guestkeeper.conf equivalent to a\n"
               "                            libvirt-guests configuration\n"
               "  import-libvirt-guests --takeover [FILE]  switch this host from libvirt-guests\n"
               "                            to guestkeeper, touching no guest\n\n"
               "Options:\n"
               "  --json        machine-readable output\n"
               "  --no-legend   no column headers and footers\n"
               "  --no-pager    accepted for systemctl compatibility (output is never paged)\n"
               "  -l, --full    show UUIDs in list\n"
               "  --all         last-run: every run kept, not only the last of each kind\n"
               "  --defaults=debian|upstream  import-libvirt-guests: whose libvirt-guests.sh\n"
               "                reads FILE (default: upstream under /etc/sysconfig, else Debian)\n"
               "  --version, -h/--help\n");
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {"no-legend", no_argument, NULL, 'L'},
                {"no-pager", no_argument, NULL, 'P'},
                {"full", no_argument, NULL, 'l'},
                {"defaults", required_argument, NULL, 'D'},
                {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},
                {"takeover", no_argument, NULL, 'T'},
                {"hold", no_argument, NULL, 'H'},
                {"all", no_argument, NULL, 'a'},
                {},
        };
        g_autoptr(sd_bus) bus = NULL;
        const char *cmd;
        int c;

        setlocale(LC_ALL, "");
        while ((c = getopt_long(argc, argv, "hl", options, NULL)) >= 0)
                switch (c) {
                case 'j':
                        arg_json = true;
                        break;
                case 'L':
                        arg_legend = false;
                        break;
                case 'P':
                        break;
                case 'l':
                        arg_full = true;
                        break;
                case 'D':
                        if (import_defaults_from_string(optarg) < 0)
                                return fail("--defaults=%s: expected debian or upstream", optarg), 2;
                        arg_defaults = optarg;
                        break;
                case 'T':
                        arg_takeover = true;
                        break;
                case 'H':
                        arg_hold = true;
                        break;
                case 'a':
                        arg_all = true;
                        break;
                case 'V':
                        printf("guestkeeperctl %s\n", PACKAGE_VERSION);
                        return 0;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        cmd = optind < argc ? argv[optind] : "status";
        if (g_str_equal(cmd, "import-libvirt-guests")) {
                if (argc - optind > 2)
                        return fail("import-libvirt-guests takes at most one FILE"), 2;
                return cmd_import(optind + 1 < argc ? argv[optind + 1] : NULL);
        }
        if (argc - optind > 1)
                return fail("%s takes no arguments", cmd), 2;
        if (arg_defaults)
                return fail("--defaults is for import-libvirt-guests only"), 2;
        if (arg_takeover)
                return fail("--takeover is for import-libvirt-guests only"), 2;
        if (arg_hold && !g_str_equal(cmd, "preserve"))
                return fail("--hold is for preserve only"), 2;
        if (arg_all && !g_str_equal(cmd, "last-run"))
                return fail("--all is for last-run only"), 2;
        if (!g_strv_contains((const char *const[]){"status", "list", "plan", "preserve", "restore", "reload",
                                                   "last-run", NULL},
                             cmd))
                return fail("unknown command \"%s\" (see --help)", cmd), 2;
        if (connect_bus(&bus))
                return 1;
        if (g_str_equal(cmd, "status"))
                return cmd_status(bus);
        if (g_str_equal(cmd, "list"))
                return cmd_list(bus);
        if (g_str_equal(cmd, "plan"))
                return cmd_plan(bus);
        if (g_str_equal(cmd, "preserve") && arg_hold)
                return cmd_run(bus, "PreserveGuestsWithFlags", "preserve", GK_PRESERVE_HOLD);
        if (g_str_equal(cmd, "last-run"))
                return cmd_last_run(bus);
        if (g_str_equal(cmd, "preserve"))
                return cmd_run(bus, "PreserveGuests", "preserve", 0);
        if (g_str_equal(cmd, "restore"))
                return cmd_run(bus, "RestoreGuests", "restore", 0);
        if (call(bus, "Reload", NULL))
                return 1;
        puts(arg_json ? "{\"reloaded\":true}" : "configuration reloaded");
        return 0;
}
