/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Reads a libvirt-guests configuration (/etc/default/libvirt-guests, shell variable syntax)
 * and writes the equivalent guestkeeper.conf (the mapping of guestkeeper.conf(5), docs/migration.md). Pure:
 * no I/O. */

#include <errno.h>
#include <glib.h>

#include "terms.h"

/* Whose libvirt-guests.sh reads the file: the values of the variables it leaves unset. */
typedef enum ImportDefaults {
        IMPORT_DEFAULTS_DEBIAN,   /* /etc/default: Debian's patched script, ON_SHUTDOWN=shutdown */
        IMPORT_DEFAULTS_UPSTREAM, /* /etc/sysconfig: libvirt's own, ON_SHUTDOWN=suspend */
        _IMPORT_DEFAULTS_MAX,
        _IMPORT_DEFAULTS_INVALID = -EINVAL,
} ImportDefaults;

const char *import_defaults_to_string(ImportDefaults d);
ImportDefaults import_defaults_from_string(const char *s);
/* By the file's place: upstream's under a "sysconfig" directory, else Debian's. */
ImportDefaults import_defaults_for_path(const char *path);

/* @name is for messages. Variables that have no equivalent, or that guestkeeper does not
 * need, go to @notes as "NAME: why" — never dropped silently. Where guestkeeper would act
 * differently in time (libvirt-guests waiting longer than DeadlineSec=), a "NAME=value: why;
 * what to set" goes to @warnings. -EINVAL with *ret_error ("NAME=value: what is wrong") for
 * a value libvirt-guests itself would not accept. */
int import_libvirt_guests(const char *name, ImportDefaults defaults, const char *text, char **ret_conf,
                          GPtrArray *notes, GPtrArray *warnings, char **ret_error);

/* libvirt-guests' ON_SHUTDOWN × PERSISTENT_ONLY matrix (libvirt-guests(8)) as scopes.
 * @on_shutdown: "suspend" or "shutdown"; @persistent_only: "true", "false" or "default".
 * The guest that libvirt-guests leaves alone gets no step; where it acts, the same first
 * step, with poweroff added after a graceful shutdown (libvirt-guests never forces). */
int import_scopes_from_libvirt_guests(const char *on_shutdown, const char *persistent_only, Scope *ret_save,
                                      Scope *ret_shutdown, Scope *ret_poweroff);
