/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Pre-flight: what a preserve run can do, decided before its first step. Pure, no I/O: the
 * free space of the save directories and the measured save speed come in as values
 * (preflight-probe.h reads them on a worker).
 *
 * - A guest with host devices (PCI/USB passthrough) cannot be saved: its save is dropped.
 * - Guests whose image (estimated as their memory) does not fit in the free space of their
 *   save directory have their save dropped, in run order, first fit: no save starts that
 *   would fill the disk and fail halfway. Directories on one filesystem share its space.
 * - Each save gets a time estimate (fixed cost + memory / bandwidth), the plan a total: the
 *   order groups one after another, within a group ParallelSaves at once. When the total
 *   exceeds the deadline, the saves run shortest first within each group, so that the most
 *   guests are saved before it.
 * A guest whose save is dropped keeps its other steps (a graceful shutdown, usually). */

#include <stdbool.h>
#include <glib.h>

#include "macro.h"

/* Measured here on TCG guests (TESTBED): a managed save costs ~1.3 s plus ~350 MiB/s. */
#define SAVE_SPEED_DEFAULT_FIXED_USEC (1300 * USEC_PER_MSEC)
#define SAVE_SPEED_DEFAULT_BPS        ((guint64) 350 * 1024 * 1024)

/* libvirt's QEMU driver keeps its managed-save images here (not asked: libvirt cannot tell). */
#define PREFLIGHT_QEMU_MANAGED_SAVE_DIR "/var/lib/libvirt/qemu/save"

typedef struct SaveSpeed {
        guint64 fixed_usec;    /* every save, whatever its size */
        guint64 bytes_per_sec; /* memory saved per second beyond that */
        unsigned runs;         /* runs measured; 0 = the default */
} SaveSpeed;

void save_speed_default(SaveSpeed *ret);
guint64 save_speed_estimate(const SaveSpeed *s, guint64 bytes);
/* Folds one run's successful saves (their memory in all, their durations in all) into @s. */
void save_speed_update(SaveSpeed *s, guint64 bytes, guint64 usec, unsigned saves);
/* The save-bandwidth file: "fixed_usec=…\nbytes_per_sec=…\nruns=…\n". -EINVAL when it is not. */
int save_speed_parse(const char *text, SaveSpeed *ret);
char *save_speed_format(const SaveSpeed *s);

/* Where libvirt puts the managed-save images of @uri's guests: @configured if set ("" = do not
 * check), else libvirt's directory for a local QEMU system URI, else NULL (not known). */
const char *preflight_managed_save_dir(const char *configured, const char *uri);

typedef struct PreflightDir {
        const char *path;
        bool known;         /* its free space could be read */
        guint64 free_bytes; /* for an unprivileged user as for root: f_bavail */
        guint64 fs;         /* filesystem: directories with the same value share their space */
} PreflightDir;

typedef struct PreflightGuest {
        /* in */
        guint64 memory_bytes;
        bool hostdev;
        unsigned steps; /* STEP_MASK() bits of its policy */
        bool has_order;
        int order;
        int dir; /* where its save goes: an index into the directories, -1 = not checked */
        /* out */
        unsigned planned;      /* @steps, the save dropped when it cannot be done */
        char *reason;          /* why the save was dropped, NULL if it was not */
        guint64 estimate_usec; /* its save, 0 without one */
        guint64 end_usec;      /* when its save should end, from the start of the saves */
        guint rank;            /* its place in the run order */
} PreflightGuest;

typedef struct PreflightPlan {
        guint64 total_usec;     /* every planned save */
        guint64 deadline_usec;  /* DeadlineSec, or poweroff.target's 30 min when it is 0 */
        bool over_deadline;     /* total_usec > deadline_usec */
        bool shortest_first;    /* the saves were reordered for the deadline */
        unsigned saves;         /* planned saves */
        unsigned saves_in_time; /* of those, estimated to end before the deadline */
        unsigned dropped;       /* saves dropped for space or host devices */
} PreflightPlan;

/* Fills the out fields of @guests and @ret. @deadline_usec: DeadlineSec (0 = none). */
void preflight_plan(const PreflightDir *dirs, guint n_dirs, const SaveSpeed *speed, unsigned parallel_saves,
                    guint64 deadline_usec, PreflightGuest *guests, guint n_guests, PreflightPlan *ret);
void preflight_guest_clear(PreflightGuest *g);
/* The warning of a plan over its deadline, NULL when it is not. */
char *preflight_plan_warning(const PreflightPlan *p);
