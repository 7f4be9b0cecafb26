/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the libvirt backend's files share: the backend's state, and the parallel-channel save
 * path (hypervisor-libvirt-parallel.c). Worker threads only, like the backend's calls. */

#include <libvirt/libvirt.h>

#include "hypervisor.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree);

/* What a connection offers for file saves, asked once per connection. */
typedef enum SavePath {
        SAVE_PATH_UNKNOWN,
        SAVE_PATH_PLAIN,
        SAVE_PATH_PARALLEL, /* the sparse format over several channels */
} SavePath;

/* Two locks, so that the main thread never waits on libvirt: @connect_lock serialises
 * (re)connecting and is held across virConnectOpen(), which can block for as long as a hung
 * libvirtd or an unreachable remote host lets it; only workers take it. base.lock guards the
 * @conn pointer (and base.resolved_uri) and is never held across a libvirt call, so the main
 * thread (close_cb(), hypervisor_get_uri()) only ever waits for a pointer copy. */
typedef struct LibvirtHypervisor {
        Hypervisor base;
        GMutex connect_lock;
        virConnectPtr conn; /* written under both locks, read under either */
        int lifecycle_id;   /* guarded by connect_lock */
        int metadata_id;    /* guarded by connect_lock */
        gint no_job_stats;  /* atomic: the driver has no job statistics (test:///), until a reconnect */
        /* guarded by base.lock, reset by a reconnect (the daemon may have been upgraded) */
        SavePath save_path;
        unsigned host_cpus;
        unsigned assume_cpus; /* tests: the path is parallel with this many CPUs, without asking */
} LibvirtHypervisor;

#define LV(h) ((LibvirtHypervisor *) (h))

/* The parallel path (the sparse format over channels), where @c's daemon offers it and @req
 * asks for it: 1 done, 0 take the plain path (with a note in @ret_outcome when the parallel one
 * was tried and failed, or refused for good). @d NULL: the restore of @req->file. */
int libvirt_try_parallel(Hypervisor *h, virConnectPtr c, virDomainPtr d, const SaveRequest *req,
                         SaveOutcome *ret_outcome);
