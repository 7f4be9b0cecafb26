/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What guestkeeperctl's files share: the options, the exit statuses, the bus helpers and the
 * output (JSON, tables, colour, pager). */

#include <stdbool.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <systemd/sd-bus.h>

#include "bus-names.h"
#include "bus-util.h"

#define NAME  GK_BUS_NAME
#define PATH  GK_OBJECT_PATH
#define IFACE GK_INTERFACE

/* guestkeeperctl(1), "EXIT STATUS". */
enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,      /* a call refused or failed, a run with failures, not confirmed */
        EXIT_USAGE = 2,       /* bad options or arguments */
        EXIT_CONFLICTS = 3,   /* status: other mechanisms would act on the guests at shutdown */
        EXIT_NOT_RUNNING = 4, /* guestkeeperd is not on the system bus */
};

typedef enum JsonFormat {
        JSON_OFF,
        JSON_SHORT,
        JSON_PRETTY,
} JsonFormat;

extern JsonFormat arg_json;
extern bool arg_legend;
extern bool arg_full;
extern bool arg_all;
extern bool arg_hold;
extern bool arg_no_block;
extern bool arg_yes;

/* Prints "guestkeeperctl: …" to stderr; returns EXIT_FAILED. */
int fail(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* Calls @method without arguments; on error prints it and returns EXIT_FAILED. */
int call(sd_bus *bus, const char *method, sd_bus_message **ret_reply);

/* ---- output.c ---- */

/* Colour on a terminal (decided once, before a pager takes stdout): "" otherwise. */
void color_init(void);
const char *ansi_red(void);
const char *ansi_yellow(void);
const char *ansi_normal(void);

/* A pager for long output, when stdout is a terminal: $SYSTEMD_PAGER, $PAGER or less (LESS=FRX
 * unless set); "" or cat: none. pager_close() waits for it. */
void pager_open(bool enabled);
void pager_close(void);

/* A colour for a table cell (ANSI sequence) or NULL. */
typedef const char *(*CellColor)(guint column, const char *value);
/* Prints a table; rows are GStrv of at least @ncols columns. */
void table(const char *const *header, GPtrArray *rows, guint ncols, const char *what, CellColor color);

/* Adds a member (@key) or an array element (@key NULL). Strings are made valid UTF-8: JSON is. */
void json_add_string(JsonBuilder *b, const char *key, const char *v);
/* NULL or "": null. */
void json_add_optional_string(JsonBuilder *b, const char *key, const char *v);
/* The first @n strings of @v, or all of them when @n < 0; NULL @v: empty. */
void json_add_strv(JsonBuilder *b, const char *key, char **v, gssize n);
void json_add_bool(JsonBuilder *b, const char *key, bool v);
void json_add_int(JsonBuilder *b, const char *key, gint64 v);
void json_add_double(JsonBuilder *b, const char *key, double v);
/* Prints the builder's document and a newline, as --json asked. */
void json_print(JsonBuilder *b);
/* Prints {"@key": @v}: what an action command says with --json. */
void json_print_bool(const char *key, bool v);

/* ---- polkit-agent.c ---- */
extern bool arg_ask_password;
/* For a call polkit may authorize: a caller who is not root, on a terminal, gets polkit's text
 * agent (pkttyagent) and calls that allow interactive authorization. */
void polkit_agent_open(sd_bus *bus);
/* Stops the agent, if one was started. */
void polkit_agent_close(void);

/* ---- last-run.c ---- */
int cmd_last_run(sd_bus *bus);

/* ---- run.c ---- */
/* preserve / restore [GUEST…]: starts the run and follows it until RunFinished. */
int cmd_run(sd_bus *bus, bool preserve, char **guests);
int cmd_cancel(sd_bus *bus);
