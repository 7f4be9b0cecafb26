/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"

void context_post(GMainContext *ctx, int priority, GSourceFunc func, gpointer data, GDestroyNotify destroy)
{
        GSource *s = g_idle_source_new();

        g_source_set_priority(s, priority);
        g_source_set_callback(s, func, data, destroy);
        g_source_attach(s, ctx);
        g_source_unref(s);
}

void (*write_file_durable_before_rename)(const char *tmp_path) = NULL;

/* GLib's g_file_set_contents_full() does temp+fsync+rename but not the fsync of the
 * directory that makes the rename itself durable; the record needs both. */
int write_file_durable(const char *path, const char *data, size_t len)
{
        return write_file_atomic(path, data, len, 0600, true);
}

int write_file_atomic(const char *path, const char *data, size_t len, mode_t mode, bool durable)
{
        g_autofree char *dir = g_path_get_dirname(path);
        g_autofree char *base = g_path_get_basename(path);
        g_autofree char *tmp = g_strdup_printf("%s/.#%s.XXXXXX", dir, base);
        int fd, dfd, r = 0;
        size_t done = 0;

        fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        /* Whatever the umask: a file for other readers (node_exporter) says so itself. */
        if (mode != 0600 && fchmod(fd, mode) < 0) {
                r = -errno;
                goto fail;
        }

        while (done < len) {
                ssize_t n = write(fd, data + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto fail;
                }
                done += (size_t) n;
        }
        if (durable && fsync(fd) < 0) {
                r = -errno;
                goto fail;
        }
        if (close(fd) < 0) {
                fd = -1;
                r = -errno;
                goto fail;
        }
        fd = -1;
        if (write_file_durable_before_rename)
                write_file_durable_before_rename(tmp);
        if (rename(tmp, path) < 0) {
                r = -errno;
                goto fail;
        }
        if (!durable)
                return 0;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        r = fsync(dfd) < 0 ? -errno : 0;
        close(dfd);
        return r;

fail:
        if (fd >= 0)
                close(fd);
        unlink(tmp);
        return r;
}

char *format_usec(guint64 usec)
{
        guint64 s = (usec + USEC_PER_SEC / 2) / USEC_PER_SEC;

        if (usec < 60 * USEC_PER_SEC)
                return g_strdup_printf("%.1f s", (double) usec / (double) USEC_PER_SEC);
        if (s < 3600)
                return g_strdup_printf("%" G_GUINT64_FORMAT " min %" G_GUINT64_FORMAT " s", s / 60, s % 60);
        return g_strdup_printf("%" G_GUINT64_FORMAT " h %" G_GUINT64_FORMAT " min", s / 3600, s / 60 % 60);
}

void keyfile_append(GString *out, const char *key, const char *value)
{
        g_autofree char *valid = NULL;
        const char *v = value, *first, *last, *p;

        g_string_append(out, key);
        g_string_append_c(out, '=');
        if (!g_utf8_validate(v, -1, NULL))
                v = valid = g_utf8_make_valid(v, -1);
        /* GKeyFile trims unescaped leading and trailing spaces. */
        for (first = v; *first == ' '; first++)
                ;
        last = v + strlen(v);
        while (last > first && last[-1] == ' ')
                last--;
        for (p = v; p < first; p++)
                g_string_append(out, "\\s");
        /* The characters that need no escape are copied a run at a time: a record of 1000
         * guests is written in a few milliseconds on the main context. */
        while (p < last) {
                size_t n = strcspn(p, "\n\r\t\\");

                n = MIN(n, (size_t) (last - p));
                g_string_append_len(out, p, (gssize) n);
                p += n;
                if (p >= last)
                        break;
                switch (*p++) {
                case '\n':
                        g_string_append(out, "\\n");
                        break;
                case '\r':
                        g_string_append(out, "\\r");
                        break;
                case '\t':
                        g_string_append(out, "\\t");
                        break;
                default:
                        g_string_append(out, "\\\\");
                }
        }
        for (; *p; p++)
                g_string_append(out, "\\s");
        g_string_append_c(out, '\n');
}

bool uri_is_local_qemu_system(const char *uri)
{
        g_autoptr(GUri) u = NULL;
        const char *scheme, *host;

        if (streq_ptr(uri, "default")) {
                const char *env = g_getenv("LIBVIRT_DEFAULT_URI");

                return !env || !*env || (!streq_ptr(env, "default") && uri_is_local_qemu_system(env));
        }
        u = uri ? g_uri_parse(uri, G_URI_FLAGS_PARSE_RELAXED, NULL) : NULL;
        if (!u)
                return false;
        scheme = g_uri_get_scheme(u);
        host = g_uri_get_host(u);
        return (streq_ptr(scheme, "qemu") || streq_ptr(scheme, "qemu+unix")) && (!host || !*host) &&
               streq_ptr(g_uri_get_path(u), "/system");
}
