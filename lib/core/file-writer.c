/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "file-writer.h"

#include <string.h>

#include "util.h"
#include "worker.h"

struct FileWriter {
        Workers *thread; /* one thread: writes in order */
        mode_t mode;
        FileWritten written;
        void *userdata;
        bool writing;
        char *next_path, *next_text; /* waits for the write in flight */
};

typedef struct WriteJob {
        FileWriter *w;
        char *path;
        char *text;
        mode_t mode;
        int r;
} WriteJob;

static void start_write(FileWriter *w, char *path, char *text);

static void write_job_run(gpointer p)
{
        WriteJob *wj = p;

        wj->r = write_file_atomic(wj->path, wj->text, strlen(wj->text), wj->mode, false);
}

static void write_job_free(gpointer p)
{
        WriteJob *wj = p;

        g_free(wj->path);
        g_free(wj->text);
        g_free(wj);
}

static void write_job_done(gpointer p)
{
        WriteJob *wj = p;
        FileWriter *w = wj->w;

        w->writing = false;
        if (w->next_text)
                start_write(w, g_steal_pointer(&w->next_path), g_steal_pointer(&w->next_text));
        if (w->written)
                w->written(w, wj->path, wj->r, w->userdata);
}

/* Takes @path and @text. */
static void start_write(FileWriter *w, char *path, char *text)
{
        WriteJob *wj = g_new0(WriteJob, 1);

        w->writing = true;
        wj->w = w;
        wj->path = path;
        wj->text = text;
        wj->mode = w->mode;
        workers_submit(w->thread, wj, write_job_run, write_job_done, write_job_free);
}

void file_writer_write(FileWriter *w, const char *path, const char *text)
{
        file_writer_cancel(w);
        if (w->writing) {
                w->next_path = g_strdup(path);
                w->next_text = g_strdup(text);
        } else
                start_write(w, g_strdup(path), g_strdup(text));
}

void file_writer_cancel(FileWriter *w)
{
        g_clear_pointer(&w->next_path, g_free);
        g_clear_pointer(&w->next_text, g_free);
}

FileWriter *file_writer_new(mode_t mode, FileWritten written, void *userdata)
{
        FileWriter *w = g_new0(FileWriter, 1);

        w->thread = workers_new(NULL, 1);
        w->mode = mode;
        w->written = written;
        w->userdata = userdata;
        return w;
}

FileWriter *file_writer_free(FileWriter *w)
{
        if (!w)
                return NULL;
        workers_free(w->thread);
        file_writer_cancel(w);
        g_free(w);
        return NULL;
}
