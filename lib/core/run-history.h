/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The last runs, kept in the state directory (docs/run-history.md has the format): one file per
 * finished run under runs/, named by a sequence number, at most RUN_HISTORY_MAX_RUNS runs and
 * RUN_HISTORY_MAX_BYTES in all, the oldest dropped — but never the newest of its kind. Pure data +
 * file I/O; no logging. */

#include <stdbool.h>
#include <glib.h>

#include "engine.h"
#include "terms.h"

#define RUN_HISTORY_VERSION   1
#define RUN_HISTORY_MAX_RUNS  10
#define RUN_HISTORY_MAX_BYTES (8u * 1024 * 1024)

/* Why a run ran. */
typedef enum RunReason {
        RUN_REASON_SHUTDOWN, /* a host shutdown of a type nobody told */
        RUN_REASON_POWEROFF,
        RUN_REASON_REBOOT,
        RUN_REASON_HALT,
        RUN_REASON_KEXEC,
        RUN_REASON_SOFT_REBOOT,
        RUN_REASON_REHEARSAL,          /* PreserveGuests() outside a shutdown */
        RUN_REASON_START_UP,           /* the restore at start-up */
        RUN_REASON_REQUESTED,          /* RestoreGuests() */
        RUN_REASON_SHUTDOWN_CANCELLED, /* PrepareForShutdown(false): what the run stopped comes back */
        RUN_REASON_MAINTENANCE,        /* a preserve with the maintenance hold */
        RUN_REASON_CANCELLED,          /* Cancel() of a preserve run: what it stopped comes back */
        _RUN_REASON_MAX,
        _RUN_REASON_INVALID = -EINVAL,
} RunReason;

const char *run_reason_to_string(RunReason r);
RunReason run_reason_from_string(const char *s);
/* systemd's target or logind's shutdown type ("poweroff.target", "power-off", "reboot", …) →
 * the reason; RUN_REASON_SHUTDOWN for anything else. */
RunReason run_reason_from_shutdown_type(const char *type);

typedef struct RunStepRecord {
        EngineStepKind kind;
        guint64 start_usec; /* since the run started */
        guint64 duration_usec;
        char *error; /* why it did not end the guest's run, NULL if it did */
} RunStepRecord;

typedef struct RunGuestRecord {
        char *uri, *uuid, *name;
        Outcome outcome;
        guint64 duration_usec; /* from its first step to its outcome; 0 without a step */
        gint64 bytes;          /* written by its save; -1: unknown */
        char *error;           /* its last error, NULL if none */
        unsigned n_steps;
        RunStepRecord steps[ENGINE_STEPS_MAX];
} RunGuestRecord;

typedef struct RunRecord {
        char *id; /* 32 hex digits, GUESTKEEPER_RUN_ID= in the journal */
        RunKind kind;
        RunReason reason;
        char *requested_by;       /* "logind", "SIGTERM", "start-up", "uid 0 (unit x.service)" … */
        gint64 started, finished; /* wall clock, µs since the epoch */
        guint64 duration_usec;    /* monotonic: immune to clock steps */
        bool cancelled;
        unsigned total, done, failed;
        GPtrArray *unreachable; /* char*: "uri: error" */
        GPtrArray *guests;      /* RunGuestRecord*, in run order */
        /* Set by run_history_add() and when loaded: */
        unsigned seq;
        gsize size; /* bytes on disk */
} RunRecord;

RunRecord *run_record_new(void);
RunRecord *run_record_free(RunRecord *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(RunRecord, run_record_free);

/* The record of a finished run @e. */
RunRecord *run_record_from_engine(Engine *e, const char *id, RunReason reason, const char *requested_by,
                                  gint64 started, gint64 finished);

char *run_record_serialize(const RunRecord *r, gsize *ret_len);
/* Strict: -EBADMSG with a message naming @path for anything off (truncation, unknown version,
 * bad field). */
int run_record_parse(const char *data, gsize len, const char *path, RunRecord **ret, char **ret_error);

typedef struct RunHistory {
        char *dir;
        GPtrArray *runs; /* RunRecord*, oldest first */
        unsigned next_seq;
} RunHistory;

RunHistory *run_history_free(RunHistory *h);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(RunHistory, run_history_free);

/* Reads @dir (a missing one is an empty history). Never fails on a file: one that cannot be read
 * is renamed to "<name>.corrupt" (removed with the runs of its age) and a line naming it is
 * added to @problems. */
RunHistory *run_history_load(const char *dir, GPtrArray *problems);

/* The newest run of @kind, NULL if none. */
const RunRecord *run_history_last(RunHistory *h, RunKind kind);

/* A write for a worker: the new run's file, then the files of the runs dropped. */
typedef struct RunHistoryWrite {
        char *dir;
        char *path;
        char *data;
        gsize len;
        GArray *keep; /* unsigned: the sequence numbers of the runs kept, oldest first; other files go */
        int r;
} RunHistoryWrite;

/* Adds @r (taken) as the newest run, drops the oldest beyond the bounds, and returns the write
 * that makes the directory match. */
RunHistoryWrite *run_history_add(RunHistory *h, RunRecord *r);
/* Blocking (a worker): atomic and durable write (temp file, fsync, rename, fsync dir), then the
 * old files go. Sets w->r. */
void run_history_write(RunHistoryWrite *w);
RunHistoryWrite *run_history_write_free(RunHistoryWrite *w);
