/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "unit-state.h"

#include <stdbool.h>
#include <glib.h>

#define SYSTEMD_NAME  "org.freedesktop.systemd1"
#define SYSTEMD_PATH  "/org/freedesktop/systemd1"
#define SYSTEMD_IFACE "org.freedesktop.systemd1.Manager"
/* Each call in flight holds a reference through its floating slot's destroy callback: when
 * the bus is freed with a call pending, the query is freed without calling back. The query does
 * not reference the bus: the bus owns the slots, so it outlives them, and a reference would keep
 * a bus closed at exit alive with its pending slots (a leak). */
typedef struct Query {
        int ref;
        bool done;
        sd_bus *bus; /* not a reference */
        char *unit;
        char *unit_file_state;
        char *active_state;
        UnitStateCallback cb;
        void *userdata;
} Query;

static void query_unref(void *p)
{
        Query *q = p;

        if (--q->ref > 0)
                return;
        g_free(q->unit);
        g_free(q->unit_file_state);
        g_free(q->active_state);
        g_free(q);
}

static void query_done(Query *q)
{
        if (q->done)
                return;
        q->done = true;
        q->cb(q->unit, q->unit_file_state, q->active_state, q->userdata);
}

static int call(Query *q, const char *path, const char *iface, const char *member,
                sd_bus_message_handler_t reply, const char *types, const char *a, const char *b)
{
        sd_bus_slot *slot = NULL;
        int r;

        r = sd_bus_call_method_async(q->bus, &slot, SYSTEMD_NAME, path, iface, member, reply, q, types, a,
                                     b);
        if (r < 0)
                return r;
        q->ref++;
        (void) sd_bus_slot_set_destroy_callback(slot, query_unref);
        (void) sd_bus_slot_set_floating(slot, 1);
        sd_bus_slot_unref(slot);
        return 0;
}

static int active_state_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Query *q = userdata;
        const char *s;

        if (!sd_bus_message_is_method_error(m, NULL) && sd_bus_message_enter_container(m, 'v', "s") >= 0 &&
            sd_bus_message_read(m, "s", &s) >= 0)
                q->active_state = g_strdup(s);
        query_done(q);
        return 0;
}

static int get_unit_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Query *q = userdata;
        const char *path;

        if (sd_bus_message_is_method_error(m, "org.freedesktop.systemd1.NoSuchUnit")) {
                q->active_state = g_strdup("inactive"); /* not loaded: not running either */
                query_done(q);
                return 0;
        }
        if (sd_bus_message_is_method_error(m, NULL) || sd_bus_message_read(m, "o", &path) < 0 ||
            call(q, path, "org.freedesktop.DBus.Properties", "Get", active_state_reply, "ss",
                 "org.freedesktop.systemd1.Unit", "ActiveState") < 0)
                query_done(q);
        return 0;
}

static int file_state_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Query *q = userdata;
        const char *s;

        if (sd_bus_message_is_method_error(m, NULL) || sd_bus_message_read(m, "s", &s) < 0) {
                query_done(q); /* no systemd to ask */
                return 0;
        }
        q->unit_file_state = g_strdup(s);
        if (call(q, SYSTEMD_PATH, SYSTEMD_IFACE, "GetUnit", get_unit_reply, "s", q->unit, NULL) < 0)
                query_done(q);
        return 0;
}

int unit_state_query(sd_bus *bus, const char *unit, UnitStateCallback cb, void *userdata)
{
        Query *q = g_new0(Query, 1);
        int r;

        q->ref = 1;
        q->bus = bus;
        q->unit = g_strdup(unit);
        q->cb = cb;
        q->userdata = userdata;
        r = call(q, SYSTEMD_PATH, SYSTEMD_IFACE, "GetUnitFileState", file_state_reply, "s", unit, NULL);
        query_unref(q);
        return r;
}

typedef struct TargetQuery {
        ShutdownTargetCallback cb;
        void *userdata;
} TargetQuery;

static int list_jobs_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        static const char *const targets[] = {"poweroff.target", "reboot.target",      "halt.target",
                                              "kexec.target",    "soft-reboot.target", NULL};
        TargetQuery *q = userdata;
        const char *unit, *type, *found = NULL;

        if (!sd_bus_message_is_method_error(m, NULL) &&
            sd_bus_message_enter_container(m, 'a', "(usssoo)") > 0)
                while (!found &&
                       sd_bus_message_read(m, "(usssoo)", NULL, &unit, &type, NULL, NULL, NULL) > 0)
                        if (g_str_equal(type, "start") && g_strv_contains(targets, unit))
                                found = unit;
        q->cb(found, q->userdata);
        return 0;
}

int unit_state_query_shutdown_target(sd_bus *bus, ShutdownTargetCallback cb, void *userdata)
{
        TargetQuery *q = g_new0(TargetQuery, 1);
        sd_bus_slot *slot = NULL;
        int r;

        q->cb = cb;
        q->userdata = userdata;
        r = sd_bus_call_method_async(bus, &slot, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_IFACE, "ListJobs",
                                     list_jobs_reply, q, NULL);
        if (r < 0) {
                g_free(q);
                return r;
        }
        (void) sd_bus_slot_set_destroy_callback(slot, g_free);
        (void) sd_bus_slot_set_floating(slot, 1);
        sd_bus_slot_unref(slot);
        return 0;
}
