/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "job.h"

#include <errno.h>

#include "macro.h"
#include "util.h"

void job_init(Job *j, JobKind kind, Hypervisor *hv, const char *uuid)
{
        j->kind = kind;
        j->hv = hypervisor_ref(hv);
        j->uuid = g_strdup(uuid);
}

void job_init_copy(Job *j, const Job *from)
{
        job_init(j, from->kind, from->hv, from->uuid);
        j->file = g_strdup(from->file);
        j->xml = g_strdup(from->xml);
        j->flag = from->flag;
        j->mode = from->mode;
        j->retry_usec = from->retry_usec;
        j->abort_jobs = from->abort_jobs;
        j->channels = from->channels;
        j->memory_kib = from->memory_kib;
        j->concurrent = from->concurrent;
}

void job_clear(Job *j)
{
        g_clear_pointer(&j->uuid, g_free);
        g_clear_pointer(&j->file, g_free);
        g_clear_pointer(&j->xml, g_free);
        g_clear_pointer(&j->error, g_free);
        g_clear_pointer(&j->aborted, g_free);
        g_clear_pointer(&j->outcome.note, g_free);
        g_clear_pointer(&j->list, g_ptr_array_unref);
        g_clear_pointer(&j->hv, hypervisor_unref);
}

/* A domain job under way (a backup, a dump) would make the save wait, then fail: abort it
 * and wait for it to end, or fail at once with AbortJobs=no. On the worker, so that the
 * wait costs the main thread nothing. */
static int end_domain_job(Job *j)
{
        const HypervisorOps *ops = j->hv->ops;
        g_autofree char *kind = NULL;
        guint64 until;
        int r;

        r = ops->domain_job(j->hv, j->uuid, &kind, &j->error);
        g_clear_pointer(&j->error, g_free);
        if (r <= 0)
                return 0; /* none, or the driver cannot tell (test driver): the save will say */
        if (!j->abort_jobs) {
                j->error = g_strdup_printf("a %s job is running (AbortJobs=no)", kind);
                return -EBUSY;
        }
        r = ops->abort_job(j->hv, j->uuid, &j->error);
        if (r < 0 && r != -EINVAL) { /* -EINVAL: it ended meanwhile */
                g_autofree char *why = g_steal_pointer(&j->error);

                j->error = g_strdup_printf("cannot abort its %s job: %s", kind, why);
                return r;
        }
        g_clear_pointer(&j->error, g_free);
        until = now_usec() + JOB_ABORT_WAIT_USEC;
        for (;;) {
                g_autofree char *still = NULL;

                r = ops->domain_job(j->hv, j->uuid, &still, &j->error);
                g_clear_pointer(&j->error, g_free);
                if (r <= 0)
                        break;
                if (now_usec() >= until) {
                        j->error = g_strdup_printf("its %s job did not end within %" G_GUINT64_FORMAT
                                                   " s of the abort",
                                                   kind, JOB_ABORT_WAIT_USEC / USEC_PER_SEC);
                        return -ETIMEDOUT;
                }
                g_usleep(100 * USEC_PER_MSEC);
        }
        j->aborted = g_steal_pointer(&kind);
        return 0;
}

static SaveRequest save_request(const Job *j)
{
        return (SaveRequest){
                .file = j->file,
                .bypass_cache = j->flag,
                .channels = j->channels,
                .memory_kib = j->memory_kib,
                .concurrent = j->concurrent,
        };
}

void job_run(gpointer p)
{
        Job *j = p;
        const HypervisorOps *ops = j->hv->ops;
        SaveRequest req = save_request(j);
        guint64 until;

        switch (j->kind) {
        case JOB_LIST:
                /* An unreachable URI is retried briefly (libvirtd may be starting). */
                until = now_usec() + j->retry_usec;
                for (;;) {
                        g_clear_pointer(&j->error, g_free);
                        j->r = ops->list(j->hv, j->flag, &j->list, &j->error);
                        if (j->r != -ENOTCONN || now_usec() >= until)
                                break;
                        g_usleep(MIN(250 * USEC_PER_MSEC, until - now_usec()));
                }
                break;
        case JOB_SAVE:
                j->r = end_domain_job(j);
                if (j->r >= 0) {
                        guint64 start = now_usec();

                        j->r = ops->save(j->hv, j->uuid, &req, &j->outcome, &j->error);
                        j->save_usec = now_usec() - start;
                }
                break;
        case JOB_SHUTDOWN:
                j->r = ops->shutdown(j->hv, j->uuid, j->mode, &j->error);
                break;
        case JOB_DESTROY:
                j->r = ops->destroy(j->hv, j->uuid, &j->error);
                break;
        case JOB_STATE:
                j->r = ops->get_state(j->hv, j->uuid, &j->state, &j->error);
                break;
        case JOB_PROGRESS:
                j->r = ops->job_progress(j->hv, j->uuid, &j->processed, &j->total, &j->error);
                break;
        case JOB_START:
                j->r = ops->start(j->hv, j->uuid, j->flag, &j->error);
                break;
        case JOB_RESTORE:
                j->r = ops->restore(j->hv, &req, &j->outcome, &j->error);
                break;
        case JOB_CREATE:
                j->r = ops->create_xml(j->hv, j->xml, &j->error);
                break;
        case JOB_SYNC_TIME:
                j->r = ops->sync_time(j->hv, j->uuid, &j->error);
                break;
        case JOB_AGENT_PING:
                j->r = ops->agent_ping(j->hv, j->uuid, &j->error);
                break;
        }
}

guint backoff_ms(unsigned attempt, guint first_ms, guint max_ms)
{
        guint64 ms = first_ms;

        for (unsigned i = 0; i < attempt && ms < max_ms; i++)
                ms *= 2;
        return (guint) MIN(ms, (guint64) max_ms);
}
