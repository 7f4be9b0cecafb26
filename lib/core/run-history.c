/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "run-history.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "macro.h"
#include "util.h"

static const char *const run_reason_table[_RUN_REASON_MAX] = {
        [RUN_REASON_SHUTDOWN] = "shutdown",
        [RUN_REASON_POWEROFF] = "poweroff",
        [RUN_REASON_REBOOT] = "reboot",
        [RUN_REASON_HALT] = "halt",
        [RUN_REASON_KEXEC] = "kexec",
        [RUN_REASON_SOFT_REBOOT] = "soft-reboot",
        [RUN_REASON_REHEARSAL] = "rehearsal",
        [RUN_REASON_START_UP] = "start-up",
        [RUN_REASON_REQUESTED] = "requested",
        [RUN_REASON_SHUTDOWN_CANCELLED] = "shutdown-cancelled",
        [RUN_REASON_MAINTENANCE] = "maintenance",
        [RUN_REASON_CANCELLED] = "cancelled",
};
DEFINE_STRING_TABLE(run_reason, RunReason, _RUN_REASON_MAX);

RunReason run_reason_from_shutdown_type(const char *type)
{
        g_autofree char *t = NULL;
        RunReason r;

        if (!type)
                return RUN_REASON_SHUTDOWN;
        /* "reboot.target" (systemd's job), "power-off" (logind's metadata). */
        t = g_strdup(type);
        if (g_str_has_suffix(t, ".target"))
                t[strlen(t) - strlen(".target")] = '\0';
        if (streq_ptr(t, "power-off"))
                return RUN_REASON_POWEROFF;
        r = run_reason_from_string(t);
        return r >= RUN_REASON_SHUTDOWN && r <= RUN_REASON_SOFT_REBOOT ? r : RUN_REASON_SHUTDOWN;
}

/* ---- the records ---- */

static void run_guest_record_free(gpointer p)
{
        RunGuestRecord *g = p;

        g_free(g->uri);
        g_free(g->uuid);
        g_free(g->name);
        g_free(g->error);
        for (unsigned i = 0; i < g->n_steps; i++)
                g_free(g->steps[i].error);
        g_free(g);
}

RunRecord *run_record_new(void)
{
        RunRecord *r = g_new0(RunRecord, 1);

        r->unreachable = g_ptr_array_new_with_free_func(g_free);
        r->guests = g_ptr_array_new_with_free_func(run_guest_record_free);
        return r;
}

RunRecord *run_record_free(RunRecord *r)
{
        if (!r)
                return NULL;
        g_free(r->id);
        g_free(r->requested_by);
        g_ptr_array_unref(r->unreachable);
        g_ptr_array_unref(r->guests);
        g_free(r);
        return NULL;
}

RunRecord *run_record_from_engine(Engine *e, const char *id, RunReason reason, const char *requested_by,
                                  gint64 started, gint64 finished)
{
        RunRecord *r = run_record_new();
        g_autoptr(GPtrArray) guests = engine_guests(e);
        guint64 t0, t1;

        engine_times(e, &t0, &t1);
        r->id = g_strdup(id);
        r->kind = engine_kind(e);
        r->reason = reason;
        r->requested_by = g_strdup(requested_by);
        r->started = started;
        r->finished = finished;
        r->duration_usec = t1 > t0 ? t1 - t0 : 0;
        r->cancelled = engine_is_cancelled(e);
        engine_counts(e, &r->total, &r->done, &r->failed);
        for (guint i = 0; i < engine_unreachable(e)->len; i++)
                g_ptr_array_add(r->unreachable, g_strdup(engine_unreachable(e)->pdata[i]));
        for (guint i = 0; i < guests->len; i++) {
                const EngineGuest *eg = guests->pdata[i];
                RunGuestRecord *g = g_new0(RunGuestRecord, 1);

                g->uri = g_strdup(eg->uri);
                g->uuid = g_strdup(eg->uuid);
                g->name = g_strdup(eg->name);
                g->outcome = eg->outcome;
                g->bytes = eg->bytes_known ? (gint64) eg->bytes_written : -1;
                g->error = g_strdup(eg->error);
                g->n_steps = eg->n_history;
                for (unsigned k = 0; k < eg->n_history; k++) {
                        const EngineStepRun *s = &eg->history[k];
                        guint64 end = s->end_usec ?: MAX(t1, s->start_usec);

                        g->steps[k].kind = s->kind;
                        g->steps[k].start_usec = s->start_usec > t0 ? s->start_usec - t0 : 0;
                        g->steps[k].duration_usec = end - s->start_usec;
                        g->steps[k].error = g_strdup(s->error);
                }
                if (eg->n_history > 0 && eg->end_usec > eg->history[0].start_usec)
                        g->duration_usec = eg->end_usec - eg->history[0].start_usec;
                g_ptr_array_add(r->guests, g);
        }
        return r;
}

/* ---- the format ---- */

static char *format_time(gint64 usec)
{
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(usec / G_USEC_PER_SEC);
        g_autoptr(GDateTime) precise = t ? g_date_time_add(t, usec % G_USEC_PER_SEC) : NULL;

        if (!precise)
                return g_strdup("");
        /* Not g_date_time_format()'s %Y: it does not pad a year below 1000 to four digits. */
        return g_strdup_printf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", g_date_time_get_year(precise),
                               g_date_time_get_month(precise), g_date_time_get_day_of_month(precise),
                               g_date_time_get_hour(precise), g_date_time_get_minute(precise),
                               g_date_time_get_second(precise), g_date_time_get_microsecond(precise));
}

char *run_record_serialize(const RunRecord *r, gsize *ret_len)
{
        g_autofree char *started = format_time(r->started), *finished = format_time(r->finished);
        GString *out = g_string_sized_new(512 + r->guests->len * 256);

        g_string_append(out, "# guestkeeper run (docs/run-history.md). Written once, when the run ended.\n");
        g_string_append_printf(out, "[Run]\nVersion=%d\n", RUN_HISTORY_VERSION);
        keyfile_append(out, "ID", r->id);
        g_string_append_printf(out, "Kind=%s\nReason=%s\n", run_kind_to_string(r->kind),
                               run_reason_to_string(r->reason));
        keyfile_append(out, "RequestedBy", r->requested_by ?: "");
        g_string_append_printf(out,
                               "Started=%s\nFinished=%s\nDurationUSec=%" G_GUINT64_FORMAT
                               "\nCancelled=%s\nTotal=%u\nDone=%u\nFailed=%u\n",
                               started, finished, r->duration_usec, r->cancelled ? "true" : "false",
                               r->total, r->done, r->failed);
        if (r->unreachable->len > 0) {
                g_autoptr(GString) joined = g_string_new(NULL);

                for (guint i = 0; i < r->unreachable->len; i++)
                        g_string_append_printf(joined, "%s%s", i ? "\n" : "",
                                               (char *) r->unreachable->pdata[i]);
                keyfile_append(out, "Unreachable", joined->str);
        }
        g_string_append_printf(out, "Guests=%u\n", r->guests->len);
        for (guint i = 0; i < r->guests->len; i++) {
                const RunGuestRecord *g = r->guests->pdata[i];

                g_string_append_printf(out, "\n[Guest %u]\n", i);
                keyfile_append(out, "URI", g->uri);
                keyfile_append(out, "UUID", g->uuid);
                keyfile_append(out, "Name", g->name);
                g_string_append_printf(out, "Outcome=%s\nDurationUSec=%" G_GUINT64_FORMAT "\n",
                                       outcome_to_string(g->outcome), g->duration_usec);
                if (g->bytes >= 0)
                        g_string_append_printf(out, "Bytes=%" G_GINT64_FORMAT "\n", g->bytes);
                if (g->error)
                        keyfile_append(out, "Error", g->error);
                g_string_append_printf(out, "Steps=%u\n", g->n_steps);
                for (unsigned k = 0; k < g->n_steps; k++) {
                        const RunStepRecord *s = &g->steps[k];

                        g_string_append_printf(out,
                                               "Step%u=%s\nStep%uStartUSec=%" G_GUINT64_FORMAT
                                               "\nStep%uDurationUSec=%" G_GUINT64_FORMAT "\n",
                                               k, engine_step_kind_to_string(s->kind), k, s->start_usec, k,
                                               s->duration_usec);
                        if (s->error) {
                                g_autofree char *key = g_strdup_printf("Step%uError", k);
                                keyfile_append(out, key, s->error);
                        }
                }
        }
        /* The end marker: a file cut short anywhere fails to parse. */
        g_string_append_printf(out, "\n[End]\nGuests=%u\n", r->guests->len);
        *ret_len = out->len;
        return g_string_free(out, FALSE);
}

#define BAD(...)                                                                                            \
        ({                                                                                                  \
                *ret_error = g_strdup_printf(__VA_ARGS__);                                                  \
                -EBADMSG;                                                                                   \
        })

/* A required string; NULL (and *ret_error set) when it is missing. */
static char *get_string(GKeyFile *kf, const char *group, const char *key, const char *path, char **ret_error)
{
        char *v = g_key_file_get_string(kf, group, key, NULL);

        if (!v)
                (void) BAD("%s: [%s] %s: missing", path, group, key);
        return v;
}

/* A required unsigned decimal, at most @max. */
static int get_number(GKeyFile *kf, const char *group, const char *key, guint64 max, const char *path,
                      guint64 *ret, char **ret_error)
{
        g_autofree char *v = get_string(kf, group, key, path, ret_error);

        if (!v)
                return -EBADMSG;
        if (!g_ascii_string_to_unsigned(v, 10, 0, max, ret, NULL))
                return BAD("%s: [%s] %s: \"%s\" is not a number up to %" G_GUINT64_FORMAT, path, group, key,
                           v, max);
        return 0;
}

static int get_time(GKeyFile *kf, const char *key, const char *path, gint64 *ret, char **ret_error)
{
        g_autofree char *v = get_string(kf, "Run", key, path, ret_error);
        g_autoptr(GDateTime) t = NULL;

        if (!v)
                return -EBADMSG;
        t = g_date_time_new_from_iso8601(v, NULL);
        if (!t)
                return BAD("%s: [Run] %s: \"%s\" is not an ISO 8601 time", path, key, v);
        *ret = g_date_time_to_unix(t) * G_USEC_PER_SEC + g_date_time_get_microsecond(t);
        return 0;
}

static bool id_is_valid(const char *id)
{
        size_t n = 0;

        for (; id[n]; n++)
                if (!g_ascii_isxdigit(id[n]) || g_ascii_isupper(id[n]))
                        return false;
        return n == 32;
}

static int parse_guest(GKeyFile *kf, const char *group, const char *path, RunGuestRecord *g,
                       char **ret_error)
{
        g_autofree char *outcome = NULL;
        guint64 n, v;
        int r;

        if (!(g->uri = get_string(kf, group, "URI", path, ret_error)) ||
            !(g->uuid = get_string(kf, group, "UUID", path, ret_error)) ||
            !(g->name = get_string(kf, group, "Name", path, ret_error)) ||
            !(outcome = get_string(kf, group, "Outcome", path, ret_error)))
                return -EBADMSG;
        if (!g_uuid_string_is_valid(g->uuid))
                return BAD("%s: [%s] UUID: \"%s\" is not a UUID", path, group, g->uuid);
        g->outcome = outcome_from_string(outcome);
        if (g->outcome < 0)
                return BAD("%s: [%s] Outcome: unknown outcome \"%s\"", path, group, outcome);
        if ((r = get_number(kf, group, "DurationUSec", G_MAXUINT64, path, &g->duration_usec, ret_error)) < 0)
                return r;
        g->bytes = -1;
        if (g_key_file_has_key(kf, group, "Bytes", NULL)) {
                if ((r = get_number(kf, group, "Bytes", G_MAXINT64, path, &v, ret_error)) < 0)
                        return r;
                g->bytes = (gint64) v;
        }
        g->error = g_key_file_get_string(kf, group, "Error", NULL);
        if ((r = get_number(kf, group, "Steps", ENGINE_STEPS_MAX, path, &n, ret_error)) < 0)
                return r;
        for (unsigned k = 0; k < n; k++) {
                g_autofree char *kkind = g_strdup_printf("Step%u", k),
                                *kstart = g_strdup_printf("Step%uStartUSec", k);
                g_autofree char *kdur = g_strdup_printf("Step%uDurationUSec", k),
                                *kerr = g_strdup_printf("Step%uError", k);
                g_autofree char *kind = get_string(kf, group, kkind, path, ret_error);
                RunStepRecord *s = &g->steps[k];

                if (!kind)
                        return -EBADMSG;
                s->kind = engine_step_kind_from_string(kind);
                if (s->kind < 0)
                        return BAD("%s: [%s] %s: unknown step \"%s\"", path, group, kkind, kind);
                if ((r = get_number(kf, group, kstart, G_MAXUINT64, path, &s->start_usec, ret_error)) < 0 ||
                    (r = get_number(kf, group, kdur, G_MAXUINT64, path, &s->duration_usec, ret_error)) < 0)
                        return r;
                s->error = g_key_file_get_string(kf, group, kerr, NULL);
                g->n_steps = k + 1;
        }
        return 0;
}

int run_record_parse(const char *data, gsize len, const char *path, RunRecord **ret, char **ret_error)
{
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) error = NULL;
        g_autoptr(RunRecord) r = run_record_new();
        g_autofree char *kind = NULL, *reason = NULL, *unreachable = NULL;
        g_auto(GStrv) groups = NULL;
        gsize ngroups = 0;
        guint64 version, count, end_count, v;
        int rr;

        if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, &error))
                return BAD("%s: not a run: %s", path, error->message);
        groups = g_key_file_get_groups(kf, &ngroups);
        if (ngroups < 2 || !streq_ptr(groups[0], "Run") || !streq_ptr(groups[ngroups - 1], "End"))
                return BAD("%s: not a complete run (missing [Run] header or [End] marker)", path);
        if ((rr = get_number(kf, "Run", "Version", G_MAXUINT32, path, &version, ret_error)) < 0)
                return rr;
        if (version != RUN_HISTORY_VERSION)
                return BAD("%s: [Run] Version: %" G_GUINT64_FORMAT
                           " is not a version this guestkeeper reads (%d)",
                           path, version, RUN_HISTORY_VERSION);
        if (!(r->id = get_string(kf, "Run", "ID", path, ret_error)) ||
            !(kind = get_string(kf, "Run", "Kind", path, ret_error)) ||
            !(reason = get_string(kf, "Run", "Reason", path, ret_error)) ||
            !(r->requested_by = get_string(kf, "Run", "RequestedBy", path, ret_error)))
                return -EBADMSG;
        if (!id_is_valid(r->id))
                return BAD("%s: [Run] ID: \"%s\" is not 32 lowercase hex digits", path, r->id);
        r->kind = run_kind_from_string(kind);
        if (r->kind < 0)
                return BAD("%s: [Run] Kind: unknown kind \"%s\"", path, kind);
        r->reason = run_reason_from_string(reason);
        if (r->reason < 0)
                return BAD("%s: [Run] Reason: unknown reason \"%s\"", path, reason);
        if ((rr = get_time(kf, "Started", path, &r->started, ret_error)) < 0 ||
            (rr = get_time(kf, "Finished", path, &r->finished, ret_error)) < 0 ||
            (rr = get_number(kf, "Run", "DurationUSec", G_MAXUINT64, path, &r->duration_usec, ret_error)) <
                    0)
                return rr;
        r->cancelled = g_key_file_get_boolean(kf, "Run", "Cancelled", &error);
        if (error)
                return BAD("%s: [Run] Cancelled: missing or not a boolean", path);
        if ((rr = get_number(kf, "Run", "Total", G_MAXUINT32, path, &v, ret_error)) < 0)
                return rr;
        r->total = (unsigned) v;
        if ((rr = get_number(kf, "Run", "Done", r->total, path, &v, ret_error)) < 0)
                return rr;
        r->done = (unsigned) v;
        if ((rr = get_number(kf, "Run", "Failed", r->total, path, &v, ret_error)) < 0)
                return rr;
        r->failed = (unsigned) v;
        unreachable = g_key_file_get_string(kf, "Run", "Unreachable", NULL);
        if (unreachable) {
                g_auto(GStrv) lines = g_strsplit(unreachable, "\n", -1);
                for (char **l = lines; *l; l++)
                        g_ptr_array_add(r->unreachable, g_strdup(*l));
        }
        if ((rr = get_number(kf, "Run", "Guests", G_MAXUINT32, path, &count, ret_error)) < 0)
                return rr;
        if (get_number(kf, "End", "Guests", G_MAXUINT32, path, &end_count, ret_error) < 0 ||
            end_count != count || count != ngroups - 2) {
                g_clear_pointer(ret_error, g_free);
                return BAD("%s: guest count mismatch (header %" G_GUINT64_FORMAT
                           ", found %zu): truncated or edited",
                           path, count, ngroups - 2);
        }
        for (gsize i = 1; i + 1 < ngroups; i++) {
                g_autofree char *expect = g_strdup_printf("Guest %zu", i - 1);
                RunGuestRecord *g = g_new0(RunGuestRecord, 1);

                g_ptr_array_add(r->guests, g);
                if (!streq_ptr(groups[i], expect))
                        return BAD("%s: unexpected section [%s] (expected [%s])", path, groups[i], expect);
                if ((rr = parse_guest(kf, groups[i], path, g, ret_error)) < 0)
                        return rr;
        }
        r->size = len;
        *ret = g_steal_pointer(&r);
        return 0;
}

/* ---- the directory ---- */

static void run_record_destroy(gpointer r)
{
        run_record_free(r);
}

RunHistory *run_history_free(RunHistory *h)
{
        if (!h)
                return NULL;
        g_free(h->dir);
        g_ptr_array_unref(h->runs);
        g_free(h);
        return NULL;
}

/* "00000042-<id>.run", or the same with ".corrupt" after it: the sequence number, or -1 for a
 * name that is not ours. */
static gint64 file_seq(const char *name, bool *ret_corrupt)
{
        guint64 seq;
        char digits[9];

        if (strlen(name) < 8 + 1 + 32 + 4)
                return -1;
        memcpy(digits, name, 8);
        digits[8] = '\0';
        if (name[8] != '-' || !g_ascii_string_to_unsigned(digits, 10, 0, G_MAXUINT32, &seq, NULL))
                return -1;
        *ret_corrupt = g_str_has_suffix(name, ".run.corrupt");
        if (!*ret_corrupt && !g_str_has_suffix(name, ".run"))
                return -1;
        return (gint64) seq;
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The newest run of each kind always stays: a restore retried many times must not push the
 * shutdown before it out. */
static bool droppable(RunHistory *h, guint i)
{
        const RunRecord *r = h->runs->pdata[i];

        for (guint k = i + 1; k < h->runs->len; k++)
                if (((const RunRecord *) h->runs->pdata[k])->kind == r->kind)
                        return true;
        return false;
}

static void prune(RunHistory *h)
{
        gsize total = 0;

        for (guint i = 0; i < h->runs->len; i++)
                total += ((RunRecord *) h->runs->pdata[i])->size;
        while (h->runs->len > RUN_HISTORY_MAX_RUNS || total > RUN_HISTORY_MAX_BYTES) {
                guint i = 0;

                while (i < h->runs->len && !droppable(h, i))
                        i++;
                if (i == h->runs->len)
                        return;
                total -= ((RunRecord *) h->runs->pdata[i])->size;
                g_ptr_array_remove_index(h->runs, i);
        }
}

RunHistory *run_history_load(const char *dir, GPtrArray *problems)
{
        RunHistory *h = g_new0(RunHistory, 1);
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GDir) d = NULL;
        g_autoptr(GError) error = NULL;
        const char *name;

        h->dir = g_strdup(dir);
        h->runs = g_ptr_array_new_with_free_func(run_record_destroy);
        d = g_dir_open(dir, 0, &error);
        if (!d) {
                if (!g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        g_ptr_array_add(problems,
                                        g_strdup_printf("%s: cannot read: %s", dir, error->message));
                return h;
        }
        while ((name = g_dir_read_name(d)))
                g_ptr_array_add(names, g_strdup(name));
        /* The zero-padded sequence number first: the names sort oldest first. */
        g_ptr_array_sort(names, compare_names);
        for (guint i = 0; i < names->len; i++) {
                g_autofree char *path = g_build_filename(dir, names->pdata[i], NULL);
                g_autofree char *data = NULL, *why = NULL;
                RunRecord *r = NULL;
                bool corrupt;
                gint64 seq = file_seq(names->pdata[i], &corrupt);
                gsize len = 0;

                if (seq < 0)
                        continue;
                h->next_seq = MAX(h->next_seq, (unsigned) seq + 1);
                if (corrupt)
                        continue;
                if (!g_file_get_contents(path, &data, &len, &error)) {
                        why = g_strdup_printf("%s: cannot read: %s", path, error->message);
                        g_clear_error(&error);
                } else if (run_record_parse(data, len, path, &r, &why) >= 0) {
                        r->seq = (unsigned) seq;
                        g_ptr_array_add(h->runs, r);
                        continue;
                }
                {
                        g_autofree char *aside = g_strconcat(path, ".corrupt", NULL);

                        if (rename(path, aside) < 0)
                                g_ptr_array_add(problems,
                                                g_strdup_printf("%s; could not rename it aside to %s: %s",
                                                                why, aside, g_strerror(errno)));
                        else
                                g_ptr_array_add(problems, g_strdup_printf("%s; kept as %s", why, aside));
                }
        }
        prune(h);
        return h;
}

const RunRecord *run_history_last(RunHistory *h, RunKind kind)
{
        for (guint i = h->runs->len; i > 0; i--) {
                const RunRecord *r = h->runs->pdata[i - 1];
                if (r->kind == kind)
                        return r;
        }
        return NULL;
}

RunHistoryWrite *run_history_add(RunHistory *h, RunRecord *r)
{
        RunHistoryWrite *w = g_new0(RunHistoryWrite, 1);
        g_autofree char *name = NULL;

        r->seq = h->next_seq++;
        w->data = run_record_serialize(r, &w->len);
        r->size = w->len;
        name = g_strdup_printf("%08u-%s.run", r->seq, r->id);
        w->dir = g_strdup(h->dir);
        w->path = g_build_filename(h->dir, name, NULL);
        g_ptr_array_add(h->runs, r);
        prune(h);
        w->keep = g_array_sized_new(FALSE, FALSE, sizeof(unsigned), h->runs->len);
        for (guint i = 0; i < h->runs->len; i++)
                g_array_append_val(w->keep, ((RunRecord *) h->runs->pdata[i])->seq);
        return w;
}

void run_history_write(RunHistoryWrite *w)
{
        g_autoptr(GDir) d = NULL;
        const char *name;

        if (g_mkdir_with_parents(w->dir, 0700) < 0) {
                w->r = -errno;
                return;
        }
        w->r = write_file_durable(w->path, w->data, w->len);
        if (w->r < 0)
                return;
        /* Dropping old runs need not be durable: a run that comes back after a crash is
         * dropped again by the next write. */
        d = g_dir_open(w->dir, 0, NULL);
        while (d && (name = g_dir_read_name(d))) {
                bool corrupt, keep = false;
                gint64 seq = file_seq(name, &corrupt);

                if (seq < 0)
                        continue;
                if (corrupt) /* a file set aside goes with the runs of its age */
                        keep = w->keep->len > 0 && seq > g_array_index(w->keep, unsigned, 0);
                for (guint i = 0; !corrupt && i < w->keep->len && !keep; i++)
                        keep = seq == g_array_index(w->keep, unsigned, i);
                if (!keep) {
                        g_autofree char *path = g_build_filename(w->dir, name, NULL);
                        (void) unlink(path);
                }
        }
}

RunHistoryWrite *run_history_write_free(RunHistoryWrite *w)
{
        if (!w)
                return NULL;
        g_free(w->dir);
        g_free(w->path);
        g_free(w->data);
        if (w->keep)
                g_array_unref(w->keep);
        g_free(w);
        return NULL;
}
