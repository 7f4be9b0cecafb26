/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <glib.h>
#include <systemd/sd-journal.h>

#include "macro.h"

static int max_level = LOG_INFO;
static bool to_journal;
static char run_id[33];
static char *run_kind, *run_reason;

/* systemd sets JOURNAL_STREAM=dev:ino when stderr goes to the journal (systemd.exec(5)). */
static bool stderr_is_journal(void)
{
        const char *e = g_getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(void)
{
        to_journal = stderr_is_journal();
}

void log_set_max_level(int level)
{
        max_level = level;
}

void log_set_run(const char *id, const char *kind, const char *reason)
{
        g_strlcpy(run_id, id ?: "", sizeof run_id);
        g_free(run_kind);
        run_kind = id ? g_strdup(kind) : NULL;
        g_free(run_reason);
        run_reason = id ? g_strdup(reason) : NULL;
}

/* systemd's names, indexed by syslog level; the levels above err are not accepted. */
static const char *const log_level_table[LOG_DEBUG + 1] = {
        [LOG_ERR] = "err",   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};
DEFINE_STRING_TABLE(log_level, int, LOG_DEBUG + 1);

GPtrArray *log_entry_fields(int level, int error, const LogGuest *g, const char *message_id,
                            const char *const *extra, const char *text)
{
        GPtrArray *fields = g_ptr_array_new_with_free_func(g_free);

        g_ptr_array_add(fields, g_strdup_printf("MESSAGE=%s", text));
        g_ptr_array_add(fields, g_strdup_printf("PRIORITY=%i", level));
        g_ptr_array_add(fields, g_strdup("SYSLOG_IDENTIFIER=guestkeeperd"));
        if (error)
                g_ptr_array_add(fields, g_strdup_printf("ERRNO=%i", error));
        if (message_id)
                g_ptr_array_add(fields, g_strdup_printf("MESSAGE_ID=%s", message_id));
        if (g && g->name)
                g_ptr_array_add(fields, g_strdup_printf("GUEST_NAME=%s", g->name));
        if (g && g->uuid)
                g_ptr_array_add(fields, g_strdup_printf("GUEST_UUID=%s", g->uuid));
        if (g && g->uri)
                g_ptr_array_add(fields, g_strdup_printf("GUEST_URI=%s", g->uri));
        if (g && g->step)
                g_ptr_array_add(fields, g_strdup_printf("GUESTKEEPER_STEP=%s", g->step));
        if (g && g->outcome)
                g_ptr_array_add(fields, g_strdup_printf("GUESTKEEPER_OUTCOME=%s", g->outcome));
        if (run_id[0])
                g_ptr_array_add(fields, g_strdup_printf("GUESTKEEPER_RUN_ID=%s", run_id));
        if (run_id[0] && run_kind)
                g_ptr_array_add(fields, g_strdup_printf("GUESTKEEPER_RUN_KIND=%s", run_kind));
        if (run_id[0] && run_reason)
                g_ptr_array_add(fields, g_strdup_printf("GUESTKEEPER_RUN_REASON=%s", run_reason));
        for (size_t i = 0; extra && extra[i]; i++)
                g_ptr_array_add(fields, g_strdup(extra[i]));
        return fields;
}

static int log_fieldsv(int level, int error, const LogGuest *g, const char *message_id,
                       const char *const *extra, const char *fmt, va_list ap)
        __attribute__((format(printf, 6, 0)));
static int log_fieldsv(int level, int error, const LogGuest *g, const char *message_id,
                       const char *const *extra, const char *fmt, va_list ap)
{
        g_autofree char *text = NULL;

        if (level > max_level)
                return error ? -error : 0;

        /* %m is glibc's printf; keep errno for it. */
        errno = error;
        text = g_strdup_vprintf(fmt, ap);

        if (to_journal) {
                g_autoptr(GPtrArray) fields = log_entry_fields(level, error, g, message_id, extra, text);
                g_autofree struct iovec *iov = g_new(struct iovec, fields->len);

                for (guint i = 0; i < fields->len; i++)
                        iov[i] = (struct iovec){.iov_base = fields->pdata[i],
                                                .iov_len = strlen(fields->pdata[i])};
                sd_journal_sendv(iov, (int) fields->len);
        } else {
                static const char *const prefix[] = {
                        [LOG_EMERG] = "emerg: ", [LOG_ALERT] = "alert: ",     [LOG_CRIT] = "crit: ",
                        [LOG_ERR] = "error: ",   [LOG_WARNING] = "warning: ", [LOG_NOTICE] = "",
                        [LOG_INFO] = "",         [LOG_DEBUG] = "debug: ",
                };
                fprintf(stderr, "%s%s\n", prefix[level & 7], text);
        }
        return error ? -error : 0;
}

int log_full_fields(int level, int error, const LogGuest *g, const char *message_id,
                    const char *const *extra, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_fieldsv(level, error, g, message_id, extra, fmt, ap);
        va_end(ap);
        return r;
}

int log_full(int level, int error, const LogGuest *g, const char *message_id, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_fieldsv(level, error, g, message_id, NULL, fmt, ap);
        va_end(ap);
        return r;
}
