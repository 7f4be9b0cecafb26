/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What systemd says of a unit, asked over the bus (never by reading unit directories, which
 * miss runtime state, masks, aliases and what is running now). */

#include <systemd/sd-bus.h>

/* @unit_file_state ("enabled", "disabled", "masked", …) and @active_state ("active",
 * "inactive", …) are NULL when systemd did not say (no systemd on the bus). */
typedef void (*UnitStateCallback)(const char *unit, const char *unit_file_state, const char *active_state,
                                  void *userdata);

/* Asynchronous: @cb runs once, from the bus's event loop. */
int unit_state_query(sd_bus *bus, const char *unit, UnitStateCallback cb, void *userdata);
