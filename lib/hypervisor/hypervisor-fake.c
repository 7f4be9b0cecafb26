/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "hypervisor-fake.h"

#include <stdio.h>

#include "terms.h"
#include "util.h"

typedef struct FakeGuest {
        FakeGuestSpec spec; /* strings owned below */
        char *name;
        char *uuid;
        GuestState state;
        bool defined; /* persistent, or transient and currently existing */
        bool managed_save;
        bool shutdown_pending;
        char *metadata;
        char *job;
        unsigned presses; /* ACPI requests heard */
        unsigned last_shutdown_mode;
        guint64 started_at;
        guint64 save_started;
        unsigned calls[_FAKE_COUNTER_MAX];
        bool bypass[_FAKE_COUNTER_MAX];
        SaveRequest last_request[_FAKE_COUNTER_MAX]; /* FAKE_SAVE, FAKE_START (restores); no file */
} FakeGuest;

typedef struct FakeHypervisor {
        Hypervisor base;
        GPtrArray *guests; /* FakeGuest*; guarded by base.lock */
        unsigned active[_FAKE_COUNTER_MAX];
        unsigned peak[_FAKE_COUNTER_MAX];
        bool unreachable;
        bool gate_closed;
        GCond gate;
        unsigned parallel_cpus; /* offers parallel-channel saves on a host with this many CPUs; 0 = no */
} FakeHypervisor;

#define FK(h) ((FakeHypervisor *) (h))

static void fake_guest_free(gpointer p)
{
        FakeGuest *g = p;

        g_free(g->name);
        g_free(g->uuid);
        g_free(g->metadata);
        g_free(g->job);
        g_free(g);
}

/* Lock held. */
static FakeGuest *find(FakeHypervisor *f, const char *uuid, const char *name)
{
        for (guint i = 0; i < f->guests->len; i++) {
                FakeGuest *g = f->guests->pdata[i];
                if ((uuid && streq_ptr(g->uuid, uuid)) || (name && streq_ptr(g->name, name)))
                        return g;
        }
        return NULL;
}

static void enter(FakeHypervisor *f, FakeGuest *g, FakeCounter c)
{
        g->calls[c]++;
        f->active[c]++;
        f->peak[c] = MAX(f->peak[c], f->active[c]);
}

static int fail(char **ret_error, int r, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static int fail(char **ret_error, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        *ret_error = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        return r;
}

/* Takes the lock, finds the guest; on error returns with the lock released. */
static FakeGuest *lock_guest(Hypervisor *h, const char *uuid, char **ret_error, int *ret)
{
        FakeHypervisor *f = FK(h);
        FakeGuest *g;

        g_mutex_lock(&h->lock);
        if (f->unreachable) {
                g_mutex_unlock(&h->lock);
                *ret = fail(ret_error, -ENOTCONN, "%s: connection refused", h->uri);
                return NULL;
        }
        g = find(f, uuid, NULL);
        if (!g || !g->defined) {
                g_mutex_unlock(&h->lock);
                *ret = fail(ret_error, -ENOENT, "no domain with UUID %s", uuid);
                return NULL;
        }
        *ret = 0;
        return g;
}

static int fk_connect(Hypervisor *h, char **ret_error)
{
        int r = 0;

        g_mutex_lock(&h->lock);
        if (FK(h)->unreachable)
                r = fail(ret_error, -ENOTCONN, "%s: connection refused", h->uri);
        else if (!h->resolved_uri)
                h->resolved_uri = g_strdup(h->uri);
        g_mutex_unlock(&h->lock);
        return r;
}

static int fk_list(Hypervisor *h, bool include_inactive, GPtrArray **ret, char **ret_error)
{
        FakeHypervisor *f = FK(h);
        GPtrArray *list;
        int r;

        r = fk_connect(h, ret_error);
        if (r < 0)
                return r;
        list = g_ptr_array_new_with_free_func(guest_info_destroy);
        g_mutex_lock(&h->lock);
        for (guint i = 0; i < f->guests->len; i++) {
                FakeGuest *g = f->guests->pdata[i];
                GuestInfo *info;

                if (!g->defined || (!include_inactive && !guest_state_is_active(g->state)))
                        continue;
                info = g_new0(GuestInfo, 1);
                info->uuid = g_strdup(g->uuid);
                info->name = g_strdup(g->name);
                info->persistent = g->spec.persistent;
                info->state = g->state;
                info->memory_kib = g->spec.memory_kib;
                info->hostdev = g->spec.hostdev;
                info->metadata = g_strdup(g->metadata);
                if (!g->spec.persistent)
                        info->xml = g_strdup_printf("<domain><name>%s</name><uuid>%s</uuid></domain>",
                                                    g->name, g->uuid);
                g_ptr_array_add(list, info);
        }
        g_mutex_unlock(&h->lock);
        *ret = list;
        return 0;
}

static int fk_get_state(Hypervisor *h, const char *uuid, GuestState *ret, char **ret_error)
{
        FakeGuest *g;
        int r;

        g = lock_guest(h, uuid, ret_error, &r);
        if (!g)
                return r;
        *ret = g->state;
        g_mutex_unlock(&h->lock);
        return 0;
}

static void set_stopped(Hypervisor *h, FakeGuest *g, GuestState st, StopReason why)
{
        g->state = st;
        if (g->shutdown_pending) {
                g->shutdown_pending = false;
                FK(h)->active[FAKE_SHUTDOWN]--;
        }
        if (!g->spec.persistent && st != GUEST_STATE_RUNNING && st != GUEST_STATE_PAUSED)
                g->defined = false;
        hypervisor_dispatch_async(h, g->uuid, GUEST_EVENT_STOPPED, why);
}

/* Lock held. As the libvirt backend: a file save or restore on a connection that offers it. */
static void note_request(FakeHypervisor *f, FakeGuest *g, FakeCounter c, const SaveRequest *req,
                         SaveOutcome *ret_outcome)
{
        g->bypass[c] = req->bypass_cache;
        g->last_request[c] = *req;
        g->last_request[c].file = NULL;
        ret_outcome->channels = req->file && f->parallel_cpus > 0
                                        ? save_channels_pick(req->channels, req->memory_kib,
                                                             f->parallel_cpus, req->concurrent)
                                        : 0;
}

static int fk_save(Hypervisor *h, const char *uuid, const SaveRequest *req, SaveOutcome *ret_outcome,
                   char **ret_error)
{
        const char *file = req->file;
        FakeHypervisor *f = FK(h);
        g_autofree char *name = NULL;
        FakeGuest *g;
        guint ms;
        int r;

        g = lock_guest(h, uuid, ret_error, &r);
        if (!g)
                return r;
        if (!guest_state_is_active(g->state)) {
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EINVAL, "domain '%s' is not running", uuid);
        }
        if (g->job) {
                /* As libvirt's QEMU driver says after waiting 30 s for the job to end. */
                r = fail(ret_error, -EIO, "Timeout waiting for the %s job of domain '%s' to end", g->job,
                         g->name);
                g_mutex_unlock(&h->lock);
                return r;
        }
        enter(f, g, FAKE_SAVE);
        note_request(f, g, FAKE_SAVE, req, ret_outcome);
        ms = g->spec.save_ms;
        g->save_started = now_usec();
        name = g_strdup(g->name);
        while (f->gate_closed)
                g_cond_wait(&f->gate, &h->lock);
        g_mutex_unlock(&h->lock);

        if (ms)
                g_usleep(ms * USEC_PER_MSEC);

        g_mutex_lock(&h->lock);
        f->active[FAKE_SAVE]--;
        g->save_started = 0;
        if (f->unreachable) {
                /* The connection dropped while the save ran: libvirtd's job was aborted. */
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -ENOTCONN, "End of file while reading data: Input/output error");
        }
        if (g->spec.save_fails) {
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EIO, "operation failed: saving %s: No space left on device", name);
        }
        if (!guest_state_is_active(g->state)) {
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EINVAL, "domain '%s' is not running", name);
        }
        if (file) {
                g_autofree char *data = g_strdup_printf("fake-save %s %s\n", g->uuid, g->name);
                if (!g_file_set_contents(file, data, -1, NULL)) {
                        g_mutex_unlock(&h->lock);
                        return fail(ret_error, -EIO, "cannot write save file for %s", name);
                }
        } else
                g->managed_save = true;
        set_stopped(h, g, file ? GUEST_STATE_SHUTOFF : GUEST_STATE_SAVED, STOP_REASON_SAVED);
        g_mutex_unlock(&h->lock);
        return 0;
}

typedef struct StopLater {
        Hypervisor *h;
        char *uuid;
} StopLater;

static gboolean stop_later_cb(gpointer p)
{
        StopLater *s = p;
        FakeGuest *g;

        g_mutex_lock(&s->h->lock);
        g = find(FK(s->h), s->uuid, NULL);
        if (g && g->shutdown_pending && guest_state_is_active(g->state))
                set_stopped(s->h, g, GUEST_STATE_SHUTOFF, STOP_REASON_SHUTDOWN);
        g_mutex_unlock(&s->h->lock);
        return G_SOURCE_REMOVE;
}

static void stop_later_free(gpointer p)
{
        StopLater *s = p;

        hypervisor_unref(s->h);
        g_free(s->uuid);
        g_free(s);
}

static int fk_shutdown(Hypervisor *h, const char *uuid, unsigned mode, char **ret_error)
{
        FakeHypervisor *f = FK(h);
        FakeGuest *g;
        int r;

        g = lock_guest(h, uuid, ret_error, &r);
        if (!g)
                return r;
        if (!guest_state_is_active(g->state)) {
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EINVAL, "domain '%s' is not running", uuid);
        }
        g->last_shutdown_mode = mode;
        if ((mode & SHUTDOWN_MODE_AGENT) && !g->spec.agent && !(mode & SHUTDOWN_MODE_ACPI)) {
                g->calls[FAKE_SHUTDOWN]++;
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EIO,
                            "Guest agent is not responding: QEMU guest agent is not connected");
        }
        /* The agent always obeys; ACPI only after the presses the guest ignores. */
        if (!((mode & SHUTDOWN_MODE_AGENT) && g->spec.agent) && g->presses++ < g->spec.ignore_presses) {
                g->calls[FAKE_SHUTDOWN]++;
                g_mutex_unlock(&h->lock);
                return 0;
        }
        if (g->spec.shutdown_fails) {
                g->calls[FAKE_SHUTDOWN]++;
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EIO, "shutdown of %s failed: guest agent not responding", uuid);
        }
        if (!g->shutdown_pending) {
                enter(f, g, FAKE_SHUTDOWN);
                g->shutdown_pending = true;
        } else
                g->calls[FAKE_SHUTDOWN]++;
        if (!g->spec.ignore_shutdown) {
                StopLater *s = g_new0(StopLater, 1);
                GSource *src = g_timeout_source_new(g->spec.shutdown_ms);

                s->h = hypervisor_ref(h);
                s->uuid = g_strdup(uuid);
                g_source_set_callback(src, stop_later_cb, s, stop_later_free);
                g_source_attach(src, h->context);
                g_source_unref(src);
        }
        g_mutex_unlock(&h->lock);
        return 0;
}

static int fk_destroy(Hypervisor *h, const char *uuid, char **ret_error)
{
        FakeHypervisor *f = FK(h);
        FakeGuest *g;
        guint ms;
        int r;

        g = lock_guest(h, uuid, ret_error, &r);
        if (!g)
                return r;
        enter(f, g, FAKE_DESTROY);
        ms = g->spec.destroy_ms;
        g_mutex_unlock(&h->lock);
        if (ms)
                g_usleep(ms * USEC_PER_MSEC);
        g_mutex_lock(&h->lock);
        f->active[FAKE_DESTROY]--;
        if (g->spec.destroy_fails) {
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EIO, "failed to terminate process of %s: Device or resource busy",
                            uuid);
        }
        if (!guest_state_is_active(g->state)) {
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EINVAL, "domain '%s' is not running", uuid);
        }
        set_stopped(h, g, GUEST_STATE_SHUTOFF, STOP_REASON_DESTROYED);
        g_mutex_unlock(&h->lock);
        return 0;
}

/* Lock held; returns with it held. */
static int do_start(Hypervisor *h, FakeGuest *g, char **ret_error)
{
        FakeHypervisor *f = FK(h);
        guint ms = g->spec.start_ms;
        bool fails;

        enter(f, g, FAKE_START);
        g_mutex_unlock(&h->lock);
        if (ms)
                g_usleep(ms * USEC_PER_MSEC);
        g_mutex_lock(&h->lock);
        f->active[FAKE_START]--;
        fails = g->spec.start_fails;
        if (fails)
                return fail(ret_error, -EIO,
                            "internal error: cannot start %s: qemu unexpectedly closed the monitor",
                            g->name);
        if (guest_state_is_active(g->state))
                return fail(ret_error, -EINVAL,
                            "Requested operation is not valid: domain %s is already running", g->name);
        g->state = GUEST_STATE_RUNNING;
        g->defined = true;
        g->managed_save = false;
        g->presses = 0;
        g->started_at = now_usec();
        hypervisor_dispatch_async(h, g->uuid, GUEST_EVENT_STARTED, 0);
        return 0;
}

static int fk_start(Hypervisor *h, const char *uuid, bool bypass_cache, char **ret_error)
{
        FakeGuest *g;
        int r;

        g = lock_guest(h, uuid, ret_error, &r);
        if (!g)
                return r;
        if (!g->spec.persistent) {
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EINVAL, "cannot start transient domain %s", uuid);
        }
        g->bypass[FAKE_START] = bypass_cache;
        r = do_start(h, g, ret_error);
        g_mutex_unlock(&h->lock);
        return r;
}

static int fk_restore(Hypervisor *h, const SaveRequest *req, SaveOutcome *ret_outcome, char **ret_error)
{
        const char *file = req->file;
        g_autofree char *data = NULL;
        g_auto(GStrv) parts = NULL;
        FakeGuest *g;
        int r;

        if (!g_file_get_contents(file, &data, NULL, NULL))
                return fail(ret_error, -ENOENT, "cannot read save file %s", file);
        parts = g_strsplit(g_strstrip(data), " ", 3);
        if (g_strv_length(parts) != 3 || !streq_ptr(parts[0], "fake-save"))
                return fail(ret_error, -EINVAL, "%s is not a save file", file);

        g_mutex_lock(&h->lock);
        g = find(FK(h), parts[1], NULL);
        if (!g) {
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -ENOENT, "unknown guest in %s", file);
        }
        note_request(FK(h), g, FAKE_START, req, ret_outcome);
        r = do_start(h, g, ret_error);
        g_mutex_unlock(&h->lock);
        return r;
}

static int fk_create_xml(Hypervisor *h, const char *xml, char **ret_error)
{
        FakeHypervisor *f = FK(h);
        FakeGuest *g = NULL;
        int r;

        g_mutex_lock(&h->lock);
        for (guint i = 0; i < f->guests->len; i++) {
                FakeGuest *c = f->guests->pdata[i];
                g_autofree char *needle = g_strdup_printf("<uuid>%s</uuid>", c->uuid);
                if (strstr(xml, needle))
                        g = c;
        }
        if (!g) {
                g_mutex_unlock(&h->lock);
                return fail(ret_error, -EINVAL, "XML describes no known guest");
        }
        r = do_start(h, g, ret_error);
        g_mutex_unlock(&h->lock);
        return r;
}

static int fk_job_progress(Hypervisor *h, const char *uuid, guint64 *ret_processed, guint64 *ret_total,
                           char **ret_error)
{
        FakeGuest *g;
        int r;

        g = lock_guest(h, uuid, ret_error, &r);
        if (!g)
                return r;
        if (!g->save_started) {
                g_mutex_unlock(&h->lock);
                return -ENODATA;
        }
        *ret_total = MAX(g->spec.memory_kib, 1) * 1024;
        *ret_processed = MIN(*ret_total, (now_usec() - g->save_started) * (*ret_total) /
                                                 MAX(1, g->spec.save_ms * USEC_PER_MSEC));
        g_mutex_unlock(&h->lock);
        return 0;
}

static int fk_domain_job(Hypervisor *h, const char *uuid, char **ret_kind, char **ret_error)
{
        FakeGuest *g;
        int r;

        g = lock_guest(h, uuid, ret_error, &r);
        if (!g)
                return r;
        r = g->job ? 1 : 0;
        if (g->job)
                *ret_kind = g_strdup(g->job);
        g_mutex_unlock(&h->lock);
        return r;
}

static int fk_abort_job(Hypervisor *h, const char *uuid, char **ret_error)
{
        FakeGuest *g;
        int r;

        g = lock_guest(h, uuid, ret_error, &r);
        if (!g)
                return r;
        g->calls[FAKE_ABORT]++;
        if (!g->job)
                r = fail(ret_error, -EINVAL, "no job is active on the domain");
        else if (!g->spec.job_stuck)
                g_clear_pointer(&g->job, g_free);
        g_mutex_unlock(&h->lock);
        return r;
}

static int fk_sync_time(Hypervisor *h, const char *uuid, char **ret_error)
{
        return fail(ret_error, -EOPNOTSUPP, "Guest agent is not responding (%s)", uuid);
}

static int fk_agent_ping(Hypervisor *h, const char *uuid, char **ret_error)
{
        FakeGuest *g;
        int r;

        g = lock_guest(h, uuid, ret_error, &r);
        if (!g)
                return r;
        g->calls[FAKE_PING]++;
        if (!guest_state_is_active(g->state))
                r = fail(ret_error, -EINVAL, "domain is not running");
        else if (!g->spec.agent)
                r = fail(ret_error, -EIO, "QEMU guest agent is not connected");
        else if (now_usec() < g->started_at + g->spec.agent_ready_ms * USEC_PER_MSEC)
                r = fail(ret_error, -EIO,
                         "Guest agent is not responding: guest agent not available for now");
        g_mutex_unlock(&h->lock);
        return r;
}

static void fk_free(Hypervisor *h)
{
        g_ptr_array_unref(FK(h)->guests);
        g_cond_clear(&FK(h)->gate);
}

static const HypervisorOps fake_ops = {
        .connect = fk_connect,
        .list = fk_list,
        .get_state = fk_get_state,
        .save = fk_save,
        .shutdown = fk_shutdown,
        .destroy = fk_destroy,
        .start = fk_start,
        .restore = fk_restore,
        .create_xml = fk_create_xml,
        .job_progress = fk_job_progress,
        .domain_job = fk_domain_job,
        .abort_job = fk_abort_job,
        .sync_time = fk_sync_time,
        .agent_ping = fk_agent_ping,
        .free = fk_free,
};

Hypervisor *hypervisor_fake_new(const char *uri, GMainContext *ctx)
{
        FakeHypervisor *f = g_new0(FakeHypervisor, 1);

        hypervisor_init_base(&f->base, &fake_ops, uri, ctx);
        f->guests = g_ptr_array_new_with_free_func(fake_guest_free);
        g_cond_init(&f->gate);
        return &f->base;
}

static void apply_spec(FakeGuest *g, const FakeGuestSpec *spec)
{
        g->spec = *spec;
        g->spec.name = NULL;
        g->spec.uuid = NULL;
        g->spec.metadata = NULL;
        g->spec.job = NULL;
        g_free(g->metadata);
        g->metadata = g_strdup(spec->metadata);
        g_free(g->job);
        g->job = g_strdup(spec->job);
}

const char *fake_add_guest(Hypervisor *h, const FakeGuestSpec *spec)
{
        FakeGuest *g = g_new0(FakeGuest, 1);
        guint32 hash = g_str_hash(spec->name);

        g->name = g_strdup(spec->name);
        g->uuid = spec->uuid ? g_strdup(spec->uuid)
                             : g_strdup_printf("%08x-0000-4000-8000-%012x", hash,
                                               (unsigned) strlen(spec->name));
        apply_spec(g, spec);
        g->state = spec->paused ? GUEST_STATE_PAUSED : GUEST_STATE_RUNNING;
        g->defined = true;
        g->started_at = now_usec();
        g_mutex_lock(&h->lock);
        g_ptr_array_add(FK(h)->guests, g);
        g_mutex_unlock(&h->lock);
        return g->uuid;
}

void fake_update_guest(Hypervisor *h, const FakeGuestSpec *spec)
{
        FakeGuest *g;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, spec->name);
        if (g)
                apply_spec(g, spec);
        g_mutex_unlock(&h->lock);
}

GuestState fake_guest_state(Hypervisor *h, const char *name)
{
        GuestState s = _GUEST_STATE_INVALID;
        FakeGuest *g;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, name);
        if (g && g->defined)
                s = g->state;
        g_mutex_unlock(&h->lock);
        return s;
}

bool fake_has_managed_save(Hypervisor *h, const char *name)
{
        FakeGuest *g;
        bool b;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, name);
        b = g && g->managed_save;
        g_mutex_unlock(&h->lock);
        return b;
}

unsigned fake_calls(Hypervisor *h, const char *name, FakeCounter c)
{
        FakeGuest *g;
        unsigned n;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, name);
        n = g ? g->calls[c] : 0;
        g_mutex_unlock(&h->lock);
        return n;
}

bool fake_last_bypass(Hypervisor *h, const char *name, FakeCounter c)
{
        FakeGuest *g;
        bool b;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, name);
        b = g && g->bypass[c];
        g_mutex_unlock(&h->lock);
        return b;
}

bool fake_last_request(Hypervisor *h, const char *name, FakeCounter c, SaveRequest *ret)
{
        FakeGuest *g;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, name);
        if (g)
                *ret = g->last_request[c];
        g_mutex_unlock(&h->lock);
        return g;
}

void fake_set_parallel(Hypervisor *h, unsigned host_cpus)
{
        g_mutex_lock(&h->lock);
        FK(h)->parallel_cpus = host_cpus;
        g_mutex_unlock(&h->lock);
}

unsigned fake_peak(Hypervisor *h, FakeCounter c)
{
        unsigned n;

        g_mutex_lock(&h->lock);
        n = FK(h)->peak[c];
        g_mutex_unlock(&h->lock);
        return n;
}

void fake_guest_stop(Hypervisor *h, const char *name)
{
        FakeGuest *g;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, name);
        if (g && guest_state_is_active(g->state))
                set_stopped(h, g, GUEST_STATE_SHUTOFF, STOP_REASON_SHUTDOWN);
        g_mutex_unlock(&h->lock);
}

unsigned fake_last_shutdown_mode(Hypervisor *h, const char *name)
{
        FakeGuest *g;
        unsigned m;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, name);
        m = g ? g->last_shutdown_mode : 0;
        g_mutex_unlock(&h->lock);
        return m;
}

void fake_set_metadata(Hypervisor *h, const char *name, const char *metadata)
{
        g_autofree char *uuid = NULL;
        FakeGuest *g;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, name);
        if (g) {
                g_free(g->metadata);
                g->metadata = g_strdup(metadata);
                uuid = g_strdup(g->uuid);
        }
        g_mutex_unlock(&h->lock);
        if (uuid)
                hypervisor_dispatch(h, uuid, GUEST_EVENT_METADATA, 0);
}

void fake_set_unreachable(Hypervisor *h, bool unreachable)
{
        g_mutex_lock(&h->lock);
        FK(h)->unreachable = unreachable;
        g_mutex_unlock(&h->lock);
}

void fake_set_running(Hypervisor *h, const char *name)
{
        FakeGuest *g;

        g_mutex_lock(&h->lock);
        g = find(FK(h), NULL, name);
        if (g) {
                g->state = GUEST_STATE_RUNNING;
                g->defined = true;
                g->managed_save = false;
        }
        g_mutex_unlock(&h->lock);
}

unsigned fake_active(Hypervisor *h, FakeCounter c)
{
        unsigned n;

        g_mutex_lock(&h->lock);
        n = FK(h)->active[c];
        g_mutex_unlock(&h->lock);
        return n;
}

void fake_gate_saves(Hypervisor *h, bool closed)
{
        g_mutex_lock(&h->lock);
        FK(h)->gate_closed = closed;
        if (!closed)
                g_cond_broadcast(&FK(h)->gate);
        g_mutex_unlock(&h->lock);
}
