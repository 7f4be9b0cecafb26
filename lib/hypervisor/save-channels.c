/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "save-channels.h"

#include "macro.h"

bool save_channels_available(const char *driver, unsigned long long libvirt_version,
                             unsigned long long hypervisor_version)
{
        /* Only the QEMU driver has the sparse format; the test driver has no virDomainSaveParams. */
        return streq_ptr(driver, "QEMU") && libvirt_version >= SAVE_CHANNELS_MIN_LIBVIRT &&
               hypervisor_version >= SAVE_CHANNELS_MIN_QEMU;
}

unsigned save_channels_pick(unsigned setting, guint64 memory_kib, unsigned host_cpus, unsigned concurrent)
{
        unsigned by_cpus, by_memory;

        if (setting != SAVE_CHANNELS_AUTO)
                return MIN(setting, CONFIG_SAVE_CHANNELS_MAX);
        /* Each channel is a QEMU thread that copies pages: the saves that run at once share the
         * host's CPUs, and a thread beyond them only waits. */
        by_cpus = MAX(host_cpus, 1u) / MAX(concurrent, 1u);
        if (concurrent == 0)
                by_cpus = 1; /* no cap: as many saves as guests, they fill the CPUs by themselves */
        by_memory = memory_kib == 0
                            ? SAVE_CHANNELS_MAX
                            : (unsigned) MIN((memory_kib + SAVE_CHANNEL_MIN_KIB - 1) / SAVE_CHANNEL_MIN_KIB,
                                             (guint64) SAVE_CHANNELS_MAX);
        return MAX(MIN(MIN(by_cpus, by_memory), (unsigned) SAVE_CHANNELS_MAX), 1u);
}
