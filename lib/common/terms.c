/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "terms.h"

#include <glib.h>

#include "macro.h"

static const char *const scope_table[_SCOPE_MAX] = {
        [SCOPE_NONE] = "none",
        [SCOPE_PERSISTENT] = "persistent",
        [SCOPE_TRANSIENT] = "transient",
        [SCOPE_ALL] = "all",
};
DEFINE_STRING_TABLE(scope, Scope, _SCOPE_MAX);

bool scope_includes(Scope s, bool persistent)
{
        switch (s) {
        case SCOPE_ALL:
                return true;
        case SCOPE_PERSISTENT:
                return persistent;
        case SCOPE_TRANSIENT:
                return !persistent;
        default:
                return false;
        }
}

static const char *const step_table[_STEP_MAX] = {
        [STEP_SAVE] = "save",
        [STEP_SHUTDOWN] = "shutdown",
        [STEP_POWEROFF] = "poweroff",
};
DEFINE_STRING_TABLE(step, Step, _STEP_MAX);

char *steps_to_string(unsigned mask)
{
        GString *s = g_string_new(NULL);

        for (Step i = 0; i < _STEP_MAX; i++)
                if (mask & STEP_MASK(i)) {
                        if (s->len > 0)
                                g_string_append_c(s, ',');
                        g_string_append(s, step_to_string(i));
                }
        return g_string_free(s, FALSE);
}

int steps_from_string(const char *s)
{
        g_auto(GStrv) parts = NULL;
        unsigned mask = 0;

        if (!s)
                return -EINVAL;
        if (*s == '\0')
                return 0;
        parts = g_strsplit(s, ",", -1);
        for (char **p = parts; *p; p++) {
                Step st = step_from_string(*p);
                if (st < 0)
                        return -EINVAL;
                mask |= STEP_MASK(st);
        }
        return (int) mask;
}

static const char *const outcome_table[_OUTCOME_MAX] = {
        [OUTCOME_NONE] = "",
        [OUTCOME_SAVING] = "saving",
        [OUTCOME_SAVED] = "saved",
        [OUTCOME_SHUTTING_DOWN] = "shutting-down",
        [OUTCOME_SHUTDOWN] = "shutdown",
        [OUTCOME_POWEROFF] = "poweroff",
        [OUTCOME_FAILED] = "failed",
        [OUTCOME_RESTORING] = "restoring",
        [OUTCOME_RESTORED] = "restored",
        [OUTCOME_SKIPPED] = "skipped",
        [OUTCOME_LOST] = "lost",
        [OUTCOME_RECOVERED] = "recovered",
        [OUTCOME_WAITING] = "waiting",
};
DEFINE_STRING_TABLE(outcome, Outcome, _OUTCOME_MAX);

bool outcome_is_stopped(Outcome o)
{
        return o == OUTCOME_SAVED || o == OUTCOME_SHUTDOWN || o == OUTCOME_POWEROFF;
}

bool outcome_is_restored(Outcome o)
{
        return o == OUTCOME_RESTORED || o == OUTCOME_RECOVERED;
}

bool outcome_is_in_flight(Outcome o)
{
        return o == OUTCOME_SAVING || o == OUTCOME_SHUTTING_DOWN || o == OUTCOME_RESTORING;
}

static const char *const action_table[_ACTION_MAX] = {
        [ACTION_SAVE] = "save",
        [ACTION_SHUTDOWN] = "shutdown",
        [ACTION_POWEROFF] = "poweroff",
        [ACTION_SKIP] = "skip",
};
DEFINE_STRING_TABLE(action, Action, _ACTION_MAX);

/* Indexed by the flags. */
static const char *const shutdown_mode_table[] = {
        [SHUTDOWN_MODE_ACPI] = "acpi",
        [SHUTDOWN_MODE_AGENT] = "agent",
        [SHUTDOWN_MODE_ACPI | SHUTDOWN_MODE_AGENT] = "agent,acpi",
};

const char *shutdown_mode_to_string(unsigned mode)
{
        return mode < ELEMENTSOF(shutdown_mode_table) ? shutdown_mode_table[mode] : NULL;
}

int shutdown_mode_from_string(const char *s)
{
        static const char *const names[] = {"acpi", "agent"};
        g_auto(GStrv) parts = NULL;
        unsigned mode = 0;

        if (!s || !*s)
                return -EINVAL;
        parts = g_strsplit(s, ",", -1);
        for (char **p = parts; *p; p++) {
                int i = string_table_lookup(names, ELEMENTSOF(names), g_strstrip(*p));
                if (i < 0)
                        return -EINVAL;
                mode |= 1u << i;
        }
        return (int) mode;
}
