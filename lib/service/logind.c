/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "logind.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <glib.h>

#include "bus-util.h"
#include "log.h"
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
        bool sends_metadata; /* this logind sends PrepareForShutdownWithMetadata */
        char *shutdown_type; /* its "type", from the last PrepareForShutdownWithMetadata(true) */
        sd_bus *private_bus; /* systemd's private socket, for a SIGTERM the bus could not explain */
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

/* The "type" of PrepareForShutdownWithMetadata's a{sv}, if it has one. */
static void read_shutdown_type(Logind *l, sd_bus_message *m)
{
        const char *key, *type;

        g_clear_pointer(&l->shutdown_type, g_free);
        if (sd_bus_message_enter_container(m, 'a', "{sv}") <= 0)
                return;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                if (sd_bus_message_read(m, "s", &key) < 0)
                        return;
                if (streq_ptr(key, "type") && sd_bus_message_read(m, "v", "s", &type) >= 0)
                        l->shutdown_type = g_strdup(type);
                else if (sd_bus_message_skip(m, "v") < 0)
                        return;
                if (sd_bus_message_exit_container(m) < 0)
                        return;
        }
}

const char *logind_shutdown_type(Logind *l)
{
        return l->shutdown_type;
}

static int pfs_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Logind *l = userdata;
        int start = 0;

        /* PrepareForShutdownWithMetadata carries a{sv} after the boolean ("type": "poweroff",
         * "power-off", "reboot", "kexec", ... — every type means the guests must be kept).
         * systemd >= 255 sends it first and then the plain signal for the same event: once this
         * logind has shown it sends the new one, the plain one is a duplicate. */
        if (streq_ptr(sd_bus_message_get_member(m), "PrepareForShutdownWithMetadata"))
                l->sends_metadata = true;
        else if (l->sends_metadata)
                return 0;
        if (sd_bus_message_read(m, "b", &start) < 0)
                return 0;
        if (l->sends_metadata && start)
                read_shutdown_type(l, m);
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
        l->sends_metadata = false; /* a new logind, perhaps an older one */
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
        if (l->private_bus)
                sd_bus_flush_close_unref(l->private_bus);
        if (l->fd >= 0)
                close(l->fd);
        sd_bus_unref(l->bus);
        g_free(l->shutdown_type);
        g_free(l);
        return NULL;
}

typedef struct Query {
        Logind *l;
        LogindShutdownQuery cb;
        void *userdata;
        unsigned pending;
        bool preparing;
        bool answered; /* logind or systemd answered over the system bus */
        bool fallback; /* asking systemd over its private socket */
        char *system_state;
} Query;

static int state_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);
static int get_property_async(sd_bus *bus, const char *dest, const char *path, const char *iface,
                              const char *prop, sd_bus_message_handler_t cb, void *userdata);

/* systemctl's own way when the bus is gone: systemd's private socket (root only). Under the
 * testing aid GUESTKEEPER_ROOT, the socket is looked for below that directory. */
static int ask_private_socket(Query *q)
{
        Logind *l = q->l;
        g_autofree char *path =
                g_build_filename(g_getenv("GUESTKEEPER_ROOT") ?: "/", "run/systemd/private", NULL);
        g_autofree char *address = g_strdup_printf("unix:path=%s", path);
        int r;

        if (l->private_bus)
                l->private_bus = sd_bus_flush_close_unref(l->private_bus);
        r = sd_bus_new(&l->private_bus);
        if (r >= 0)
                r = sd_bus_set_address(l->private_bus, address);
        if (r >= 0)
                r = sd_bus_start(l->private_bus);
        if (r >= 0)
                r = sd_bus_attach_event(l->private_bus, sd_bus_get_event(l->bus), SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = get_property_async(l->private_bus, NULL, "/org/freedesktop/systemd1",
                                       "org.freedesktop.systemd1.Manager", "SystemState", state_reply, q);
        if (r < 0)
                log_debug("Cannot ask systemd's private socket %s: %s", path, g_strerror(-r));
        return r;
}

static void query_step(Query *q)
{
        g_autofree char *why = NULL;
        bool down;

        if (--q->pending > 0)
                return;
        if (!q->answered && !q->fallback) {
                q->fallback = true;
                q->pending = 1;
                if (ask_private_socket(q) >= 0)
                        return;
                q->pending = 0;
        }
        if (!q->answered && !q->system_state) {
                /* Nobody could say. Preserving by mistake costs a save and a resume; exiting by
                 * mistake while the host goes down costs every guest (guestkeeperd(8)). */
                down = true;
                why = g_strdup("neither logind nor systemd answered (system bus and systemd's private "
                               "socket); assuming the host is going down");
        } else {
                down = q->preparing || streq_ptr(q->system_state, "stopping");
                why = g_strdup_printf("logind PreparingForShutdown=%s, systemd SystemState=%s%s",
                                      q->answered ? (q->preparing ? "yes" : "no") : "unknown",
                                      q->system_state ?: "unknown",
                                      q->fallback ? " (asked on systemd's private socket)" : "");
        }
        q->cb(down, why, q->userdata);
        g_free(q->system_state);
        g_free(q);
}

static int preparing_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Query *q = userdata;
        int b = 0;

        if (!sd_bus_message_is_method_error(m, NULL) && sd_bus_message_enter_container(m, 'v', "b") >= 0 &&
            sd_bus_message_read(m, "b", &b) >= 0) {
                q->preparing = b;
                q->answered = true;
        }
        query_step(q);
        return 0;
}

static int state_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Query *q = userdata;
        const char *s = NULL;

        if (!sd_bus_message_is_method_error(m, NULL) && sd_bus_message_enter_container(m, 'v', "s") >= 0 &&
            sd_bus_message_read(m, "s", &s) >= 0) {
                q->system_state = g_strdup(s);
                q->answered = q->answered || !q->fallback;
        } else if (q->fallback)
                log_debug("systemd's private socket: %s",
                          sd_bus_message_get_error(m) ? sd_bus_message_get_error(m)->message : "no state");
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
