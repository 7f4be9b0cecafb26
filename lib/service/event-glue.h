/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* sd-event embedded in a GLib main context as one GSource: the pattern of the
 * sd_event_get_fd(3) man page (used by NetworkManager). sd-bus attaches to the sd-event;
 * GLib's loop drives both. */

#include <glib.h>
#include <systemd/sd-event.h>

/* Returns a new source (attached to @ctx, NULL = default); the source holds a reference on
 * @event. Destroy with g_source_destroy() + g_source_unref(). */
GSource *event_glue_attach(sd_event *event, GMainContext *ctx);
