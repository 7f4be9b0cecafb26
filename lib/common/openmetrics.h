/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* OpenMetrics 1.0 text that Prometheus' text format 0.0.4 parsers read too (promtool,
 * node_exporter's textfile collector): gauge families only, "# UNIT" only when the name ends
 * in the unit, label values escaped as both formats want, "# EOF" at the end. Pure. */

#include <glib.h>

typedef struct OpenMetrics OpenMetrics;

OpenMetrics *openmetrics_new(void);
OpenMetrics *openmetrics_free(OpenMetrics *om);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OpenMetrics, openmetrics_free);

/* Starts a gauge family. @unit: NULL, or the unit @name ends in ("seconds" for
 * "x_duration_seconds"); otherwise no "# UNIT" line is written. @help: a '"' becomes '\''
 * (format 0.0.4 knows no escaped quote in HELP, OpenMetrics wants one). */
void openmetrics_family(OpenMetrics *om, const char *name, const char *unit, const char *help);
/* A sample of the family started last. @labels: NULL or name, value, name, value, …, NULL;
 * values are escaped (backslash, double quote, newline) and made valid UTF-8. */
void openmetrics_sample(OpenMetrics *om, const char *const *labels, double value);
/* The text, ending in "# EOF\n"; frees @om. */
char *openmetrics_finish(OpenMetrics *om);
