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

static void check_qemu_conf(const char *root, GPtrArray *out)
{
        static const char *const keys[] = {"auto_shutdown_try_save", "auto_shutdown_try_shutdown",
                                           "auto_shutdown_poweroff"};
        g_autofree char *path = g_build_filename(root, "etc/libvirt/qemu.conf", NULL);
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;

        if (!g_file_get_contents(path, &text, NULL, NULL))
                return;
        lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; *l; l++) {
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
                        if (g_str_equal(k, keys[i]) && !g_str_equal(v, "none"))
                                g_ptr_array_add(
                                        out, g_strdup_printf("%s: %s = \"%s\": libvirt's own auto-shutdown "
                                                             "also acts on the guests; set it to \"none\"",
                                                             path, k, v));
        }
}

GPtrArray *conflicts_detect(const char *root)
{
        GPtrArray *out = g_ptr_array_new_with_free_func(g_free);

        check_qemu_conf(root ? root : "/", out);
        return out;
}
