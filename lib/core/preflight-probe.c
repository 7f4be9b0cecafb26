/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "preflight-probe.h"

#include <errno.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "macro.h"
#include "util.h"

struct PreflightProbe {
        int ref; /* the worker's and the caller's; the main thread only */
        char **paths;
        char *speed_file;
        PreflightDir *dirs; /* written by the worker, read after it returned */
        SaveSpeed speed;
        GSource *timeout;
        PreflightProbeDone done; /* NULL once answered or cancelled */
        void *userdata;
};

static void probe_unref(PreflightProbe *p)
{
        if (--p->ref > 0)
                return;
        if (p->timeout) {
                g_source_destroy(p->timeout);
                g_source_unref(p->timeout);
        }
        g_strfreev(p->paths);
        g_free(p->speed_file);
        g_free(p->dirs);
        g_free(p);
}

void save_speed_load(const char *path, SaveSpeed *ret)
{
        g_autofree char *text = NULL;

        if (!path || !g_file_get_contents(path, &text, NULL, NULL) || save_speed_parse(text, ret) < 0)
                save_speed_default(ret);
}

int save_speed_store(const char *path, const SaveSpeed *s)
{
        g_autofree char *text = save_speed_format(s);

        return write_file_durable(path, text, strlen(text));
}

static void probe_dir(const char *path, PreflightDir *ret)
{
        g_autofree char *p = g_strdup(path);
        struct statvfs sv;
        struct stat st;

        ret->path = path;
        /* The transient guests' directory is made at the first save: measure where it will be. */
        while (stat(p, &st) < 0 && errno == ENOENT && !streq_ptr(p, "/")) {
                char *parent = g_path_get_dirname(p);

                g_free(p);
                p = parent;
        }
        if (stat(p, &st) < 0 || statvfs(p, &sv) < 0)
                return;
        ret->known = true;
        ret->free_bytes = (guint64) sv.f_bavail * (guint64) sv.f_frsize;
        ret->fs = (guint64) st.st_dev;
}

static void probe_run(gpointer job)
{
        PreflightProbe *p = job;
        guint n = g_strv_length(p->paths);

        for (guint i = 0; i < n; i++)
                probe_dir(p->paths[i], &p->dirs[i]);
        save_speed_load(p->speed_file, &p->speed);
}

static void answer(PreflightProbe *p, bool in_time)
{
        PreflightProbeDone done = p->done;
        SaveSpeed speed;

        if (!done)
                return;
        p->done = NULL;
        if (p->timeout) {
                g_source_destroy(p->timeout);
                g_clear_pointer(&p->timeout, g_source_unref);
        }
        if (in_time)
                done(p->dirs, g_strv_length(p->paths), &p->speed, p->userdata);
        else {
                save_speed_default(&speed);
                done(NULL, 0, &speed, p->userdata);
        }
        probe_unref(p); /* the caller's */
}

static void probe_done(gpointer job)
{
        answer(job, true);
}

static void probe_free(gpointer job)
{
        probe_unref(job); /* the worker's */
}

static gboolean timeout_cb(gpointer userdata)
{
        answer(userdata, false);
        return G_SOURCE_REMOVE;
}

PreflightProbe *preflight_probe_submit(Workers *w, char *const *dirs, const char *speed_file,
                                       guint64 timeout_usec, PreflightProbeDone done, void *userdata)
{
        PreflightProbe *p = g_new0(PreflightProbe, 1);

        p->ref = 2;
        p->paths = g_strdupv((char **) dirs);
        p->speed_file = g_strdup(speed_file);
        p->dirs = g_new0(PreflightDir, MAX(g_strv_length(p->paths), 1));
        p->done = done;
        p->userdata = userdata;
        if (timeout_usec > 0) {
                p->timeout = g_timeout_source_new((guint) MAX(1, timeout_usec / USEC_PER_MSEC));
                g_source_set_callback(p->timeout, timeout_cb, p, NULL);
                g_source_attach(p->timeout, NULL);
        }
        workers_submit(w, p, probe_run, probe_done, probe_free);
        return p;
}

void preflight_probe_cancel(PreflightProbe *p)
{
        if (!p || !p->done)
                return;
        p->done = NULL;
        if (p->timeout) {
                g_source_destroy(p->timeout);
                g_clear_pointer(&p->timeout, g_source_unref);
        }
        probe_unref(p);
}

typedef struct SpeedUpdate {
        char *path;
        guint64 bytes, usec;
        unsigned saves;
        SaveSpeed speed;
        int r;
        SaveSpeedDone done;
} SpeedUpdate;

static void update_run(gpointer job)
{
        SpeedUpdate *u = job;

        save_speed_load(u->path, &u->speed);
        save_speed_update(&u->speed, u->bytes, u->usec, u->saves);
        u->r = save_speed_store(u->path, &u->speed);
}

static void update_done(gpointer job)
{
        SpeedUpdate *u = job;

        if (u->done)
                u->done(u->r, u->path, &u->speed);
}

static void update_free(gpointer job)
{
        SpeedUpdate *u = job;

        g_free(u->path);
        g_free(u);
}

void save_speed_submit_update(Workers *w, const char *path, guint64 bytes, guint64 usec, unsigned saves,
                              SaveSpeedDone done)
{
        SpeedUpdate *u = g_new0(SpeedUpdate, 1);

        u->path = g_strdup(path);
        u->bytes = bytes;
        u->usec = usec;
        u->saves = saves;
        u->done = done;
        workers_submit(w, u, update_run, update_done, update_free);
}
