/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The running set: which guests run now, kept durably in $STATE_DIRECTORY/running
 * (docs/record.md) from the guest cache, so that guests lost while nobody watched — a power
 * cut, a kernel panic, a daemon crash — are known at the next start. Same format and writer as
 * the record; written only when it changes, a burst of events being one write. Main thread
 * only. */

#include <stdbool.h>
#include <glib.h>

#include "config.h"
#include "guest-cache.h"
#include "record-writer.h"
#include "record.h"

typedef struct RunningSet RunningSet;

/* Loads @path; an unreadable file is set aside and *ret_problem says so (NULL if none). */
RunningSet *running_set_new(const char *path, char **ret_problem);
/* Waits for a write in flight. */
RunningSet *running_set_free(RunningSet *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(RunningSet, running_set_free);

/* The entries (RecordGuest*, outcome ""), as last loaded or updated. */
Record *running_set_record(RunningSet *s);

/* Rebuilds the entries of every URI in @vouched ("uri" → anything: URIs whose entries were
 * checked against libvirt since the start and that answer now) from the active guests of
 * @cache that @config does not skip, plus @pending (the record's guests still to be started
 * after an unclean stop: they stay until they run). Entries of other URIs are kept as they
 * are: a URI that does not answer may still run them. Entries of URIs no longer watched are
 * dropped once @all_resolved (every watched URI is known by its resolved name). The guests
 * left to libvirt's auto-shutdown are kept, unless @going_down (a host shutdown's preserve run
 * is over): from then on they are libvirt's to stop and bring back. Writes if anything
 * changed. */
void running_set_update(RunningSet *s, GuestCache *cache, const Config *config, GHashTable *vouched,
                        Record *pending, bool all_resolved, bool going_down);

/* The entries of @uri that the cache does not show running now and @record does not hold
 * (RecordGuest*, borrowed from the set): guests whose stop nobody saw. */
GPtrArray *running_set_lost(RunningSet *s, GuestCache *cache, const char *uri, Record *record);

unsigned running_set_writes(RunningSet *s);
