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
        KEY_SHUTDOWN_MODE,
        KEY_PATH,
        KEY_TEXTFILE,
        KEY_CHANNELS,
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
        KEY("Guests", "ConnectTimeoutSec", KEY_SECONDS, connect_timeout_usec),
        KEY("Shutdown", "Save", KEY_SCOPE, save),
        KEY("Shutdown", "Shutdown", KEY_SCOPE, shutdown),
        KEY("Shutdown", "PowerOff", KEY_SCOPE, poweroff),
        KEY("Shutdown", "ShutdownTimeoutSec", KEY_SECONDS, shutdown_timeout_usec),
        KEY("Shutdown", "DeadlineSec", KEY_SECONDS, deadline_usec),
        KEY("Shutdown", "ParallelSaves", KEY_UNSIGNED, parallel_saves),
        KEY("Shutdown", "ParallelShutdowns", KEY_UNSIGNED, parallel_shutdowns),
        KEY("Shutdown", "BypassCache", KEY_BOOL, bypass_cache),
        KEY("Shutdown", "SaveChannels", KEY_CHANNELS, save_channels),
        KEY("Shutdown", "ShutdownMode", KEY_SHUTDOWN_MODE, shutdown_mode),
        KEY("Shutdown", "ShutdownRepeatSec", KEY_SECONDS, shutdown_repeat_usec),
        KEY("Shutdown", "ManagedSaveDirectory", KEY_PATH, managed_save_dir),
        KEY("Shutdown", "AbortJobs", KEY_BOOL, abort_jobs),
        KEY("Boot", "Restore", KEY_BOOL, restore),
        KEY("Boot", "StartDelaySec", KEY_SECONDS, start_delay_usec),
        KEY("Boot", "ParallelStarts", KEY_UNSIGNED, parallel_starts),
        KEY("Boot", "SyncTime", KEY_BOOL, sync_time),
        KEY("Boot", "AgentTimeoutSec", KEY_SECONDS, agent_timeout_usec),
        KEY("Boot", "RestoreAfterCrash", KEY_BOOL, restore_after_crash),
        KEY("Boot", "RestoreRetrySec", KEY_SECONDS, restore_retry_usec),
        KEY("Metrics", "TextfilePath", KEY_TEXTFILE, metrics_textfile),
};

static const char *const guest_key_table[_GUEST_KEY_MAX] = {
        [GUEST_KEY_ACTION] = "action",
        [GUEST_KEY_SHUTDOWN_TIMEOUT] = "shutdown-timeout",
        [GUEST_KEY_ORDER] = "order",
        [GUEST_KEY_SHUTDOWN_MODE] = "shutdown-mode",
        [GUEST_KEY_START_DELAY] = "start-delay",
};
DEFINE_STRING_TABLE(guest_key, GuestKey, _GUEST_KEY_MAX);

static const char *const guest_config_key_table[_GUEST_KEY_MAX] = {
        [GUEST_KEY_ACTION] = "Action",
        [GUEST_KEY_SHUTDOWN_TIMEOUT] = "ShutdownTimeoutSec",
        [GUEST_KEY_ORDER] = "Order",
        [GUEST_KEY_SHUTDOWN_MODE] = "ShutdownMode",
        [GUEST_KEY_START_DELAY] = "StartDelaySec",
};

const char *guest_key_to_config_key(GuestKey k)
{
        return k >= 0 && k < _GUEST_KEY_MAX ? guest_config_key_table[k] : NULL;
}

static void guest_section_destroy(gpointer p);

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
        c->save_channels = CONFIG_SAVE_CHANNELS_AUTO;
        c->restore = true;
        c->start_delay_usec = 0;
        c->parallel_starts = 4;
        c->sync_time = false;
        c->connect_timeout_usec = 10 * USEC_PER_SEC;
        c->shutdown_mode = SHUTDOWN_MODE_ACPI;
        /* A guest that missed the first ACPI press (still booting, a screensaver) hears the
         * next one; 5 s is well inside the shortest sensible ShutdownTimeoutSec. */
        c->shutdown_repeat_usec = 5 * USEC_PER_SEC;
        c->agent_timeout_usec = 60 * USEC_PER_SEC;
        c->restore_after_crash = true;
        /* libvirtd socket-activated late, a remote host still booting, NFS/iSCSI storage not
         * mounted yet: minutes, not seconds. */
        c->restore_retry_usec = 5 * 60 * USEC_PER_SEC;
        c->managed_save_dir = NULL;
        c->abort_jobs = true;
        c->guest_sections = g_ptr_array_new_with_free_func(guest_section_destroy);
        return c;
}

GuestSection *guest_section_free(GuestSection *s)
{
        if (!s)
                return NULL;
        g_free(s->name);
        g_free(s->glob);
        g_free(s);
        return NULL;
}

static void guest_section_destroy(gpointer p)
{
        guest_section_free(p);
}

Config *config_copy(const Config *c)
{
        Config *n = g_memdup2(c, sizeof(*c));

        n->uris = g_strdupv(c->uris);
        n->managed_save_dir = g_strdup(c->managed_save_dir);
        n->metrics_textfile = g_strdup(c->metrics_textfile);
        n->guest_sections = g_ptr_array_new_with_free_func(guest_section_destroy);
        for (guint i = 0; i < c->guest_sections->len; i++) {
                const GuestSection *s = c->guest_sections->pdata[i];
                GuestSection *d = g_memdup2(s, sizeof(*s));

                d->name = g_strdup(s->name);
                d->glob = g_strdup(s->glob);
                g_ptr_array_add(n->guest_sections, d);
        }
        return n;
}

Config *config_free(Config *c)
{
        if (!c)
                return NULL;
        g_strfreev(c->uris);
        g_free(c->managed_save_dir);
        g_free(c->metrics_textfile);
        g_ptr_array_unref(c->guest_sections);
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

int config_parse_unsigned(const char *v, unsigned max, unsigned *ret)
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

/* The units of systemd.time(7) up to weeks (months and years exceed CONFIG_SECONDS_MAX). */
static const struct {
        const char *name;
        guint64 usec;
} span_units[] = {
        {"usec", 1},
        {"us", 1},
        {"µs", 1},
        {"μs", 1}, /* GREEK SMALL LETTER MU, as systemd accepts too */
        {"msec", 1000},
        {"ms", 1000},
        {"seconds", USEC_PER_SEC},
        {"second", USEC_PER_SEC},
        {"sec", USEC_PER_SEC},
        {"s", USEC_PER_SEC},
        {"minutes", 60 * USEC_PER_SEC},
        {"minute", 60 * USEC_PER_SEC},
        {"min", 60 * USEC_PER_SEC},
        {"m", 60 * USEC_PER_SEC},
        {"hours", 3600 * USEC_PER_SEC},
        {"hour", 3600 * USEC_PER_SEC},
        {"hr", 3600 * USEC_PER_SEC},
        {"h", 3600 * USEC_PER_SEC},
        {"days", 86400 * USEC_PER_SEC},
        {"day", 86400 * USEC_PER_SEC},
        {"d", 86400 * USEC_PER_SEC},
        {"weeks", 604800 * USEC_PER_SEC},
        {"week", 604800 * USEC_PER_SEC},
        {"w", 604800 * USEC_PER_SEC},
};

int config_parse_timespan(const char *v, guint64 *ret_usec)
{
        const guint64 max = (guint64) CONFIG_SECONDS_MAX * USEC_PER_SEC;
        guint64 total = 0;
        bool nonzero = false;
        const char *p = v;

        if (!v)
                return -EINVAL;
        while (g_ascii_isspace(*p))
                p++;
        if (*p == '\0')
                return -EINVAL;
        while (*p) {
                guint64 whole = 0, mult = USEC_PER_SEC;
                const char *frac = "", *unit;
                size_t n;
                bool found = false;

                /* A number: digits, optionally ".digits" (systemd's "1.5s"); no sign. */
                if (!g_ascii_isdigit(*p) && !(*p == '.' && g_ascii_isdigit(p[1])))
                        return -EINVAL;
                for (; g_ascii_isdigit(*p); p++) {
                        nonzero = nonzero || *p != '0';
                        if (whole <= max) /* beyond it, only read the digits: too large anyway */
                                whole = whole * 10 + (guint64) (*p - '0');
                }
                if (*p == '.') {
                        frac = ++p;
                        for (; g_ascii_isdigit(*p); p++)
                                nonzero = nonzero || *p != '0';
                        if (*p == '.') /* "1.2.3" */
                                return -EINVAL;
                }
                while (g_ascii_isspace(*p))
                        p++;
                /* The unit: the whole word, so "5mins" is an unknown unit, not 5min + "s". */
                unit = p;
                while (g_ascii_isalpha(*p) || (guchar) *p >= 0x80)
                        p++;
                n = (size_t) (p - unit);
                for (size_t i = 0; n > 0 && i < ELEMENTSOF(span_units); i++)
                        if (strlen(span_units[i].name) == n && strncmp(unit, span_units[i].name, n) == 0) {
                                mult = span_units[i].usec;
                                found = true;
                                break;
                        }
                if (n > 0 && !found)
                        return -EINVAL;
                if (whole > max / mult)
                        return -ERANGE;
                total += whole * mult;
                /* Each decimal is worth a tenth of the one before; below 1 µs they drop off
                 * (as in systemd). */
                for (guint64 m = mult / 10; g_ascii_isdigit(*frac) && m > 0; frac++, m /= 10)
                        total += (guint64) (*frac - '0') * m;
                if (total > max)
                        return -ERANGE;
                while (g_ascii_isspace(*p))
                        p++;
        }
        /* "0.0000001s" must not become 0, which means no limit. */
        if (total == 0 && nonzero)
                return -EDOM;
        *ret_usec = total;
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

/* config_parse_timespan() with the message for the user. */
static int parse_seconds(const char *value, guint64 *ret_usec, char **ret_what)
{
        int r = config_parse_timespan(value, ret_usec);

        if (r == -ERANGE)
                *ret_what = g_strdup_printf("\"%s\" is too large (at most %u seconds, a week)", value,
                                            CONFIG_SECONDS_MAX);
        else if (r == -EDOM)
                *ret_what = g_strdup_printf("\"%s\" is below a microsecond (0 means no limit)", value);
        else if (r < 0)
                *ret_what = g_strdup_printf(
                        "\"%s\" is not a time span (seconds, or e.g. \"5min\", \"1h 30s\")", value);
        return r;
}

int guest_settings_parse(GuestSettings *s, GuestKey key, const char *value, char **ret_what)
{
        bool negative = value && *value == '-';
        unsigned u;
        int r;

        switch (key) {
        case GUEST_KEY_ACTION:
                r = action_from_string(value);
                if (r < 0) {
                        *ret_what = g_strdup_printf("\"%s\" is not one of save, shutdown, poweroff, skip",
                                                    value);
                        return r;
                }
                s->action = r;
                break;
        case GUEST_KEY_SHUTDOWN_TIMEOUT:
                r = parse_seconds(value, &s->shutdown_timeout_usec, ret_what);
                if (r < 0)
                        return r;
                break;
        case GUEST_KEY_START_DELAY:
                r = parse_seconds(value, &s->start_delay_usec, ret_what);
                if (r < 0)
                        return r;
                break;
        case GUEST_KEY_ORDER:
                r = config_parse_unsigned(negative ? value + 1 : value, CONFIG_ORDER_MAX, &u);
                if (r < 0) {
                        *ret_what = g_strdup_printf("\"%s\" is not an integer from -%u to %u", value,
                                                    CONFIG_ORDER_MAX, CONFIG_ORDER_MAX);
                        return r;
                }
                s->order = negative ? -(int) u : (int) u;
                break;
        case GUEST_KEY_SHUTDOWN_MODE:
                r = shutdown_mode_from_string(value);
                if (r < 0) {
                        *ret_what = g_strdup_printf("\"%s\" is not one of acpi, agent, agent,acpi", value);
                        return r;
                }
                s->shutdown_mode = (unsigned) r;
                break;
        default:
                g_assert_not_reached();
        }
        s->set |= 1u << key;
        return 0;
}

static char *format_seconds(guint64 usec)
{
        if (usec % USEC_PER_SEC == 0)
                return g_strdup_printf("%" G_GUINT64_FORMAT, usec / USEC_PER_SEC);
        return g_strdup_printf("%" G_GUINT64_FORMAT ".%06" G_GUINT64_FORMAT, usec / USEC_PER_SEC,
                               usec % USEC_PER_SEC);
}

char *guest_settings_format(const GuestSettings *s, GuestKey key)
{
        switch (key) {
        case GUEST_KEY_ACTION:
                return g_strdup(action_to_string(s->action));
        case GUEST_KEY_SHUTDOWN_TIMEOUT:
                return format_seconds(s->shutdown_timeout_usec);
        case GUEST_KEY_START_DELAY:
                return format_seconds(s->start_delay_usec);
        case GUEST_KEY_ORDER:
                return g_strdup_printf("%d", s->order);
        case GUEST_KEY_SHUTDOWN_MODE:
                return g_strdup(shutdown_mode_to_string(s->shutdown_mode));
        default:
                return NULL;
        }
}

/* One [Guest GLOB] section of one file. */
static int apply_guest_section(Config *c, const char *name, GKeyFile *kf, const char *group,
                               GPtrArray *warnings, char **ret_error)
{
        g_autoptr(GuestSection) s = g_new0(GuestSection, 1);
        g_auto(GStrv) ks = g_key_file_get_keys(kf, group, NULL, NULL);

        s->name = g_strdup(group);
        s->glob = g_strstrip(g_strdup(group + strlen("Guest")));
        if (!*s->glob) {
                *ret_error = g_strdup_printf("%s: [%s]: needs a pattern of guest names, e.g. [Guest web-*]",
                                             name, group);
                return -EINVAL;
        }
        for (char **k = ks; ks && *k; k++) {
                int key = string_table_lookup(guest_config_key_table, _GUEST_KEY_MAX, *k);
                g_autofree char *value = NULL, *what = NULL;

                if (key < 0) {
                        if (warnings)
                                g_ptr_array_add(warnings,
                                                g_strdup_printf("%s: [%s] %s: unknown key, ignored", name,
                                                                group, *k));
                        continue;
                }
                value = g_strstrip(g_key_file_get_value(kf, group, *k, NULL));
                if (guest_settings_parse(&s->settings, key, value, &what) < 0) {
                        *ret_error = g_strdup_printf("%s: [%s] %s: %s", name, group, *k, what);
                        return -EINVAL;
                }
        }
        g_ptr_array_add(c->guest_sections, g_steal_pointer(&s));
        return 0;
}

static int apply_key(Config *c, const KeyDef *def, const char *value, char **ret_what)
{
        void *field = G_STRUCT_MEMBER_P(c, def->offset);
        guint64 usec;
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
                r = parse_seconds(value, &usec, ret_what);
                if (r < 0)
                        return r;
                *(guint64 *) field = usec;
                return 0;
        case KEY_UNSIGNED:
                r = config_parse_unsigned(value, CONFIG_COUNT_MAX, &u);
                if (r < 0) {
                        *ret_what = r == -ERANGE
                                            ? g_strdup_printf("\"%s\" is too large (at most %u)", value,
                                                              CONFIG_COUNT_MAX)
                                            : g_strdup_printf("\"%s\" is not a non-negative integer", value);
                        return r;
                }
                *(unsigned *) field = u;
                return 0;
        case KEY_CHANNELS:
                if (streq_ptr(value, "auto")) {
                        *(unsigned *) field = CONFIG_SAVE_CHANNELS_AUTO;
                        return 0;
                }
                r = config_parse_unsigned(value, CONFIG_SAVE_CHANNELS_MAX, &u);
                if (r < 0) {
                        *ret_what =
                                g_strdup_printf("\"%s\" is not auto or a number of channels from 0 to %u",
                                                value, CONFIG_SAVE_CHANNELS_MAX);
                        return r;
                }
                *(unsigned *) field = u;
                return 0;
        case KEY_SHUTDOWN_MODE:
                r = shutdown_mode_from_string(value);
                if (r < 0) {
                        *ret_what = g_strdup_printf("\"%s\" is not one of acpi, agent, agent,acpi", value);
                        return r;
                }
                *(unsigned *) field = (unsigned) r;
                return 0;
        case KEY_BOOL:
                r = parse_bool(value, &b);
                if (r < 0) {
                        *ret_what = g_strdup_printf("\"%s\" is not a boolean (yes/no)", value);
                        return r;
                }
                *(bool *) field = b;
                return 0;
        case KEY_PATH:
                /* Empty: set, and nothing there (no check). */
                if (*value != '\0' && !g_path_is_absolute(value)) {
                        *ret_what = g_strdup_printf("\"%s\" is not an absolute path", value);
                        return -EINVAL;
                }
                g_free(*(char **) field);
                *(char **) field = g_strdup(value);
                return 0;
        case KEY_TEXTFILE:
                /* node_exporter's textfile collector reads only *.prom. Empty: off. */
                if (*value != '\0' && (!g_path_is_absolute(value) || !g_str_has_suffix(value, ".prom") ||
                                       g_str_has_suffix(value, "/.prom"))) {
                        *ret_what = g_strdup_printf("\"%s\" is not an absolute path of a file ending in "
                                                    "\".prom\"",
                                                    value);
                        return -EINVAL;
                }
                g_free(*(char **) field);
                *(char **) field = *value ? g_strdup(value) : NULL;
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
        g_autofree char *text = g_memdup2(data, len);
        bool line_start = true;

        /* systemd-INI comments start with '#' or ';', GKeyFile's only with '#': turn a leading
         * ';' into '#' in place, so that line numbers in GKeyFile's messages stay right. */
        for (gsize i = 0; i < len; i++) {
                if (line_start && text[i] == ';')
                        text[i] = '#';
                if (text[i] == '\n')
                        line_start = true;
                else if (!g_ascii_isspace(text[i]))
                        line_start = false;
        }

        if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, &error)) {
                *ret_error = g_strdup_printf("%s: %s", name, error->message);
                return -EINVAL;
        }

        groups = g_key_file_get_groups(kf, NULL);
        for (char **g = groups; *g; g++) {
                g_auto(GStrv) ks = NULL;
                int r;

                if (g_str_has_prefix(*g, "Guest") && (!(*g)[5] || g_ascii_isspace((*g)[5]))) {
                        r = apply_guest_section(c, name, kf, *g, warnings, ret_error);
                        if (r < 0)
                                return r;
                        continue;
                }
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
                        /* Raw value, trimmed: the contract's forms are not those of GKeyFile's
                         * typed getters (time spans, "yes"; no "-5" for a count). */
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
        /* The files that set the keys warned about, to name them as errors do. */
        g_autofree char *timeout_from = g_strdup(path), *deadline_from = g_strdup(path);
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
                        guint64 timeout = c->shutdown_timeout_usec, deadline = c->deadline_usec;

                        r = apply_file(c, p, true, warnings, ret_error);
                        if (r < 0)
                                return r;
                        if (c->shutdown_timeout_usec != timeout) {
                                g_free(timeout_from);
                                timeout_from = g_strdup(p);
                        }
                        if (c->deadline_usec != deadline) {
                                g_free(deadline_from);
                                deadline_from = g_strdup(p);
                        }
                }
        }

        if (warnings) {
                if (c->shutdown_timeout_usec == 0)
                        g_ptr_array_add(warnings,
                                        g_strdup_printf("%s: [Shutdown] ShutdownTimeoutSec=0: no limit; a "
                                                        "guest that ignores shutdown holds up the host "
                                                        "(systemd's poweroff.target gives up after 30 min)",
                                                        timeout_from));
                if (c->deadline_usec == 0)
                        g_ptr_array_add(
                                warnings,
                                g_strdup_printf("%s: [Shutdown] DeadlineSec=0: no limit for the whole run "
                                                "(systemd's poweroff.target gives up after 30 min)",
                                                deadline_from));
                else if (c->deadline_usec > CONFIG_POWEROFF_JOB_TIMEOUT_SEC * USEC_PER_SEC)
                        g_ptr_array_add(
                                warnings,
                                g_strdup_printf("%s: [Shutdown] DeadlineSec: %" G_GUINT64_FORMAT
                                                " s is longer than systemd's poweroff.target waits (30 min, "
                                                "%u s): the host goes down before the run ends, with guests "
                                                "still running; use less (the default is 1500)",
                                                deadline_from, c->deadline_usec / USEC_PER_SEC,
                                                CONFIG_POWEROFF_JOB_TIMEOUT_SEC));
        }

        *ret = g_steal_pointer(&c);
        return 0;
}
