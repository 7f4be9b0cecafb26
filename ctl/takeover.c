/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* guestkeeperctl import-libvirt-guests --takeover: the switch from libvirt-guests.service to
 * guestkeeper.service on a running host, without touching a guest (guestkeeperctl(1)).
 *
 * libvirt-guests.service is a oneshot with RemainAfterExit=yes whose ExecStop is
 * "libvirt-guests.sh stop": stopping it (systemctl stop/disable --now, or a Conflicts= from
 * another unit) shuts down or suspends every running guest. So its stop action is removed for
 * this boot first — a runtime drop-in with an empty ExecStop=, the documented way to reset a
 * list setting — and only then is it stopped and disabled. */
#include "takeover.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "bus-names.h"
#include "bus-util.h"

#define SYSTEMD_NAME  "org.freedesktop.systemd1"
#define SYSTEMD_PATH  "/org/freedesktop/systemd1"
#define SYSTEMD_IFACE "org.freedesktop.systemd1.Manager"
#define OLD_UNIT      "libvirt-guests.service"
#define OUR_UNIT      "guestkeeper.service"
#define DROPIN_DIR    "/run/systemd/system/" OLD_UNIT ".d"
#define DROPIN        DROPIN_DIR "/50-guestkeeper-takeover.conf"
/* Where libvirt-guests.sh keeps the guests its last stop suspended or shut down, until its
 * next start brings them back (ON_BOOT=start) or forgets them. */
#define LISTFILE "/var/lib/libvirt/libvirt-guests"

typedef struct Jobs {
        GHashTable *done; /* job path → result */
} Jobs;

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
        Jobs *j = userdata;
        const char *path, *unit, *result;
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) >= 0)
                g_hash_table_replace(j->done, g_strdup(path), g_strdup(result));
        return 0;
}

static int say_error(const char *what, int r, const sd_bus_error *e)
{
        fprintf(stderr, "guestkeeperctl: %s: %s\n", what, e && e->message ? e->message : g_strerror(-r));
        return r;
}

/* Runs a unit job (StartUnit, StopUnit) and waits for its end. */
static int run_job(sd_bus *bus, Jobs *jobs, const char *method, const char *unit)
{
        g_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
        g_autoptr(sd_bus_message) reply = NULL;
        g_autofree char *what = g_strdup_printf("%s %s", method, unit);
        const char *job, *result;
        int r;

        r = sd_bus_call_method(bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_IFACE, method, &e, &reply, "ss",
                               unit, "replace");
        if (r < 0 || (r = sd_bus_message_read(reply, "o", &job)) < 0)
                return say_error(what, r, &e);
        while (!(result = g_hash_table_lookup(jobs->done, job))) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return say_error(what, r, NULL);
                if (r == 0 && (r = sd_bus_wait(bus, UINT64_MAX)) < 0)
                        return say_error(what, r, NULL);
        }
        if (!g_str_equal(result, "done")) {
                fprintf(stderr, "guestkeeperctl: %s: job %s\n", what, result);
                return -EIO;
        }
        return 0;
}

static int daemon_reload(sd_bus *bus)
{
        g_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_IFACE, "Reload", &e, NULL, NULL);

        return r < 0 ? say_error("systemctl daemon-reload", r, &e) : 0;
}

static char *unit_file_state(sd_bus *bus, const char *unit)
{
        g_autoptr(sd_bus_message) reply = NULL;
        const char *s;

        if (sd_bus_call_method(bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_IFACE, "GetUnitFileState", NULL,
                               &reply, "s", unit) < 0 ||
            sd_bus_message_read(reply, "s", &s) < 0)
                return NULL;
        return g_strdup(s);
}

static char *active_state(sd_bus *bus, const char *unit)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autofree char *v = NULL;
        const char *path;

        if (sd_bus_call_method(bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_IFACE, "GetUnit", NULL, &reply, "s",
                               unit) < 0 ||
            sd_bus_message_read(reply, "o", &path) < 0)
                return g_strdup("inactive"); /* not loaded */
        if (sd_bus_get_property_string(bus, SYSTEMD_NAME, path, "org.freedesktop.systemd1.Unit",
                                       "ActiveState", NULL, &v) < 0)
                return NULL;
        return g_steal_pointer(&v);
}

static int unit_files(sd_bus *bus, const char *method, const char *unit)
{
        g_auto(sd_bus_error) e = SD_BUS_ERROR_NULL;
        g_autofree char *what = g_strdup_printf("%s %s", method, unit);
        int r;

        if (g_str_equal(method, "EnableUnitFiles"))
                r = sd_bus_call_method(bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_IFACE, method, &e, NULL,
                                       "asbb", 1, unit, false, true);
        else
                r = sd_bus_call_method(bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_IFACE, method, &e, NULL,
                                       "asb", 1, unit, false);
        return r < 0 ? say_error(what, r, &e) : 0;
}

static bool listfile_has_guests(void)
{
        g_autofree char *text = NULL;

        return g_file_get_contents(LISTFILE, &text, NULL, NULL) && *g_strstrip(text);
}

int takeover_libvirt_guests(const char *config, const char *config_path)
{
        g_autoptr(sd_bus) bus = NULL;
        g_autoptr(sd_bus_slot) slot = NULL;
        g_autoptr(GHashTable) done = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        g_autofree char *file_state = NULL, *state = NULL;
        Jobs jobs = {.done = done};
        bool active;
        int r;

        if (geteuid() != 0) {
                fprintf(stderr, "guestkeeperctl: --takeover changes system units: run it as root\n");
                return -EPERM;
        }
        r = sd_bus_open_system(&bus);
        if (r < 0)
                return say_error("cannot connect to the system bus", r, NULL);
        r = sd_bus_match_signal(bus, &slot, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_IFACE, "JobRemoved",
                                on_job_removed, &jobs);
        if (r >= 0)
                r = sd_bus_call_method(bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_IFACE, "Subscribe", NULL,
                                       NULL, NULL);
        if (r < 0)
                return say_error("cannot follow systemd's jobs", r, NULL);

        /* 1. guestkeeper's configuration, as libvirt-guests was configured. */
        if (config && !g_file_test(config_path, G_FILE_TEST_EXISTS)) {
                g_autofree char *dir = g_path_get_dirname(config_path);
                g_autoptr(GError) error = NULL;

                if (g_mkdir_with_parents(dir, 0755) < 0 ||
                    !g_file_set_contents(config_path, config, -1, &error)) {
                        fprintf(stderr, "guestkeeperctl: cannot write %s: %s\n", config_path,
                                error ? error->message : g_strerror(errno));
                        return -EIO;
                }
                printf("Wrote %s from libvirt-guests' configuration.\n", config_path);
        } else if (config)
                printf("Kept %s (it exists already).\n", config_path);

        /* 2. guestkeeper first: at no moment is neither of the two armed. */
        r = unit_files(bus, "EnableUnitFiles", OUR_UNIT);
        if (r >= 0)
                r = daemon_reload(bus);
        if (r >= 0)
                r = run_job(bus, &jobs, "StartUnit", OUR_UNIT);
        if (r < 0)
                return r;
        printf("Enabled and started %s.\n", OUR_UNIT);

        file_state = unit_file_state(bus, OLD_UNIT);
        state = active_state(bus, OLD_UNIT);
        if (!file_state || g_str_equal(file_state, "not-found")) {
                printf("%s is not installed: nothing to take over.\n", OLD_UNIT);
                return 0;
        }
        active = g_strv_contains((const char *const[]){"active", "activating", "reloading", NULL},
                                 state ?: "");

        /* 3. Guests libvirt-guests stopped at the last shutdown and has not brought back yet:
         * let its own start do what it was configured to (ON_BOOT=start resumes them). */
        if (!active && listfile_has_guests()) {
                printf("%s lists guests libvirt-guests stopped at the last shutdown: starting it once so "
                       "that it brings them back as configured (ON_BOOT).\n",
                       LISTFILE);
                r = run_job(bus, &jobs, "StartUnit", OLD_UNIT);
                if (r < 0)
                        return r;
                active = true;
        }

        /* 4. Its stop, without its stop action; then disabled. */
        if (active) {
                g_autoptr(GError) error = NULL;

                if (g_mkdir_with_parents(DROPIN_DIR, 0755) < 0 ||
                    !g_file_set_contents(DROPIN,
                                         "# guestkeeperctl import-libvirt-guests --takeover: stop without "
                                         "touching the guests\n[Service]\nExecStop=\n",
                                         -1, &error)) {
                        fprintf(stderr, "guestkeeperctl: cannot write %s: %s\n", DROPIN,
                                error ? error->message : g_strerror(errno));
                        return -EIO;
                }
                r = daemon_reload(bus);
                if (r >= 0)
                        r = run_job(bus, &jobs, "StopUnit", OLD_UNIT);
                (void) g_unlink(DROPIN);
                (void) g_rmdir(DROPIN_DIR);
                if (r < 0)
                        return r;
                printf("Stopped %s without its stop action: no guest was touched.\n", OLD_UNIT);
        }
        r = unit_files(bus, "DisableUnitFiles", OLD_UNIT);
        if (r >= 0)
                r = daemon_reload(bus);
        if (r < 0)
                return r;
        printf("Disabled %s.\n", OLD_UNIT);

        /* 5. guestkeeperd re-reads its configuration and sees the conflict gone. */
        r = sd_bus_call_method(bus, GK_BUS_NAME, GK_OBJECT_PATH, GK_INTERFACE, "Reload", NULL, NULL, NULL);
        if (r < 0)
                return say_error("Reload of guestkeeperd", r, NULL);
        printf("guestkeeper now keeps the guests at shutdown.\n");
        return 0;
}
