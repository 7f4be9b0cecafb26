/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Logging for the daemon (library modules below the manager do not log). To the journal
 * with structured fields when stderr is connected to it (JOURNAL_STREAM), else plain lines
 * on stderr. Levels are syslog's. */

#include <stdarg.h>
#include <syslog.h>

typedef struct LogGuest {
        const char *name;
        const char *uuid;
        const char *uri;
} LogGuest;

void log_setup(void);
void log_set_max_level(int level);
/* While set, every journal entry carries GUESTKEEPER_RUN_ID=@id (32 hex digits): the entries of
 * one run, as systemd's INVOCATION_ID= groups those of one unit start. NULL: none. */
void log_set_run_id(const char *id);
/* "err", "warning", "notice", "info", "debug" → LOG_*; -EINVAL otherwise. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* @g may be NULL; @message_id NULL or a 32-hex-digit MESSAGE_ID. Returns -@error if @error
 * is nonzero (so callers can "return log_…(r, …)"), else 0. */
int log_full(int level, int error, const LogGuest *g, const char *message_id, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

#define log_error(...)          log_full(LOG_ERR, 0, NULL, NULL, __VA_ARGS__)
#define log_warning(...)        log_full(LOG_WARNING, 0, NULL, NULL, __VA_ARGS__)
#define log_notice(...)         log_full(LOG_NOTICE, 0, NULL, NULL, __VA_ARGS__)
#define log_info(...)           log_full(LOG_INFO, 0, NULL, NULL, __VA_ARGS__)
#define log_debug(...)          log_full(LOG_DEBUG, 0, NULL, NULL, __VA_ARGS__)
#define log_error_errno(e, ...) log_full(LOG_ERR, (e) < 0 ? -(e) : (e), NULL, NULL, __VA_ARGS__)

/* MESSAGE_IDs (journalctl MESSAGE_ID=…): generated once, fixed forever. */
#define MESSAGE_ID_RUN_STARTED  "3f0a5c6e8b2d4f7a9c1e0b3d5f7a9c2e"
#define MESSAGE_ID_RUN_FINISHED "7b1d9e3f5a2c4e6b8d0f1a3c5e7b9d4f"
#define MESSAGE_ID_GUEST_FAILED "c4e8a2f6b0d3e5a7c9f1b2d4e6a8c0f3"
#define MESSAGE_ID_CONFLICT     "9d2f4b6e8a0c1e3f5b7d9f2a4c6e8b1d"
#define MESSAGE_ID_LOST         "259ca821103a4471854d06f8e72ac399" /* stopped while nobody watched */
