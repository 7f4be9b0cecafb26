/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The libvirt backend. Every function except the event/close callbacks blocks and runs on
 * a worker thread, on that thread's own connection to the URI (get_conn()); one connection per
 * URI, shared, carries the events, which reach the GLib main context through libvirt-glib's
 * event loop implementation. */
#include "hypervisor.h"

#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <libvirt-glib/libvirt-glib.h>

#include "domain-xml.h"
#include "hypervisor-libvirt-private.h"
#include "terms.h"
#include "util.h"

/* Keepalive: 5 s interval, 3 missed = dead, as virsh does. It needs the event loop,
 * which gvir_event_register() provides. */
#define KEEPALIVE_INTERVAL 5
#define KEEPALIVE_COUNT    3

static void silence_errors(void *userdata, virErrorPtr err)
{
        /* libvirt prints every error to stderr by default; we copy them out ourselves. */
}

unsigned long hypervisor_libvirt_version(void)
{
        unsigned long v = 0;

        return virGetVersion(&v, NULL, NULL) < 0 ? 0 : v;
}

void hypervisor_libvirt_global_init(void)
{
        static gsize once = 0;

        if (g_once_init_enter(&once)) {
                /* Must come before the first virConnectOpen (libvirt-glib docs). */
                gvir_event_register();
                virInitialize();
                virSetErrorFunc(NULL, silence_errors);
                g_once_init_leave(&once, 1);
        }
}

/* Maps the thread's last libvirt error to -errno + message. */
static int error_from_libvirt(char **ret_error, const char *fallback)
{
        virErrorPtr e = virGetLastError();
        int r = -EIO;

        if (ret_error)
                *ret_error = g_strdup(e && e->message ? e->message : fallback);
        if (!e)
                return r;

        switch (e->code) {
        case VIR_ERR_NO_DOMAIN:
                r = -ENOENT;
                break;
        case VIR_ERR_OPERATION_INVALID:
                r = -EINVAL;
                break;
        case VIR_ERR_NO_SUPPORT:
        case VIR_ERR_ARGUMENT_UNSUPPORTED:
                r = -EOPNOTSUPP;
                break;
        case VIR_ERR_NO_CONNECT:
        case VIR_ERR_INVALID_CONN:
        case VIR_ERR_RPC:
        case VIR_ERR_AUTH_FAILED:
        case VIR_ERR_AUTH_UNAVAILABLE:
                r = -ENOTCONN;
                break;
        case VIR_ERR_SYSTEM_ERROR:
        case VIR_ERR_INTERNAL_ERROR:
                /* "end of file while reading data", "client socket is closed" */
                if (e->domain == VIR_FROM_RPC || e->domain == VIR_FROM_REMOTE)
                        r = -ENOTCONN;
                break;
        default:
                break;
        }
        virResetLastError();
        return r;
}

static StopReason stop_reason_from_detail(int detail)
{
        switch (detail) {
        case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
                return STOP_REASON_SHUTDOWN;
        case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
                return STOP_REASON_DESTROYED;
        case VIR_DOMAIN_EVENT_STOPPED_SAVED:
                return STOP_REASON_SAVED;
        default:
                return STOP_REASON_OTHER;
        }
}

/* Runs on the main context (libvirt-glib dispatches libvirt's events there). */
static int lifecycle_cb(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        Hypervisor *h = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN];
        GuestEvent ev;

        if (virDomainGetUUIDString(dom, uuid) < 0)
                return 0;

        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
                ev = GUEST_EVENT_STARTED;
                break;
        case VIR_DOMAIN_EVENT_STOPPED:
                ev = GUEST_EVENT_STOPPED;
                detail = stop_reason_from_detail(detail);
                break;
        case VIR_DOMAIN_EVENT_SUSPENDED:
        case VIR_DOMAIN_EVENT_PMSUSPENDED:
                ev = GUEST_EVENT_PAUSED;
                break;
        case VIR_DOMAIN_EVENT_RESUMED:
                ev = GUEST_EVENT_RESUMED;
                break;
        case VIR_DOMAIN_EVENT_DEFINED:
                ev = GUEST_EVENT_DEFINED;
                break;
        case VIR_DOMAIN_EVENT_UNDEFINED:
                ev = GUEST_EVENT_UNDEFINED;
                break;
        case VIR_DOMAIN_EVENT_CRASHED:
                ev = GUEST_EVENT_STOPPED;
                detail = STOP_REASON_OTHER;
                break;
        default:
                return 0;
        }
        hypervisor_dispatch(h, uuid, ev, detail);
        return 0;
}

/* Main context, like lifecycle_cb(). Only our namespace matters. */
static void metadata_cb(virConnectPtr conn, virDomainPtr dom, int type, const char *nsuri, void *opaque)
{
        char uuid[VIR_UUID_STRING_BUFLEN];

        if (type != VIR_DOMAIN_METADATA_ELEMENT || !streq_ptr(nsuri, HYPERVISOR_METADATA_NS) ||
            virDomainGetUUIDString(dom, uuid) < 0)
                return;
        hypervisor_dispatch(opaque, uuid, GUEST_EVENT_METADATA, 0);
}

/* Called when the connection drops (libvirtd died, keepalive timeout) — on the main context,
 * or on the worker whose call was using the connection then (libvirt closes it from the
 * thread that holds the client's I/O): so the event is queued to the main context, never
 * dispatched here. Only reports it: the dead connection is dropped by the next shared_conn() on
 * a worker. @opaque is the hypervisor, not a reference: lv_free() unregisters the callback
 * first. (No per-connection allocation: drivers without close callbacks never free it.) */
static void close_cb(virConnectPtr conn, int reason, void *opaque)
{
        Hypervisor *h = opaque;
        bool current;

        g_mutex_lock(&h->lock);
        current = LV(h)->conn == conn;
        g_mutex_unlock(&h->lock);
        if (current)
                hypervisor_dispatch_async(h, NULL, GUEST_EVENT_DISCONNECTED, reason);
}

/* Drops the connection. Called with connect_lock held (or from lv_free(), when no worker
 * uses the hypervisor any more); the calls that may talk to libvirtd run outside base.lock. */
static void drop_conn(LibvirtHypervisor *lh)
{
        virConnectPtr c = lh->conn;

        if (!c)
                return;
        g_mutex_lock(&lh->base.lock);
        lh->conn = NULL;
        g_mutex_unlock(&lh->base.lock);
        if (lh->lifecycle_id >= 0)
                virConnectDomainEventDeregisterAny(c, lh->lifecycle_id);
        if (lh->metadata_id >= 0)
                virConnectDomainEventDeregisterAny(c, lh->metadata_id);
        virConnectUnregisterCloseCallback(c, close_cb);
        virConnectClose(c);
        virResetLastError();
        lh->lifecycle_id = -1;
        lh->metadata_id = -1;
}

/* Drivers that run in our process (test:///…) have no RPC client, and their state is per
 * connection: they must be shared. */
static bool in_process(const char *uri)
{
        return uri && g_str_has_prefix(uri, "test:///");
}

/* Whether @uri reaches libvirtd over a UNIX socket on this host ("qemu:///system",
 * "test+unix:///default?socket=…"): there, a libvirtd that dies closes the socket and the client
 * sees the end of file at once. Over TCP, TLS or SSH a host that vanishes sends nothing. */
static bool local_socket(const char *uri)
{
        g_autoptr(GUri) u = uri ? g_uri_parse(uri, G_URI_FLAGS_NONE, NULL) : NULL;
        const char *transport;

        if (!u)
                return false;
        transport = strchr(g_uri_get_scheme(u), '+');
        if (transport)
                return streq_ptr(transport + 1, "unix");
        return !g_uri_get_host(u) || !*g_uri_get_host(u);
}

/* Returns a new reference to the live shared connection (events, close callback), (re)connecting
 * if needed. Worker only. */
static virConnectPtr shared_conn(Hypervisor *h, char **ret_error, int *ret)
{
        LibvirtHypervisor *lh = LV(h);
        virConnectPtr c = NULL;
        bool fresh = false, local;

        g_mutex_lock(&lh->connect_lock);
        if (lh->conn && virConnectIsAlive(lh->conn) != 1)
                drop_conn(lh);
        if (!lh->conn) {
                const char *uri = streq_ptr(h->uri, "default") ? NULL : h->uri;
                virConnectPtr n = virConnectOpen(uri);
                char *u;

                if (!n) {
                        g_mutex_unlock(&lh->connect_lock);
                        (void) error_from_libvirt(ret_error, "cannot connect");
                        /* Whatever the reason, for callers this URI is not reachable now. */
                        *ret = -ENOTCONN;
                        return NULL;
                }
                if (virConnectRegisterCloseCallback(n, close_cb, h, NULL) < 0)
                        virResetLastError();
                lh->lifecycle_id =
                        virConnectDomainEventRegisterAny(n, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                         VIR_DOMAIN_EVENT_CALLBACK(lifecycle_cb), h, NULL);
                if (lh->lifecycle_id < 0)
                        virResetLastError();
                lh->metadata_id =
                        virConnectDomainEventRegisterAny(n, NULL, VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                                                         VIR_DOMAIN_EVENT_CALLBACK(metadata_cb), h, NULL);
                if (lh->metadata_id < 0)
                        virResetLastError();
                u = h->resolved_uri ? NULL : virConnectGetURI(n);
                g_mutex_lock(&h->lock);
                if (!h->resolved_uri)
                        h->resolved_uri = g_strdup(u ? u : h->uri);
                lh->conn = n;
                local = local_socket(h->resolved_uri);
                g_mutex_unlock(&h->lock);
                free(u);
                /* Keepalives only where a dead peer can go unnoticed: on a local socket they
                 * would wake the idle daemon every few seconds for nothing. */
                if (!local)
                        (void) virConnectSetKeepAlive(n, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT);
                g_atomic_int_set(&lh->no_job_stats, 0);
                g_mutex_lock(&h->lock);
                lh->save_path = SAVE_PATH_UNKNOWN;
                g_mutex_unlock(&h->lock);
                fresh = true;
        }
        c = lh->conn;
        virConnectRef(c);
        g_mutex_unlock(&lh->connect_lock);

        if (fresh)
                hypervisor_dispatch_async(h, NULL, GUEST_EVENT_CONNECTED, 0);
        *ret = 0;
        return c;
}

static void conn_close(gpointer c)
{
        virConnectClose(c);
        virResetLastError();
}

/* A worker thread's own connections, by URI; closed when the thread ends (GLib ends a pool
 * thread that has been idle for a while), so an idle daemon holds none. */
static GPrivate thread_conns = G_PRIVATE_INIT((GDestroyNotify) g_hash_table_unref);

/* The connection a call runs on: the calling worker's own, opened at its first call to @h's
 * URI and reused by its later calls. libvirt 9.0's RPC client leaves a socket watch attached to
 * the connection's private event context when a thread waiting for its reply is woken by
 * another thread's call; once that thread has returned, the watch points into its dead stack
 * frame, and the next thread that waits on the connection dispatches it (seen here:
 * g_main_loop_quit() on freed memory, then SIGSEGV, in a hung-then-resumed libvirtd under a
 * real systemd). A connection that only one thread ever calls on is never in that state. The
 * shared connection still carries the events and the close callback, and is checked first (so
 * a down libvirtd is reported the same way). Returns a new reference. */
static virConnectPtr get_conn(Hypervisor *h, char **ret_error, int *ret)
{
        virConnectPtr shared = shared_conn(h, ret_error, ret), c;
        g_autofree char *uri = NULL;
        GHashTable *conns;

        if (!shared)
                return NULL;
        uri = hypervisor_get_uri(h); /* resolved by shared_conn() */
        if (in_process(uri))
                return shared;
        virConnectClose(shared);

        conns = g_private_get(&thread_conns);
        if (!conns) {
                conns = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, conn_close);
                g_private_set(&thread_conns, conns);
        }
        c = g_hash_table_lookup(conns, uri);
        if (c && virConnectIsAlive(c) != 1) {
                g_hash_table_remove(conns, uri);
                c = NULL;
        }
        if (!c) {
                c = virConnectOpen(streq_ptr(uri, "default") ? NULL : uri);
                if (!c) {
                        (void) error_from_libvirt(ret_error, "cannot connect");
                        *ret = -ENOTCONN;
                        return NULL;
                }
                /* Keepalive for the calls: a libvirtd that stops answering ends the call. It
                 * lasts only as long as the thread. */
                (void) virConnectSetKeepAlive(c, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT);
                g_hash_table_insert(conns, g_strdup(uri), c);
        }
        virConnectRef(c);
        virResetLastError();
        *ret = 0;
        return c;
}

static int lookup(Hypervisor *h, const char *uuid, virConnectPtr *ret_conn, virDomainPtr *ret_dom,
                  char **ret_error)
{
        virConnectPtr c;
        virDomainPtr d;
        int r;

        c = get_conn(h, ret_error, &r);
        if (!c)
                return r;
        d = virDomainLookupByUUIDString(c, uuid);
        if (!d) {
                r = error_from_libvirt(ret_error, "no such guest");
                virConnectClose(c);
                return r;
        }
        *ret_conn = c;
        *ret_dom = d;
        return 0;
}

static int lv_connect(Hypervisor *h, char **ret_error)
{
        virConnectPtr c;
        int r;

        c = shared_conn(h, ret_error, &r);
        if (!c)
                return r;
        virConnectClose(c);
        return 0;
}

static GuestState state_from_libvirt(virDomainPtr d, int st)
{
        switch (st) {
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
        case VIR_DOMAIN_SHUTDOWN:
        case VIR_DOMAIN_NOSTATE:
                return GUEST_STATE_RUNNING;
        case VIR_DOMAIN_PAUSED:
        case VIR_DOMAIN_PMSUSPENDED:
                return GUEST_STATE_PAUSED;
        default:
                if (virDomainHasManagedSaveImage(d, 0) == 1)
                        return GUEST_STATE_SAVED;
                virResetLastError();
                return GUEST_STATE_SHUTOFF;
        }
}

/* The UUIDs of the guests that pass @flags, or NULL on an error. */
static GHashTable *uuids_listed(virConnectPtr c, unsigned flags)
{
        GHashTable *set;
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(c, &doms, flags);

        if (n < 0)
                return NULL;
        set = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        for (int i = 0; i < n; i++) {
                char uuid[VIR_UUID_STRING_BUFLEN];

                if (virDomainGetUUIDString(doms[i], uuid) >= 0)
                        g_hash_table_add(set, g_strdup(uuid));
                virDomainFree(doms[i]);
        }
        free(doms);
        return set;
}

/* A guest's state from the filtered lists; only a state none of them pins down (blocked, shutting
 * down, crashed…) costs a call of its own. */
static GuestState state_listed(virDomainPtr d, const char *uuid, GHashTable *const sets[static 4])
{
        int st, reason;

        if (virDomainGetID(d) == (unsigned) -1) /* inactive */
                return g_hash_table_contains(sets[3], uuid) ? GUEST_STATE_SAVED : GUEST_STATE_SHUTOFF;
        if (g_hash_table_contains(sets[1], uuid))
                return GUEST_STATE_RUNNING;
        if (g_hash_table_contains(sets[2], uuid))
                return GUEST_STATE_PAUSED;
        if (virDomainGetState(d, &st, &reason, 0) < 0)
                return _GUEST_STATE_INVALID;
        return state_from_libvirt(d, st);
}

/* A few lists filtered by libvirt give every guest's persistence and state (instead of three
 * calls per guest); one call per guest is left, for its XML. */
static int lv_list(Hypervisor *h, bool include_inactive, GPtrArray **ret, char **ret_error)
{
        g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func(guest_info_destroy);
        /* persistent, running, paused, managed save */
        GHashTable *sets[4] = {};
        virDomainPtr *doms = NULL;
        virConnectPtr c;
        int n, r = 0;

        c = get_conn(h, ret_error, &r);
        if (!c)
                return r;
        n = virConnectListAllDomains(c, &doms, include_inactive ? 0 : VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0 || !(sets[0] = uuids_listed(c, VIR_CONNECT_LIST_DOMAINS_PERSISTENT)) ||
            !(sets[1] =
                      uuids_listed(c, VIR_CONNECT_LIST_DOMAINS_ACTIVE | VIR_CONNECT_LIST_DOMAINS_RUNNING)) ||
            !(sets[2] =
                      uuids_listed(c, VIR_CONNECT_LIST_DOMAINS_ACTIVE | VIR_CONNECT_LIST_DOMAINS_PAUSED)) ||
            !(sets[3] = include_inactive ? uuids_listed(c, VIR_CONNECT_LIST_DOMAINS_INACTIVE |
                                                                   VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)
                                         : g_hash_table_new(g_str_hash, g_str_equal)))
                r = error_from_libvirt(ret_error, "cannot list guests");
        for (int i = 0; i < MAX(n, 0); i++) {
                char uuid[VIR_UUID_STRING_BUFLEN];
                GuestInfo *g;
                GuestState state;

                if (r < 0 || virDomainGetUUIDString(doms[i], uuid) < 0 ||
                    (state = state_listed(doms[i], uuid, sets)) == _GUEST_STATE_INVALID) {
                        /* Vanished between list and query: not ours to report. */
                        virResetLastError();
                        virDomainFree(doms[i]);
                        continue;
                }
                g = g_new0(GuestInfo, 1);
                g->uuid = g_strdup(uuid);
                g->name = g_strdup(virDomainGetName(doms[i]));
                /* An inactive guest is persistent, or it would not be listed. */
                g->persistent = !guest_state_is_active(state) || g_hash_table_contains(sets[0], uuid);
                g->state = state;
                {
                        /* One call gives the memory, the host devices and our metadata. The
                         * secure form only where it is kept: what re-creates a transient guest. */
                        bool keep = !g->persistent && guest_state_is_active(g->state);
                        char *xml = virDomainGetXMLDesc(doms[i], keep ? VIR_DOMAIN_XML_SECURE : 0);
                        DomainXmlInfo info;

                        if (domain_xml_scan(xml, HYPERVISOR_METADATA_NS, &info) >= 0) {
                                g->memory_kib = info.memory_kib;
                                g->hostdev = info.hostdev;
                                g->metadata = g_steal_pointer(&info.metadata);
                        }
                        if (keep)
                                g->xml = g_strdup(xml);
                        free(xml);
                }
                virResetLastError();
                g_ptr_array_add(list, g);
                virDomainFree(doms[i]);
        }
        free(doms);
        for (size_t i = 0; i < G_N_ELEMENTS(sets); i++)
                if (sets[i])
                        g_hash_table_unref(sets[i]);
        virConnectClose(c);
        if (r < 0)
                return r;
        *ret = g_steal_pointer(&list);
        return 0;
}

static int lv_get_state(Hypervisor *h, const char *uuid, GuestState *ret, char **ret_error)
{
        g_autoptr(virDomain) d = NULL;
        virConnectPtr c = NULL;
        int st, reason, r;

        r = lookup(h, uuid, &c, &d, ret_error);
        if (r < 0)
                return r;
        if (virDomainGetState(d, &st, &reason, 0) < 0)
                r = error_from_libvirt(ret_error, "cannot get state");
        else
                *ret = state_from_libvirt(d, st);
        virConnectClose(c);
        return r;
}

/* Runs one domain call: lookup, call, error copy-out. */
#define DOMAIN_CALL(h, uuid, ret_error, what, expr)                                                         \
        ({                                                                                                  \
                g_autoptr(virDomain) d = NULL;                                                              \
                virConnectPtr c = NULL;                                                                     \
                int _r = lookup(h, uuid, &c, &d, ret_error);                                                \
                if (_r >= 0) {                                                                              \
                        if ((expr) < 0)                                                                     \
                                _r = error_from_libvirt(ret_error, what);                                   \
                        virConnectClose(c);                                                                 \
                }                                                                                           \
                _r;                                                                                         \
        })

/* A managed save stays a managed save: libvirt restores its image whenever the guest starts
 * (autostart, virsh start), so no stale image can ever be resumed over disks that moved on. It
 * has no parallel path: virDomainSaveParams() without a file is a managed save, and libvirt 11.3
 * then uses qemu.conf's save_image_format and drops "image_format" and "parallel.channels"
 * without a word. Only files (transient guests) get the sparse format and channels. */
static int lv_save(Hypervisor *h, const char *uuid, const SaveRequest *req, SaveOutcome *ret_outcome,
                   char **ret_error)
{
        unsigned flags = req->bypass_cache ? VIR_DOMAIN_SAVE_BYPASS_CACHE : 0;
        g_autoptr(virDomain) d = NULL;
        virConnectPtr c = NULL;
        int r;

        r = lookup(h, uuid, &c, &d, ret_error);
        if (r < 0)
                return r;
        if (!req->file)
                r = virDomainManagedSave(d, flags);
        else {
                r = libvirt_try_parallel(h, c, d, req, ret_outcome);
                if (r == 0)
                        r = virDomainSaveFlags(d, req->file, NULL, flags);
        }
        r = r < 0 ? error_from_libvirt(ret_error, req->file ? "save failed" : "managed save failed") : 0;
        virConnectClose(c);
        return r;
}

static int lv_shutdown(Hypervisor *h, const char *uuid, unsigned mode, char **ret_error)
{
        g_autoptr(virDomain) d = NULL;
        virConnectPtr c = NULL;
        unsigned flags = 0;
        int r;

        /* Explicit flags: with none, the QEMU driver prefers the guest agent when one is
         * connected, which is not what ShutdownMode=acpi says. */
        if (mode & SHUTDOWN_MODE_ACPI)
                flags |= VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN;
        if (mode & SHUTDOWN_MODE_AGENT)
                flags |= VIR_DOMAIN_SHUTDOWN_GUEST_AGENT;
        r = lookup(h, uuid, &c, &d, ret_error);
        if (r < 0)
                return r;
        if (virDomainShutdownFlags(d, flags) < 0) {
                virErrorPtr e = virGetLastError();

                /* A driver that takes no flags at all (the test driver) has only one way. */
                if (mode == SHUTDOWN_MODE_ACPI && e && e->code == VIR_ERR_INVALID_ARG &&
                    virDomainShutdown(d) >= 0)
                        virResetLastError();
                else
                        r = error_from_libvirt(ret_error, "shutdown failed");
        }
        virConnectClose(c);
        return r;
}

static int lv_destroy(Hypervisor *h, const char *uuid, char **ret_error)
{
        return DOMAIN_CALL(h, uuid, ret_error, "destroy failed", virDomainDestroy(d));
}

static int lv_start(Hypervisor *h, const char *uuid, bool bypass_cache, char **ret_error)
{
        unsigned flags = bypass_cache ? VIR_DOMAIN_START_BYPASS_CACHE : 0;

        return DOMAIN_CALL(h, uuid, ret_error, "start failed", virDomainCreateWithFlags(d, flags));
}

static int lv_restore(Hypervisor *h, const SaveRequest *req, SaveOutcome *ret_outcome, char **ret_error)
{
        unsigned flags = req->bypass_cache ? VIR_DOMAIN_SAVE_BYPASS_CACHE : 0;
        virConnectPtr c;
        int r;

        c = get_conn(h, ret_error, &r);
        if (!c)
                return r;
        r = libvirt_try_parallel(h, c, NULL, req, ret_outcome);
        if (r == 0)
                r = virDomainRestoreFlags(c, req->file, NULL, flags);
        r = r < 0 ? error_from_libvirt(ret_error, "restore failed") : 0;
        virConnectClose(c);
        return r;
}

static int lv_create_xml(Hypervisor *h, const char *xml, char **ret_error)
{
        virConnectPtr c;
        virDomainPtr d;
        int r;

        c = get_conn(h, ret_error, &r);
        if (!c)
                return r;
        d = virDomainCreateXML(c, xml, 0);
        if (!d)
                r = error_from_libvirt(ret_error, "create failed");
        else
                virDomainFree(d);
        virConnectClose(c);
        return r;
}

/* The job statistics of a guest, or -EOPNOTSUPP without a call once the driver said it has none:
 * a save asks them first (a job under way) and then while it runs (its progress). */
static int job_stats(Hypervisor *h, const char *uuid, int *ret_type, virTypedParameterPtr *ret_params,
                     int *ret_nparams, char **ret_error)
{
        int r;

        if (g_atomic_int_get(&LV(h)->no_job_stats)) {
                *ret_error = g_strdup("the driver has no job statistics");
                return -EOPNOTSUPP;
        }
        r = DOMAIN_CALL(h, uuid, ret_error, "cannot get job stats",
                        virDomainGetJobStats(d, ret_type, ret_params, ret_nparams, 0));
        if (r == -EOPNOTSUPP)
                g_atomic_int_set(&LV(h)->no_job_stats, 1);
        return r;
}

static int lv_job_progress(Hypervisor *h, const char *uuid, guint64 *ret_processed, guint64 *ret_total,
                           char **ret_error)
{
        virTypedParameterPtr params = NULL;
        unsigned long long processed = 0, total = 0;
        int nparams = 0, type = 0;
        int r;

        r = job_stats(h, uuid, &type, &params, &nparams, ret_error);
        if (r < 0)
                return r;
        if (type != VIR_DOMAIN_JOB_BOUNDED && type != VIR_DOMAIN_JOB_UNBOUNDED) {
                virTypedParamsFree(params, nparams);
                return -ENODATA;
        }
        if (virTypedParamsGetULLong(params, nparams, VIR_DOMAIN_JOB_DATA_PROCESSED, &processed) <= 0 ||
            virTypedParamsGetULLong(params, nparams, VIR_DOMAIN_JOB_DATA_TOTAL, &total) <= 0) {
                (void) virTypedParamsGetULLong(params, nparams, VIR_DOMAIN_JOB_MEMORY_PROCESSED, &processed);
                (void) virTypedParamsGetULLong(params, nparams, VIR_DOMAIN_JOB_MEMORY_TOTAL, &total);
        }
        virTypedParamsFree(params, nparams);
        virResetLastError();
        *ret_processed = processed;
        *ret_total = total;
        return 0;
}

static const char *job_operation_name(int op)
{
        switch (op) {
        case VIR_DOMAIN_JOB_OPERATION_SAVE:
                return "save";
        case VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN:
        case VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
                return "migration";
        case VIR_DOMAIN_JOB_OPERATION_SNAPSHOT:
        case VIR_DOMAIN_JOB_OPERATION_SNAPSHOT_REVERT:
                return "snapshot";
        case VIR_DOMAIN_JOB_OPERATION_DUMP:
                return "dump";
        case VIR_DOMAIN_JOB_OPERATION_BACKUP:
                return "backup";
        default:
                return "domain";
        }
}

static int lv_domain_job(Hypervisor *h, const char *uuid, char **ret_kind, char **ret_error)
{
        virTypedParameterPtr params = NULL;
        int nparams = 0, type = 0, op = 0;
        int r;

        r = job_stats(h, uuid, &type, &params, &nparams, ret_error);
        if (r < 0)
                return r;
        if (type != VIR_DOMAIN_JOB_NONE) {
                (void) virTypedParamsGetInt(params, nparams, VIR_DOMAIN_JOB_OPERATION, &op);
                *ret_kind = g_strdup(job_operation_name(op));
                r = 1;
        }
        virTypedParamsFree(params, nparams);
        virResetLastError();
        return r;
}

static int lv_abort_job(Hypervisor *h, const char *uuid, char **ret_error)
{
        return DOMAIN_CALL(h, uuid, ret_error, "cannot abort the job", virDomainAbortJob(d));
}

static int lv_sync_time(Hypervisor *h, const char *uuid, char **ret_error)
{
        return DOMAIN_CALL(h, uuid, ret_error, "cannot set time",
                           virDomainSetTime(d, 0, 0, VIR_DOMAIN_TIME_SYNC));
}

/* How long libvirt waits for the agent's answer. */
#define AGENT_PING_TIMEOUT_SEC 5

static int lv_agent_ping(Hypervisor *h, const char *uuid, char **ret_error)
{
        g_autofree char *reply = NULL;
        int r;

        r = DOMAIN_CALL(h, uuid, ret_error, "guest agent did not answer",
                        (reply = virDomainQemuAgentCommand(d, "{\"execute\":\"guest-ping\"}",
                                                           AGENT_PING_TIMEOUT_SEC, 0))
                                ? 0
                                : -1);
        return r;
}

static void lv_free(Hypervisor *h)
{
        drop_conn(LV(h));
        g_mutex_clear(&LV(h)->connect_lock);
}

void *hypervisor_libvirt_dup_conn(Hypervisor *h)
{
        char *error = NULL;
        int r;
        virConnectPtr c = shared_conn(h, &error, &r);

        g_free(error);
        return c;
}

static const HypervisorOps libvirt_ops = {
        .connect = lv_connect,
        .list = lv_list,
        .get_state = lv_get_state,
        .save = lv_save,
        .shutdown = lv_shutdown,
        .destroy = lv_destroy,
        .start = lv_start,
        .restore = lv_restore,
        .create_xml = lv_create_xml,
        .job_progress = lv_job_progress,
        .domain_job = lv_domain_job,
        .abort_job = lv_abort_job,
        .sync_time = lv_sync_time,
        .agent_ping = lv_agent_ping,
        .free = lv_free,
};

Hypervisor *hypervisor_libvirt_new(const char *uri, GMainContext *ctx)
{
        LibvirtHypervisor *lh = g_new0(LibvirtHypervisor, 1);

        hypervisor_libvirt_global_init();
        hypervisor_init_base(&lh->base, &libvirt_ops, uri, ctx);
        g_mutex_init(&lh->connect_lock);
        lh->lifecycle_id = -1;
        lh->metadata_id = -1;
        return &lh->base;
}
