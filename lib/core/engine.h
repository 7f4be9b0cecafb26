/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* One run over the guests of all configured URIs: a preserve run (the escalation
 * save → shutdown → poweroff of guestkeeperd(8)) or a restore run (start what the record lists
 * as stopped by us).
 *
 * The engine lives on one main context and never blocks it: every hypervisor call is a
 * job on the worker pool. It owns no policy about *when* to run (that is the manager's),
 * and it does not log: it reports through callbacks. It keeps the record up to date. */

#include <stdbool.h>
#include <glib.h>

#include "config.h"
#include "hypervisor.h"
#include "record.h"
#include "worker.h"

typedef enum RunKind {
        RUN_PRESERVE,
        RUN_RESTORE,
        _RUN_KIND_MAX,
        _RUN_KIND_INVALID = -EINVAL,
} RunKind;

const char *run_kind_to_string(RunKind k);
RunKind run_kind_from_string(const char *s);

typedef struct Engine Engine;

/* A step a guest went through in this run, for the run's history (run-history.h). */
typedef enum EngineStepKind {
        ENGINE_STEP_SAVE,
        ENGINE_STEP_SHUTDOWN,
        ENGINE_STEP_POWEROFF,
        ENGINE_STEP_START, /* restore: resume, boot, restore from a file, or create from XML */
        _ENGINE_STEP_KIND_MAX,
        _ENGINE_STEP_KIND_INVALID = -EINVAL,
} EngineStepKind;

const char *engine_step_kind_to_string(EngineStepKind k);
EngineStepKind engine_step_kind_from_string(const char *s);

typedef struct EngineStepRun {
        EngineStepKind kind;
        guint64 start_usec; /* monotonic */
        guint64 end_usec;   /* monotonic; 0 while under way */
        char *error;        /* why it did not end the guest's run, NULL if it did */
} EngineStepRun;

/* save, shutdown, poweroff once each, or one start: a guest's steps never exceed this. */
#define ENGINE_STEPS_MAX 4

/* What the engine knows of one guest of the run. Owned by the engine; valid until
 * engine_unref() drops the last reference. */
typedef struct EngineGuest {
        char *uri; /* resolved URI, as in the record */
        char *uuid;
        char *name;
        bool persistent;
        guint64 memory_kib;
        unsigned steps;        /* planned (preserve): pre-flight may have dropped the save */
        guint64 estimate_usec; /* pre-flight's estimate of its save, 0 without one */
        guint64 save_usec;     /* how long its successful save took, 0 if none */
        Outcome outcome;       /* what ListGuests() shows */
        bool finished;
        char *error;     /* last error, NULL if none */
        double fraction; /* a save in flight: bytes done / total */
        /* For the run's history: the steps in the order they ran, when the guest finished,
         * and what its save wrote (libvirt's job stats; unknown without them). */
        EngineStepRun history[ENGINE_STEPS_MAX];
        unsigned n_history;
        guint64 end_usec; /* monotonic; 0 until finished */
        guint64 bytes_written;
        bool bytes_known;
} EngineGuest;

typedef enum EngineLevel {
        ENGINE_LEVEL_ERR,
        ENGINE_LEVEL_WARNING,
        ENGINE_LEVEL_NOTICE,
        ENGINE_LEVEL_INFO,
        ENGINE_LEVEL_DEBUG,
} EngineLevel;

/* What a message is about, when a sysadmin may need to act on it (the owner gives it a
 * MESSAGE_ID). */
typedef enum EngineTopic {
        ENGINE_TOPIC_NONE,
        ENGINE_TOPIC_PREFLIGHT,    /* pre-flight dropped saves or expects the run to be short */
        ENGINE_TOPIC_UNREACHABLE,  /* a URI could not be reached at the start of the run */
        ENGINE_TOPIC_DEADLINE,     /* DeadlineSec spent */
        ENGINE_TOPIC_RECORD_WRITE, /* the record could not be written */
} EngineTopic;

typedef struct EngineCallbacks {
        /* A guest's outcome changed (a step started, or it finished). */
        void (*guest_changed)(Engine *e, const EngineGuest *g, void *userdata);
        /* Something worth saying; @g or @uri may be NULL. */
        void (*message)(Engine *e, EngineLevel level, EngineTopic topic, const EngineGuest *g,
                        const char *uri, const char *text, void *userdata);
        /* Progress: a step started, a guest finished, or a save's bytes advanced. */
        void (*progress)(Engine *e, void *userdata);
        /* The run is over and the record is on disk. */
        void (*finished)(Engine *e, void *userdata);
} EngineCallbacks;

typedef struct EngineOptions {
        RunKind kind;
        const Config *config;           /* copied */
        const char *save_dir;           /* transient guests' save files */
        guint64 connect_retry_usec;     /* how long an unreachable URI is retried at the start */
        guint64 list_timeout_usec;      /* a URI whose list does not come back by then is unreachable
                                         * for this run (0 = no limit) */
        guint64 progress_interval_usec; /* how often a save's job stats are read */
        GHashTable *only;               /* these guests ("uri\nuuid") only: a preserve of these running
                                         * guests, a restore of these record guests; NULL: every one
                                         * (borrowed, copied) */
        const char *speed_file;         /* the save speed measured in earlier runs (NULL: the default) */
} EngineOptions;

/* @hvs: the hypervisors (referenced), @record: the run's record (borrowed; the caller keeps
 * it alive longer than the engine and does not modify it during the run). */
Engine *engine_new(const EngineOptions *opts, Hypervisor *const *hvs, guint n_hvs, Workers *workers,
                   Record *record, const EngineCallbacks *cb, void *userdata);
Engine *engine_ref(Engine *e);
Engine *engine_unref(Engine *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Engine, engine_unref);

/* Before engine_start(): what the @slot-th hypervisor runs now (GuestInfo*, every guest, inactive
 * ones too; taken), so the run needs no list of its own. */
void engine_set_listed(Engine *e, guint slot, GPtrArray *list);
void engine_start(Engine *e);
/* Start no further step; steps under way finish (a graceful shutdown already requested is
 * still awaited) and the run ends. */
void engine_cancel(Engine *e);
/* Forget the callbacks: the owner is going away; jobs in flight finish silently. */
void engine_detach(Engine *e);

RunKind engine_kind(Engine *e);
bool engine_is_finished(Engine *e);
bool engine_is_cancelled(Engine *e);
/* Guests of the run (const EngineGuest*), in run order. */
GPtrArray *engine_guests(Engine *e);
void engine_counts(Engine *e, unsigned *ret_total, unsigned *ret_done, unsigned *ret_failed);
double engine_progress(Engine *e);
/* Monotonic time of the last progress (see EngineCallbacks.progress). */
guint64 engine_last_progress_usec(Engine *e);
/* Something waits on a bounded timer — a graceful shutdown with its ShutdownTimeoutSec, a
 * step to be retried after a lost connection, a list with ConnectTimeoutSec —: the run will
 * move by itself, it is not hung. */
bool engine_has_bounded_wait(Engine *e);
/* Monotonic times the run started (engine_start()) and ended (0 until then). */
void engine_times(Engine *e, guint64 *ret_start_usec, guint64 *ret_end_usec);
/* URIs that could not be reached at the start of the run, with their errors ("uri: error"). */
GPtrArray *engine_unreachable(Engine *e);
/* What a run ended with: a value that outlives the engine (the daemon shows the last run's
 * figures until the next run starts). */
typedef struct RunSummary {
        RunKind kind;
        unsigned total, done, failed;
        unsigned waiting; /* restore: not started yet, retried later (the owner's count, not in failed) */
        unsigned by_outcome[_OUTCOME_MAX];
        GPtrArray *unreachable; /* "uri: error" */
        double progress;
} RunSummary;

RunSummary *engine_summarize(Engine *e);
RunSummary *run_summary_free(RunSummary *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(RunSummary, run_summary_free);

/* Highest number of saves / graceful shutdowns / starts that were under way at once. */
void engine_peaks(Engine *e, unsigned *ret_saves, unsigned *ret_shutdowns, unsigned *ret_starts);
