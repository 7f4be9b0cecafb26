/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* guestkeeperd: keeps libvirt guests alive across host shutdowns (docs/guestkeeperd.8.rst).
 * Arguments, configuration, signals and the main loop; everything else is lib/service/manager.c. */
#include "gk-build-config.h"

#include <getopt.h>
#include <locale.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <glib-unix.h>

#include "config.h"
#include "log.h"
#include "manager.h"

static GMainLoop *loop;
static int exit_code;

static void help(void)
{
        printf("Usage: guestkeeperd [OPTION...]\n"
               "Keeps libvirt guests alive across host shutdowns: saves them when the host goes\n"
               "down, brings them back when it comes up.\n\n"
               "  -c, --config FILE      read FILE (and FILE.d/*.conf) instead of %s\n"
               "  -l, --log-level LEVEL  err, warning, notice, info (default), debug\n"
               "      --version          print the version and exit\n"
               "  -h, --help             show this help and exit\n",
               CONFIG_DEFAULT_PATH);
}

static void on_exit_cb(Manager *m, int code, void *userdata)
{
        exit_code = code;
        g_main_loop_quit(loop);
}

static gboolean on_sigterm(gpointer p)
{
        manager_terminate(p);
        return G_SOURCE_CONTINUE;
}

static gboolean on_sighup(gpointer p)
{
        g_autofree char *error = NULL;

        (void) manager_reload(p, &error);
        return G_SOURCE_CONTINUE;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"log-level", required_argument, NULL, 'l'},
                {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *error = NULL, *state_dir = NULL;
        const char *config_path = CONFIG_DEFAULT_PATH;
        bool config_explicit = false;
        g_autoptr(Manager) m = NULL;
        Config *config = NULL;
        int c, r;

        setlocale(LC_ALL, "");
        /* A write to a libvirtd that just died raises SIGPIPE in a worker; libvirt wants its
         * clients to ignore it (systemd's IgnoreSIGPIPE=yes does it for the unit, but not when
         * run by hand). */
        signal(SIGPIPE, SIG_IGN);
        log_setup();
        while ((c = getopt_long(argc, argv, "c:l:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        config_path = optarg;
                        config_explicit = true;
                        break;
                case 'l':
                        r = log_level_from_string(optarg);
                        if (r < 0) {
                                fprintf(stderr,
                                        "guestkeeperd: --log-level: \"%s\" is not one of err, warning, "
                                        "notice, info, debug\n",
                                        optarg);
                                return 1;
                        }
                        log_set_max_level(r);
                        break;
                case 'V':
                        printf("guestkeeperd %s\n", PACKAGE_VERSION);
                        return 0;
                case 'h':
                        help();
                        return 0;
                default:
                        return 1;
                }
        if (optind < argc) {
                fprintf(stderr, "guestkeeperd: unexpected argument \"%s\"\n", argv[optind]);
                return 1;
        }

        /* A bad configuration stops us before anything is touched. */
        if (config_load(config_path, config_explicit, &config, warnings, &error) < 0) {
                log_error("%s", error);
                return 1;
        }
        for (guint i = 0; i < warnings->len; i++)
                log_warning("%s", (char *) warnings->pdata[i]);

        /* systemd passes colon-separated lists; we use the first directory. */
        state_dir = g_strdup(g_getenv("STATE_DIRECTORY") ?: LOCALSTATEDIR "/lib/guestkeeper");
        if (strchr(state_dir, ':'))
                *strchr(state_dir, ':') = '\0';

        r = manager_new(&(ManagerOptions){.config_path = config_path,
                                          .config_explicit = config_explicit,
                                          .state_dir = state_dir},
                        config, &m);
        if (r < 0)
                return 1;

        loop = g_main_loop_new(NULL, FALSE);
        m->on_exit = on_exit_cb;
        g_unix_signal_add(SIGTERM, on_sigterm, m);
        g_unix_signal_add(SIGINT, on_sigterm, m);
        g_unix_signal_add(SIGHUP, on_sighup, m);

        if (manager_connect_bus(m, &error) < 0) {
                log_error("%s", error);
                return 1;
        }
        manager_start(m);
        g_main_loop_run(loop);
        g_main_loop_unref(loop);
        log_info("Exiting with status %d", exit_code);
        return exit_code;
}
