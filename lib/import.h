/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Reads a libvirt-guests configuration (/etc/default/libvirt-guests, shell variable syntax)
 * and writes the equivalent guestkeeper.conf (CONTRACT.md's mapping). Pure: no I/O. */

#include <glib.h>

/* @name is for messages. Variables that have no equivalent, or that guestkeeper does not
 * need, go to @notes as "NAME: why" — never dropped silently. -EINVAL with *ret_error
 * ("NAME=value: what is wrong") for a value libvirt-guests itself would not accept. */
int import_libvirt_guests(const char *name, const char *text, char **ret_conf, GPtrArray *notes,
                          char **ret_error);
