/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* logind (and systemd's SystemState) on the system bus: the delay inhibitor for shutdown,
 * PrepareForShutdown, and whether the host is shutting down. Every call is asynchronous. */

#include <stdbool.h>
#include <systemd/sd-bus.h>

typedef struct Logind Logind;

typedef struct LogindCallbacks {
        /* PrepareForShutdown(b) or PrepareForShutdownWithMetadata(b, a{sv}). */
        void (*prepare_for_shutdown)(Logind *l, bool start, void *userdata);
        /* The inhibitor was taken or lost (also: logind went away). */
        void (*inhibitor_changed)(Logind *l, bool held, void *userdata);
        /* An attempt to take the inhibitor has an answer: held, or @error says why not. */
        void (*settled)(Logind *l, const char *error, void *userdata);
} LogindCallbacks;

int logind_new(sd_bus *bus, const LogindCallbacks *cb, void *userdata, Logind **ret);
Logind *logind_free(Logind *l);

/* Whether we want the delay lock. Taking it is asynchronous; it is re-taken whenever
 * logind (re)appears while wanted. */
void logind_want_inhibitor(Logind *l, bool want);
bool logind_inhibitor_held(Logind *l);
bool logind_settled(Logind *l);
/* What the last PrepareForShutdownWithMetadata(true) said the shutdown is ("power-off",
 * "reboot", "kexec", …; systemd >= 255); NULL when logind did not say. */
const char *logind_shutdown_type(Logind *l);

/* Asks logind's PreparingForShutdown and systemd's SystemState; @cb gets true if either says
 * the host is going down, with a short human explanation. Missing services count as "no". */
typedef void (*LogindShutdownQuery)(bool shutting_down, const char *why, void *userdata);
void logind_query_shutting_down(Logind *l, LogindShutdownQuery cb, void *userdata);
