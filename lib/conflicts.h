/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Other mechanisms that act on the same guests at shutdown: two of them fighting over a guest
 * lose data. Reads files only (no bus, no libvirt). */

#include <glib.h>

/* Looks under @root ("/" normally) for libvirt-guests.service enabled in /etc/systemd/system
 * (a *.wants/ link) and for libvirt's own auto-shutdown in /etc/libvirt/qemu.conf
 * (auto_shutdown_try_save, _try_shutdown, _poweroff not "none", libvirt >= 11.2). Returns
 * one line per conflict, naming the file. */
GPtrArray *conflicts_detect(const char *root);
