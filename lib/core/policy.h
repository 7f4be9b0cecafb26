/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What happens to one guest: pure, (config, guest name, its metadata) → plan. The one place
 * that knows the precedence (guestkeeper.conf(5), "PER GUEST"): the guest's libvirt metadata,
 * then the last matching [Guest GLOB] section that sets the key, then the global keys. */

#include <stdbool.h>
#include <glib.h>

#include "config.h"

/* The source of the action of a guest left to libvirt's own auto-shutdown. */
#define POLICY_SOURCE_LIBVIRT "libvirt-auto-shutdown"

typedef struct GuestPolicy {
        bool skip;      /* Action=skip: never touched at shutdown, never started at boot */
        bool libvirt;   /* skipped because libvirt's own auto-shutdown acts on it: at boot, a
                         * guest guestkeeper itself stopped before is still restored */
        unsigned steps; /* STEP_MASK() bits, in escalation order; 0 when skipped */
        guint64 shutdown_timeout_usec;
        bool has_order;
        int order;
        unsigned shutdown_mode; /* SHUTDOWN_MODE_* */
        guint64 start_delay_usec;
        GuestSettings effective;      /* every key set: the values above, as settings */
        char *source[_GUEST_KEY_MAX]; /* "metadata", the section ("Guest web-*"), or "default" */
        char *error;                  /* the metadata was malformed and ignored: why */
} GuestPolicy;

/* @metadata: the guest's element in guestkeeper's namespace, NULL if none. Never fails: bad
 * metadata is reported in ret->error and ignored. Free with guest_policy_clear().
 * A guest of @uri that libvirt's own auto-shutdown acts on (c->libvirt_auto_shutdown) is
 * skipped whatever else says, its action's source POLICY_SOURCE_LIBVIRT: one mechanism per
 * guest. */
void policy_for_guest(const Config *c, const char *uri, const char *name, bool persistent,
                      const char *metadata, GuestPolicy *ret);
void guest_policy_clear(GuestPolicy *p);

/* Reads <guest><action>…</action>…</guest> (any namespace prefix). -EINVAL with *ret_error
 * for anything off: not XML, another root, an unknown element, a bad value. */
int policy_parse_metadata(const char *xml, GuestSettings *ret, char **ret_error);
