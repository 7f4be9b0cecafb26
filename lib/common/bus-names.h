/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

/* The names of guestkeeper's D-Bus API (org.guestkeeper1(5)): one place for the daemon and
 * guestkeeperctl. */

#define GK_BUS_NAME    "org.guestkeeper1"
#define GK_OBJECT_PATH "/org/guestkeeper1"
#define GK_INTERFACE   "org.guestkeeper1.Manager"

#define GK_ERROR_BUSY           "org.guestkeeper1.Error.Busy"
#define GK_ERROR_INVALID_CONFIG "org.guestkeeper1.Error.InvalidConfig"
#define GK_ERROR_NOT_RUNNING    "org.guestkeeper1.Error.NotRunning"
#define GK_ERROR_NO_SUCH_GUEST  "org.guestkeeper1.Error.NoSuchGuest"

/* PreserveGuestsWithFlags(): keep the preserved guests down, across restarts and reboots, until
 * RestoreGuests() (maintenance). */
#define GK_PRESERVE_HOLD (UINT64_C(1) << 0)
