/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* One blocking hypervisor call, run on a worker: an immutable request (copies of the UUID,
 * file, XML) and the result with the backend's error message copied out (libvirt errors are
 * per thread). The submitter embeds a Job first in its own struct for its context. */

#include <stdbool.h>
#include <glib.h>

#include "hypervisor.h"
#include "worker.h"

typedef enum JobKind {
        JOB_LIST,
        JOB_SAVE,
        JOB_SHUTDOWN,
        JOB_DESTROY,
        JOB_STATE,
        JOB_PROGRESS,
        JOB_START,
        JOB_RESTORE,
        JOB_CREATE,
        JOB_SYNC_TIME,
        JOB_AGENT_PING,
} JobKind;

typedef struct Job {
        JobKind kind;
        Hypervisor *hv; /* referenced */
        /* request */
        char *uuid;
        char *file;
        char *xml;
        bool flag;          /* bypass cache (save, start, restore); include inactive (list) */
        unsigned mode;      /* JOB_SHUTDOWN: SHUTDOWN_MODE_* */
        guint64 retry_usec; /* JOB_LIST: how long an unreachable URI is retried */
        bool abort_jobs;    /* JOB_SAVE: abort a domain job under way first (else fail) */
        /* JOB_SAVE, JOB_RESTORE: as SaveRequest's fields of the same names */
        unsigned channels;
        guint64 memory_kib;
        unsigned concurrent;
        /* result */
        int r;
        char *error;
        GPtrArray *list; /* JOB_LIST: GuestInfo* */
        GuestState state;
        guint64 processed, total;
        char *aborted;       /* JOB_SAVE: the domain job aborted before the save ("dump"), or NULL */
        guint64 save_usec;   /* JOB_SAVE: how long the save itself took */
        SaveOutcome outcome; /* JOB_SAVE, JOB_RESTORE */
} Job;

void job_init(Job *j, JobKind kind, Hypervisor *hv, const char *uuid);
/* The same request again (a retry), no result. */
void job_init_copy(Job *j, const Job *from);
/* Frees what job_init() and the run put in @j, not @j itself. */
void job_clear(Job *j);
/* WorkerRun: performs the call. */
void job_run(gpointer job);

/* How long a save waits for an aborted domain job to end. */
#define JOB_ABORT_WAIT_USEC (30 * USEC_PER_SEC)

/* Delay before retry number @attempt (0-based): @first_ms doubled each time, at most @max_ms. */
guint backoff_ms(unsigned attempt, guint first_ms, guint max_ms);
