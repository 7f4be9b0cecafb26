/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What manager.c (the state, the runs, the restores) and manager-rows.c (what the bus shows:
 * ListGuests(), RestoreWaiting, Plan()) share, and nothing else includes. */

#include "manager.h"
#include "policy.h"

/* The save speed measured on this host, in the state directory. */
#define SPEED_FILE "save-bandwidth"

/* A recorded guest whose start failed: retried with backoff within RestoreRetrySec. */
typedef struct Waiting {
        unsigned attempts;
        guint64 next_at; /* monotonic µs */
        bool given_up;   /* RestoreRetrySec spent: kept in the record for the next start-up */
        char *why;
} Waiting;

/* "uri\nuuid", the key of the manager's tables. */
char *manager_key_of(const char *uri, const char *uuid);
/* Whether the record's entry is one a restore starts. */
bool manager_restorable(const RecordGuest *rg);
/* A finished run's saves update the save speed kept for the pre-flight estimates. */
void manager_note_save_speed(Manager *m, Engine *e);
/* The pre-flight input of a guest under its policy: @dir as PreflightGuest.dir. */
PreflightGuest manager_preflight_guest(const CachedGuest *g, const GuestPolicy *policy, int dir);
/* GDestroyNotify of Manager.plan_calls. */
void manager_plan_call_free(gpointer p);

/* manager-history.c */
/* Asks logind (or systemd's queued jobs) what kind of host shutdown this is, for the history. */
void manager_learn_shutdown_type(Manager *m);
/* Sets the reason and the requester of the run about to start. */
void manager_run_origin(Manager *m, RunKind kind, bool host_shutdown);
/* Writes the finished run @e to the history (on the history thread). */
void manager_keep_run(Manager *m, Engine *e);

/* manager.c */
void manager_start_run(Manager *m, RunKind kind, bool host_shutdown, GHashTable *only);

/* manager-status.c: what systemd and the bus are told. Keepalives are re-sent this often. */
#define KEEPALIVE_INTERVAL_MSEC 10000
void manager_set_state(Manager *m, ManagerState s);
void manager_notify(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* STATUS= and the run's properties, sent once per main-loop turn and at most every 50 ms. */
void manager_schedule_flush(Manager *m);
/* EXTEND_TIMEOUT_USEC while a preserve run is bounded or moves; @force: at once (SIGTERM). */
void manager_send_keepalive(Manager *m, bool force);
gboolean manager_keepalive_cb(gpointer m);
gboolean manager_watchdog_cb(gpointer m);
/* manager_preserve() and manager_restore() of the guests @only ("uri\nuuid"; NULL: all). */
int manager_preserve_guests(Manager *m, bool hold, GHashTable *only);
int manager_restore_guests(Manager *m, GHashTable *only);

/* manager-metrics.c: rewrites the metrics textfile when its text or path changed; stops
 * updating it when TextfilePath= is gone. */
void manager_update_metrics_file(Manager *m);

/* manager-restore.c */
/* Restores what may be restored now (record guests on URIs that answer, retries due); returns
 * whether a run started. */
bool manager_maybe_restore(Manager *m);
/* Once READY and every URI's first list is back (or ConnectTimeoutSec passed): restore. */
void manager_maybe_start_up(Manager *m);
/* GSourceFunc: ConnectTimeoutSec passed without every first list. */
gboolean manager_settle_cb(gpointer m);
/* The first list of @uri since the start: lost guests enter the record. */
void manager_reconcile(Manager *m, const char *uri);
/* After a restore run: what is left waits for a retry; returns how many wait. */
unsigned manager_note_restore_results(Manager *m, Engine *e);
/* The running set follows the cache (not during a run). */
void manager_schedule_running_update(Manager *m);
