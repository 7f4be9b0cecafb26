/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What happens to one guest: pure, (config, guest) → plan. The one place that knows where
 * each value comes from. */

#include <stdbool.h>
#include <glib.h>

#include "config.h"

typedef struct GuestPolicy {
        unsigned steps; /* STEP_MASK() bits, in escalation order */
        guint64 shutdown_timeout_usec;
} GuestPolicy;

void policy_for_guest(const Config *c, const char *name, bool persistent, GuestPolicy *ret);
