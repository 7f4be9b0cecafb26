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

/* The auto-shutdown keys of @root's qemu.conf that are not "none": key, value, key, value…
 * libvirt's own syntax is a superset (lists, numbers); these keys take one quoted word. */
static GPtrArray *qemu_conf_auto_shutdown(const char *root, char **ret_path)
{
        static const char *const keys[] = {"auto_shutdown_try_save", "auto_shutdown_try_shutdown",
                                           "auto_shutdown_poweroff"};
        GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *path = g_build_filename(root ? root : "/", "etc/libvirt/qemu.conf", NULL);
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;

        if (g_file_get_contents(path, &text, NULL, NULL))
                lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; l && *l; l++) {
                g_auto(GStrv) kv = NULL;
                char *k, *v;

                g_strstrip(*l);
                if (**l == '#' || !strchr(*l, '='))
                        continue;
                kv = g_strsplit(*l, "=", 2);
                k = g_strstrip(kv[0]);
                v = g_strstrip(kv[1]);
                if (*v == '"' && strlen(v) >= 2 && v[strlen(v) - 1] == '"') {
                        v[strlen(v) - 1] = '\0';
                        v++;
                }
                for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                        if (g_str_equal(k, keys[i]) && !g_str_equal(v, "none")) {
                                g_ptr_array_add(out, g_strdup(k));
                                g_ptr_array_add(out, g_strdup(v));
                        }
        }
        if (ret_path)
                *ret_path = g_steal_pointer(&path);
        return out;
}

GPtrArray *conflicts_detect(const char *root)
{
        GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *path = NULL;
        g_autoptr(GPtrArray) kv = qemu_conf_auto_shutdown(root, &path);

        for (guint i = 0; i + 1 < kv->len; i += 2) {
                Scope s = scope_from_string(kv->pdata[i + 1]);

                g_ptr_array_add(
                        out, g_strdup_printf("%s: %s = \"%s\": libvirt's own auto-shutdown acts at "
                                             "shutdown on %s guests of qemu:///system; guestkeeper leaves "
                                             "them to it. Set it to \"none\" to let guestkeeper act",
                                             path, (char *) kv->pdata[i], (char *) kv->pdata[i + 1],
                                             s == SCOPE_PERSISTENT  ? "the persistent"
                                             : s == SCOPE_TRANSIENT ? "the transient"
                                                                    : "all the"));
        }
        return out;
}

Scope conflicts_libvirt_auto_shutdown(const char *root)
{
        g_autoptr(GPtrArray) kv = qemu_conf_auto_shutdown(root, NULL);
        bool persistent = false, transient = false;

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
