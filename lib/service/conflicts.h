/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Other mechanisms that act on the same guests at shutdown: two of them fighting over a guest
 * lose data. Pure: reads files, or interprets what systemd said (no bus, no libvirt). */

#include <stdbool.h>
#include <glib.h>

#include "terms.h"

/* libvirt's own auto-shutdown (qemu.conf auto_shutdown_*) came with 11.2: older ones ignore
 * the keys. Versions as virGetVersion() gives them (major * 1000000 + minor * 1000 + micro). */
#define LIBVIRT_AUTO_SHUTDOWN_VERSION 11002000UL

/* Looks under @root ("/" normally) for libvirt's own auto-shutdown in /etc/libvirt/qemu.conf
 * (auto_shutdown_try_save, _try_shutdown, _poweroff not "none"), read as libvirt reads it (a
 * key set twice: its first value). Returns one line per key, naming the file, and saying
 * whether @libvirt_version acts on it. */
GPtrArray *conflicts_detect(const char *root, unsigned long libvirt_version);

/* The guests libvirt's own auto-shutdown acts on, as @root's qemu.conf sets it: the union of
 * the three keys' scopes; SCOPE_NONE when none is set or @libvirt_version ignores them.
 * guestkeeper leaves those guests of the local QEMU system driver to it at a host shutdown:
 * two mechanisms on one guest race (docs/migration.md). */
Scope conflicts_libvirt_auto_shutdown(const char *root, unsigned long libvirt_version);

/* The line for a unit of another mechanism (libvirt-guests.service) as systemd sees it
 * (its UnitFileState and ActiveState properties; NULL = unknown), or NULL when it is
 * neither enabled nor active. */
char *conflicts_unit_text(const char *unit, const char *unit_file_state, const char *active_state);
