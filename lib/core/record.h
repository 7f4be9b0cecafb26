/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The durable record of the guests a run acted on (docs/record.md has the format).
 * Pure data + file I/O; no logging. */

#include <stdbool.h>
#include <glib.h>

#include "terms.h"

#define RECORD_VERSION 1

typedef struct RecordGuest {
        char *uri;
        char *uuid;
        char *name;
        bool persistent;
        unsigned steps; /* planned steps, STEP_MASK() bits */
        Outcome outcome;
        char *error;     /* last error, NULL if none */
        char *save_file; /* transient guests saved to a file */
        char *xml;       /* transient guests: what re-creates them */
} RecordGuest;

typedef struct Record {
        char *path;
        GPtrArray *guests; /* RecordGuest*, in insertion order */
        GHashTable *index; /* "uri\nuuid" → RecordGuest* */
        bool hold;         /* maintenance: nothing is started until an explicit restore */
} Record;

Record *record_new(const char *path);
Record *record_free(Record *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Record, record_free);

RecordGuest *record_find(Record *r, const char *uri, const char *uuid);
/* Adds or replaces the entry for uri+uuid; returns the entry (owned by @r). */
RecordGuest *record_put(Record *r, const char *uri, const char *uuid, const char *name, bool persistent);
void record_remove(Record *r, const char *uri, const char *uuid);
void record_clear(Record *r); /* every guest */
void record_guest_set_error(RecordGuest *g, const char *error);

char *record_serialize(Record *r, gsize *ret_len);
/* Strict: -EBADMSG with a message for anything off (truncation, unknown version, bad field). */
int record_parse(const char *data, gsize len, const char *path, Record **ret, char **ret_error);

/* -ENOENT if there is no record, -EBADMSG if it is unreadable, other errno on I/O errors. */
int record_load(const char *path, Record **ret, char **ret_error);
/* Atomic and durable (temp file, fsync, rename, fsync dir). */
int record_save(Record *r);

/* record_load(), but never fails: a corrupt record is renamed to "<path>.corrupt-<time>", one
 * that cannot be read (EACCES, EIO…) to "<path>.unreadable-<time>" (left in place if even that
 * fails), and an empty record is returned. *ret_problem (NULL if none) says what happened,
 * naming the files. */
int record_load_or_set_aside(const char *path, Record **ret, char **ret_problem);
