/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The libvirt backend's file saves and restores in libvirt's sparse format over parallel
 * channels (libvirt >= 11.2, QEMU >= 9.0), with the fall-backs to the plain path. */
#include "hypervisor-libvirt-private.h"

#include <libvirt/virterror.h>

#include "save-channels.h"

/* The typed parameters of libvirt 11.2's parallel saves, as plain strings: headers older than
 * 11.2 (Debian 12 has 9.0) lack them, and whether the daemon knows them is asked at run time. */
#ifndef VIR_DOMAIN_SAVE_PARAM_IMAGE_FORMAT
#define VIR_DOMAIN_SAVE_PARAM_IMAGE_FORMAT "image_format"
#endif
#ifndef VIR_DOMAIN_SAVE_PARAM_PARALLEL_CHANNELS
#define VIR_DOMAIN_SAVE_PARAM_PARALLEL_CHANNELS "parallel.channels"
#endif

/* Whether @c's daemon saves files in the sparse format over parallel channels: libvirt >= 11.2
 * with QEMU >= 9.0, asked on the first file save or restore of the connection. Sets
 * *ret_cpus to the hypervisor host's CPUs (a remote URI's host, not ours). */
static bool parallel_offered(Hypervisor *h, virConnectPtr c, unsigned *ret_cpus)
{
        LibvirtHypervisor *lh = LV(h);
        unsigned long lib = 0, hv = 0;
        const char *type;
        virNodeInfo node;
        SavePath path;
        unsigned cpus = 1;

        g_mutex_lock(&h->lock);
        if (lh->save_path == SAVE_PATH_UNKNOWN && lh->assume_cpus > 0) {
                lh->save_path = SAVE_PATH_PARALLEL;
                lh->host_cpus = lh->assume_cpus;
        }
        path = lh->save_path;
        *ret_cpus = lh->host_cpus;
        g_mutex_unlock(&h->lock);
        if (path != SAVE_PATH_UNKNOWN)
                return path == SAVE_PATH_PARALLEL;

        type = virConnectGetType(c);
        path = type && virConnectGetLibVersion(c, &lib) >= 0 && virConnectGetVersion(c, &hv) >= 0 &&
                               save_channels_available(type, lib, hv)
                       ? SAVE_PATH_PARALLEL
                       : SAVE_PATH_PLAIN;
        if (path == SAVE_PATH_PARALLEL && virNodeGetInfo(c, &node) >= 0)
                cpus = node.cpus;
        virResetLastError();

        g_mutex_lock(&h->lock);
        if (lh->save_path == SAVE_PATH_UNKNOWN) {
                lh->save_path = path;
                lh->host_cpus = cpus;
        }
        path = lh->save_path;
        *ret_cpus = lh->host_cpus;
        g_mutex_unlock(&h->lock);
        return path == SAVE_PATH_PARALLEL;
}

/* libvirt said no to the parallel path itself rather than failing the save: a driver or QEMU
 * without it (no virDomainSaveParams, no mapped-ram, an unknown parameter). */
static bool refused(const virErrorPtr e)
{
        return e && (e->code == VIR_ERR_NO_SUPPORT || e->code == VIR_ERR_ARGUMENT_UNSUPPORTED ||
                     e->code == VIR_ERR_OPERATION_UNSUPPORTED || e->code == VIR_ERR_CONFIG_UNSUPPORTED ||
                     e->code == VIR_ERR_INVALID_ARG);
}

/* The connection uses the plain path from now on. The first caller to find out gets the note
 * (its caller logs it once); the others that were refused at the same time retry quietly. */
static void give_up_parallel(Hypervisor *h, const char *what, SaveOutcome *ret_outcome)
{
        virErrorPtr e = virGetLastError();
        bool first;

        g_mutex_lock(&h->lock);
        first = LV(h)->save_path == SAVE_PATH_PARALLEL;
        LV(h)->save_path = SAVE_PATH_PLAIN;
        g_mutex_unlock(&h->lock);
        if (first)
                ret_outcome->note = g_strdup_printf("libvirt refused the parallel %s (%s); using the plain "
                                                    "format on this connection from now on",
                                                    what, e && e->message ? e->message : "no reason given");
        virResetLastError();
}

/* A save of @d in the sparse format over @channels channels, or with @d NULL, the restore of
 * that file on @c. (A save without a file would be a managed save, see lv_save().) */
static int call_parallel(virDomainPtr d, virConnectPtr c, const char *file, unsigned channels,
                         unsigned flags)
{
        virTypedParameterPtr params = NULL;
        int n = 0, max = 0, r = -1;

        if (virTypedParamsAddString(&params, &n, &max, VIR_DOMAIN_SAVE_PARAM_FILE, file) >= 0 &&
            (!d || virTypedParamsAddString(&params, &n, &max, VIR_DOMAIN_SAVE_PARAM_IMAGE_FORMAT,
                                           "sparse") >= 0) &&
            virTypedParamsAddInt(&params, &n, &max, VIR_DOMAIN_SAVE_PARAM_PARALLEL_CHANNELS,
                                 (int) channels) >= 0)
                r = d ? virDomainSaveParams(d, params, n, flags)
                      : virDomainRestoreParams(c, params, n, flags);
        virTypedParamsFree(params, n);
        return r;
}

/* The parallel path, where the connection offers it: 1 done, 0 take the plain path (with a note
 * when the parallel one was tried and failed). @d NULL: the restore of @req->file. */
int libvirt_try_parallel(Hypervisor *h, virConnectPtr c, virDomainPtr d, const SaveRequest *req,
                         SaveOutcome *ret_outcome)
{
        unsigned flags = req->bypass_cache ? VIR_DOMAIN_SAVE_BYPASS_CACHE : 0;
        unsigned cpus = 0, channels;

        if (req->channels == 0 || !parallel_offered(h, c, &cpus))
                return 0;
        channels = save_channels_pick(req->channels, req->memory_kib, cpus, req->concurrent);
        /* Never a direct-io restore: with libvirt 11.3 and QEMU 10.0, a guest restored that way
         * keeps QEMU's direct-io parameter, and its next sparse save without bypass-cache
         * failed, once with QEMU gone ("Unable to read from monitor"): the guest was lost. */
        if (!d)
                flags &= ~VIR_DOMAIN_SAVE_BYPASS_CACHE;
        if (call_parallel(d, c, req->file, channels, flags) >= 0) {
                ret_outcome->channels = channels;
                return 1;
        }
        /* A file in the plain format (saved with SaveChannels=0, or before an upgrade) takes no
         * channels: "Parallel save is only supported with the 'sparse' save image format". That
         * is the file's doing, not the connection's. */
        if (!d && virGetLastErrorCode() == VIR_ERR_INVALID_ARG) {
                virResetLastError();
                return 0;
        }
        if (refused(virGetLastError())) {
                give_up_parallel(h, d ? "save" : "restore", ret_outcome);
                return 0;
        }
        /* Failed under way: the plain format once more, for this call only (the guest still
         * runs: libvirt resumes it). Seen: "Failed to find file descriptor with matching
         * flags=0x4001", a sparse save after the direct-io restore above. */
        ret_outcome->note =
                g_strdup_printf("the parallel %s failed (%s); trying the plain format",
                                d ? "save" : "restore", virGetLastErrorMessage() ?: "no reason given");
        virResetLastError();
        return 0;
}

void hypervisor_libvirt_assume_parallel(Hypervisor *h, unsigned host_cpus)
{
        g_mutex_lock(&h->lock);
        LV(h)->assume_cpus = host_cpus;
        LV(h)->save_path = SAVE_PATH_UNKNOWN;
        g_mutex_unlock(&h->lock);
}
