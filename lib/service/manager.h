/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The daemon's core: owns the state, the guest cache, the record, the current run, logind
 * and the bus; decides when to preserve and restore (guestkeeperd(8), "Stopping"). Main thread
 * only. The D-Bus glue (bus-manager.c) reads the fields below. */

#include <stdbool.h>
#include <glib.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "engine.h"
#include "guest-cache.h"
#include "logind.h"
#include "record.h"
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
        GHashTable *outcomes; /* "uri\nuuid" → Outcome of the last run that touched the guest */

        Engine *run;
        RunSummary *last;        /* the last finished run, NULL before the first */
        GPtrArray *conflicts;    /* other mechanisms acting on the guests at shutdown */
        bool run_is_shutdown;    /* the run answers a real host shutdown (not a rehearsal) */
        bool cancel_after_run;   /* PrepareForShutdown(false) came during the run */
        bool preserve_after_run; /* a shutdown came during a restore */
        bool exit_after_run;     /* SIGTERM came during a run */
        guint64 run_started;

        sd_event *event;
        GSource *event_source;
        sd_bus *bus;
        bool name_owned;
        Logind *logind;
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

        void (*on_exit)(struct Manager *m, int code, void *userdata);
        void *on_exit_userdata;
} Manager;

int manager_new(const ManagerOptions *o, Config *config, Manager **ret);
Manager *manager_free(Manager *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Manager, manager_free);

/* Connects to the bus and libvirt, takes the inhibitor; READY=1 follows. */
int manager_start(Manager *m, char **ret_error);

/* SIGTERM/SIGINT: exit at once, or preserve first when the host is going down. */
void manager_terminate(Manager *m);
/* SIGHUP/Reload(): -EINVAL with *ret_error naming file/key when the new config is bad. */
int manager_reload(Manager *m, char **ret_error);
/* PreserveGuests()/RestoreGuests(): -EBUSY while a run is under way. */
int manager_preserve(Manager *m);
int manager_restore(Manager *m);

/* For the bus: the rows of ListGuests(). */
typedef struct GuestRow {
        char *uri, *uuid, *name;
        const char *state, *outcome;
} GuestRow;
GPtrArray *manager_list_guests(Manager *m); /* GuestRow*, owned by the array */
typedef struct PlanRow {
        char *uri, *uuid, *name;
        bool persistent;
        char *steps; /* "save,shutdown,poweroff"; "" = nothing: it would be left running */
} PlanRow;
/* What a host shutdown would do now to each running or paused guest. */
GPtrArray *manager_plan(Manager *m); /* PlanRow*, owned by the array */
void manager_counts(Manager *m, unsigned *ret_total, unsigned *ret_done, unsigned *ret_failed,
                    double *ret_progress);
bool manager_inhibitor_held(Manager *m);

/* bus-manager.c */
int bus_manager_register(Manager *m);
void bus_manager_emit(Manager *m, const char *const *properties);
void bus_manager_emit_run_finished(Manager *m, const char *kind, unsigned done, unsigned failed);
