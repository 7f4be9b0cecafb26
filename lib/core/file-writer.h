/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Keeps a file at the newest text handed to it, written on a thread of its own (atomic: temp
 * file in the same directory, then rename; no fsync): at most one write in flight, and only
 * the newest text waits behind it — texts handed in meanwhile are skipped. For files other
 * programs read while the host runs (the metrics textfile). Main context only. */

#include <sys/types.h>
#include <glib.h>

typedef struct FileWriter FileWriter;

/* After each write, on the main context: @r its result (negative errno). */
typedef void (*FileWritten)(FileWriter *w, const char *path, int r, void *userdata);

FileWriter *file_writer_new(mode_t mode, FileWritten written, void *userdata);
/* Waits for the write in flight (a write is never cut), drops the one waiting, then frees. No
 * callback after this. */
FileWriter *file_writer_free(FileWriter *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(FileWriter, file_writer_free);

/* Writes @text to @path now, or after the write in flight (replacing any text still waiting). */
void file_writer_write(FileWriter *w, const char *path, const char *text);
/* Drops the text still waiting, if any; the write in flight ends as it will. */
void file_writer_cancel(FileWriter *w);
