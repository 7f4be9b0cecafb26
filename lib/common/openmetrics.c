/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "openmetrics.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

struct OpenMetrics {
        GString *text;
        char *family;
};

OpenMetrics *openmetrics_new(void)
{
        OpenMetrics *om = g_new0(OpenMetrics, 1);

        om->text = g_string_new(NULL);
        return om;
}

OpenMetrics *openmetrics_free(OpenMetrics *om)
{
        if (!om)
                return NULL;
        g_string_free(om->text, TRUE);
        g_free(om->family);
        g_free(om);
        return NULL;
}

/* Label values and HELP texts: \\ and \n; a '"' is escaped in a label value and becomes '\'' in
 * a HELP text (see openmetrics_family()). */
static void append_escaped(GString *out, const char *s, bool help)
{
        g_autofree char *valid = g_utf8_make_valid(s ?: "", -1);

        for (const char *p = valid; *p; p++)
                switch (*p) {
                case '\\':
                        g_string_append(out, "\\\\");
                        break;
                case '"':
                        g_string_append(out, help ? "'" : "\\\"");
                        break;
                case '\n':
                        g_string_append(out, "\\n");
                        break;
                default:
                        g_string_append_c(out, *p);
                }
}

void openmetrics_family(OpenMetrics *om, const char *name, const char *unit, const char *help)
{
        g_free(om->family);
        om->family = g_strdup(name);
        g_string_append_printf(om->text, "# HELP %s ", name);
        append_escaped(om->text, help, true);
        g_string_append_printf(om->text, "\n# TYPE %s gauge\n", name);
        /* OpenMetrics: the unit must be the name's suffix; 0.0.4 reads the line as a comment. */
        if (unit && *unit && g_str_has_suffix(name, unit) && strlen(name) > strlen(unit) + 1 &&
            name[strlen(name) - strlen(unit) - 1] == '_')
                g_string_append_printf(om->text, "# UNIT %s %s\n", name, unit);
}

/* The shortest of 15 to 17 significant digits that reads back as @v: 0.008782, not
 * 0.0087819999999999999; a timestamp keeps its microseconds. Always a '.', whatever the locale. */
static const char *format_value(char *buf, size_t size, double v)
{
        for (int digits = 15; digits < 17; digits++) {
                char fmt[8];

                g_snprintf(fmt, sizeof fmt, "%%.%dg", digits);
                if (g_ascii_strtod(g_ascii_formatd(buf, (gint) size, fmt, v), NULL) == v)
                        return buf;
        }
        return g_ascii_formatd(buf, (gint) size, "%.17g", v);
}

void openmetrics_sample(OpenMetrics *om, const char *const *labels, double value)
{
        char buf[G_ASCII_DTOSTR_BUF_SIZE];

        g_assert(om->family);
        g_string_append(om->text, om->family);
        if (labels && labels[0]) {
                g_string_append_c(om->text, '{');
                for (const char *const *l = labels; l[0] && l[1]; l += 2) {
                        g_string_append_printf(om->text, "%s%s=\"", l == labels ? "" : ",", l[0]);
                        append_escaped(om->text, l[1], false);
                        g_string_append_c(om->text, '"');
                }
                g_string_append_c(om->text, '}');
        }
        g_string_append_c(om->text, ' ');
        if (isnan(value))
                g_string_append(om->text, "NaN");
        else if (isinf(value))
                g_string_append(om->text, value > 0 ? "+Inf" : "-Inf");
        else
                g_string_append(om->text, format_value(buf, sizeof buf, value));
        g_string_append_c(om->text, '\n');
}

char *openmetrics_finish(OpenMetrics *om)
{
        char *text;

        g_string_append(om->text, "# EOF\n");
        text = g_string_free(g_steal_pointer(&om->text), FALSE);
        g_free(om->family);
        g_free(om);
        return text;
}
