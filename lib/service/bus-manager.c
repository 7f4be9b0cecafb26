/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.guestkeeper1.Manager at /org/guestkeeper1: the bus set-up and the D-Bus glue, nothing
 * else. Main thread only. Every answer comes from state the manager keeps: no method waits on
 * libvirt. */
#include "gk-build-config.h"

#include <errno.h>
#include <inttypes.h>

#include "bus-names.h"
#include "bus-polkit.h"
#include "bus-util.h"
#include "event-glue.h"
#include "log.h"
#include "manager.h"

#define OBJECT_PATH GK_OBJECT_PATH
#define INTERFACE   GK_INTERFACE

/* The daemon checks the caller itself (org.guestkeeper1(5), "ACCESS"): a permissive bus policy is not
 * enough to change anything. Root, or whoever polkit authorizes for @action. */
static int authorize(Manager *m, sd_bus_message *msg, const char *action, sd_bus_error *error)
{
        return bus_authorize(msg, action, m->polkit, error);
}

/* Who called, for the run's history: "uid 0 via guestkeeperctl[4242] in session-3.scope". @ret_uid
 * and @ret_pid: (uid_t) -1 and 0 when unknown. */
static char *describe_caller(sd_bus_message *msg, uid_t *ret_uid, pid_t *ret_pid)
{
        g_autoptr(sd_bus_creds) creds = NULL;
        GString *s = g_string_new(NULL);
        const char *comm = NULL, *unit = NULL;
        pid_t pid = 0;
        uid_t uid = (uid_t) -1;

        if (sd_bus_query_sender_creds(msg,
                                      SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID | SD_BUS_CREDS_PID |
                                              SD_BUS_CREDS_COMM | SD_BUS_CREDS_UNIT | SD_BUS_CREDS_AUGMENT,
                                      &creds) >= 0) {
                if (sd_bus_creds_get_euid(creds, &uid) >= 0 || sd_bus_creds_get_uid(creds, &uid) >= 0)
                        g_string_append_printf(s, "uid %u", (unsigned) uid);
                (void) sd_bus_creds_get_pid(creds, &pid);
                (void) sd_bus_creds_get_comm(creds, &comm);
                (void) sd_bus_creds_get_unit(creds, &unit);
                if (comm && pid > 0)
                        g_string_append_printf(s, "%svia %s[%i]", s->len ? " " : "", comm, (int) pid);
                if (unit)
                        g_string_append_printf(s, "%sin %s", s->len ? " " : "", unit);
        }
        if (s->len == 0)
                g_string_append(s, sd_bus_message_get_sender(msg) ?: "unknown");
        if (ret_uid)
                *ret_uid = uid;
        if (ret_pid)
                *ret_pid = pid;
        return g_string_free(s, FALSE);
}

/* A privileged call the caller is allowed to make, with who made it (GUESTKEEPER_CALLER_UID=,
 * GUESTKEEPER_CALLER_PID=): "PreserveGuests() called by uid 0 via guestkeeperctl[4242]: rehearsal".
 * A call that starts a run logs once the run started, so the entry carries its GUESTKEEPER_RUN_ID=. */
static void log_call(sd_bus_message *msg, const char *what)
{
        char uid_field[64], pid_field[64];
        const char *extra[3] = {NULL};
        g_autofree char *who = NULL;
        unsigned n = 0;
        pid_t pid;
        uid_t uid;

        who = describe_caller(msg, &uid, &pid);
        if (uid != (uid_t) -1) {
                g_snprintf(uid_field, sizeof uid_field, "GUESTKEEPER_CALLER_UID=%u", (unsigned) uid);
                extra[n++] = uid_field;
        }
        if (pid > 0) {
                g_snprintf(pid_field, sizeof pid_field, "GUESTKEEPER_CALLER_PID=%i", (int) pid);
                extra[n++] = pid_field;
        }
        log_full_fields(LOG_NOTICE, 0, NULL, MESSAGE_ID_CALLED, extra, "%s() called by %s%s%s",
                        sd_bus_message_get_member(msg), who, what ? ": " : "", what ?: "");
}

static int busy(sd_bus_error *error, Manager *m)
{
        return sd_bus_error_setf(error, GK_ERROR_BUSY, "A run is under way (state %s)",
                                 manager_state_to_string(m->state));
}

static int method_preserve(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        int r;

        r = authorize(m, msg, GK_ACTION_PRESERVE, error);
        if (r != 0)
                return r;
        m->requester = describe_caller(msg, NULL, NULL);
        if (manager_preserve(m, false) == -EBUSY) {
                g_clear_pointer(&m->requester, g_free);
                return busy(error, m);
        }
        log_call(msg, "rehearsal");
        return sd_bus_reply_method_return(msg, NULL);
}

static int check_preserve_flags(uint64_t flags, sd_bus_error *error)
{
        if (flags & ~(uint64_t) GK_PRESERVE_HOLD)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%" PRIx64,
                                         flags & ~(uint64_t) GK_PRESERVE_HOLD);
        return 0;
}

static int method_preserve_with_flags(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        uint64_t flags;
        int r;

        r = sd_bus_message_read(msg, "t", &flags);
        if (r < 0)
                return r;
        r = check_preserve_flags(flags, error);
        if (r >= 0)
                r = authorize(m, msg, GK_ACTION_PRESERVE, error);
        if (r != 0)
                return r;
        m->requester = describe_caller(msg, NULL, NULL);
        if (manager_preserve(m, flags & GK_PRESERVE_HOLD) == -EBUSY) {
                g_clear_pointer(&m->requester, g_free);
                return busy(error, m);
        }
        log_call(msg, flags & GK_PRESERVE_HOLD ? "maintenance hold" : "rehearsal");
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_restore(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        int r;

        r = authorize(m, msg, GK_ACTION_RESTORE, error);
        if (r != 0)
                return r;
        m->requester = describe_caller(msg, NULL, NULL);
        if (manager_restore(m) == -EBUSY) {
                g_clear_pointer(&m->requester, g_free);
                return busy(error, m);
        }
        log_call(msg, NULL);
        return sd_bus_reply_method_return(msg, NULL);
}

/* PreserveGuestsNamed() and RestoreGuestsNamed(). */
static int run_named(sd_bus_message *msg, Manager *m, RunKind kind, sd_bus_error *error)
{
        g_auto(GStrv) names = NULL;
        g_autofree char *why = NULL, *list = NULL;
        uint64_t flags = 0;
        int r;

        r = sd_bus_message_read_strv(msg, &names);
        if (r >= 0 && kind == RUN_PRESERVE)
                r = sd_bus_message_read(msg, "t", &flags);
        if (r < 0)
                return r;
        r = check_preserve_flags(flags, error);
        if (r >= 0)
                r = authorize(m, msg, kind == RUN_PRESERVE ? GK_ACTION_PRESERVE : GK_ACTION_RESTORE, error);
        if (r != 0)
                return r;
        m->requester = describe_caller(msg, NULL, NULL);
        r = manager_run_named(m, kind, names, flags & GK_PRESERVE_HOLD, &why);
        if (r < 0)
                g_clear_pointer(&m->requester, g_free);
        if (r == -EBUSY)
                return busy(error, m);
        if (r == -ENOENT)
                return sd_bus_error_set(error, GK_ERROR_NO_SUCH_GUEST, why);
        if (r < 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, why);
        list = g_strjoinv(", ", names);
        log_call(msg, list);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_preserve_named(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return run_named(msg, userdata, RUN_PRESERVE, error);
}

static int method_restore_named(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return run_named(msg, userdata, RUN_RESTORE, error);
}

static int method_cancel(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        g_autofree char *why = NULL;
        Manager *m = userdata;
        int r;

        r = authorize(m, msg, GK_ACTION_CANCEL, error);
        if (r != 0)
                return r;
        m->requester = describe_caller(msg, NULL, NULL);
        r = manager_cancel(m, &why);
        if (r == -ESRCH)
                return sd_bus_error_set(error, GK_ERROR_NOT_RUNNING, why);
        if (r < 0)
                return sd_bus_error_set(error, GK_ERROR_BUSY, why);
        log_call(msg, NULL);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        g_autofree char *why = NULL;
        Manager *m = userdata;
        int r;

        r = authorize(m, msg, GK_ACTION_RELOAD, error);
        if (r != 0)
                return r;
        log_call(msg, NULL);
        if (manager_reload(m, &why) < 0)
                return sd_bus_error_set(error, GK_ERROR_INVALID_CONFIG, why);
        bus_manager_emit(m, (const char *const[]){"URIs", NULL});
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_list_guests(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) rows = manager_list_guests(userdata);
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sssss)");
        for (guint i = 0; r >= 0 && i < rows->len; i++) {
                GuestRow *g = rows->pdata[i];
                r = sd_bus_message_append(reply, "(sssss)", g->uri, g->uuid, g->name, g->state, g->outcome);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_metrics(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        g_autofree char *text = manager_metrics(userdata);

        return sd_bus_reply_method_return(msg, "s", text);
}

static void plan_msg_unref(gpointer msg)
{
        sd_bus_message_unref(msg);
}

static void plan_reply(Manager *m, GPtrArray *rows, const PreflightPlan *plan, const char *warning,
                       void *userdata)
{
        sd_bus_message *msg = userdata;
        g_autoptr(sd_bus_message) reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ssssba(sss))");
        for (guint i = 0; r >= 0 && i < rows->len; i++) {
                PlanRow *p = rows->pdata[i];

                r = sd_bus_message_open_container(reply, 'r', "ssssba(sss)");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "ssssb", p->uri, p->uuid, p->name, p->steps,
                                                  p->persistent);
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "(sss)");
                for (guint k = 0; r >= 0 && k + 2 < p->settings->len; k += 3)
                        r = sd_bus_message_append(reply, "(sss)", p->settings->pdata[k],
                                                  p->settings->pdata[k + 1], p->settings->pdata[k + 2]);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        if (r < 0)
                (void) sd_bus_reply_method_errno(msg, r, NULL);
}

/* The reply waits for the pre-flight probe (the save directories' free space, on a worker). */
static int method_plan(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        manager_plan(userdata, plan_reply, sd_bus_message_ref(msg), plan_msg_unref);
        return 1;
}

static void plan_summary_reply(Manager *m, GPtrArray *rows, const PreflightPlan *plan, const char *warning,
                               void *userdata)
{
        sd_bus_message *msg = userdata;
        int r;

        r = sd_bus_reply_method_return(msg, "ttuuus", plan->total_usec, plan->deadline_usec, plan->saves,
                                       plan->saves_in_time, plan->dropped, warning ?: "");
        if (r < 0)
                (void) sd_bus_reply_method_errno(msg, r, NULL);
}

static int method_plan_summary(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        manager_plan(userdata, plan_summary_reply, sd_bus_message_ref(msg), plan_msg_unref);
        return 1;
}

/* LastRuns(): org.guestkeeper1(5) names the fields. */
#define STEP_TYPE    "(stts)"
#define GUEST_FIELDS "sssstxsa" STEP_TYPE
#define GUEST_TYPE   "(" GUEST_FIELDS ")"
#define RUN_FIELDS   "sssstttbuuuasa" GUEST_TYPE
#define RUN_TYPE     "(" RUN_FIELDS ")"

static int append_run(sd_bus_message *reply, const RunRecord *run)
{
        int r;

        r = sd_bus_message_open_container(reply, 'r', RUN_FIELDS);
        if (r >= 0)
                r = sd_bus_message_append(reply, "sssstttbuuu", run->id, run_kind_to_string(run->kind),
                                          run_reason_to_string(run->reason), run->requested_by,
                                          (uint64_t) run->started, (uint64_t) run->finished,
                                          (uint64_t) run->duration_usec, (int) run->cancelled, run->total,
                                          run->done, run->failed);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "s");
        for (guint i = 0; r >= 0 && i < run->unreachable->len; i++)
                r = sd_bus_message_append(reply, "s", run->unreachable->pdata[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', GUEST_TYPE);
        for (guint i = 0; r >= 0 && i < run->guests->len; i++) {
                const RunGuestRecord *g = run->guests->pdata[i];

                r = sd_bus_message_open_container(reply, 'r', GUEST_FIELDS);
                if (r >= 0)
                        r = sd_bus_message_append(reply, "sssstxs", g->uri, g->uuid, g->name,
                                                  outcome_to_string(g->outcome), (uint64_t) g->duration_usec,
                                                  (int64_t) g->bytes, g->error ?: "");
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', STEP_TYPE);
                for (unsigned k = 0; r >= 0 && k < g->n_steps; k++)
                        r = sd_bus_message_append(
                                reply, STEP_TYPE, engine_step_kind_to_string(g->steps[k].kind),
                                (uint64_t) g->steps[k].start_usec, (uint64_t) g->steps[k].duration_usec,
                                g->steps[k].error ?: "");
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int method_last_runs(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        g_autoptr(sd_bus_message) reply = NULL;
        g_autoptr(GPtrArray) runs = NULL;
        int all = 0, r;

        r = sd_bus_message_read(msg, "b", &all);
        if (r < 0)
                return r;
        runs = manager_last_runs(userdata, all);
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', RUN_TYPE);
        for (guint i = 0; r >= 0 && i < runs->len; i++)
                r = append_run(reply, runs->pdata[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                       sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                     sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "s", manager_state_to_string(((Manager *) userdata)->state));
}

static int get_last_run(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;

        return sd_bus_message_append(reply, "s",
                                     m->run    ? run_kind_to_string(engine_kind(m->run))
                                     : m->last ? run_kind_to_string(m->last->kind)
                                               : "");
}

static int get_conflicts(sd_bus *bus, const char *path, const char *interface, const char *property,
                         sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        Manager *m = userdata;
        g_autoptr(GPtrArray) copy = g_ptr_array_new();

        for (guint i = 0; m->conflicts && i < m->conflicts->len; i++)
                g_ptr_array_add(copy, m->conflicts->pdata[i]);
        g_ptr_array_add(copy, NULL);
        return sd_bus_message_append_strv(reply, (char **) copy->pdata);
}

static int get_inhibitor(sd_bus *bus, const char *path, const char *interface, const char *property,
                         sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "b", manager_inhibitor_held(userdata));
}

static int get_held(sd_bus *bus, const char *path, const char *interface, const char *property,
                    sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        return sd_bus_message_append(reply, "b", manager_held(userdata));
}

static int get_restore_waiting(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        g_autoptr(GPtrArray) rows = manager_restore_waiting(userdata);
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ssss)");
        for (guint i = 0; r >= 0 && i < rows->len; i++) {
                WaitingRow *w = rows->pdata[i];

                r = sd_bus_message_append(reply, "(ssss)", w->uri, w->uuid, w->name, w->why);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int get_uris(sd_bus *bus, const char *path, const char *interface, const char *property,
                    sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        g_auto(GStrv) uris = guest_cache_uris(((Manager *) userdata)->cache);

        return sd_bus_message_append_strv(reply, uris);
}

static int get_count(sd_bus *bus, const char *path, const char *interface, const char *property,
                     sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        unsigned total, done, failed;
        double progress;

        manager_counts(userdata, &total, &done, &failed, &progress);
        if (g_str_equal(property, "Progress"))
                return sd_bus_message_append(reply, "d", progress);
        return sd_bus_message_append(reply, "u",
                                     g_str_equal(property, "GuestsTotal")  ? total
                                     : g_str_equal(property, "GuestsDone") ? done
                                                                           : failed);
}

static int get_in_flight(sd_bus *bus, const char *path, const char *interface, const char *property,
                         sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        g_autoptr(GPtrArray) gs = manager_in_flight(userdata);
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ssss)");
        for (guint i = 0; r >= 0 && i < gs->len; i++) {
                const EngineGuest *g = gs->pdata[i];

                r = sd_bus_message_append(reply, "(ssss)", g->uri, g->uuid, g->name,
                                          outcome_to_string(g->outcome));
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("InhibitorHeld", "b", get_inhibitor, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("URIs", "as", get_uris, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("GuestsTotal", "u", get_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("GuestsDone", "u", get_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("GuestsFailed", "u", get_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Progress", "d", get_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("GuestsInFlight", "a(ssss)", get_in_flight, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastRun", "s", get_last_run, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Conflicts", "as", get_conflicts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Held", "b", get_held, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RestoreWaiting", "a(ssss)", get_restore_waiting, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        /* UNPRIVILEGED: sd-bus would otherwise demand CAP_SYS_ADMIN with a generic error;
         * authorize() does the check, with a message that says what was refused. */
        SD_BUS_METHOD_WITH_ARGS("ListGuests", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(sssss)", guests),
                                method_list_guests, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Plan", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(ssssba(sss))", guests), method_plan,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("PlanSummary", SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("t", estimate_usec, "t", deadline_usec, "u", saves, "u",
                                              saves_in_time, "u", saves_dropped, "s", warning),
                                method_plan_summary, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Metrics", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", text), method_metrics,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("LastRuns", SD_BUS_ARGS("b", all), SD_BUS_RESULT("a" RUN_TYPE, runs),
                                method_last_runs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("PreserveGuests", "", "", method_preserve, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("PreserveGuestsWithFlags", SD_BUS_ARGS("t", flags), SD_BUS_NO_RESULT,
                                method_preserve_with_flags, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("RestoreGuests", "", "", method_restore, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("PreserveGuestsNamed", SD_BUS_ARGS("as", guests, "t", flags),
                                SD_BUS_NO_RESULT, method_preserve_named, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RestoreGuestsNamed", SD_BUS_ARGS("as", guests), SD_BUS_NO_RESULT,
                                method_restore_named, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Cancel", "", "", method_cancel, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reload", "", "", method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("RunFinished", SD_BUS_ARGS("s", kind, "u", done, "u", failed), 0),
        SD_BUS_VTABLE_END,
};

/* The name is queued for, not refused: at a restart the bus may still list the old process as its
 * owner for a moment after it exited. NameAcquired says when it is ours; a name still owned after
 * NAME_WAIT_USEC belongs to another guestkeeperd, and two must never preserve the same guests. */
#define NAME_WAIT_USEC (10 * USEC_PER_SEC)

static int name_acquired_signal(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        const char *name;

        if (sd_bus_message_read(msg, "s", &name) >= 0 && g_str_equal(name, GK_BUS_NAME) && !m->name_owned)
                manager_name_acquired(m, NULL);
        return 0;
}

static int name_wait_expired(sd_event_source *s, uint64_t usec, void *userdata)
{
        Manager *m = userdata;

        if (!m->name_owned)
                manager_name_acquired(m, "another process owns it (is guestkeeperd already running?)");
        return 0;
}

static int name_requested(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        Manager *m = userdata;
        uint32_t ret;
        int r;

        if (sd_bus_message_is_method_error(reply, NULL)) {
                /* An error reply may carry no message; it always has a name. */
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                manager_name_acquired(m, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_read(reply, "u", &ret);
        if (r < 0) {
                manager_name_acquired(m, "RequestName() returned no result");
                return 0;
        }
        if (ret == 1 /* primary owner */ || ret == 4 /* already the owner */) {
                if (!m->name_owned)
                        manager_name_acquired(m, NULL);
                return 0;
        }
        log_notice("The bus name " GK_BUS_NAME " is still owned by another process; waiting for it");
        r = sd_event_add_time_relative(m->event, NULL, CLOCK_MONOTONIC, NAME_WAIT_USEC, 0, name_wait_expired,
                                       m);
        if (r < 0)
                manager_name_acquired(m, "another process owns it");
        return 0;
}

int manager_connect_bus(Manager *m, char **ret_error)
{
        int r;

        r = sd_event_new(&m->event);
        if (r < 0) {
                *ret_error = g_strdup_printf("Cannot create the event loop: %s", g_strerror(-r));
                return r;
        }
        m->event_source = event_glue_attach(m->event, NULL);
        r = sd_bus_open_system(&m->bus);
        if (r >= 0)
                r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                *ret_error = g_strdup_printf("Cannot connect to the system bus: %s", g_strerror(-r));
                return r;
        }
        r = sd_bus_add_object_vtable(m->bus, NULL, OBJECT_PATH, INTERFACE, manager_vtable, m);
        if (r < 0) {
                *ret_error = g_strdup_printf("Cannot register the D-Bus object: %s", g_strerror(-r));
                return r;
        }
        r = sd_bus_match_signal_async(m->bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                      "org.freedesktop.DBus", "NameAcquired", name_acquired_signal, NULL, m);
        if (r >= 0)
                r = sd_bus_request_name_async(m->bus, NULL, GK_BUS_NAME, SD_BUS_NAME_QUEUE, name_requested,
                                              m);
        if (r < 0) {
                *ret_error = g_strdup_printf("Cannot request the bus name: %s", g_strerror(-r));
                return r;
        }
        r = logind_new(m->bus, &manager_logind_callbacks, m, &m->logind);
        if (r < 0) {
                *ret_error = g_strdup_printf("Cannot watch logind: %s", g_strerror(-r));
                return r;
        }
        logind_want_inhibitor(m->logind, true);
        m->polkit = polkit_registry_new();
        return 0;
}

void manager_disconnect_bus(Manager *m)
{
        g_clear_pointer(&m->logind, logind_free);
        m->polkit = polkit_registry_free(m->polkit);
        if (m->bus) {
                sd_bus_flush_close_unref(m->bus);
                m->bus = NULL;
        }
        if (m->event_source) {
                g_source_destroy(m->event_source);
                g_clear_pointer(&m->event_source, g_source_unref);
        }
        m->event = sd_event_unref(m->event);
}

void bus_manager_emit(Manager *m, const char *const *properties)
{
        if (!m->bus)
                return;
        (void) sd_bus_emit_properties_changed_strv(m->bus, OBJECT_PATH, INTERFACE, (char **) properties);
}

void bus_manager_emit_run_finished(Manager *m, const char *kind, unsigned done, unsigned failed)
{
        if (!m->bus)
                return;
        (void) sd_bus_emit_signal(m->bus, OBJECT_PATH, INTERFACE, "RunFinished", "suu", kind, done, failed);
}
