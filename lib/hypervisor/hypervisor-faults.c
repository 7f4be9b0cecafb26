/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "hypervisor-faults.h"

#include "terms.h"

typedef struct FaultHypervisor {
        Hypervisor base;
        Hypervisor *inner;
        guint listener;
        GHashTable *by_name; /* name → GUINT_TO_POINTER(faults); guarded by base.lock */
        GHashTable *names;   /* uuid → name, learnt from list(); guarded by base.lock */
} FaultHypervisor;

#define FH(h) ((FaultHypervisor *) (h))

/* Indexed by bit: FAULT_SAVE_FAILS is 1 << 0, and so on. */
static const char *const fault_table[] = {
        "save-fails", "ignore-shutdown", "destroy-fails", "start-fails",
        "slow-save",  "late-stop",       "slow-start",
};

int fault_from_string(const char *s)
{
        int i = string_table_lookup(fault_table, ELEMENTSOF(fault_table), s);

        return i < 0 ? i : 1 << i;
}

static unsigned faults_of(Hypervisor *h, const char *uuid)
{
        unsigned f = 0;
        const char *name;

        g_mutex_lock(&h->lock);
        name = g_hash_table_lookup(FH(h)->names, uuid);
        if (name)
                f = GPOINTER_TO_UINT(g_hash_table_lookup(FH(h)->by_name, name));
        g_mutex_unlock(&h->lock);
        return f;
}

static void learn_uri(Hypervisor *h)
{
        g_autofree char *u = hypervisor_get_uri(FH(h)->inner);

        g_mutex_lock(&h->lock);
        g_free(h->resolved_uri);
        h->resolved_uri = g_steal_pointer(&u);
        g_mutex_unlock(&h->lock);
}

static int fh_connect(Hypervisor *h, char **ret_error)
{
        int r = FH(h)->inner->ops->connect(FH(h)->inner, ret_error);

        learn_uri(h);
        return r;
}

static int fh_list(Hypervisor *h, bool include_inactive, GPtrArray **ret, char **ret_error)
{
        int r = FH(h)->inner->ops->list(FH(h)->inner, include_inactive, ret, ret_error);

        learn_uri(h);
        if (r < 0)
                return r;
        g_mutex_lock(&h->lock);
        for (guint i = 0; i < (*ret)->len; i++) {
                GuestInfo *g = (*ret)->pdata[i];
                g_hash_table_replace(FH(h)->names, g_strdup(g->uuid), g_strdup(g->name));
        }
        g_mutex_unlock(&h->lock);
        return r;
}

static int fh_get_state(Hypervisor *h, const char *uuid, GuestState *ret, char **ret_error)
{
        if (faults_of(h, uuid) & FAULT_LATE_STOP) {
                *ret = GUEST_STATE_RUNNING;
                return 0;
        }
        return FH(h)->inner->ops->get_state(FH(h)->inner, uuid, ret, ret_error);
}

static int fh_save(Hypervisor *h, const char *uuid, const SaveRequest *req, SaveOutcome *ret_outcome,
                   char **ret_error)
{
        if (faults_of(h, uuid) & FAULT_SLOW_SAVE)
                g_usleep(FAULT_SLOW_SAVE_USEC); /* a worker thread: this is what a big save does */
        if (faults_of(h, uuid) & FAULT_SAVE_FAILS) {
                *ret_error = g_strdup(
                        "operation failed: (injected) cannot write save image: No space left on device");
                return -EIO;
        }
        return FH(h)->inner->ops->save(FH(h)->inner, uuid, req, ret_outcome, ret_error);
}

typedef struct LateStop {
        Hypervisor *inner;
        char *uuid;
} LateStop;

/* The guest taking its time over the ACPI request: a thread of its own, as a guest is. */
static gpointer late_stop_run(gpointer p)
{
        LateStop *s = p;
        g_autofree char *error = NULL;

        g_usleep(FAULT_LATE_STOP_USEC);
        (void) s->inner->ops->shutdown(s->inner, s->uuid, SHUTDOWN_MODE_ACPI, &error);
        hypervisor_unref(s->inner);
        g_free(s->uuid);
        g_free(s);
        return NULL;
}

static int fh_shutdown(Hypervisor *h, const char *uuid, unsigned mode, char **ret_error)
{
        unsigned f = faults_of(h, uuid);

        if (f & FAULT_IGNORE_SHUTDOWN)
                return 0; /* the request is accepted; the guest pays no attention */
        if (f & FAULT_LATE_STOP) {
                LateStop *s = g_new0(LateStop, 1);

                s->inner = hypervisor_ref(FH(h)->inner);
                s->uuid = g_strdup(uuid);
                g_thread_unref(g_thread_new("late-stop", late_stop_run, s));
                return 0;
        }
        return FH(h)->inner->ops->shutdown(FH(h)->inner, uuid, mode, ret_error);
}

static int fh_destroy(Hypervisor *h, const char *uuid, char **ret_error)
{
        if (faults_of(h, uuid) & FAULT_DESTROY_FAILS) {
                *ret_error = g_strdup("(injected) failed to terminate process: Device or resource busy");
                return -EIO;
        }
        return FH(h)->inner->ops->destroy(FH(h)->inner, uuid, ret_error);
}

static int fh_start(Hypervisor *h, const char *uuid, bool bypass_cache, char **ret_error)
{
        if (faults_of(h, uuid) & FAULT_SLOW_START)
                g_usleep(FAULT_SLOW_START_USEC); /* a worker thread, like a slow resume */
        if (faults_of(h, uuid) & FAULT_START_FAILS) {
                *ret_error = g_strdup("(injected) internal error: qemu unexpectedly closed the monitor");
                return -EIO;
        }
        return FH(h)->inner->ops->start(FH(h)->inner, uuid, bypass_cache, ret_error);
}

static int fh_restore(Hypervisor *h, const SaveRequest *req, SaveOutcome *ret_outcome, char **ret_error)
{
        return FH(h)->inner->ops->restore(FH(h)->inner, req, ret_outcome, ret_error);
}

static int fh_create_xml(Hypervisor *h, const char *xml, char **ret_error)
{
        return FH(h)->inner->ops->create_xml(FH(h)->inner, xml, ret_error);
}

static int fh_job_progress(Hypervisor *h, const char *uuid, guint64 *p, guint64 *t, char **ret_error)
{
        return FH(h)->inner->ops->job_progress(FH(h)->inner, uuid, p, t, ret_error);
}

static int fh_domain_job(Hypervisor *h, const char *uuid, char **ret_kind, char **ret_error)
{
        return FH(h)->inner->ops->domain_job(FH(h)->inner, uuid, ret_kind, ret_error);
}

static int fh_abort_job(Hypervisor *h, const char *uuid, char **ret_error)
{
        return FH(h)->inner->ops->abort_job(FH(h)->inner, uuid, ret_error);
}

static int fh_sync_time(Hypervisor *h, const char *uuid, char **ret_error)
{
        return FH(h)->inner->ops->sync_time(FH(h)->inner, uuid, ret_error);
}

static int fh_agent_ping(Hypervisor *h, const char *uuid, char **ret_error)
{
        return FH(h)->inner->ops->agent_ping(FH(h)->inner, uuid, ret_error);
}

static void fh_free(Hypervisor *h)
{
        hypervisor_remove_listener(FH(h)->inner, FH(h)->listener);
        hypervisor_unref(FH(h)->inner);
        g_hash_table_unref(FH(h)->by_name);
        g_hash_table_unref(FH(h)->names);
}

static const HypervisorOps fault_ops = {
        .connect = fh_connect,
        .list = fh_list,
        .get_state = fh_get_state,
        .save = fh_save,
        .shutdown = fh_shutdown,
        .destroy = fh_destroy,
        .start = fh_start,
        .restore = fh_restore,
        .create_xml = fh_create_xml,
        .job_progress = fh_job_progress,
        .domain_job = fh_domain_job,
        .abort_job = fh_abort_job,
        .sync_time = fh_sync_time,
        .agent_ping = fh_agent_ping,
        .free = fh_free,
};

/* Inner events are re-dispatched as ours (same main context). */
static void forward(Hypervisor *inner, const char *uuid, GuestEvent event, int detail, void *userdata)
{
        hypervisor_dispatch(userdata, uuid, event, detail);
}

Hypervisor *hypervisor_faults_new(Hypervisor *inner)
{
        FaultHypervisor *f = g_new0(FaultHypervisor, 1);

        hypervisor_init_base(&f->base, &fault_ops, inner->uri, inner->context);
        f->inner = hypervisor_ref(inner);
        f->by_name = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        f->names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        f->listener = hypervisor_add_listener(inner, forward, f);
        return &f->base;
}

void faults_set(Hypervisor *h, const char *guest_name, unsigned faults)
{
        g_mutex_lock(&h->lock);
        if (faults)
                faults |= GPOINTER_TO_UINT(g_hash_table_lookup(FH(h)->by_name, guest_name));
        g_hash_table_replace(FH(h)->by_name, g_strdup(guest_name), GUINT_TO_POINTER(faults));
        g_mutex_unlock(&h->lock);
}

int faults_parse(Hypervisor *h, const char *spec, char **ret_error)
{
        g_auto(GStrv) items = g_strsplit(spec, ",", -1);

        for (char **i = items; *i; i++) {
                g_auto(GStrv) kv = NULL;
                int f;

                if (**i == '\0')
                        continue;
                kv = g_strsplit(*i, "=", 2);
                f = kv[1] ? fault_from_string(kv[1]) : -EINVAL;
                if (f < 0) {
                        *ret_error = g_strdup_printf("\"%s\": expected NAME=save-fails|ignore-shutdown|"
                                                     "destroy-fails|start-fails|slow-save|late-stop|"
                                                     "slow-start",
                                                     *i);
                        return -EINVAL;
                }
                faults_set(h, kv[0], (unsigned) f);
        }
        return 0;
}
