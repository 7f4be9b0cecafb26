/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What pre-flight (preflight.h) needs from the disks, read on a worker: statvfs() of a
 * directory on NFS can hang, and the main thread must never wait for it. The answer comes
 * back on the main context, or, when the worker does not return in time, an answer without
 * figures (no space check, the default save speed). */

#include <glib.h>

#include "preflight.h"
#include "worker.h"

/* statvfs() of a save directory on a hung NFS server never returns: a run goes on without
 * the space check after this long. */
#define PREFLIGHT_PROBE_TIMEOUT_USEC (2 * USEC_PER_SEC)

typedef struct PreflightProbe PreflightProbe;

/* @dirs: the directories asked (NULL-terminated), as given; @speed: read from the speed file,
 * or the default. @dirs NULL and @speed the default when the worker did not answer in time. */
typedef void (*PreflightProbeDone)(const PreflightDir *dirs, guint n_dirs, const SaveSpeed *speed,
                                   void *userdata);

/* Reads the free space of each of @dirs (a directory that does not exist yet: its nearest
 * existing parent) and the save-speed file @speed_file (NULL: none). @done runs once on the
 * main context, unless preflight_probe_cancel() comes first. */
PreflightProbe *preflight_probe_submit(Workers *w, char *const *dirs, const char *speed_file,
                                       guint64 timeout_usec, PreflightProbeDone done, void *userdata);
/* @done will not run. The probe is freed when its worker returns. */
void preflight_probe_cancel(PreflightProbe *p);

/* Reads @path into @ret (the default when it is missing or not valid). Blocks: workers only. */
void save_speed_load(const char *path, SaveSpeed *ret);
/* Writes @s to @path atomically and durably. Blocks: workers only. */
int save_speed_store(const char *path, const SaveSpeed *s);

/* Folds one run's successful saves (memory and durations, summed) into the speed file @path,
 * on a worker; @done (may be NULL) gets the result and the new figures on the main context. */
typedef void (*SaveSpeedDone)(int r, const char *path, const SaveSpeed *speed);
void save_speed_submit_update(Workers *w, const char *path, guint64 bytes, guint64 usec, unsigned saves,
                              SaveSpeedDone done);
