/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "conflicts.h"

#include <string.h>

#include "macro.h"

static void check_units(const char *root, GPtrArray *out)
{
        g_autofree char *dir = g_build_filename(root, "etc/systemd/system", NULL);
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const char *n;

        while (d && (n = g_dir_read_name(d))) {
                g_autofree char *link = NULL;

                if (!g_str_has_suffix(n, ".wants") && !g_str_has_suffix(n, ".requires"))
                        continue;
                link = g_build_filename(dir, n, "libvirt-guests.service", NULL);
                if (g_file_test(link, G_FILE_TEST_IS_SYMLINK) || g_file_test(link, G_FILE_TEST_EXISTS))
                        g_ptr_array_add(out,
                                        g_strdup_printf("libvirt-guests.service is enabled (%s): it also "
                                                        "saves or shuts down the guests at shutdown; "
                                                        "disable it (systemctl disable libvirt-guests)",
                                                        link));
        }
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

        check_units(root ? root : "/", out);
        check_qemu_conf(root ? root : "/", out);
        return out;
}
