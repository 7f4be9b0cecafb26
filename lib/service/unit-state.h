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

/* Which shutdown target systemd has a start job queued for (poweroff.target, reboot.target,
 * halt.target, kexec.target, soft-reboot.target): what a host shutdown is, when logind did not
 * say. @target is NULL when there is none or systemd did not answer. Asynchronous: @cb runs
 * once, from the bus's event loop, unless the bus is closed first. */
typedef void (*ShutdownTargetCallback)(const char *target, void *userdata);
int unit_state_query_shutdown_target(sd_bus *bus, ShutdownTargetCallback cb, void *userdata);
