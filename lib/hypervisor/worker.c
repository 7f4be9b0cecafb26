/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "worker.h"

#include <malloc.h>
#include <stdbool.h>

#include "util.h"

/* Every item holds a reference: a job still running when its pool is freed (a libvirt call
 * that never returns) finds the struct, sees it dead and drops its result. */
struct Workers {
        gint ref;
        GThreadPool *pool;
        GMainContext *context;
        GMutex lock;
        bool alive; /* cleared by workers_free(): results that arrive afterwards are dropped */
        /* Results posted to the context and not dispatched yet: workers_free() destroys
         * them so their jobs are freed even if the context never runs again. */
        GHashTable *posted; /* Item* → GSource* */
};

typedef struct Item {
        Workers *w;
        gpointer job;
        WorkerRun run;
        WorkerDone done;
        GDestroyNotify free_job;
} Item;

static void workers_unref(Workers *w)
{
        if (!g_atomic_int_dec_and_test(&w->ref))
                return;
        g_hash_table_unref(w->posted);
        g_mutex_clear(&w->lock);
        g_main_context_unref(w->context);
        g_free(w);
}

static gboolean done_cb(gpointer p)
{
        Item *it = p;
        bool alive;

        g_mutex_lock(&it->w->lock);
        alive = it->w->alive;
        g_hash_table_remove(it->w->posted, it);
        g_mutex_unlock(&it->w->lock);
        if (alive)
                it->done(it->job);
        return G_SOURCE_REMOVE;
}

static void item_free(gpointer p)
{
        Item *it = p;

        if (it->free_job)
                it->free_job(it->job);
        workers_unref(it->w);
        g_free(it);
}

/* GLib ends a pool thread once it has waited for work for a while (half a second in its pool,
 * then up to 15 s among the unused threads): no idle thread stays to wake up. What the work
 * allocated and freed in the meantime is still held by malloc (the threads' arenas, the top of
 * the heap); the ending thread gives it back, so the idle daemon keeps only what it uses. */
static void thread_ended(gpointer p)
{
#ifndef __SANITIZE_ADDRESS__
        /* Not with ASan: its allocator replaces malloc, and a trim on a thread that never used
         * glibc's then trips glibc's own arena check as the thread exits. */
        (void) malloc_trim(0);
#endif
}

static GPrivate thread_end = G_PRIVATE_INIT(thread_ended);

static void pool_func(gpointer data, gpointer user_data)
{
        Item *it = data;
        GSource *s;

        g_private_set(&thread_end, GINT_TO_POINTER(1));
        it->run(it->job);
        g_mutex_lock(&it->w->lock);
        if (!it->w->alive) {
                g_mutex_unlock(&it->w->lock);
                item_free(it);
                return;
        }
        /* As context_post(), but remembered until dispatched. */
        s = g_idle_source_new();
        g_source_set_priority(s, G_PRIORITY_DEFAULT);
        g_source_set_callback(s, done_cb, it, item_free);
        g_hash_table_insert(it->w->posted, it, g_source_ref(s));
        g_source_attach(s, it->w->context);
        g_mutex_unlock(&it->w->lock);
        g_source_unref(s);
}

Workers *workers_new(GMainContext *ctx, unsigned max_threads)
{
        Workers *w = g_new0(Workers, 1);

        w->ref = 1;
        w->alive = true;
        w->context = g_main_context_ref(ctx ? ctx : g_main_context_default());
        g_mutex_init(&w->lock);
        w->posted = g_hash_table_new_full(NULL, NULL, NULL, (GDestroyNotify) g_source_unref);
        w->pool = g_thread_pool_new(pool_func, w, (gint) max_threads, FALSE, NULL);
        return w;
}

static Workers *workers_release(Workers *w, bool wait)
{
        g_autoptr(GPtrArray) pending = g_ptr_array_new_with_free_func((GDestroyNotify) g_source_unref);
        GHashTableIter iter;
        gpointer value;

        if (!w)
                return NULL;
        g_mutex_lock(&w->lock);
        w->alive = false;
        g_mutex_unlock(&w->lock);
        g_thread_pool_free(w->pool, FALSE, wait);
        /* Drop what the workers posted (frees the jobs); later results are dropped by them. */
        g_mutex_lock(&w->lock);
        g_hash_table_iter_init(&iter, w->posted);
        while (g_hash_table_iter_next(&iter, NULL, &value))
                g_ptr_array_add(pending, g_source_ref(value));
        g_hash_table_remove_all(w->posted);
        g_mutex_unlock(&w->lock);
        for (guint i = 0; i < pending->len; i++)
                g_source_destroy(pending->pdata[i]);
        workers_unref(w);
        return NULL;
}

Workers *workers_free(Workers *w)
{
        return workers_release(w, true);
}

Workers *workers_abandon(Workers *w)
{
        return workers_release(w, false);
}

void workers_submit(Workers *w, gpointer job, WorkerRun run, WorkerDone done, GDestroyNotify free_job)
{
        Item *it = g_new0(Item, 1);

        it->w = w;
        g_atomic_int_inc(&w->ref);
        it->job = job;
        it->run = run;
        it->done = done;
        it->free_job = free_job;
        g_thread_pool_push(w->pool, it, NULL);
}
