/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "logind.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <glib.h>

#include "bus-util.h"
#include "macro.h"

#define LOGIND_NAME  "org.freedesktop.login1"
#define LOGIND_PATH  "/org/freedesktop/login1"
#define LOGIND_IFACE "org.freedesktop.login1.Manager"

/* A shutdown-state query must answer fast: SIGTERM outside a shutdown exits "at once". */
#define QUERY_TIMEOUT_USEC (2 * 1000 * 1000ULL)

struct Logind {
        sd_bus *bus;
        LogindCallbacks cb;
        void *userdata;
        sd_bus_slot *match_pfs;
        sd_bus_slot *match_pfs_md;
        sd_bus_slot *match_owner;
        sd_bus_slot *inhibit_call;
        int fd;
        bool want;
        bool settled;
};

static void set_held(Logind *l, int fd)
{
        bool was = l->fd >= 0;

        if (l->fd >= 0)
                close(l->fd);
        l->fd = fd;
        if (was != (fd >= 0) && l->cb.inhibitor_changed)
                l->cb.inhibitor_changed(l, fd >= 0, l->userdata);
}

static void settle(Logind *l, const char *error)
{
        l->settled = true;
        if (l->cb.settled)
                l->cb.settled(l, error, l->userdata);
}

static int inhibit_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Logind *l = userdata;
        int fd = -1, r;

        l->inhibit_call = sd_bus_slot_unref(l->inhibit_call);
        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);
                settle(l, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_read(m, "h", &fd);
        if (r >= 0)
                fd = fcntl(fd, F_DUPFD_CLOEXEC, 3); /* the message owns its fd */
        if (r < 0 || fd < 0) {
                settle(l, "Inhibit() returned no file descriptor");
                return 0;
        }
        if (!l->want) {
                close(fd); /* released while the call was in flight */
                settle(l, NULL);
                return 0;
        }
        set_held(l, fd);
        settle(l, NULL);
        return 0;
}

static void take(Logind *l)
{
        int r;

        if (l->fd >= 0 || l->inhibit_call)
                return;
        r = sd_bus_call_method_async(l->bus, &l->inhibit_call, LOGIND_NAME, LOGIND_PATH, LOGIND_IFACE,
                                     "Inhibit", inhibit_reply, l, "ssss", "shutdown", "guestkeeper",
                                     "Saving running virtual machines", "delay");
        if (r < 0)
                settle(l, g_strerror(-r));
}

void logind_want_inhibitor(Logind *l, bool want)
{
        l->want = want;
        if (want)
                take(l);
        else {
                l->inhibit_call = sd_bus_slot_unref(l->inhibit_call);
                set_held(l, -1);
        }
}

bool logind_inhibitor_held(Logind *l)
{
        return l->fd >= 0;
}

bool logind_settled(Logind *l)
{
        return l->settled;
}

static int pfs_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Logind *l = userdata;
        int start = 0;

        /* PrepareForShutdownWithMetadata carries a{sv} after the boolean ("type": "poweroff",
         * "power-off", "reboot", "kexec", ... — every type means the guests must be kept). */
        if (sd_bus_message_read(m, "b", &start) < 0)
                return 0;
        if (l->cb.prepare_for_shutdown)
                l->cb.prepare_for_shutdown(l, start, l->userdata);
        return 0;
}

static int owner_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Logind *l = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
            !streq_ptr(name, LOGIND_NAME))
                return 0;
        if (*old_owner) {
                /* logind went away (or restarted): our lock went with it. */
                l->inhibit_call = sd_bus_slot_unref(l->inhibit_call);
                set_held(l, -1);
        }
        if (*new_owner && l->want)
                take(l);
        return 0;
}

int logind_new(sd_bus *bus, const LogindCallbacks *cb, void *userdata, Logind **ret)
{
        Logind *l = g_new0(Logind, 1);
        int r;

        l->bus = sd_bus_ref(bus);
        l->cb = *cb;
        l->userdata = userdata;
        l->fd = -1;

        r = sd_bus_match_signal_async(bus, &l->match_pfs, LOGIND_NAME, LOGIND_PATH, LOGIND_IFACE,
                                      "PrepareForShutdown", pfs_signal, NULL, l);
        if (r >= 0)
                r = sd_bus_match_signal_async(bus, &l->match_pfs_md, LOGIND_NAME, LOGIND_PATH, LOGIND_IFACE,
                                              "PrepareForShutdownWithMetadata", pfs_signal, NULL, l);
        if (r >= 0)
                r = sd_bus_add_match_async(bus, &l->match_owner,
                                           "type='signal',sender='org.freedesktop.DBus',"
                                           "path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',"
                                           "member='NameOwnerChanged',arg0='" LOGIND_NAME "'",
                                           owner_signal, NULL, l);
        if (r < 0) {
                logind_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

Logind *logind_free(Logind *l)
{
        if (!l)
                return NULL;
        sd_bus_slot_unref(l->match_pfs);
        sd_bus_slot_unref(l->match_pfs_md);
        sd_bus_slot_unref(l->match_owner);
        sd_bus_slot_unref(l->inhibit_call);
        if (l->fd >= 0)
                close(l->fd);
        sd_bus_unref(l->bus);
        g_free(l);
        return NULL;
}

typedef struct Query {
        Logind *l;
        LogindShutdownQuery cb;
        void *userdata;
        unsigned pending;
        bool preparing;
        char *system_state;
} Query;

static void query_step(Query *q)
{
        g_autofree char *why = NULL;
        bool down;

        if (--q->pending > 0)
                return;
        down = q->preparing || streq_ptr(q->system_state, "stopping");
        why = g_strdup_printf("logind PreparingForShutdown=%s, systemd SystemState=%s",
                              q->preparing ? "yes" : "no", q->system_state ?: "unknown");
        q->cb(down, why, q->userdata);
        g_free(q->system_state);
        g_free(q);
}

static int preparing_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Query *q = userdata;
        int b = 0;

        if (!sd_bus_message_is_method_error(m, NULL) && sd_bus_message_enter_container(m, 'v', "b") >= 0 &&
            sd_bus_message_read(m, "b", &b) >= 0)
                q->preparing = b;
        query_step(q);
        return 0;
}

static int state_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Query *q = userdata;
        const char *s = NULL;

        if (!sd_bus_message_is_method_error(m, NULL) && sd_bus_message_enter_container(m, 'v', "s") >= 0 &&
            sd_bus_message_read(m, "s", &s) >= 0)
                q->system_state = g_strdup(s);
        query_step(q);
        return 0;
}

static int get_property_async(sd_bus *bus, const char *dest, const char *path, const char *iface,
                              const char *prop, sd_bus_message_handler_t cb, void *userdata)
{
        g_autoptr(sd_bus_message) m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, dest, path, "org.freedesktop.DBus.Properties", "Get");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", iface, prop);
        if (r >= 0)
                r = sd_bus_call_async(bus, NULL, m, cb, userdata, QUERY_TIMEOUT_USEC);
        return r;
}

void logind_query_shutting_down(Logind *l, LogindShutdownQuery cb, void *userdata)
{
        Query *q = g_new0(Query, 1);

        q->l = l;
        q->cb = cb;
        q->userdata = userdata;
        q->pending = 3; /* two replies + this function */
        if (get_property_async(l->bus, LOGIND_NAME, LOGIND_PATH, LOGIND_IFACE, "PreparingForShutdown",
                               preparing_reply, q) < 0)
                q->pending--;
        if (get_property_async(l->bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "SystemState", state_reply, q) < 0)
                q->pending--;
        query_step(q);
}
