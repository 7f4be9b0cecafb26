/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A bounded thread pool for blocking hypervisor calls. A job's @run executes on a worker;
 * its @done runs afterwards on the main context the pool was made for, never on a worker. */

#include <glib.h>

typedef struct Workers Workers;

typedef void (*WorkerRun)(gpointer job);
typedef void (*WorkerDone)(gpointer job);

Workers *workers_new(GMainContext *ctx, unsigned max_threads);
/* Waits for queued and running jobs, then frees. Their @done callbacks are NOT called. */
Workers *workers_free(Workers *w);
/* Does not wait: jobs still running (a libvirt call that never returns) finish on their own
 * and their results are dropped. For the daemon's exit, which must not hang on a libvirtd. */
Workers *workers_abandon(Workers *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Workers, workers_free);

/* @free_job (may be NULL) frees @job after @done, or instead of it once the pool is freed. */
void workers_submit(Workers *w, gpointer job, WorkerRun run, WorkerDone done, GDestroyNotify free_job);
