/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* guestkeeperctl last-run: the last runs, as LastRuns() keeps them. */
#include "gk-build-config.h"

#include <stdio.h>

#include "ctl.h"
#include "util.h"

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

static void json_seconds(JsonBuilder *b, const char *key, guint64 usec)
{
        json_add_double(b, key, (double) usec / 1e6);
}

/* "web1  saved  1.52 s  512.0 MiB written", then one line per step. */
static void print_run_guest(const GuestRowT *g, int name_width)
{
        g_autofree char *took = g->steps->len ? format_usec(g->duration) : g_strdup("-");
        g_autofree char *bytes =
                g->bytes >= 0 ? g_format_size_full((guint64) g->bytes, G_FORMAT_SIZE_IEC_UNITS) : NULL;

        bool bad = g_str_equal(g->outcome, "failed");

        printf("    %-*s  %s%-10s%s %9s%s%s%s\n", name_width, g->name, bad ? ansi_red() : "",
               *g->outcome ? g->outcome : "untouched", bad ? ansi_normal() : "", took, bytes ? "  " : "",
               bytes ?: "", bytes ? " written" : "");
        for (guint k = 0; k < g->steps->len; k++) {
                const StepRow *s = &g_array_index(g->steps, StepRow, k);
                g_autofree char *at = format_usec(s->start), *len = format_usec(s->duration);

                printf("      %-9s +%-9s %9s%s%s%s%s\n", s->kind, at, len, *s->error ? ansi_yellow() : "",
                       *s->error ? "  failed: " : "", s->error, *s->error ? ansi_normal() : "");
        }
        /* The guest's own error, when no step holds it (a guest never started). */
        if (*g->error && g_str_equal(g->outcome, "failed") &&
            (g->steps->len == 0 ||
             !g_str_equal(g_array_index(g->steps, StepRow, g->steps->len - 1).error, g->error)))
                printf("      %serror: %s%s\n", ansi_red(), g->error, ansi_normal());
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
static int read_run(sd_bus_message *reply, JsonBuilder *json, bool first)
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

                json_builder_begin_object(json);
                json_add_string(json, "id", id);
                json_add_string(json, "kind", kind);
                json_add_string(json, "reason", reason);
                json_add_string(json, "requested_by", by);
                json_add_string(json, "started", s);
                json_add_string(json, "finished", f);
                json_seconds(json, "duration", duration);
                json_add_bool(json, "cancelled", cancelled);
                json_add_int(json, "total", total);
                json_add_int(json, "done", done);
                json_add_int(json, "failed", failed);
                json_add_strv(json, "unreachable", unreachable, -1);
                json_builder_set_member_name(json, "guests");
                json_builder_begin_array(json);
                for (guint i = 0; i < guests->len; i++) {
                        const GuestRowT *g = guests->pdata[i];

                        json_builder_begin_object(json);
                        json_add_string(json, "uri", g->uri);
                        json_add_string(json, "uuid", g->uuid);
                        json_add_string(json, "name", g->name);
                        json_add_string(json, "outcome", g->outcome);
                        json_seconds(json, "duration", g->duration);
                        json_builder_set_member_name(json, "bytes");
                        if (g->bytes >= 0)
                                json_builder_add_int_value(json, g->bytes);
                        else
                                json_builder_add_null_value(json);
                        json_add_optional_string(json, "error", g->error);
                        json_builder_set_member_name(json, "steps");
                        json_builder_begin_array(json);
                        for (guint k = 0; k < g->steps->len; k++) {
                                const StepRow *st = &g_array_index(g->steps, StepRow, k);

                                json_builder_begin_object(json);
                                json_add_string(json, "step", st->kind);
                                json_seconds(json, "start", st->start);
                                json_seconds(json, "duration", st->duration);
                                json_add_optional_string(json, "error", st->error);
                                json_builder_end_object(json);
                        }
                        json_builder_end_array(json);
                        json_builder_end_object(json);
                }
                json_builder_end_array(json);
                json_builder_end_object(json);
                return 1;
        }

        {
                g_autofree char *s = wall_text(started, false), *f = wall_text(finished, false);
                g_autofree char *took = format_usec(duration);

                printf("%s%s%s%s %s run %s%s%s%s\n", first ? "" : "\n", failed ? ansi_red() : "",
                       failed ? "×" : "●", failed ? ansi_normal() : "", kind, id,
                       cancelled ? ansi_yellow() : "", cancelled ? " (cancelled)" : "",
                       cancelled ? ansi_normal() : "");
                printf("     Reason: %s\n", reason);
                printf("   Asked by: %s\n", by);
                printf("    Started: %s\n", s);
                printf("   Finished: %s; took %s\n", f, took);
                printf("     Guests: %u: %u done, %s%u failed%s\n", total, done, failed ? ansi_red() : "",
                       failed, failed ? ansi_normal() : "");
                for (char **u = unreachable; u && *u; u++)
                        printf("%s%s%s %s\n", ansi_red(), u == unreachable ? "UNREACHABLE:" : "            ",
                               ansi_normal(), *u);
                printf("    Journal: journalctl GUESTKEEPER_RUN_ID=%s\n", id);
                if (guests->len > 0)
                        printf("\n");
                for (guint i = 0; i < guests->len; i++)
                        print_run_guest(guests->pdata[i], name_width);
        }
        return 1;
}

int cmd_last_run(sd_bus *bus)
{
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(JsonBuilder) json = arg_json ? json_builder_new() : NULL;
        unsigned n = 0;
        int r;

        r = sd_bus_call_method(bus, NAME, PATH, IFACE, "LastRuns", &e, &reply, "b", (int) arg_all);
        if (json)
                json_builder_begin_array(json);
        if (r < 0)
                return fail("LastRuns: %s", e.message ?: g_strerror(-r));
        r = sd_bus_message_enter_container(reply, 'a', "(sssstttbuuuasa(sssstxsa(stts)))");
        while (r >= 0 && (r = read_run(reply, json, n == 0)) > 0)
                n++;
        if (r < 0)
                return fail("cannot parse LastRuns(): %s", g_strerror(-r));
        if (json) {
                json_builder_end_array(json);
                json_print(json);
        } else if (n == 0)
                printf("No run kept yet.\n");
        return 0;
}
