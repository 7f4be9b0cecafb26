/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "policy.h"

static unsigned steps_from_scopes(const Config *c, bool persistent)
{
        unsigned mask = 0;

        if (scope_includes(c->save, persistent))
                mask |= STEP_MASK(STEP_SAVE);
        if (scope_includes(c->shutdown, persistent))
                mask |= STEP_MASK(STEP_SHUTDOWN);
        if (scope_includes(c->poweroff, persistent))
                mask |= STEP_MASK(STEP_POWEROFF);
        return mask;
}

void policy_for_guest(const Config *c, const char *name, bool persistent, GuestPolicy *ret)
{
        *ret = (GuestPolicy){
                .steps = steps_from_scopes(c, persistent),
                .shutdown_timeout_usec = c->shutdown_timeout_usec,
        };
}
