/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the engine's three files share, and nothing else includes: the run's state
 * (engine.c: the object, listing, scheduling, jobs, events, deadline; engine-preserve.c: the
 * escalation; engine-restore.c: the restore) and the functions one of them calls in another.
 * engine.h stays the only interface the rest of the tree sees. */

#include "engine.h"
#include "job.h"
#include "macro.h"
#include "policy.h"
#include "preflight-probe.h"
#include "record-writer.h"
#include "scheduler.h"

/* After a cancel, a graceful shutdown already requested is still awaited for the guest's whole
 * ShutdownTimeoutSec: a guest that heard the button may power off any moment, and it must be
 * started again when it does. With no timeout at all, a cancel waits this long at most. */
#define CANCEL_WAIT_MAX_USEC (300 * USEC_PER_SEC)

typedef struct Guest Guest;
typedef struct HvSlot HvSlot;

typedef enum Phase {
        PHASE_NEW,
        PHASE_LISTING,
        PHASE_RECORDING, /* the first record write: no action before it is on disk */
        PHASE_RUNNING,
        PHASE_FLUSHING, /* every guest has an outcome; waiting for the record write */
        PHASE_DONE,
} Phase;

struct HvSlot {
        Engine *engine;
        Hypervisor *hv;
        guint listener;
        GHashTable *guests;         /* uuid → Guest* */
        char *uri;                  /* resolved once listed */
        GPtrArray *listed;          /* GuestInfo*, from the list job */
        GHashTable *listed_by_uuid; /* uuid → GuestInfo* in @listed */
        GPtrArray *preset;          /* GuestInfo*, given before the start: no list job */
        bool reachable;
        bool list_done;        /* the list came back, or was given up on */
        GSource *list_timeout; /* gives up on a list that does not come back */
        int save_dir;          /* its managed-save directory: index in Engine.probe_paths, -1 none */
};

struct Guest {
        EngineGuest pub;
        Engine *engine;
        HvSlot *slot;
        int last_step;     /* index of the last step attempted, -1 before the first */
        int step;          /* step under way, -1 if none */
        guint64 gen;       /* bumps at every step start; stale job results are ignored */
        unsigned jobs;     /* jobs in flight for this guest */
        bool stopped_seen; /* a lifecycle event said it stopped, not by our save */
        bool late_save_ok; /* a save superseded by the deadline succeeded after all */
        bool hostdev;      /* host device passthrough: pre-flight drops its save */
        bool progress_supported;
        bool progress_query;
        guint64 save_total; /* the save's size, as its job stats last said (0: unknown) */
        unsigned conn_retries;
        bool retry_pending; /* a step waits to be retried after a lost connection */
        GSource *timeout;
        guint64 timeout_at; /* monotonic µs when the shutdown timeout fires */
        GSource *repeat;    /* re-sends the graceful request (ShutdownRepeatSec) */
        unsigned requests;  /* graceful requests sent in this step */
        GuestPolicy policy;
        /* restore: waiting for the guest agent before the next order group starts */
        bool awaiting_agent;
        guint64 agent_until;
        GSource *ping_source;
        RecordGuest *rec;
        /* restore */
        Outcome prior;
        char *save_file;
        char *xml;
};

struct Engine {
        int ref;
        RunKind kind;
        Config *config; /* a copy: a Reload during the run does not change it */
        char *save_dir;
        guint64 connect_retry_usec;
        guint64 list_timeout_usec;
        guint64 progress_interval_usec;
        GHashTable *only; /* "uri\nuuid", NULL = all */
        char *speed_file;
        Workers *workers;
        RecordWriter *writer;
        Record *record;
        const EngineCallbacks *cb;
        EngineCallbacks cb_copy;
        void *userdata;

        HvSlot *slots;
        guint n_slots;
        guint lists_pending; /* and the pre-flight probe */

        /* pre-flight (preserve): the save directories, their free space, the save speed */
        char **probe_paths;
        int transient_dir; /* index of save_dir in probe_paths */
        PreflightProbe *probe;
        PreflightDir *dirs; /* NULL: not known */
        guint n_dirs;
        SaveSpeed speed;
        bool probe_timed_out;

        Phase phase;
        bool cancelled;
        bool deadline_passed;
        GPtrArray *guests;   /* Guest*, run order */
        unsigned concurrent; /* saves (preserve) or starts (restore) that run at once, at most */
        Scheduler *sched;
        unsigned awaiting_agent; /* restored guests whose agent has not answered yet */
        bool group_known;
        bool group_has_order;
        int group_order;
        unsigned finished, done, failed;
        GPtrArray *unreachable;
        guint64 last_progress;
        guint64 start_usec, end_usec;

        GSource *deadline_source;
        GSource *progress_source;
        GSource *wake_source; /* the scheduler's next delay (StartDelaySec) ends */
};

/* Why a JOB_STATE was asked. */
typedef enum Check {
        CHECK_AFTER_REQUEST, /* right after a shutdown request: did it stop before we listened? */
        CHECK_AFTER_TIMEOUT, /* the shutdown timeout fired: was the event lost? */
        CHECK_AFTER_FAILURE, /* a step failed: did the guest stop anyway? */
} Check;

typedef struct EngineJob {
        Job job; /* first */
        Check check;
        Engine *engine;
        Guest *guest; /* NULL for JOB_LIST */
        HvSlot *slot;
        guint64 gen;
        bool repeat; /* a repeated graceful request: its result changes nothing */
} EngineJob;

/* ---- engine.c ---- */

void engine_say_about(Engine *e, EngineLevel level, EngineTopic topic, Guest *g, const char *uri,
                      const char *fmt, ...) G_GNUC_PRINTF(6, 7);
#define engine_say(e, level, g, uri, ...) engine_say_about(e, level, ENGINE_TOPIC_NONE, g, uri, __VA_ARGS__)
/* What a save or save-file restore did beyond its request: the channels, libvirt's refusal. */
void engine_say_save_outcome(Engine *e, Guest *g, const Job *j);
void engine_note_progress(Engine *e);
void guest_set_outcome(Guest *g, Outcome o);
void engine_record_touch(Engine *e);

void guest_cancel_timeout(Guest *g);
/* Destroys the source *s holds a reference to, and drops that reference. */
void engine_drop_source(GSource **s);
void guest_release_slots(Guest *g);
void guest_finish(Guest *g, Outcome o);
void guest_set_error(Guest *g, const char *what, const char *error);
/* The guest's history: a step begins (ending one under way), or the step under way ends,
 * with @error if it did not end the guest's run. */
void guest_history_begin(Guest *g, EngineStepKind kind);
void guest_history_end(Guest *g, const char *error);
Guest *guest_new(Engine *e, HvSlot *slot, const char *uuid, const char *name, bool persistent);
/* What the URI's list said of the guest @uuid, or NULL. */
const GuestInfo *engine_listed(HvSlot *slot, const char *uuid);

void engine_schedule(Engine *e);
void engine_maybe_finish_run(Engine *e);
/* A URI's list came back (@list), failed or timed out (@error), or was given up on by a cancel
 * (neither): once every URI is accounted for, the run begins. */
void engine_slot_listed(Engine *e, HvSlot *slot, const char *error, GPtrArray *list);

/* ---- engine-results.c ---- */

EngineJob *engine_job_new(Engine *e, JobKind kind, Guest *g, HvSlot *slot);
void engine_job_submit(EngineJob *j);
void guest_submit_job(Guest *g, JobKind kind);
gboolean engine_progress_tick(gpointer engine); /* GSourceFunc: asks each save's progress */
void engine_on_event(Hypervisor *h, const char *uuid, GuestEvent event, int detail, void *engine);

/* ---- engine-preserve.c ---- */

void engine_begin_preserve(Engine *e);
/* The pre-flight probe's answer (@dirs NULL: none in time). */
void engine_probed(const PreflightDir *dirs, guint n_dirs, const SaveSpeed *speed, void *engine);
void guest_advance(Guest *g);
void guest_start_step(Guest *g, Step s);
void guest_arm_timeout(Guest *g, guint64 t);
void guest_check_after_failure(Guest *g);
void guest_on_save_done(Guest *g, EngineJob *j);
void guest_on_shutdown_done(Guest *g, EngineJob *j);
void guest_on_destroy_done(Guest *g, EngineJob *j);
void guest_on_state_done(Guest *g, EngineJob *j);

/* ---- engine-restore.c ---- */

void engine_begin_restore(Engine *e);
void guest_start_restore(Guest *g);
/* What a started guest's outcome is: recovered after an unclean stop, or restored. */
Outcome guest_restored_outcome(Guest *g);
void guest_on_start_done(Guest *g, EngineJob *j);
bool guest_await_agent(Guest *g);
void guest_agent_ready(Guest *g);
void guest_on_ping_done(Guest *g, EngineJob *j);
