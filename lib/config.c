/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "gk-build-config.h"
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "macro.h"

typedef enum KeyType {
        KEY_URIS,
        KEY_SCOPE,
        KEY_SECONDS,
        KEY_UNSIGNED,
        KEY_BOOL,
} KeyType;

typedef struct KeyDef {
        const char *group;
        const char *key;
        KeyType type;
        size_t offset;
} KeyDef;

#define KEY(g, k, t, field)                                                                                 \
        {                                                                                                   \
                g, k, t, G_STRUCT_OFFSET(Config, field)                                                     \
        }

static const KeyDef keys[] = {
        KEY("Guests", "URIs", KEY_URIS, uris),
        KEY("Shutdown", "Save", KEY_SCOPE, save),
        KEY("Shutdown", "Shutdown", KEY_SCOPE, shutdown),
        KEY("Shutdown", "PowerOff", KEY_SCOPE, poweroff),
        KEY("Shutdown", "ShutdownTimeoutSec", KEY_SECONDS, shutdown_timeout_usec),
        KEY("Shutdown", "DeadlineSec", KEY_SECONDS, deadline_usec),
        KEY("Shutdown", "ParallelSaves", KEY_UNSIGNED, parallel_saves),
        KEY("Shutdown", "ParallelShutdowns", KEY_UNSIGNED, parallel_shutdowns),
        KEY("Shutdown", "BypassCache", KEY_BOOL, bypass_cache),
        KEY("Boot", "Restore", KEY_BOOL, restore),
        KEY("Boot", "StartDelaySec", KEY_SECONDS, start_delay_usec),
        KEY("Boot", "ParallelStarts", KEY_UNSIGNED, parallel_starts),
        KEY("Boot", "SyncTime", KEY_BOOL, sync_time),
};

/* Upper bound for seconds keys: a week. Anything larger is a typo, and it keeps
 * µs arithmetic far from overflow. */
#define SECONDS_MAX  (7u * 24u * 3600u)
#define UNSIGNED_MAX 100000u

Config *config_new_default(void)
{
        Config *c = g_new0(Config, 1);

        c->uris = g_strsplit("default", " ", -1);
        c->save = SCOPE_PERSISTENT;
        c->shutdown = SCOPE_ALL;
        c->poweroff = SCOPE_ALL;
        c->shutdown_timeout_usec = 300 * USEC_PER_SEC;
        c->deadline_usec = 1500 * USEC_PER_SEC;
        c->parallel_saves = 4; /* measured: docs/performance.md, "ParallelSaves" */
        c->parallel_shutdowns = 0;
        c->bypass_cache = false;
        c->restore = true;
        c->start_delay_usec = 0;
        c->parallel_starts = 4;
        c->sync_time = false;
        return c;
}

Config *config_free(Config *c)
{
        if (!c)
                return NULL;
        g_strfreev(c->uris);
        g_free(c);
        return NULL;
}

static const KeyDef *key_find(const char *group, const char *key)
{
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (streq_ptr(keys[i].group, group) && streq_ptr(keys[i].key, key))
                        return &keys[i];
        return NULL;
}

static bool group_known(const char *group)
{
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (streq_ptr(keys[i].group, group))
                        return true;
        return false;
}

static int parse_unsigned(const char *v, unsigned max, unsigned *ret)
{
        char *end = NULL;
        guint64 u;

        /* Plain decimal digits only: no sign, no unit, no hex. */
        if (!v || !g_ascii_isdigit(v[0]))
                return -EINVAL;
        errno = 0;
        u = g_ascii_strtoull(v, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        if (u > max)
                return -ERANGE;
        *ret = (unsigned) u;
        return 0;
}

static int parse_bool(const char *v, bool *ret)
{
        static const char *const yes[] = {"yes", "true", "on", "1"};
        static const char *const no[] = {"no", "false", "off", "0"};

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (g_ascii_strcasecmp(v, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (g_ascii_strcasecmp(v, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

static int apply_key(Config *c, const KeyDef *def, const char *value, char **ret_what)
{
        void *field = G_STRUCT_MEMBER_P(c, def->offset);
        unsigned u;
        bool b;
        int r;

        switch (def->type) {
        case KEY_URIS: {
                g_auto(GStrv) uris = g_strsplit_set(value, " \t", -1);
                GPtrArray *list = g_ptr_array_new();

                for (char **p = uris; *p; p++)
                        if (**p != '\0')
                                g_ptr_array_add(list, g_strdup(*p));
                if (list->len == 0) {
                        g_ptr_array_free(list, TRUE);
                        *ret_what =
                                g_strdup("needs at least one URI (use \"default\" for libvirt's default)");
                        return -EINVAL;
                }
                g_ptr_array_add(list, NULL);
                g_strfreev(*(char ***) field);
                *(char ***) field = (char **) g_ptr_array_free(list, FALSE);
                return 0;
        }
        case KEY_SCOPE: {
                Scope s = scope_from_string(value);
                if (s < 0) {
                        *ret_what = g_strdup_printf("\"%s\" is not one of none, persistent, transient, all",
                                                    value);
                        return -EINVAL;
                }
                *(Scope *) field = s;
                return 0;
        }
        case KEY_SECONDS:
                r = parse_unsigned(value, SECONDS_MAX, &u);
                if (r < 0) {
                        *ret_what = r == -ERANGE
                                            ? g_strdup_printf("\"%s\" is too large (at most %u seconds)",
                                                              value, SECONDS_MAX)
                                            : g_strdup_printf("\"%s\" is not a number of seconds", value);
                        return r;
                }
                *(guint64 *) field = (guint64) u * USEC_PER_SEC;
                return 0;
        case KEY_UNSIGNED:
                r = parse_unsigned(value, UNSIGNED_MAX, &u);
                if (r < 0) {
                        *ret_what = r == -ERANGE
                                            ? g_strdup_printf("\"%s\" is too large (at most %u)", value,
                                                              UNSIGNED_MAX)
                                            : g_strdup_printf("\"%s\" is not a non-negative integer", value);
                        return r;
                }
                *(unsigned *) field = u;
                return 0;
        case KEY_BOOL:
                r = parse_bool(value, &b);
                if (r < 0) {
                        *ret_what = g_strdup_printf("\"%s\" is not a boolean (yes/no)", value);
                        return r;
                }
                *(bool *) field = b;
                return 0;
        }
        g_assert_not_reached();
}

int config_apply_data(Config *c, const char *name, const char *data, gsize len, GPtrArray *warnings,
                      char **ret_error)
{
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) groups = NULL;

        if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, &error)) {
                *ret_error = g_strdup_printf("%s: %s", name, error->message);
                return -EINVAL;
        }

        groups = g_key_file_get_groups(kf, NULL);
        for (char **g = groups; *g; g++) {
                g_auto(GStrv) ks = NULL;

                if (!group_known(*g)) {
                        if (warnings)
                                g_ptr_array_add(
                                        warnings,
                                        g_strdup_printf("%s: [%s]: unknown section, ignored", name, *g));
                        continue;
                }
                ks = g_key_file_get_keys(kf, *g, NULL, NULL);
                for (char **k = ks; ks && *k; k++) {
                        const KeyDef *def = key_find(*g, *k);
                        g_autofree char *value = NULL, *what = NULL;

                        if (!def) {
                                if (warnings)
                                        g_ptr_array_add(warnings,
                                                        g_strdup_printf("%s: [%s] %s: unknown key, ignored",
                                                                        name, *g, *k));
                                continue;
                        }
                        /* Raw value, trimmed: GKeyFile's typed getters accept things the
                         * contract does not ("300s" is not plain seconds). */
                        value = g_key_file_get_value(kf, *g, *k, NULL);
                        g_strstrip(value);
                        if (apply_key(c, def, value, &what) < 0) {
                                *ret_error = g_strdup_printf("%s: [%s] %s: %s", name, *g, *k, what);
                                return -EINVAL;
                        }
                }
        }
        return 0;
}

static int apply_file(Config *c, const char *path, bool must_exist, GPtrArray *warnings, char **ret_error)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *data = NULL;
        gsize len = 0;

        if (!g_file_get_contents(path, &data, &len, &error)) {
                if (g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT) && !must_exist)
                        return 0;
                *ret_error = g_strdup_printf("%s: cannot read: %s", path, error->message);
                return g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_ACCES) ? -EACCES : -EIO;
        }
        return config_apply_data(c, path, data, len, warnings, ret_error);
}

static int compare_names(gconstpointer a, gconstpointer b)
{
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

int config_load(const char *path, bool must_exist, Config **ret, GPtrArray *warnings, char **ret_error)
{
        g_autoptr(Config) c = config_new_default();
        g_autofree char *dropin_dir = NULL;
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GDir) dir = NULL;
        g_autoptr(GError) error = NULL;
        const char *n;
        int r;

        r = apply_file(c, path, must_exist, warnings, ret_error);
        if (r < 0)
                return r;

        dropin_dir = g_strconcat(path, ".d", NULL);
        dir = g_dir_open(dropin_dir, 0, &error);
        if (!dir) {
                if (!g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
                        *ret_error =
                                g_strdup_printf("%s: cannot read directory: %s", dropin_dir, error->message);
                        return -EIO;
                }
        } else {
                while ((n = g_dir_read_name(dir)))
                        if (g_str_has_suffix(n, ".conf"))
                                g_ptr_array_add(names, g_strdup(n));
                g_ptr_array_sort(names, compare_names);
                for (guint i = 0; i < names->len; i++) {
                        g_autofree char *p = g_build_filename(dropin_dir, names->pdata[i], NULL);
                        r = apply_file(c, p, true, warnings, ret_error);
                        if (r < 0)
                                return r;
                }
        }

        if (warnings) {
                if (c->shutdown_timeout_usec == 0)
                        g_ptr_array_add(warnings,
                                        g_strdup_printf("%s: [Shutdown] ShutdownTimeoutSec=0: no limit; a "
                                                        "guest that ignores shutdown holds up the host "
                                                        "(systemd's poweroff.target gives up after 30 min)",
                                                        path));
                if (c->deadline_usec == 0)
                        g_ptr_array_add(
                                warnings,
                                g_strdup_printf("%s: [Shutdown] DeadlineSec=0: no limit for the whole run "
                                                "(systemd's poweroff.target gives up after 30 min)",
                                                path));
        }

        *ret = g_steal_pointer(&c);
        return 0;
}
