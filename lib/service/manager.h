/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The daemon's core: owns the state, the guest cache, the record, the current run, logind
 * and the bus; decides when to preserve and restore (guestkeeperd(8), "Stopping"). Main thread
 * only. The D-Bus glue and the bus set-up (bus-manager.c) read the fields below. The manager
 * also works with no bus at all (unit tests): then it has no logind either. */

#include <stdbool.h>
#include <glib.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus-polkit.h"
#include "config.h"
#include "engine.h"
#include "file-writer.h"
#include "guest-cache.h"
#include "logind.h"
#include "preflight.h"
#include "record.h"
#include "run-history.h"
#include "running-set.h"
#include "worker.h"

typedef enum ManagerState {
        MANAGER_STARTING,
        MANAGER_IDLE,
        MANAGER_PRESERVING,
        MANAGER_PRESERVED,
        MANAGER_RESTORING,
        MANAGER_STOPPING,
        _MANAGER_STATE_MAX,
        _MANAGER_STATE_INVALID = -EINVAL,
} ManagerState;

const char *manager_state_to_string(ManagerState s);
ManagerState manager_state_from_string(const char *s);

typedef struct ManagerOptions {
        const char *config_path;
        bool config_explicit; /* --config given: the file must exist */
        const char *state_dir;
} ManagerOptions;

typedef struct Manager {
        Config *config;
        char *config_path;
        bool config_explicit;
        char *state_dir;

        ManagerState state;
        Workers *workers;
        GuestCache *cache; /* the guests of the configured URIs */
        Record *record;
        GHashTable *outcomes;  /* "uri\nuuid" → Outcome of the last run that touched the guest */
        GPtrArray *plan_calls; /* Plan() calls waiting for the pre-flight probe */

        RunningSet *running;    /* the guests running now, kept on disk */
        GHashTable *reconciled; /* resolved URIs whose running set was checked against libvirt */
        guint running_source;   /* a running-set update is due */
        guint settle_source;    /* the start-up stops waiting for first lists */
        bool settle_expired;
        bool restore_pending;  /* the record's guests should run: bring them back when possible */
        guint64 restore_since; /* when that began: RestoreRetrySec counts from here */
        GHashTable *waiting;   /* "uri\nuuid" → Waiting*: failed restores, retried later */
        guint retry_source;
        GHashTable *run_only;       /* the restore run under way covers these guests only (NULL: all) */
        GHashTable *last_preserved; /* "uri\nuuid" of the guests the last preserve run acted on */

        Engine *run;
        RunSummary *last;        /* the last finished run, NULL before the first */
        GPtrArray *conflicts;    /* other mechanisms acting on the guests at shutdown */
        bool run_is_shutdown;    /* the run answers a real host shutdown (not a rehearsal) */
        bool cancel_after_run;   /* PrepareForShutdown(false) came during the run */
        bool preserve_after_run; /* a shutdown came during a restore */
        bool exit_after_run;     /* SIGTERM came during a run */
        char *cancel_requester;  /* Cancel() came during a preserve run: who; what it stopped comes back */
        bool run_set_hold;       /* the preserve run under way set the maintenance hold */
        guint64 run_started;

        /* The run's identity for the journal (GUESTKEEPER_RUN_ID=) and its history. */
        RunHistory *history;     /* the last runs, as on disk */
        Workers *history_writer; /* one thread: the history's writes, in order, off the main thread */
        char run_id[33];
        RunReason run_reason;
        char *run_requested_by;
        gint64 run_started_wall;
        char *requester;         /* the D-Bus caller of the method that starts the next run */
        bool shutdown_cancelled; /* PrepareForShutdown(false): the next restore is its undoing */
        char *shutdown_type;     /* what the host shutdown is (logind, systemd's jobs), if known */

        /* Set by manager_connect_bus(); NULL without a bus. */
        sd_event *event;
        GSource *event_source;
        sd_bus *bus;
        Logind *logind;
        PolkitRegistry *polkit; /* the privileged calls waiting for polkit's answer */
        bool name_owned;
        bool ready;
        bool querying_shutdown;

        guint keepalive_source;
        guint64 last_keepalive;
        guint watchdog_source;
        guint flush_source;
        char *last_status;
        /* What PropertiesChanged last said, to emit only changes. */
        unsigned emitted_total, emitted_done, emitted_failed;
        double emitted_progress;
        char *emitted_in_flight;
        /* The metrics textfile ([Metrics] TextfilePath=): what was last handed to the writer. */
        FileWriter *metrics_writer;
        char *metrics_path, *metrics_text;
        char *metrics_failed_path; /* its write failed and was logged: not again until one succeeds */

        void (*on_exit)(struct Manager *m, int code, void *userdata);
        void *on_exit_userdata;
} Manager;

int manager_new(const ManagerOptions *o, Config *config, Manager **ret);
Manager *manager_free(Manager *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Manager, manager_free);

/* Watches the configured URIs. Called after manager_connect_bus(), or without a bus at all:
 * READY=1 follows once the bus name is owned and the inhibitor settled, or at once without a
 * bus. */
void manager_start(Manager *m);

/* SIGTERM/SIGINT: exit at once, or preserve first when the host is going down. */
void manager_terminate(Manager *m);
/* SIGHUP/Reload(): -EINVAL with *ret_error naming file/key when the new config is bad. */
int manager_reload(Manager *m, char **ret_error);
/* PreserveGuests()/RestoreGuests(): -EBUSY while a run is under way. */
int manager_preserve(Manager *m, bool hold);
int manager_restore(Manager *m);
/* PreserveGuestsNamed()/RestoreGuestsNamed(): the guests @names (names or UUIDs) only; @hold: for
 * a preserve, as manager_preserve(). -EBUSY while
 * a run is under way; -ENOENT for a name no guest has, -EINVAL for a guest there is nothing to do
 * to (not running; not stopped by us): *ret_error names it, and nothing started. */
int manager_run_named(Manager *m, RunKind kind, char *const *names, bool hold, char **ret_error);
/* Cancel(): a rehearsal stops and what it stopped comes back; a restore starts no further guest.
 * -ESRCH with no such run under way, -EBUSY for a host shutdown's run (not ours to cancel). The
 * caller is m->requester, if set. */
int manager_cancel(Manager *m, char **ret_error);
/* Maintenance: preserved guests stay down across restarts and reboots until manager_restore(). */
bool manager_held(Manager *m);

/* Guests whose restore waits: for their URI, or to be retried after a failed start. */
typedef struct WaitingRow {
        char *uri, *uuid, *name, *why;
} WaitingRow;
GPtrArray *manager_restore_waiting(Manager *m); /* WaitingRow*, owned by the array */

/* For the bus: the rows of ListGuests(). */
typedef struct GuestRow {
        char *uri, *uuid, *name;
        const char *state, *outcome;
} GuestRow;
GPtrArray *manager_list_guests(Manager *m); /* GuestRow*, owned by the array */
typedef struct PlanRow {
        char *uri, *uuid, *name;
        bool persistent;
        char *steps;         /* "save,shutdown,poweroff"; "" = nothing: left running, or skipped */
        GPtrArray *settings; /* char*: key, value, source, key, value, source, … */
        guint rank;          /* place in the run order */
} PlanRow;
/* @rows: PlanRow*, in run order; @plan: the saves' estimate; @warning: the plan's, or NULL. */
typedef void (*ManagerPlanDone)(Manager *m, GPtrArray *rows, const PreflightPlan *plan, const char *warning,
                                void *userdata);
/* What a host shutdown would do now to each running or paused guest, pre-flight included:
 * the free space of the save directories is read on a worker, so @done comes later (never
 * from within this call). @destroy frees @userdata, also when the manager goes first. */
void manager_plan(Manager *m, ManagerPlanDone done, void *userdata, GDestroyNotify destroy);
/* The runs LastRuns() shows (const RunRecord*, oldest first): the last preserve and the last
 * restore, or with @all every run kept. */
GPtrArray *manager_last_runs(Manager *m, bool all);
void manager_counts(Manager *m, unsigned *ret_total, unsigned *ret_done, unsigned *ret_failed,
                    double *ret_progress);
bool manager_inhibitor_held(Manager *m);
/* Metrics(): OpenMetrics text (guestkeeper-metrics(7)), from the manager's own state. */
char *manager_metrics(Manager *m);
/* The guests of the run with a step under way (const EngineGuest*, in run order). */
GPtrArray *manager_in_flight(Manager *m);

/* bus-manager.c: opens the system bus on an sd-event embedded in GLib, registers the object,
 * asks for the name (asynchronously) and logind for the inhibitor. */
int manager_connect_bus(Manager *m, char **ret_error);
/* Undoes manager_connect_bus(); nothing to do without a bus. */
void manager_disconnect_bus(Manager *m);
void bus_manager_emit(Manager *m, const char *const *properties);
void bus_manager_emit_run_finished(Manager *m, const char *kind, unsigned done, unsigned failed);

/* manager.c, for manager_connect_bus(): what logind reports, and the answer to the request
 * for the bus name (@error NULL: it is ours). */
extern const LogindCallbacks manager_logind_callbacks;
void manager_name_acquired(Manager *m, const char *error);
