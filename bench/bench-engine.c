/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-engine: the engine preserving and restoring N guests of libvirt's test driver
 * (in-process, test:///<file>), against the floor: the same libvirt calls made in a plain
 * sequential loop on the same driver (virDomainManagedSave / virDomainCreate), which is
 * what libvirt itself costs. The difference, per guest, is guestkeeper's own overhead:
 * threads, scheduling, events, and the durable record writes.
 *
 *   bench-engine [N ...]        default: 10 100 1000 5000 */
#include <libvirt/libvirt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine.h"
#include "util.h"

static bool finished;

static void on_finished(Engine *e, void *ud)
{
        finished = true;
}

static char *make_node(const char *dir, unsigned n)
{
        g_autofree char *path = g_strdup_printf("%s/node-%u.xml", dir, n);
        GString *s = g_string_new("<node>\n");

        for (unsigned i = 0; i < n; i++)
                g_string_append_printf(s,
                                       "<domain type='test'><name>g%05u</name>"
                                       "<uuid>00000000-0000-4000-8000-%012u</uuid>"
                                       "<memory unit='MiB'>128</memory><os><type>hvm</type></os></domain>\n",
                                       i, i);
        g_string_append(s, "</node>\n");
        g_file_set_contents(path, s->str, -1, NULL);
        g_string_free(s, TRUE);
        return g_steal_pointer(&path);
}

/* The floor: libvirt alone, one call after the other, on a fresh driver instance. */
static void raw_cycle(const char *uri, double *ret_save, double *ret_start)
{
        virConnectPtr c = virConnectOpen(uri);
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(c, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        guint64 t;

        t = now_usec();
        for (int i = 0; i < n; i++)
                if (virDomainManagedSave(doms[i], 0) < 0)
                        abort();
        *ret_save = (double) (now_usec() - t) / USEC_PER_SEC;
        t = now_usec();
        for (int i = 0; i < n; i++)
                if (virDomainCreate(doms[i]) < 0)
                        abort();
        *ret_start = (double) (now_usec() - t) / USEC_PER_SEC;
        for (int i = 0; i < n; i++)
                virDomainFree(doms[i]);
        free(doms);
        virConnectClose(c);
}

static double engine_run(RunKind kind, Config *c, Hypervisor *hv, Workers *w, Record *rec, const char *dir,
                         unsigned expect)
{
        g_autofree char *save_dir = g_build_filename(dir, "save", NULL);
        EngineOptions o = {.kind = kind, .config = c, .save_dir = save_dir};
        EngineCallbacks cb = {.finished = on_finished};
        g_autoptr(Engine) e = engine_new(&o, &hv, 1, w, rec, &cb, NULL);
        unsigned done, failed;
        guint64 t = now_usec();

        finished = false;
        engine_start(e);
        while (!finished)
                g_main_context_iteration(NULL, TRUE);
        t = now_usec() - t;
        engine_counts(e, NULL, &done, &failed);
        if (done != expect || failed != 0) {
                fprintf(stderr, "bench: %s: %u done, %u failed, expected %u\n", run_kind_to_string(kind),
                        done, failed, expect);
                exit(1);
        }
        return (double) t / USEC_PER_SEC;
}

int main(int argc, char **argv)
{
        static const unsigned defaults[] = {10, 100, 1000, 5000};
        g_autofree char *dir = g_dir_make_tmp("gk-bench-XXXXXX", NULL);
        g_autoptr(Workers) w = workers_new(NULL, 32);
        unsigned ns[32];
        unsigned count = 0;

        for (int i = 1; i < argc && count < G_N_ELEMENTS(ns); i++)
                ns[count++] = (unsigned) atoi(argv[i]);
        if (count == 0)
                for (; count < G_N_ELEMENTS(defaults); count++)
                        ns[count] = defaults[count];

        hypervisor_libvirt_global_init();
        printf("engine vs. libvirt alone, test driver in-process, durable record in %s\n", dir);
        printf("%6s %-14s %10s %10s %12s %12s %14s\n", "N", "run", "libvirt s", "engine s", "engine/guest",
               "overhead/g", "ratio");
        for (unsigned k = 0; k < count; k++) {
                unsigned n = ns[k];
                g_autofree char *node = make_node(dir, n);
                g_autofree char *uri = g_strdup_printf("test://%s", node);
                g_autofree char *recpath = g_strdup_printf("%s/record-%u", dir, n);
                double raw_save, raw_start;

                raw_cycle(uri, &raw_save, &raw_start);
                for (unsigned caps = 0; caps < 2; caps++) {
                        g_autoptr(Config) c = config_new_default();
                        g_autoptr(Hypervisor) hv = hypervisor_libvirt_new(uri, NULL);
                        g_autoptr(Record) rec = record_new(recpath);
                        double pre, post;

                        c->parallel_saves = caps == 0 ? 2 : 0;
                        c->parallel_starts = caps == 0 ? 4 : 0;
                        pre = engine_run(RUN_PRESERVE, c, hv, w, rec, dir, n);
                        post = engine_run(RUN_RESTORE, c, hv, w, rec, dir, n);
                        printf("%6u %-14s %10.4f %10.4f %9.1f µs %9.1f µs %13.1fx\n", n,
                               caps == 0 ? "preserve (2)" : "preserve (∞)", raw_save, pre, pre * 1e6 / n,
                               (pre - raw_save) * 1e6 / n, pre / MAX(raw_save, 1e-6));
                        printf("%6u %-14s %10.4f %10.4f %9.1f µs %9.1f µs %13.1fx\n", n,
                               caps == 0 ? "restore (4)" : "restore (∞)", raw_start, post, post * 1e6 / n,
                               (post - raw_start) * 1e6 / n, post / MAX(raw_start, 1e-6));
                }
                fflush(stdout);
        }
        (void) !system(g_strdup_printf("rm -rf '%s'", dir));
        return 0;
}
