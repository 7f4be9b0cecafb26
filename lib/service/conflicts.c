/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "conflicts.h"

#include <string.h>

#include "macro.h"

char *conflicts_unit_text(const char *unit, const char *unit_file_state, const char *active_state)
{
        bool enabled =
                streq_ptr(unit_file_state, "enabled") || streq_ptr(unit_file_state, "enabled-runtime");
        bool active = streq_ptr(active_state, "active") || streq_ptr(active_state, "activating") ||
                      streq_ptr(active_state, "reloading");

        if (!enabled && !active)
                return NULL;
        return g_strdup_printf("%s is %s (UnitFileState=%s, ActiveState=%s): it also saves or shuts down "
                               "the guests at shutdown. guestkeeper acts first (ordered after it, so its "
                               "stop runs after ours) and it gets what is left; retire it without touching "
                               "a guest: guestkeeperctl import-libvirt-guests --takeover",
                               unit,
                               enabled && active ? "enabled and active"
                               : enabled         ? "enabled"
                                                 : "active",
                               unit_file_state ?: "unknown", active_state ?: "unknown");
}

/* One "key = value" line of libvirt's configuration syntax (virconf.c) as far as these keys
 * need it: the value a string in double or single quotes, or a bare word, then optionally a
 * comment (#) or a separator (;). Returns false for anything else (comments, lists, blank). */
static bool conf_line(char *line, char **ret_key, char **ret_value)
{
        char *p = line, *k, *v;

        while (g_ascii_isspace(*p))
                p++;
        if (!g_ascii_isalpha(*p) && *p != '_')
                return false;
        k = p;
        while (g_ascii_isalnum(*p) || *p == '_' || *p == '.')
                p++;
        if (*p != '=' && !g_ascii_isspace(*p))
                return false;
        if (*p != '=') {
                *p++ = '\0';
                while (g_ascii_isspace(*p))
                        p++;
                if (*p != '=')
                        return false;
        }
        *p++ = '\0';
        while (g_ascii_isspace(*p))
                p++;
        if (*p == '"' || *p == '\'') {
                char *end = strchr(p + 1, *p);

                if (!end)
                        return false;
                *end = '\0';
                v = p + 1;
        } else {
                v = p;
                while (*p && !g_ascii_isspace(*p) && *p != '#' && *p != ';')
                        p++;
                *p = '\0';
        }
        *ret_key = k;
        *ret_value = v;
        return true;
}

/* The auto-shutdown keys of @root's qemu.conf that are not "none": key, value, key, value…
 * A key set twice counts once, with its first value, as libvirt reads it. */
static GPtrArray *qemu_conf_auto_shutdown(const char *root, char **ret_path)
{
        static const char *const keys[] = {"auto_shutdown_try_save", "auto_shutdown_try_shutdown",
                                           "auto_shutdown_poweroff"};
        GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *path = g_build_filename(root ? root : "/", "etc/libvirt/qemu.conf", NULL);
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;
        bool seen[ELEMENTSOF(keys)] = {};

        if (g_file_get_contents(path, &text, NULL, NULL))
                lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; l && *l; l++) {
                char *k, *v;

                if (!conf_line(*l, &k, &v))
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                        if (seen[i] || !g_str_equal(k, keys[i]))
                                continue;
                        seen[i] = true;
                        if (!g_str_equal(v, "none")) {
                                g_ptr_array_add(out, g_strdup(k));
                                g_ptr_array_add(out, g_strdup(v));
                        }
                }
        }
        if (ret_path)
                *ret_path = g_steal_pointer(&path);
        return out;
}

GPtrArray *conflicts_detect(const char *root, unsigned long libvirt_version)
{
        GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *path = NULL;
        g_autoptr(GPtrArray) kv = qemu_conf_auto_shutdown(root, &path);

        for (guint i = 0; i + 1 < kv->len; i += 2) {
                Scope s = scope_from_string(kv->pdata[i + 1]);

                if (libvirt_version < LIBVIRT_AUTO_SHUTDOWN_VERSION)
                        g_ptr_array_add(
                                out,
                                g_strdup_printf("%s: %s = \"%s\": libvirt %lu.%lu.%lu here ignores it (its "
                                                "own auto-shutdown came with 11.2), guestkeeper acts on "
                                                "every guest; once libvirt is upgraded it would act too. "
                                                "Set it to \"none\"",
                                                path, (char *) kv->pdata[i], (char *) kv->pdata[i + 1],
                                                libvirt_version / 1000000, libvirt_version / 1000 % 1000,
                                                libvirt_version % 1000));
                else
                        g_ptr_array_add(
                                out,
                                g_strdup_printf(
                                        "%s: %s = \"%s\": libvirt's own auto-shutdown acts at shutdown on "
                                        "%s guests of qemu:///system; guestkeeper leaves them to it. Set it "
                                        "to \"none\" (and restart libvirt's daemon) to let guestkeeper act",
                                        path, (char *) kv->pdata[i], (char *) kv->pdata[i + 1],
                                        s == SCOPE_PERSISTENT  ? "the persistent"
                                        : s == SCOPE_TRANSIENT ? "the transient"
                                                               : "all the"));
        }
        return out;
}

Scope conflicts_libvirt_auto_shutdown(const char *root, unsigned long libvirt_version)
{
        g_autoptr(GPtrArray) kv = NULL;
        bool persistent = false, transient = false;

        if (libvirt_version < LIBVIRT_AUTO_SHUTDOWN_VERSION)
                return SCOPE_NONE; /* the keys do nothing there: guests left to it would be left to nobody */
        kv = qemu_conf_auto_shutdown(root, NULL);
        for (guint i = 0; i + 1 < kv->len; i += 2) {
                Scope s = scope_from_string(kv->pdata[i + 1]);

                /* A value libvirt would refuse (it then does not start) counts as "all": never
                 * guess that a guest is ours when libvirt may act on it. */
                persistent = persistent || s < 0 || scope_includes(s, true);
                transient = transient || s < 0 || scope_includes(s, false);
        }
        return persistent && transient ? SCOPE_ALL
               : persistent            ? SCOPE_PERSISTENT
               : transient             ? SCOPE_TRANSIENT
                                       : SCOPE_NONE;
}
