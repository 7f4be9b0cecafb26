/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Who may call a privileged method: root at once, anyone else if polkit authorizes the
 * method's action (org.guestkeeper1(5), "ACCESS"). polkitd is asked without blocking the main
 * loop; its answer sends the method call through its handler a second time. Main thread only. */

#include <systemd/sd-bus.h>

#define GK_ACTION_PRESERVE "org.guestkeeper1.preserve"
#define GK_ACTION_RESTORE  "org.guestkeeper1.restore"
#define GK_ACTION_RELOAD   "org.guestkeeper1.reload"
#define GK_ACTION_CANCEL   "org.guestkeeper1.cancel"

/* The polkit queries under way, one per method call. */
typedef struct PolkitRegistry PolkitRegistry;

PolkitRegistry *polkit_registry_new(void);
/* The calls still waiting for polkit are refused (the daemon is stopping). Accepts NULL. */
PolkitRegistry *polkit_registry_free(PolkitRegistry *registry);

/* At the top of a method handler: `r = bus_authorize(msg, ACTION, registry, error); if (r != 0)
 * return r;`. 0: authorized, go on. 1: polkit is being asked; the handler returns 1 and runs
 * again with the same call once polkit answers. Negative: refused, @error set
 * (org.freedesktop.DBus.Error.AccessDenied naming the action and the caller's uid). */
int bus_authorize(sd_bus_message *msg, const char *action, PolkitRegistry *registry, sd_bus_error *error);
