/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "record-writer.h"

#include "macro.h"
#include "util.h"
#include "worker.h"

#define FLUSH_PRIORITY (G_PRIORITY_DEFAULT + 1)

/* Between the end of a write and the start of the next one asked by record_writer_touch(): a
 * burst of outcomes (a thousand saves a second) is a few writes, not one after the other for as
 * long as it lasts, each serializing every guest on the main context. */
#define WRITE_GAP_USEC (50 * USEC_PER_MSEC)

struct RecordWriter {
        Record *record;
        Workers *thread; /* one thread: writes in order */
        RecordWritten written;
        void *userdata;
        GSource *flush_source; /* the next write: an idle source, or a timer while in the gap */
        bool dirty;
        bool writing;
        bool urgent;        /* record_writer_write_now() came during a write: no gap after it */
        guint64 ended_usec; /* monotonic end of the last write */
        unsigned writes;
};

typedef struct WriteJob {
        RecordWriter *w;
        char *path;
        char *data;
        gsize len;
        int r;
} WriteJob;

static void start_write(RecordWriter *w);
static void schedule_flush(RecordWriter *w);

static void write_job_run(gpointer p)
{
        WriteJob *wj = p;

        wj->r = write_file_durable(wj->path, wj->data, wj->len);
}

static void write_job_free(gpointer p)
{
        WriteJob *wj = p;

        g_free(wj->path);
        g_free(wj->data);
        g_free(wj);
}

static void write_job_done(gpointer p)
{
        WriteJob *wj = p;
        RecordWriter *w = wj->w;
        bool more = w->dirty;

        w->writing = false;
        w->ended_usec = now_usec();
        if (more && w->urgent)
                start_write(w);
        else if (more)
                schedule_flush(w);
        if (w->written)
                w->written(w, wj->r, more, w->userdata);
}

static void start_write(RecordWriter *w)
{
        WriteJob *wj = g_new0(WriteJob, 1);

        g_clear_pointer(&w->flush_source, g_source_destroy);
        w->dirty = false;
        w->urgent = false;
        w->writing = true;
        w->writes++;
        wj->w = w;
        wj->path = g_strdup(w->record->path);
        wj->data = record_serialize(w->record, &wj->len);
        workers_submit(w->thread, wj, write_job_run, write_job_done, write_job_free);
}

static gboolean flush_cb(gpointer p)
{
        RecordWriter *w = p;

        w->flush_source = NULL;
        if (!w->writing && w->dirty)
                start_write(w);
        return G_SOURCE_REMOVE;
}

static void schedule_flush(RecordWriter *w)
{
        guint64 now = now_usec(), at = w->ended_usec > 0 ? w->ended_usec + WRITE_GAP_USEC : 0;
        GSource *s;

        if (at > now)
                s = g_timeout_source_new((guint) MAX(1, (at - now + 999) / USEC_PER_MSEC));
        else {
                s = g_idle_source_new();
                g_source_set_priority(s, FLUSH_PRIORITY);
        }
        g_source_set_callback(s, flush_cb, w, NULL);
        g_source_attach(s, NULL);
        w->flush_source = s;
        g_source_unref(s);
}

void record_writer_touch(RecordWriter *w)
{
        w->dirty = true;
        if (w->flush_source || w->writing)
                return; /* the write in flight, or the flush already queued, will take it */
        schedule_flush(w);
}

void record_writer_write_now(RecordWriter *w)
{
        if (w->writing) {
                w->dirty = true;
                w->urgent = true;
        } else
                start_write(w);
}

RecordWriter *record_writer_new(Record *record, RecordWritten written, void *userdata)
{
        RecordWriter *w = g_new0(RecordWriter, 1);

        w->record = record;
        w->thread = workers_new(NULL, 1);
        w->written = written;
        w->userdata = userdata;
        return w;
}

void record_writer_detach(RecordWriter *w)
{
        w->written = NULL;
}

unsigned record_writer_writes(RecordWriter *w)
{
        return w->writes;
}

RecordWriter *record_writer_free(RecordWriter *w)
{
        if (!w)
                return NULL;
        g_clear_pointer(&w->flush_source, g_source_destroy);
        workers_free(w->thread);
        g_free(w);
        return NULL;
}
