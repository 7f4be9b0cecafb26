/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What systemd and the bus are told about the manager: sd_notify (STATUS=, keepalives, the
 * watchdog), the State property and the properties that follow a run. manager.c owns the state. */
#include "manager-private.h"

#include <systemd/sd-daemon.h>

#include "log.h"
#include "macro.h"
#include "util.h"

/* Keepalives (guestkeeperd(8), docs/architecture.md): EXTEND_TIMEOUT_USEC of 30 s, re-sent every
 * KEEPALIVE_INTERVAL_MSEC while the run will end by itself: before DeadlineSec is spent (the deadline bounds
 * every step), or while it moves or waits on a bounded timer. Never past DeadlineSec plus the time the
 * deadline's poweroffs and the last record write need. A run with nothing bounded left is hung: the
 * keepalives stop and systemd's stop timeout ends it. */
#define KEEPALIVE_EXTEND_USEC (30 * USEC_PER_SEC)
#define DEADLINE_GRACE_USEC   (15 * USEC_PER_SEC)
#define FLUSH_MSEC            50

void manager_notify(const char *fmt, ...)
{
        g_autofree char *s = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        s = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        r = sd_notify(0, s);
        if (r < 0)
                log_full(LOG_WARNING, -r, NULL, NULL, "Failed to send \"%s\" to the service manager: %m", s);
}

void manager_counts(Manager *m, unsigned *ret_total, unsigned *ret_done, unsigned *ret_failed,
                    double *ret_progress)
{
        if (m->run) {
                engine_counts(m->run, ret_total, ret_done, ret_failed);
                *ret_progress = engine_progress(m->run);
        } else {
                *ret_total = m->last ? m->last->total : 0;
                *ret_done = m->last ? m->last->done : 0;
                *ret_failed = m->last ? m->last->failed : 0;
                *ret_progress = m->last ? m->last->progress : 0.0;
        }
}

bool manager_inhibitor_held(Manager *m)
{
        return m->logind && logind_inhibitor_held(m->logind);
}

static char *status_line(Manager *m)
{
        unsigned total, done, failed, guests, running, n_uris = guest_cache_n_uris(m->cache);
        double progress;

        manager_counts(m, &total, &done, &failed, &progress);
        switch (m->state) {
        case MANAGER_STARTING:
                return g_strdup("Starting");
        case MANAGER_STOPPING:
                return g_strdup("Stopping");
        case MANAGER_PRESERVING:
        case MANAGER_RESTORING: {
                g_autoptr(GPtrArray) gs = m->run ? engine_guests(m->run) : g_ptr_array_new();
                g_autofree char *what = NULL;

                for (guint i = 0; i < gs->len && !what; i++) {
                        const EngineGuest *g = gs->pdata[i];
                        if (g->outcome == OUTCOME_SAVING)
                                what = g_strdup_printf(": saving %s (%.0f%%)", g->name, g->fraction * 100);
                        else if (g->outcome == OUTCOME_SHUTTING_DOWN)
                                what = g_strdup_printf(": shutting down %s", g->name);
                        else if (g->outcome == OUTCOME_RESTORING)
                                what = g_strdup_printf(": starting %s", g->name);
                }
                if (total == 0 && m->run && !engine_is_finished(m->run))
                        return g_strdup_printf("%s: listing the guests of %u URI%s",
                                               m->state == MANAGER_PRESERVING ? "Preserving" : "Restoring",
                                               n_uris, n_uris == 1 ? "" : "s");
                if (failed)
                        return g_strdup_printf("%s %u/%u guests%s, %u failed",
                                               m->state == MANAGER_PRESERVING ? "Preserving" : "Restoring",
                                               done + failed, total, what ?: "", failed);
                return g_strdup_printf("%s %u/%u guests%s",
                                       m->state == MANAGER_PRESERVING ? "Preserving" : "Restoring",
                                       done + failed, total, what ?: "");
        }
        case MANAGER_PRESERVED:
                return g_strdup_printf(
                        "Preserved %u guests: %u saved, %u shut down, %u powered off, %u failed", total,
                        m->last ? m->last->by_outcome[OUTCOME_SAVED] : 0,
                        m->last ? m->last->by_outcome[OUTCOME_SHUTDOWN] : 0,
                        m->last ? m->last->by_outcome[OUTCOME_POWEROFF] : 0, failed);
        case MANAGER_IDLE:
        default: {
                g_autoptr(GPtrArray) waiting = manager_restore_waiting(m);
                g_autofree char *extra = NULL;

                if (manager_held(m))
                        extra = g_strdup_printf("; HELD: %u preserved guests stay down until "
                                                "'guestkeeperctl restore'",
                                                m->record->guests->len);
                else if (waiting->len > 0)
                        extra = g_strdup_printf("; %u guest%s waiting to be restored", waiting->len,
                                                waiting->len == 1 ? "" : "s");
                guest_cache_count(m->cache, &guests, &running);
                return g_strdup_printf("Watching %u guests (%u running) on %u URI%s; %s%s", guests, running,
                                       n_uris, n_uris == 1 ? "" : "s",
                                       manager_inhibitor_held(m)
                                               ? "shutdown inhibitor held"
                                               : "no shutdown inhibitor (logind unavailable)",
                                       extra ?: "");
        }
        }
}

/* The status line, plus the URIs the run could not reach: never silent. */
static char *full_status_line(Manager *m)
{
        g_autofree char *s = status_line(m);
        GPtrArray *un = m->run ? engine_unreachable(m->run) : m->last ? m->last->unreachable : NULL;
        GString *out;

        if ((m->state != MANAGER_PRESERVING && m->state != MANAGER_PRESERVED &&
             m->state != MANAGER_RESTORING) ||
            !un || un->len == 0)
                return g_steal_pointer(&s);
        out = g_string_new(s);
        g_string_append(out, "; UNREACHABLE: ");
        for (guint i = 0; i < un->len; i++)
                g_string_append_printf(out, "%s%s", i ? ", " : "", (char *) un->pdata[i]);
        return g_string_free(out, FALSE);
}

GPtrArray *manager_in_flight(Manager *m)
{
        g_autoptr(GPtrArray) gs = m->run ? engine_guests(m->run) : g_ptr_array_new();
        GPtrArray *out = g_ptr_array_new();

        for (guint i = 0; i < gs->len; i++) {
                const EngineGuest *g = gs->pdata[i];

                if (!g->finished && outcome_is_in_flight(g->outcome))
                        g_ptr_array_add(out, (gpointer) g);
        }
        return out;
}

/* "outcome uuid\n" of each guest in flight: what GuestsInFlight last said. */
static char *in_flight_key(Manager *m)
{
        g_autoptr(GPtrArray) gs = manager_in_flight(m);
        GString *s = g_string_new(NULL);

        for (guint i = 0; i < gs->len; i++) {
                const EngineGuest *g = gs->pdata[i];

                g_string_append_printf(s, "%s %s\n", outcome_to_string(g->outcome), g->uuid);
        }
        return g_string_free(s, FALSE);
}

/* Sends STATUS= and PropertiesChanged for what changed. */
static void flush(Manager *m)
{
        g_autofree char *status = full_status_line(m), *in_flight = in_flight_key(m);
        const char *changed[6];
        unsigned total, done, failed, n = 0;
        double progress;

        if (!streq_ptr(status, m->last_status)) {
                manager_notify("STATUS=%s", status);
                g_free(m->last_status);
                m->last_status = g_steal_pointer(&status);
        }
        manager_counts(m, &total, &done, &failed, &progress);
        if (total != m->emitted_total)
                changed[n++] = "GuestsTotal";
        if (done != m->emitted_done)
                changed[n++] = "GuestsDone";
        if (failed != m->emitted_failed)
                changed[n++] = "GuestsFailed";
        if (progress != m->emitted_progress)
                changed[n++] = "Progress";
        if (!streq_ptr(in_flight, m->emitted_in_flight)) {
                changed[n++] = "GuestsInFlight";
                g_free(m->emitted_in_flight);
                m->emitted_in_flight = g_steal_pointer(&in_flight);
        }
        changed[n] = NULL;
        m->emitted_total = total;
        m->emitted_done = done;
        m->emitted_failed = failed;
        m->emitted_progress = progress;
        if (n > 0)
                bus_manager_emit(m, changed);
        manager_update_metrics_file(m);
}

static gboolean flush_cb(gpointer p)
{
        Manager *m = p;

        m->flush_source = 0;
        flush(m);
        return G_SOURCE_REMOVE;
}

void manager_schedule_flush(Manager *m)
{
        if (!m->flush_source)
                m->flush_source = g_timeout_add(FLUSH_MSEC, flush_cb, m);
}

/* State changes are emitted at once (after the counters they summarise). */
void manager_set_state(Manager *m, ManagerState s)
{
        if (m->state == s)
                return;
        m->state = s;
        flush(m);
        bus_manager_emit(m, (const char *const[]){"State", NULL});
        log_debug("State: %s", manager_state_to_string(s));
}

/* ---- keepalives ---- */

void manager_send_keepalive(Manager *m, bool force)
{
        guint64 now = now_usec(), extend = KEEPALIVE_EXTEND_USEC;

        if (!m->run || engine_kind(m->run) != RUN_PRESERVE)
                return;
        if (!force && !(m->config->deadline_usec > 0 && now < m->run_started + m->config->deadline_usec) &&
            engine_last_progress_usec(m->run) <= m->last_keepalive && !engine_has_bounded_wait(m->run))
                return; /* nothing bounded and no progress: a hung run must still time out */
        if (m->config->deadline_usec > 0) {
                guint64 end = m->run_started + m->config->deadline_usec + DEADLINE_GRACE_USEC;
                if (now >= end)
                        return;
                extend = MIN(extend, end - now);
        }
        m->last_keepalive = now;
        manager_notify("EXTEND_TIMEOUT_USEC=%" G_GUINT64_FORMAT, extend);
}

gboolean manager_keepalive_cb(gpointer p)
{
        manager_send_keepalive(p, false);
        return G_SOURCE_CONTINUE;
}

gboolean manager_watchdog_cb(gpointer p)
{
        manager_notify("WATCHDOG=1");
        return G_SOURCE_CONTINUE;
}
