/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "import.h"

#include <errno.h>

#include "macro.h"
#include "config.h"
#include "terms.h"

/* The values libvirt-guests.sh gives the variables a file leaves unset. Debian's script
 * (debian/patches "Debianize-libvirt-guests", read in /usr/lib/libvirt/libvirt-guests.sh of
 * Debian 12's libvirt 9.0) changes two of upstream's: it neither starts nor suspends guests
 * unless told to. */
static const char *const defaults[][2] = {
        {"URIS", "default"},
        {"SHUTDOWN_TIMEOUT", "300"},
        {"PARALLEL_SHUTDOWN", "0"},
        {"START_DELAY", "0"},
        {"BYPASS_CACHE", "0"},
        {"SYNC_TIME", "0"},
        {"PERSISTENT_ONLY", "default"},
};
static const char *const flavour_defaults[_IMPORT_DEFAULTS_MAX][2][2] = {
        [IMPORT_DEFAULTS_DEBIAN] = {{"ON_BOOT", "ignore"}, {"ON_SHUTDOWN", "shutdown"}},
        [IMPORT_DEFAULTS_UPSTREAM] = {{"ON_BOOT", "start"}, {"ON_SHUTDOWN", "suspend"}},
};

static const char *const import_defaults_table[_IMPORT_DEFAULTS_MAX] = {
        [IMPORT_DEFAULTS_DEBIAN] = "debian",
        [IMPORT_DEFAULTS_UPSTREAM] = "upstream",
};

DEFINE_STRING_TABLE(import_defaults, ImportDefaults, _IMPORT_DEFAULTS_MAX);

ImportDefaults import_defaults_for_path(const char *path)
{
        g_autofree char *dir = g_path_get_dirname(path ?: "");
        g_autofree char *base = g_path_get_basename(dir);

        return g_str_equal(base, "sysconfig") ? IMPORT_DEFAULTS_UPSTREAM : IMPORT_DEFAULTS_DEBIAN;
}

/* Parses one shell word: 'single', "double" (with \" \\ \$ escapes), or bare up to a blank
 * or #. Returns NULL on an unterminated quote. */
static char *parse_value(const char *p, const char **ret_end)
{
        GString *v = g_string_new(NULL);

        while (*p && !g_ascii_isspace(*p) && *p != '#') {
                if (*p == '\'') {
                        const char *q = strchr(p + 1, '\'');
                        if (!q)
                                goto bad;
                        g_string_append_len(v, p + 1, q - p - 1);
                        p = q + 1;
                } else if (*p == '"') {
                        p++;
                        while (*p && *p != '"') {
                                if (*p == '\\' &&
                                    (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`'))
                                        p++;
                                g_string_append_c(v, *p++);
                        }
                        if (*p != '"')
                                goto bad;
                        p++;
                } else
                        g_string_append_c(v, *p++);
        }
        *ret_end = p;
        return g_string_free(v, FALSE);
bad:
        g_string_free(v, TRUE);
        return NULL;
}

int import_scopes_from_libvirt_guests(const char *on_shutdown, const char *persistent_only, Scope *ret_save,
                                      Scope *ret_shutdown, Scope *ret_poweroff)
{
        bool suspend;
        Scope scope;

        if (streq_ptr(on_shutdown, "suspend"))
                suspend = true;
        else if (streq_ptr(on_shutdown, "shutdown"))
                suspend = false;
        else
                return -EINVAL;

        if (streq_ptr(persistent_only, "true"))
                scope = SCOPE_PERSISTENT;
        else if (streq_ptr(persistent_only, "false"))
                scope = SCOPE_ALL;
        else if (streq_ptr(persistent_only, "default"))
                /* "default": suspend acts on persistent guests only, shutdown on all. */
                scope = suspend ? SCOPE_PERSISTENT : SCOPE_ALL;
        else
                return -EINVAL;

        *ret_save = suspend ? scope : SCOPE_NONE;
        *ret_shutdown = scope;
        *ret_poweroff = scope;
        return 0;
}

/* A plain decimal number no larger than @max: what guestkeeper.conf accepts for the key it
 * maps to (a larger one would make a config the daemon then refuses). */
static bool is_uint(const char *s, unsigned max)
{
        unsigned u;

        return config_parse_unsigned(s, max, &u) >= 0;
}

#define FAIL(...)                                                                                           \
        ({                                                                                                  \
                *ret_error = g_strdup_printf(__VA_ARGS__);                                                  \
                -EINVAL;                                                                                    \
        })

/* Where libvirt-guests' shutdown timing and guestkeeper's differ. libvirt-guests(8): with
 * PARALLEL_SHUTDOWN 0 or 1 it shuts guests down one after another, each given up to
 * SHUTDOWN_TIMEOUT; above 1, SHUTDOWN_TIMEOUT is the time for all the guests of a URI together,
 * and URIs are done one after another. 0 is no limit. When it gives up, what still runs dies
 * with the host. guestkeeper: ShutdownTimeoutSec= per guest, DeadlineSec= for the whole run
 * (then it powers off what still runs). Returns the DeadlineSec= to write, or 0 to keep the
 * default. */
static unsigned map_timing(bool shutdown, unsigned timeout, unsigned parallel, unsigned n_uris,
                           unsigned deadline, GPtrArray *notes, GPtrArray *warnings)
{
        guint64 total = (guint64) timeout * n_uris;

        if (timeout == 0) {
                if (warnings)
                        g_ptr_array_add(
                                warnings,
                                g_strdup_printf(
                                        "SHUTDOWN_TIMEOUT=0: libvirt-guests waits for ever for a guest "
                                        "to shut down; guestkeeper stops waiting at DeadlineSec=%u and "
                                        "powers off what still runs (systemd's poweroff.target gives "
                                        "up after %u s in any case). Imported as ShutdownTimeoutSec=0, "
                                        "where one stuck guest holds up the run to the deadline: "
                                        "consider ShutdownTimeoutSec=300",
                                        deadline, CONFIG_POWEROFF_JOB_TIMEOUT_SEC));
                return 0;
        }
        if (!shutdown)
                return 0; /* libvirt-guests suspends: it uses neither variable */

        if (parallel > 1) {
                /* A total: no guest was given longer, and all of them together no longer
                 * than that per URI. */
                if (total <= deadline) {
                        if (notes)
                                g_ptr_array_add(
                                        notes,
                                        g_strdup_printf(
                                                "SHUTDOWN_TIMEOUT=%u with PARALLEL_SHUTDOWN=%u "
                                                "is libvirt-guests' limit for all the guests "
                                                "of a URI together: imported as "
                                                "ShutdownTimeoutSec=%u and DeadlineSec=%" G_GUINT64_FORMAT
                                                " (%u URIs)",
                                                timeout, parallel, timeout, total, n_uris));
                        return (unsigned) total;
                }
        } else if (timeout <= deadline) {
                if (notes)
                        g_ptr_array_add(
                                notes,
                                g_strdup_printf("SHUTDOWN_TIMEOUT=%u: libvirt-guests shuts guests down "
                                                "one at a time, each given up to %u s; imported as "
                                                "ShutdownTimeoutSec=%u and ParallelShutdowns=1, so "
                                                "past %u guests that ignore shutdown guestkeeper "
                                                "reaches DeadlineSec=%u and powers the rest off "
                                                "(ParallelShutdowns=0 asks them all at once)",
                                                timeout, timeout, timeout, deadline / timeout, deadline));
                return 0;
        } else
                total = timeout;

        if (warnings) {
                g_autofree char *suggest =
                        total <= CONFIG_POWEROFF_JOB_TIMEOUT_SEC
                                ? g_strdup_printf("set DeadlineSec=%" G_GUINT64_FORMAT " to wait as long",
                                                  total)
                                : g_strdup_printf(
                                          "no DeadlineSec= can wait as long: systemd's poweroff.target "
                                          "gives up after %u s; at most DeadlineSec=%u",
                                          CONFIG_POWEROFF_JOB_TIMEOUT_SEC, CONFIG_POWEROFF_JOB_TIMEOUT_SEC);
                g_ptr_array_add(
                        warnings,
                        g_strdup_printf("SHUTDOWN_TIMEOUT=%u PARALLEL_SHUTDOWN=%u: libvirt-guests "
                                        "would wait up to %" G_GUINT64_FORMAT " s for %s, longer than "
                                        "guestkeeper's DeadlineSec=%u, after which it powers off what "
                                        "still runs; %s",
                                        timeout, parallel, total,
                                        parallel > 1 ? "the guests of its URIs" : "one guest", deadline,
                                        suggest));
        }
        return 0;
}

int import_libvirt_guests(const char *name, ImportDefaults flavour, const char *text, char **ret_conf,
                          GPtrArray *notes, GPtrArray *warnings, char **ret_error)
{
        g_autoptr(GHashTable) vars = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        const char *uris, *on_boot, *on_shutdown, *timeout, *parallel, *delay, *bypass, *sync, *persistent;
        Scope save, shutdown, poweroff;
        GString *out;
        unsigned lineno = 0, n_uris = 0, deadline;

        g_return_val_if_fail(flavour >= 0 && flavour < _IMPORT_DEFAULTS_MAX, -EINVAL);
        for (size_t i = 0; i < ELEMENTSOF(defaults); i++)
                g_hash_table_replace(vars, g_strdup(defaults[i][0]), g_strdup(defaults[i][1]));
        for (size_t i = 0; i < ELEMENTSOF(flavour_defaults[flavour]); i++)
                g_hash_table_replace(vars, g_strdup(flavour_defaults[flavour][i][0]),
                                     g_strdup(flavour_defaults[flavour][i][1]));

        for (char **l = lines; *l; l++) {
                const char *p = *l, *eq, *end;
                g_autofree char *var = NULL, *value = NULL;

                lineno++;
                while (g_ascii_isspace(*p))
                        p++;
                if (*p == '\0' || *p == '#')
                        continue;
                if (g_str_has_prefix(p, "export "))
                        p += 7;
                eq = strchr(p, '=');
                if (!eq || eq == p) {
                        if (notes)
                                g_ptr_array_add(notes,
                                                g_strdup_printf("%s:%u: not a VAR=value line, ignored: %s",
                                                                name, lineno, p));
                        continue;
                }
                var = g_strndup(p, eq - p);
                for (const char *c = var; *c; c++)
                        if (!g_ascii_isalnum(*c) && *c != '_')
                                return FAIL("%s:%u: \"%s\" is not a variable name", name, lineno, var);
                value = parse_value(eq + 1, &end);
                if (!value)
                        return FAIL("%s:%u: %s: unterminated quote", name, lineno, var);
                while (g_ascii_isspace(*end))
                        end++;
                if (*end && *end != '#' && notes)
                        g_ptr_array_add(notes, g_strdup_printf("%s:%u: %s: text after the value ignored: %s",
                                                               name, lineno, var, end));
                g_hash_table_replace(vars, g_steal_pointer(&var), g_steal_pointer(&value));
        }

        uris = g_hash_table_lookup(vars, "URIS");
        on_boot = g_hash_table_lookup(vars, "ON_BOOT");
        on_shutdown = g_hash_table_lookup(vars, "ON_SHUTDOWN");
        timeout = g_hash_table_lookup(vars, "SHUTDOWN_TIMEOUT");
        parallel = g_hash_table_lookup(vars, "PARALLEL_SHUTDOWN");
        delay = g_hash_table_lookup(vars, "START_DELAY");
        bypass = g_hash_table_lookup(vars, "BYPASS_CACHE");
        sync = g_hash_table_lookup(vars, "SYNC_TIME");
        persistent = g_hash_table_lookup(vars, "PERSISTENT_ONLY");

        if (!g_str_equal(on_boot, "start") && !g_str_equal(on_boot, "ignore"))
                return FAIL("ON_BOOT=%s: expected start or ignore", on_boot);
        if (import_scopes_from_libvirt_guests(on_shutdown, persistent, &save, &shutdown, &poweroff) < 0)
                return FAIL("ON_SHUTDOWN=%s PERSISTENT_ONLY=%s: expected suspend or shutdown, and true, "
                            "false or default",
                            on_shutdown, persistent);
        if (!is_uint(timeout, CONFIG_SECONDS_MAX))
                return FAIL("SHUTDOWN_TIMEOUT=%s: expected a number of seconds up to %u", timeout,
                            CONFIG_SECONDS_MAX);
        if (!is_uint(parallel, CONFIG_COUNT_MAX))
                return FAIL("PARALLEL_SHUTDOWN=%s: expected a number up to %u", parallel, CONFIG_COUNT_MAX);
        if (!is_uint(delay, CONFIG_SECONDS_MAX))
                return FAIL("START_DELAY=%s: expected a number of seconds up to %u", delay,
                            CONFIG_SECONDS_MAX);
        if (!g_str_equal(bypass, "0") && !g_str_equal(bypass, "1"))
                return FAIL("BYPASS_CACHE=%s: expected 0 or 1", bypass);
        if (!g_str_equal(sync, "0") && !g_str_equal(sync, "1"))
                return FAIL("SYNC_TIME=%s: expected 0 or 1", sync);

        out = g_string_new(NULL);
        g_string_append_printf(out,
                               "# guestkeeper.conf from %s (guestkeeperctl import-libvirt-guests; unset "
                               "variables as %s's libvirt-guests.sh sets them)\n\n",
                               name, flavour == IMPORT_DEFAULTS_DEBIAN ? "Debian" : "upstream libvirt");
        {
                /* As guestkeeper.conf reads it: blank-separated, none at all = libvirt's
                 * default (URIS="<tab>" would make a config the daemon refuses). */
                g_auto(GStrv) parts = g_strsplit_set(uris, " \t\r\v\f", -1);
                GString *list = g_string_new(NULL);

                for (char **p = parts; *p; p++)
                        if (**p) {
                                g_string_append_printf(list, "%s%s", list->len ? " " : "", *p);
                                n_uris++;
                        }
                g_string_append_printf(out, "[Guests]\nURIs=%s\n\n[Shutdown]\n",
                                       list->len ? list->str : "default");
                g_string_free(list, TRUE);
        }
        g_string_append_printf(out, "# ON_SHUTDOWN=%s PERSISTENT_ONLY=%s\n", on_shutdown, persistent);
        g_string_append_printf(out, "Save=%s\nShutdown=%s\n", scope_to_string(save),
                               scope_to_string(shutdown));
        g_string_append(
                out,
                "# libvirt-guests never forces a guest off; guestkeeper does when nothing else worked\n");
        g_string_append_printf(out, "PowerOff=%s\n", scope_to_string(poweroff));
        g_string_append_printf(out, "ShutdownTimeoutSec=%s\n", timeout);
        {
                g_autoptr(Config) d = config_new_default();

                deadline = map_timing(g_str_equal(on_shutdown, "shutdown"),
                                      (unsigned) g_ascii_strtoull(timeout, NULL, 10),
                                      (unsigned) g_ascii_strtoull(parallel, NULL, 10), MAX(n_uris, 1u),
                                      (unsigned) (d->deadline_usec / USEC_PER_SEC), notes, warnings);
        }
        if (deadline > 0)
                g_string_append_printf(out,
                                       "# SHUTDOWN_TIMEOUT with PARALLEL_SHUTDOWN>1 is for all the guests "
                                       "of a URI together\nDeadlineSec=%u\n",
                                       deadline);
        /* libvirt-guests: 0 = one at a time; guestkeeper: 0 = no limit. */
        g_string_append_printf(out, "ParallelShutdowns=%s\n", g_str_equal(parallel, "0") ? "1" : parallel);
        g_string_append_printf(out, "BypassCache=%s\n\n[Boot]\n", g_str_equal(bypass, "1") ? "yes" : "no");
        g_string_append_printf(out, "Restore=%s\nStartDelaySec=%s\n",
                               g_str_equal(on_boot, "start") ? "yes" : "no", delay);
        if (!g_str_equal(delay, "0"))
                g_string_append(out, "ParallelStarts=1\n");
        g_string_append_printf(out, "SyncTime=%s\n", g_str_equal(sync, "1") ? "yes" : "no");

        if (notes) {
                static const char *const known[] = {"URIS",
                                                    "ON_BOOT",
                                                    "ON_SHUTDOWN",
                                                    "SHUTDOWN_TIMEOUT",
                                                    "PARALLEL_SHUTDOWN",
                                                    "START_DELAY",
                                                    "BYPASS_CACHE",
                                                    "SYNC_TIME",
                                                    "PERSISTENT_ONLY"};
                g_autoptr(GList) keys = g_list_sort(g_hash_table_get_keys(vars), (GCompareFunc) strcmp);

                for (GList *k = keys; k; k = k->next) {
                        bool is_known = false;
                        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                                is_known = is_known || g_str_equal(k->data, known[i]);
                        if (is_known)
                                continue;
                        if (g_str_equal(k->data, "CONNECT_RETRIES") || g_str_equal(k->data, "RETRIES_SLEEP"))
                                g_ptr_array_add(
                                        notes,
                                        g_strdup_printf("%s: not needed: guestkeeperd reconnects by itself "
                                                        "and retries an unreachable URI at each run",
                                                        (char *) k->data));
                        else
                                g_ptr_array_add(
                                        notes, g_strdup_printf(
                                                       "%s: not a libvirt-guests setting guestkeeper knows; "
                                                       "not imported",
                                                       (char *) k->data));
                }
        }
        *ret_conf = g_string_free(out, FALSE);
        return 0;
}
