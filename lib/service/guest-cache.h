/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The guests of every watched URI as libvirt last said, kept up to date by lifecycle events
 * and list jobs on the worker pool: what ListGuests(), Plan() and the idle STATUS= answer
 * from, since asking libvirt on demand can block for seconds (virDomainGetState waits for a
 * save to finish). Each URI is one watch with its hypervisor; a URI that stops answering is
 * retried with backoff. Main thread only. */

#include <stdbool.h>
#include <glib.h>

#include "hypervisor.h"
#include "worker.h"

typedef struct GuestCache GuestCache;

/* A guest as the last list said (its XML and memory, metadata…), its state kept current by
 * events. */
typedef GuestInfo CachedGuest;

typedef struct GuestCacheCallbacks {
        /* A list came back or an event changed a guest. Never called for a watch that
         * guest_cache_set_uris() or guest_cache_free() dropped, nor from within a call into
         * the cache. */
        void (*changed)(GuestCache *c, void *userdata);
        /* A list of @uri came back (@ok: the cache knows every guest of that URI now) or failed.
         * After changed(); the same guarantees. */
        void (*listed)(GuestCache *c, const char *uri, bool ok, void *userdata);
} GuestCacheCallbacks;

/* @workers: borrowed, must outlive the cache's jobs (workers_abandon() is fine: a job holds
 * what it needs). No URI is watched until guest_cache_set_uris(). */
GuestCache *guest_cache_new(Workers *workers, const GuestCacheCallbacks *cb, void *userdata);
GuestCache *guest_cache_free(GuestCache *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GuestCache, guest_cache_free);

/* Replaces every watch by a new one per URI (libvirt backend; GUESTKEEPER_FAULTS wraps it)
 * and lists each. Results and events of the old watches are ignored from now on. */
void guest_cache_set_uris(GuestCache *c, char *const *uris);
/* Lists every URI again (after a run: the run changed what runs). */
void guest_cache_refresh_all(GuestCache *c);
/* A guest of @uri (resolved, as the engine reports it) runs now: known without waiting for
 * a list (a transient guest that comes back is new to libvirt's list). */
void guest_cache_note_running(GuestCache *c, const char *uri, const char *uuid, const char *name,
                              bool persistent);

/* @uri: resolved once connected, else as configured. @reachable: whether the URI answered
 * the last time it was asked; if not, @g is its last known state. */
typedef void (*GuestCacheFunc)(const char *uri, bool reachable, const CachedGuest *g, void *userdata);
void guest_cache_foreach(GuestCache *c, GuestCacheFunc fn, void *userdata);
void guest_cache_count(GuestCache *c, unsigned *ret_guests, unsigned *ret_running);

guint guest_cache_n_uris(GuestCache *c);
/* The watched URIs, resolved once connected. NULL-terminated, g_strfreev(). */
char **guest_cache_uris(GuestCache *c);
/* The guests of the @index-th watched URI (GuestInfo*, copies), or NULL when the cache cannot
 * vouch for them: unreachable, or a list in flight that may bring guests it does not know. A
 * run starts from this instead of listing again. */
GPtrArray *guest_cache_snapshot(GuestCache *c, guint index);
bool guest_cache_reachable(GuestCache *c, const char *uri);
/* Every watched URI was listed, or failed to be, at least once. */
bool guest_cache_all_tried(GuestCache *c);
/* The guest as the cache knows it, or NULL. */
const GuestInfo *guest_cache_lookup(GuestCache *c, const char *uri, const char *uuid);
/* One per watched URI, in order; the array holds references. For a run. */
GPtrArray *guest_cache_hypervisors(GuestCache *c);
