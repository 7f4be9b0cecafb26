/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Logging for the daemon (library modules below the manager do not log). To the journal
 * with structured fields when stderr is connected to it (JOURNAL_STREAM), else plain lines
 * on stderr. Levels are syslog's. */

#include <stdarg.h>
#include <syslog.h>
#include <glib.h>

/* A guest's entry: GUEST_NAME=, GUEST_UUID=, GUEST_URI=, and where its run stands:
 * GUESTKEEPER_STEP= (save, shutdown, poweroff, start) and GUESTKEEPER_OUTCOME=. NULL: no field. */
typedef struct LogGuest {
        const char *name;
        const char *uuid;
        const char *uri;
        const char *step;
        const char *outcome;
} LogGuest;

void log_setup(void);
void log_set_max_level(int level);
/* While set, every journal entry carries GUESTKEEPER_RUN_ID=@id (32 hex digits), and
 * GUESTKEEPER_RUN_KIND=@kind and GUESTKEEPER_RUN_REASON=@reason if not NULL: the entries of one run,
 * as systemd's INVOCATION_ID= groups those of one unit start. @id NULL: none. */
void log_set_run(const char *id, const char *kind, const char *reason);
/* "err", "warning", "notice", "info", "debug" → LOG_*; -EINVAL otherwise. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* @g may be NULL; @message_id NULL or a 32-hex-digit MESSAGE_ID; @extra NULL or a NULL-terminated
 * list of more journal fields ("GUESTKEEPER_DURATION_USEC=1200"), not shown on stderr. Returns
 * -@error if @error is nonzero (so callers can "return log_…(r, …)"), else 0. */
int log_full_fields(int level, int error, const LogGuest *g, const char *message_id,
                    const char *const *extra, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
int log_full(int level, int error, const LogGuest *g, const char *message_id, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* The journal fields of an entry, as log_full_fields() sends them ("NAME=value"; for the tests). */
GPtrArray *log_entry_fields(int level, int error, const LogGuest *g, const char *message_id,
                            const char *const *extra, const char *text);

#define log_error(...)          log_full(LOG_ERR, 0, NULL, NULL, __VA_ARGS__)
#define log_warning(...)        log_full(LOG_WARNING, 0, NULL, NULL, __VA_ARGS__)
#define log_notice(...)         log_full(LOG_NOTICE, 0, NULL, NULL, __VA_ARGS__)
#define log_info(...)           log_full(LOG_INFO, 0, NULL, NULL, __VA_ARGS__)
#define log_debug(...)          log_full(LOG_DEBUG, 0, NULL, NULL, __VA_ARGS__)
#define log_error_errno(e, ...) log_full(LOG_ERR, (e) < 0 ? -(e) : (e), NULL, NULL, __VA_ARGS__)

/* MESSAGE_IDs (journalctl MESSAGE_ID=…): generated once, fixed forever. Each one has an entry
 * in data/guestkeeper.catalog (journalctl -x); a style test checks both lists match. */
#define MESSAGE_ID_RUN_STARTED         "3f0a5c6e8b2d4f7a9c1e0b3d5f7a9c2e"
#define MESSAGE_ID_RUN_FINISHED        "7b1d9e3f5a2c4e6b8d0f1a3c5e7b9d4f"
#define MESSAGE_ID_GUEST_FAILED        "c4e8a2f6b0d3e5a7c9f1b2d4e6a8c0f3"
#define MESSAGE_ID_CONFLICT            "9d2f4b6e8a0c1e3f5b7d9f2a4c6e8b1d"
#define MESSAGE_ID_LOST                "259ca821103a4471854d06f8e72ac399" /* stopped while nobody watched */
#define MESSAGE_ID_RUN_FAILED          "9f4f62c203f344ebb709c46ed5eda07d" /* finished, some guests failed */
#define MESSAGE_ID_PREFLIGHT           "a3a8f52265d740749ea4bac5419be623" /* short of space or time */
#define MESSAGE_ID_UNREACHABLE         "3d5729f856024d528bface4eac3e8fea" /* a URI, at a run's start */
#define MESSAGE_ID_DEADLINE            "cba0f1690cd14e7789cfc6cd87968679"
#define MESSAGE_ID_RECORD_UNREADABLE   "53eba6bf678347519839ca67b84e3fc3" /* or running set, history */
#define MESSAGE_ID_RECORD_WRITE_FAILED "7aaeb05ba69943fcb89763ffa8e1aba2"
#define MESSAGE_ID_NO_INHIBITOR        "1b253d000c004ed486b8841d694c324a"
#define MESSAGE_ID_CALLED              "333038348bda4166a8f71098ff350207" /* a privileged method */
