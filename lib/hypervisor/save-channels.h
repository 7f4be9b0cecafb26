/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Parallel-channel saves: whether a connection offers them, and how many channels a save gets.
 * Pure: the libvirt backend asks the versions and the host's CPUs once per connection and
 * decides with these.
 *
 * libvirt 11.2 added the "sparse" save image format (QEMU's mapped-ram: each page at a fixed
 * offset of the file) and, with it, saves and restores that write or read the memory over
 * several multifd channels: virDomainSaveParams()/virDomainRestoreParams() with the typed
 * parameters "image_format" and "parallel.channels". QEMU has mapped-ram since 9.0. A managed
 * save cannot use them: virDomainSaveParams() without a file is a managed save, and libvirt
 * (11.2, 11.3) then takes qemu.conf's save_image_format and silently drops both parameters. */

#include <stdbool.h>
#include <glib.h>

#include "config.h"

/* SaveChannels=auto: the count below; 0 = the plain format (as before 11.2). */
#define SAVE_CHANNELS_AUTO CONFIG_SAVE_CHANNELS_AUTO
/* QEMU takes up to 255 multifd channels; past a few, a save is bound by the disk. */
#define SAVE_CHANNELS_MAX 8
/* Below this much memory per channel, another channel's thread costs more than it gains. */
#define SAVE_CHANNEL_MIN_KIB (256 * 1024)

/* As virConnectGetLibVersion() and virConnectGetVersion() report them. */
#define SAVE_CHANNELS_MIN_LIBVIRT 11002000ULL /* 11.2.0 */
#define SAVE_CHANNELS_MIN_QEMU    9000000ULL  /* 9.0.0 */

/* Whether @driver (virConnectGetType(): "QEMU") at these versions saves with parallel channels. */
bool save_channels_available(const char *driver, unsigned long long libvirt_version,
                             unsigned long long hypervisor_version);

/* The channels of one save: @setting as configured (SAVE_CHANNELS_AUTO, 0, N); @memory_kib the
 * guest's (0 = unknown); @host_cpus the hypervisor host's; @concurrent how many saves (or
 * restores) the run lets run at once (0 = no limit). 0 = the plain format. */
unsigned save_channels_pick(unsigned setting, guint64 memory_kib, unsigned host_cpus, unsigned concurrent);
