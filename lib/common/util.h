/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <glib.h>

/* Queues @func on @ctx, always as a new idle source.
 * Not g_main_context_invoke(): that runs @func at once in the *calling* thread when no
 * thread owns @ctx at that moment (a test between two iterations), which would put
 * main-thread work on a worker. */
void context_post(GMainContext *ctx, int priority, GSourceFunc func, gpointer data, GDestroyNotify destroy);

/* Writes @data to @path atomically and durably: temp file in the same directory, fsync,
 * rename over @path, fsync of the directory. Mode 0600. Negative errno on failure. */
int write_file_durable(const char *path, const char *data, size_t len);

/* The same, mode @mode, and without the fsyncs unless @durable: a file that is rewritten
 * often and matters only while the host runs (the metrics textfile). */
int write_file_atomic(const char *path, const char *data, size_t len, mode_t mode, bool durable);

/* Tests only: called after the temp file is durable and before the rename, so a test can
 * die right there (tests/test-record.c). NULL in the daemon. */
extern void (*write_file_durable_before_rename)(const char *tmp_path);

/* A duration for people: "3.2 s", "1 min 20 s", "2 h 5 min". */
char *format_usec(guint64 usec);

/* Appends "@key=@value\n", @value escaped as GKeyFile reads it back (g_key_file_get_string()):
 * \n \r \t \\, and leading/trailing spaces as \s. Invalid UTF-8 is replaced: GKeyFile refuses
 * it, and one bad guest name must not make a whole file unreadable. Faster than GKeyFile's own
 * writer for thousands of guests (the record, the run history). */
void keyfile_append(GString *out, const char *key, const char *value);

/* Whether @uri names this host's QEMU system driver (qemu:///system, qemu+unix:///system,
 * with or without parameters): the driver /etc/libvirt/qemu.conf configures. "default" is
 * libvirt's default for root, LIBVIRT_DEFAULT_URI when set, else the local QEMU driver. */
bool uri_is_local_qemu_system(const char *uri);

/* Monotonic clock in µs. */
static inline guint64 now_usec(void)
{
        return (guint64) g_get_monotonic_time();
}
