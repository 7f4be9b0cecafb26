/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* gk-run: runs the preservation engine once, in the foreground, printing what it does.
 * Not installed: the demo and manual experiments use it. The daemon (guestkeeperd) drives
 * the same engine from logind's PrepareForShutdown.
 *
 *   gk-run [--config FILE] [--state-dir DIR] [--fault NAME=KIND]... preserve|restore|cycle
 *
 * "cycle" preserves, shows the record, then restores on the same connections: libvirt's
 * test:///<file> driver keeps its guests only inside this process. */
#include "gk-build-config.h"

#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "engine.h"
#include "hypervisor-faults.h"
#include "util.h"

static guint64 t0;
static bool finished;
static bool color;

static const char *col(const char *code)
{
        return color ? code : "";
}

static void stamp(void)
{
        printf("%s[%6.2fs]%s ", col("\033[2m"), (double) (now_usec() - t0) / USEC_PER_SEC, col("\033[0m"));
}

static void on_changed(Engine *e, const EngineGuest *g, void *ud)
{
        const char *o = outcome_to_string(g->outcome);

        if (g->outcome == OUTCOME_SAVING && g->fraction > 0)
                return; /* progress ticks: the step line was printed already */
        stamp();
        printf("%-10s %s%s%s%s%s\n", g->name, g->finished ? col("\033[1m") : "", *o ? o : "untouched",
               g->finished ? col("\033[0m") : "", g->finished && g->error ? "  — " : "",
               g->finished && g->error ? g->error : "");
}

static void on_message(Engine *e, EngineLevel level, EngineTopic topic, const EngineGuest *g,
                       const char *uri, const char *text, void *ud)
{
        if (level > ENGINE_LEVEL_NOTICE)
                return;
        stamp();
        printf("%s%s%s\n", level <= ENGINE_LEVEL_ERR ? col("\033[31m") : col("\033[33m"), text,
               col("\033[0m"));
}

static void on_finished(Engine *e, void *ud)
{
        finished = true;
}

static const EngineCallbacks callbacks = {
        .guest_changed = on_changed,
        .message = on_message,
        .finished = on_finished,
};

static void run(RunKind kind, Config *c, GPtrArray *hvs, Workers *w, Record *rec, const char *save_dir)
{
        EngineOptions o = {
                .kind = kind,
                .config = c,
                .save_dir = save_dir,
                .connect_retry_usec = 2 * USEC_PER_SEC,
                .progress_interval_usec = 500 * USEC_PER_MSEC,
        };
        g_autoptr(Engine) e = engine_new(&o, (Hypervisor **) hvs->pdata, hvs->len, w, rec, &callbacks, NULL);
        unsigned total, done, failed;

        t0 = now_usec();
        finished = false;
        printf("%s== %s run ==%s\n", col("\033[1m"), kind == RUN_PRESERVE ? "preserve" : "restore",
               col("\033[0m"));
        engine_start(e);
        while (!finished)
                g_main_context_iteration(NULL, TRUE);
        engine_counts(e, &total, &done, &failed);
        printf("%s== %s finished in %.2fs: %u guests, %u done, %u failed ==%s\n\n", col("\033[1m"),
               kind == RUN_PRESERVE ? "preserve" : "restore", (double) (now_usec() - t0) / USEC_PER_SEC,
               total, done, failed, col("\033[0m"));
}

/* libvirt's own view (a tool may block its main thread). */
static void print_guests(GPtrArray *hvs, const char *when)
{
        printf("%s== guests %s, as libvirt sees them ==%s\n", col("\033[1m"), when, col("\033[0m"));
        for (guint i = 0; i < hvs->len; i++) {
                Hypervisor *h = hvs->pdata[i];
                g_autoptr(GPtrArray) list = NULL;
                g_autofree char *err = NULL;

                if (h->ops->list(h, true, &list, &err) < 0) {
                        printf("  %s: unreachable: %s\n", h->uri, err);
                        continue;
                }
                for (guint k = 0; k < list->len; k++) {
                        GuestInfo *g = list->pdata[k];
                        printf("  %-10s %-10s %-8s %s\n", g->name,
                               g->persistent ? "persistent" : "transient", guest_state_to_string(g->state),
                               h->uri);
                }
        }
        printf("\n");
}

static void print_record(const char *path)
{
        g_autofree char *text = NULL;

        printf("%s== the record, %s ==%s\n", col("\033[1m"), path, col("\033[0m"));
        if (!g_file_get_contents(path, &text, NULL, NULL)) {
                printf("(none)\n\n");
                return;
        }
        /* The transient guests' XML is long: show its first line only. */
        for (char **l = g_strsplit(text, "\n", -1), **p = l; *p; p++) {
                if (g_str_has_prefix(*p, "XML="))
                        printf("XML=%.60s…\n", *p + 4);
                else if (**p)
                        printf("%s\n", *p);
                if (!p[1])
                        g_strfreev(l);
        }
        printf("\n");
}

int main(int argc, char **argv)
{
        g_autofree char *config_path = NULL, *state_dir = NULL;
        g_auto(GStrv) faults = NULL;
        g_autoptr(GOptionContext) ctx = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(Config) c = NULL;
        g_autoptr(Record) rec = NULL;
        g_autoptr(GPtrArray) hvs = g_ptr_array_new_with_free_func(hypervisor_destroy);
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *err = NULL, *problem = NULL, *record_path = NULL, *save_dir = NULL;
        g_autoptr(Workers) w = NULL;
        const char *mode;
        GOptionEntry entries[] = {
                {"config", 0, 0, G_OPTION_ARG_FILENAME, &config_path, "Configuration file", "FILE"},
                {"state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "Where the record lives", "DIR"},
                {"fault", 0, 0, G_OPTION_ARG_STRING_ARRAY, &faults,
                 "Inject a fault: NAME=save-fails|ignore-shutdown|destroy-fails|start-fails", "NAME=KIND"},
                {NULL},
        };

        setlocale(LC_ALL, "");
        signal(SIGPIPE, SIG_IGN); /* libvirt's clients must ignore it (see daemon/main.c) */
        color = isatty(STDOUT_FILENO) && !g_getenv("NO_COLOR");
        ctx = g_option_context_new("preserve|restore|cycle");
        g_option_context_add_main_entries(ctx, entries, NULL);
        if (!g_option_context_parse(ctx, &argc, &argv, &error) || argc != 2) {
                fprintf(stderr, "gk-run: %s\n",
                        error ? error->message : "expected one of preserve, restore, cycle");
                return 2;
        }
        mode = argv[1];
        if (!g_strv_contains((const char *const[]){"preserve", "restore", "cycle", NULL}, mode)) {
                fprintf(stderr, "gk-run: unknown mode \"%s\"\n", mode);
                return 2;
        }

        if (config_load(config_path ? config_path : CONFIG_DEFAULT_PATH, config_path != NULL, &c, warnings,
                        &err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        for (guint i = 0; i < warnings->len; i++)
                fprintf(stderr, "warning: %s\n", (char *) warnings->pdata[i]);

        if (!state_dir)
                state_dir = g_strdup(g_getenv("STATE_DIRECTORY") ?: LOCALSTATEDIR "/lib/guestkeeper");
        if (g_mkdir_with_parents(state_dir, 0700) < 0) {
                fprintf(stderr, "gk-run: cannot create %s: %s\n", state_dir, g_strerror(errno));
                return 1;
        }
        record_path = g_build_filename(state_dir, "record", NULL);
        save_dir = g_build_filename(state_dir, "save", NULL);
        (void) record_load_or_set_aside(record_path, &rec, &problem);
        if (problem)
                fprintf(stderr, "error: %s\n", problem);

        hypervisor_libvirt_global_init();
        for (char **u = c->uris; *u; u++) {
                g_autoptr(Hypervisor) real = hypervisor_libvirt_new(*u, NULL);
                Hypervisor *h = hypervisor_faults_new(real);

                for (char **f = faults; f && *f; f++) {
                        g_autofree char *why = NULL;

                        if (faults_parse(h, *f, &why) < 0) {
                                fprintf(stderr, "gk-run: --fault %s\n", why);
                                return 2;
                        }
                }
                g_ptr_array_add(hvs, h);
        }

        w = workers_new(NULL, 32);
        print_guests(hvs, "before");
        if (g_str_equal(mode, "preserve") || g_str_equal(mode, "cycle")) {
                run(RUN_PRESERVE, c, hvs, w, rec, save_dir);
                print_guests(hvs, "after the preserve run");
        }
        if (g_str_equal(mode, "cycle")) {
                print_record(record_path);
                printf("%s== host reboots (libvirt's test driver keeps state only in this process: same "
                       "connection) ==%s\n\n",
                       col("\033[1m"), col("\033[0m"));
        }
        if (g_str_equal(mode, "restore") || g_str_equal(mode, "cycle")) {
                run(RUN_RESTORE, c, hvs, w, rec, save_dir);
                print_guests(hvs, "after the restore run");
        }
        if (g_str_equal(mode, "cycle"))
                print_record(record_path);
        return 0;
}
