/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Group commits of a Record (one durable write costs ~1 ms: a write per outcome for 1000 guests is over a
 * second). The record is serialized on the main context and written by one dedicated thread, one write at a
 * time; changes that arrive while a write is in flight go into the next one. A requested write runs from an
 * idle source just below the worker results (G_PRIORITY_DEFAULT), so the outcomes ready in one main-loop
 * turn share a write even when none is in flight; it starts no sooner than a short gap after the previous
 * write ended, so a burst of changes is a few writes. fsync never runs on the main context. */

#include <stdbool.h>
#include <glib.h>

#include "record.h"

typedef struct RecordWriter RecordWriter;

/* After each write: @r is its result (negative errno), @more whether another write follows
 * (changes came in meanwhile). */
typedef void (*RecordWritten)(RecordWriter *w, int r, bool more, void *userdata);

/* @record is borrowed: the caller keeps it alive longer than the writer. */
RecordWriter *record_writer_new(Record *record, RecordWritten written, void *userdata);
/* Waits for a write in flight (a write is never cut), then frees. No callback after this. */
RecordWriter *record_writer_free(RecordWriter *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(RecordWriter, record_writer_free);

/* The record changed: a write that starts after now will hold the change. */
void record_writer_touch(RecordWriter *w);
/* Starts a write now (when none is in flight; else it follows the one in flight, without the gap). */
void record_writer_write_now(RecordWriter *w);
/* No more callbacks; writes still requested are done. */
void record_writer_detach(RecordWriter *w);
unsigned record_writer_writes(RecordWriter *w);
