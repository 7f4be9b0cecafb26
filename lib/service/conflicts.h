/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Other mechanisms that act on the same guests at shutdown: two of them fighting over a guest
 * lose data. Pure: reads files, or interprets what systemd said (no bus, no libvirt). */

#include <stdbool.h>
#include <glib.h>

#include "terms.h"

/* Looks under @root ("/" normally) for libvirt's own auto-shutdown in /etc/libvirt/qemu.conf
 * (auto_shutdown_try_save, _try_shutdown, _poweroff not "none", libvirt >= 11.2). Returns
 * one line per conflict, naming the file. */
GPtrArray *conflicts_detect(const char *root);

/* The guests libvirt's own auto-shutdown acts on, as @root's qemu.conf sets it: the union of
 * the three keys' scopes (SCOPE_NONE when none is set). guestkeeper leaves those guests of the
 * local QEMU system driver to it: two mechanisms on one guest race (docs/migration.md). */
Scope conflicts_libvirt_auto_shutdown(const char *root);

/* The line for a unit of another mechanism (libvirt-guests.service) as systemd sees it
 * (its UnitFileState and ActiveState properties; NULL = unknown), or NULL when it is
 * neither enabled nor active. */
char *conflicts_unit_text(const char *unit, const char *unit_file_state, const char *active_state);
