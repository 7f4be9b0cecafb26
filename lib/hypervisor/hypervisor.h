/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The backend interface: one Hypervisor per configured URI.
 *
 * Every operation here BLOCKS and is called only from worker threads (worker.h).
 * Listeners (lifecycle events, connection changes) are called on the main context the
 * hypervisor was created with, never on a worker.
 *
 * Errors: negative errno, plus a message copied out of the backend (libvirt errors are
 * per thread, so the message must travel with the result):
 *   -ENOENT      no such guest
 *   -ENOTCONN    the connection is down (libvirtd gone, not reachable)
 *   -EOPNOTSUPP  the driver does not do this (job stats on the test driver)
 *   -ENODATA     nothing to report (no job running)
 *   -EINVAL      the guest is not in a state that allows this (e.g. not running)
 *   -EIO         anything else the hypervisor reported */

#include <stdbool.h>
#include <glib.h>

#include "macro.h"
#include "save-channels.h"

typedef enum GuestState {
        GUEST_STATE_RUNNING,
        GUEST_STATE_PAUSED,
        GUEST_STATE_SHUTOFF,
        GUEST_STATE_SAVED, /* shut off with a managed-save image, or a save file */
        GUEST_STATE_UNREACHABLE,
        _GUEST_STATE_MAX,
        _GUEST_STATE_INVALID = -EINVAL,
} GuestState;

const char *guest_state_to_string(GuestState s);
GuestState guest_state_from_string(const char *s);

static inline bool guest_state_is_active(GuestState s)
{
        return s == GUEST_STATE_RUNNING || s == GUEST_STATE_PAUSED;
}

typedef struct GuestInfo {
        char *uuid;
        char *name;
        bool persistent;
        GuestState state;
        guint64 memory_kib; /* current memory: what a save image needs */
        bool hostdev;       /* host device passthrough (PCI/USB/VFIO): cannot be saved */
        char *xml;          /* transient, active guests only: what re-creates it */
        char *metadata;     /* our element of the guest's metadata (HYPERVISOR_METADATA_NS), or NULL */
} GuestInfo;

/* guestkeeper's namespace in libvirt's domain metadata (`virsh metadata DOMAIN NS`). */
#define HYPERVISOR_METADATA_NS "https://guestkeeper.org/xmlns/guest/1"

GuestInfo *guest_info_free(GuestInfo *g);
void guest_info_destroy(gpointer g); /* GDestroyNotify */
GuestInfo *guest_info_copy(const GuestInfo *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GuestInfo, guest_info_free);

typedef enum GuestEvent {
        GUEST_EVENT_STARTED,
        GUEST_EVENT_STOPPED,
        GUEST_EVENT_PAUSED,
        GUEST_EVENT_RESUMED,
        GUEST_EVENT_DEFINED,
        GUEST_EVENT_UNDEFINED,
        GUEST_EVENT_METADATA,     /* the guest's metadata changed */
        GUEST_EVENT_CONNECTED,    /* uuid NULL: connection (re)established */
        GUEST_EVENT_DISCONNECTED, /* uuid NULL: connection lost */
        _GUEST_EVENT_MAX,
} GuestEvent;

/* detail for GUEST_EVENT_STOPPED */
typedef enum StopReason {
        STOP_REASON_SHUTDOWN,
        STOP_REASON_DESTROYED,
        STOP_REASON_SAVED,
        STOP_REASON_OTHER,
} StopReason;

/* A save, or the restore of a save file. */
typedef struct SaveRequest {
        const char *file; /* save: NULL = managed save (persistent guests); restore: the file */
        bool bypass_cache;
        /* Files only (a managed save has no such parameter): SAVE_CHANNELS_AUTO, 0 = the plain
         * format, N = the sparse format over N channels, where the connection offers it. */
        unsigned channels;
        guint64 memory_kib;  /* the guest's, 0 = unknown: for SAVE_CHANNELS_AUTO */
        unsigned concurrent; /* how many saves (restores) the run lets run at once, 0 = no limit */
} SaveRequest;

/* What a save or restore did beyond its request. */
typedef struct SaveOutcome {
        unsigned channels; /* 0: the plain format */
        /* Why the parallel path was given up: by the one call that found libvirt refusing it
         * (the connection uses the plain path from then on), or by a call whose parallel save or
         * restore failed under way and was made again the plain way. */
        char *note;
} SaveOutcome;

typedef struct Hypervisor Hypervisor;

typedef void (*HypervisorListener)(Hypervisor *h, const char *uuid, GuestEvent event, int detail,
                                   void *userdata);

typedef struct HypervisorOps {
        int (*connect)(Hypervisor *h, char **ret_error);
        /* Active guests only, or every guest the hypervisor knows. Array of GuestInfo*. */
        int (*list)(Hypervisor *h, bool include_inactive, GPtrArray **ret, char **ret_error);
        int (*get_state)(Hypervisor *h, const char *uuid, GuestState *ret, char **ret_error);
        /* @ret_outcome is filled on success and failure; the caller frees its note. */
        int (*save)(Hypervisor *h, const char *uuid, const SaveRequest *req, SaveOutcome *ret_outcome,
                    char **ret_error);
        /* @mode: SHUTDOWN_MODE_* flags; with both, the agent first, then ACPI. */
        int (*shutdown)(Hypervisor *h, const char *uuid, unsigned mode, char **ret_error);
        int (*destroy)(Hypervisor *h, const char *uuid, char **ret_error);
        /* Starts a defined guest; resumes from its managed-save image if it has one. */
        int (*start)(Hypervisor *h, const char *uuid, bool bypass_cache, char **ret_error);
        /* Restores @req->file (a save file); @ret_outcome as for save. */
        int (*restore)(Hypervisor *h, const SaveRequest *req, SaveOutcome *ret_outcome, char **ret_error);
        int (*create_xml)(Hypervisor *h, const char *xml, char **ret_error);
        int (*job_progress)(Hypervisor *h, const char *uuid, guint64 *ret_processed, guint64 *ret_total,
                            char **ret_error);
        /* A domain job under way (a backup, a dump, a migration): 1 and what it is ("dump"),
         * 0 when none. */
        int (*domain_job)(Hypervisor *h, const char *uuid, char **ret_kind, char **ret_error);
        /* Aborts the domain job under way (virDomainAbortJob); it may take a moment to end. */
        int (*abort_job)(Hypervisor *h, const char *uuid, char **ret_error);
        int (*sync_time)(Hypervisor *h, const char *uuid, char **ret_error);
        /* The guest agent answers (guest-ping): 0; -EOPNOTSUPP when the driver cannot ask. */
        int (*agent_ping)(Hypervisor *h, const char *uuid, char **ret_error);
        void (*free)(Hypervisor *h);
} HypervisorOps;

/* Base object; backends embed it first. */
struct Hypervisor {
        const HypervisorOps *ops;
        gint ref;
        char *uri;          /* as configured */
        char *resolved_uri; /* "default" resolved after the first connect; guarded by lock */
        GMainContext *context;
        GMutex lock;
        bool connected; /* main thread view, updated by CONNECTED/DISCONNECTED */
        GArray *listeners;
        guint next_listener_id;
};

/* Base helpers for backends. */
void hypervisor_init_base(Hypervisor *h, const HypervisorOps *ops, const char *uri, GMainContext *ctx);
/* Calls the listeners. Main context only. */
void hypervisor_dispatch(Hypervisor *h, const char *uuid, GuestEvent event, int detail);
/* From any thread: queues hypervisor_dispatch() on the hypervisor's context. */
void hypervisor_dispatch_async(Hypervisor *h, const char *uuid, GuestEvent event, int detail);

Hypervisor *hypervisor_ref(Hypervisor *h);
Hypervisor *hypervisor_unref(Hypervisor *h);
void hypervisor_destroy(gpointer h); /* GDestroyNotify for containers */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Hypervisor, hypervisor_unref);

guint hypervisor_add_listener(Hypervisor *h, HypervisorListener cb, void *userdata);
void hypervisor_remove_listener(Hypervisor *h, guint id);

/* Copy of the URI to show users: the resolved one once known, else as configured. */
char *hypervisor_get_uri(Hypervisor *h);

/* Backends. */
void hypervisor_libvirt_global_init(void); /* once, before the first connect */
/* The version of the libvirt library this process runs with (virGetVersion(): a constant of
 * the library, no I/O, any thread), major * 1000000 + minor * 1000 + micro; 0 if unknown. On a
 * distribution's host the local daemons come from the same source package and version. */
unsigned long hypervisor_libvirt_version(void);
Hypervisor *hypervisor_libvirt_new(const char *uri, GMainContext *ctx);
/* Tests and tools: a new reference to the live virConnectPtr (a test:///file.xml
 * connection is private to its opener), or NULL. Caller virConnectClose()s it. */
void *hypervisor_libvirt_dup_conn(Hypervisor *h);
/* Tests: take the connection for one that offers parallel-channel saves on a host with
 * @host_cpus CPUs, without asking libvirt (whose test driver then refuses them). */
void hypervisor_libvirt_assume_parallel(Hypervisor *h, unsigned host_cpus);
