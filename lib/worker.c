/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "worker.h"

#include "util.h"

struct Workers {
        GThreadPool *pool;
        GMainContext *context;
        /* Set by workers_free(): results that arrive afterwards are dropped. */
        gint *alive;
        /* Results posted to the context and not dispatched yet: workers_free() destroys
         * them so their jobs are freed even if the context never runs again. */
        GMutex lock;
        GHashTable *posted; /* Item* → GSource* */
};

typedef struct Item {
        Workers *w;
        gint *alive;
        gpointer job;
        WorkerRun run;
        WorkerDone done;
        GDestroyNotify free_job;
} Item;

static void alive_unref(gint *alive)
{
        /* alive[0] = flag, alive[1] = refcount */
        if (g_atomic_int_dec_and_test(&alive[1]))
                g_free(alive);
}

static gboolean done_cb(gpointer p)
{
        Item *it = p;

        if (g_atomic_int_get(&it->alive[0])) {
                g_mutex_lock(&it->w->lock);
                g_hash_table_remove(it->w->posted, it);
                g_mutex_unlock(&it->w->lock);
                it->done(it->job);
        }
        return G_SOURCE_REMOVE;
}

static void item_free(gpointer p)
{
        Item *it = p;

        if (it->free_job)
                it->free_job(it->job);
        alive_unref(it->alive);
        g_free(it);
}

static void pool_func(gpointer data, gpointer user_data)
{
        Item *it = data;

        GSource *s = g_idle_source_new();

        it->run(it->job);
        /* As context_post(), but remembered until dispatched. */
        g_source_set_priority(s, G_PRIORITY_DEFAULT);
        g_source_set_callback(s, done_cb, it, item_free);
        g_mutex_lock(&it->w->lock);
        g_hash_table_insert(it->w->posted, it, g_source_ref(s));
        g_mutex_unlock(&it->w->lock);
        g_source_attach(s, it->w->context);
        g_source_unref(s);
}

Workers *workers_new(GMainContext *ctx, unsigned max_threads)
{
        Workers *w = g_new0(Workers, 1);

        w->context = g_main_context_ref(ctx ? ctx : g_main_context_default());
        w->alive = g_new0(gint, 2);
        w->alive[0] = 1;
        w->alive[1] = 1;
        g_mutex_init(&w->lock);
        w->posted = g_hash_table_new_full(NULL, NULL, NULL, (GDestroyNotify) g_source_unref);
        w->pool = g_thread_pool_new(pool_func, w, (gint) max_threads, FALSE, NULL);
        return w;
}

Workers *workers_free(Workers *w)
{
        if (!w)
                return NULL;
        g_autoptr(GPtrArray) pending = g_ptr_array_new_with_free_func((GDestroyNotify) g_source_unref);
        GHashTableIter iter;
        gpointer value;

        g_atomic_int_set(&w->alive[0], 0);
        g_thread_pool_free(w->pool, FALSE, TRUE);
        /* No worker runs now; drop what they posted (frees the jobs). */
        g_hash_table_iter_init(&iter, w->posted);
        while (g_hash_table_iter_next(&iter, NULL, &value))
                g_ptr_array_add(pending, g_source_ref(value));
        g_hash_table_remove_all(w->posted);
        for (guint i = 0; i < pending->len; i++)
                g_source_destroy(pending->pdata[i]);
        g_hash_table_unref(w->posted);
        g_mutex_clear(&w->lock);
        alive_unref(w->alive);
        g_main_context_unref(w->context);
        g_free(w);
        return NULL;
}

void workers_submit(Workers *w, gpointer job, WorkerRun run, WorkerDone done, GDestroyNotify free_job)
{
        Item *it = g_new0(Item, 1);

        it->w = w;
        it->alive = w->alive;
        g_atomic_int_inc(&w->alive[1]);
        it->job = job;
        it->run = run;
        it->done = done;
        it->free_job = free_job;
        g_thread_pool_push(w->pool, it, NULL);
}
