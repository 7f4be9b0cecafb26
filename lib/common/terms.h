/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The words of guestkeeper: enums whose strings are the values users see in the config, the
 * record and on D-Bus. One idiom: a table, name_to_string() and name_from_string(). */

#include <stdbool.h>
#include <errno.h>

typedef enum Scope {
        SCOPE_NONE,
        SCOPE_PERSISTENT,
        SCOPE_TRANSIENT,
        SCOPE_ALL,
        _SCOPE_MAX,
        _SCOPE_INVALID = -EINVAL,
} Scope;

const char *scope_to_string(Scope s);
Scope scope_from_string(const char *s);
bool scope_includes(Scope s, bool persistent);

/* The escalation, in the order the contract gives. */
typedef enum Step {
        STEP_SAVE,
        STEP_SHUTDOWN,
        STEP_POWEROFF,
        _STEP_MAX,
        _STEP_INVALID = -EINVAL,
} Step;

const char *step_to_string(Step s);
Step step_from_string(const char *s);

#define STEP_MASK(s) (1u << (s))
#define STEPS_ALL    (STEP_MASK(STEP_SAVE) | STEP_MASK(STEP_SHUTDOWN) | STEP_MASK(STEP_POWEROFF))

/* "save,shutdown,poweroff"; "" for no step. Caller frees. */
char *steps_to_string(unsigned mask);
/* Returns the mask, or -EINVAL for an unknown step name. */
int steps_from_string(const char *s);

/* Per guest outcome, as ListGuests() and the record show it. */
typedef enum Outcome {
        OUTCOME_NONE,
        OUTCOME_SAVING,
        OUTCOME_SAVED,
        OUTCOME_SHUTTING_DOWN,
        OUTCOME_SHUTDOWN,
        OUTCOME_POWEROFF,
        OUTCOME_FAILED,
        OUTCOME_RESTORING,
        OUTCOME_RESTORED,
        OUTCOME_SKIPPED,   /* ListGuests() only: Action=skip, deliberately left alone */
        OUTCOME_LOST,      /* was running, and stopped while nobody watched (power cut, crash) */
        OUTCOME_RECOVERED, /* a lost guest started again: restored after an unclean stop */
        OUTCOME_WAITING,   /* ListGuests() only: its restore is retried later */
        _OUTCOME_MAX,
        _OUTCOME_INVALID = -EINVAL,
} Outcome;

const char *outcome_to_string(Outcome o);
Outcome outcome_from_string(const char *s);
/* A final preserve outcome that left the guest stopped by us: restore starts it again. */
bool outcome_is_stopped(Outcome o);
/* Running again through a restore: restored, or recovered after an unclean stop. */
bool outcome_is_restored(Outcome o);
/* Step under way: the guest may or may not have stopped (daemon died in the middle). */
bool outcome_is_in_flight(Outcome o);

/* A guest's first step at shutdown, chosen per guest (guestkeeper.conf(5), "PER GUEST"). */
typedef enum Action {
        ACTION_SAVE,
        ACTION_SHUTDOWN,
        ACTION_POWEROFF,
        ACTION_SKIP, /* never touched at shutdown, never started at boot */
        _ACTION_MAX,
        _ACTION_INVALID = -EINVAL,
} Action;

const char *action_to_string(Action a);
Action action_from_string(const char *s);

/* How a graceful shutdown asks the guest: flags, libvirt's VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN
 * and VIR_DOMAIN_SHUTDOWN_GUEST_AGENT. With both, the agent is tried first, then ACPI. */
#define SHUTDOWN_MODE_ACPI  (1u << 0)
#define SHUTDOWN_MODE_AGENT (1u << 1)

/* "acpi", "agent", "agent,acpi"; NULL for 0. Static strings. */
const char *shutdown_mode_to_string(unsigned mode);
/* A comma-separated list of acpi and agent, in any order; -EINVAL otherwise. */
int shutdown_mode_from_string(const char *s);
