/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "record.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "macro.h"
#include "util.h"

static char *key_of(const char *uri, const char *uuid)
{
        return g_strconcat(uri, "\n", uuid, NULL);
}

static void record_guest_free(gpointer p)
{
        RecordGuest *g = p;

        if (!g)
                return;
        g_free(g->uri);
        g_free(g->uuid);
        g_free(g->name);
        g_free(g->error);
        g_free(g->save_file);
        g_free(g->xml);
        g_free(g);
}

Record *record_new(const char *path)
{
        Record *r = g_new0(Record, 1);

        r->path = g_strdup(path);
        r->guests = g_ptr_array_new_with_free_func(record_guest_free);
        r->index = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        return r;
}

Record *record_free(Record *r)
{
        if (!r)
                return NULL;
        g_hash_table_unref(r->index);
        g_ptr_array_unref(r->guests);
        g_free(r->path);
        g_free(r);
        return NULL;
}

RecordGuest *record_find(Record *r, const char *uri, const char *uuid)
{
        g_autofree char *k = key_of(uri, uuid);

        return g_hash_table_lookup(r->index, k);
}

RecordGuest *record_put(Record *r, const char *uri, const char *uuid, const char *name, bool persistent)
{
        RecordGuest *g = record_find(r, uri, uuid);

        if (g) {
                /* Same guest again (a new run): start its entry afresh. */
                g_clear_pointer(&g->error, g_free);
                g_clear_pointer(&g->save_file, g_free);
                g_clear_pointer(&g->xml, g_free);
                g_free(g->name);
        } else {
                g = g_new0(RecordGuest, 1);
                g->uri = g_strdup(uri);
                g->uuid = g_strdup(uuid);
                g_ptr_array_add(r->guests, g);
                g_hash_table_insert(r->index, key_of(uri, uuid), g);
        }
        g->name = g_strdup(name);
        g->persistent = persistent;
        g->steps = 0;
        g->outcome = OUTCOME_NONE;
        return g;
}

void record_remove(Record *r, const char *uri, const char *uuid)
{
        g_autofree char *k = key_of(uri, uuid);
        RecordGuest *g = g_hash_table_lookup(r->index, k);

        if (!g)
                return;
        g_hash_table_remove(r->index, k);
        g_ptr_array_remove(r->guests, g);
}

void record_clear(Record *r)
{
        g_hash_table_remove_all(r->index);
        g_ptr_array_set_size(r->guests, 0);
}

void record_guest_set_error(RecordGuest *g, const char *error)
{
        g_free(g->error);
        g->error = g_strdup(error);
}

/* Written by hand rather than with GKeyFile: for 5000 guests GKeyFile took 12.7 ms a
 * write on the main context, this takes ~1 ms. record_parse() reads it with GKeyFile, and
 * tests/test-record.c checks the round trip of awkward values. */
char *record_serialize(Record *r, gsize *ret_len)
{
        g_autoptr(GDateTime) now = g_date_time_new_now_utc();
        g_autofree char *stamp = g_date_time_format_iso8601(now);
        GString *out = g_string_sized_new(256 + r->guests->len * 192);

        g_string_append(out,
                        "# guestkeeper run record (docs/record.md). Written atomically; do not edit while "
                        "guestkeeperd runs.\n");
        g_string_append_printf(out, "[Record]\nVersion=%d\nUpdated=%s\nGuests=%u\n", RECORD_VERSION, stamp,
                               r->guests->len);
        if (r->hold)
                g_string_append(out, "Hold=true\n");
        for (guint i = 0; i < r->guests->len; i++) {
                RecordGuest *g = r->guests->pdata[i];
                g_autofree char *steps = steps_to_string(g->steps);

                g_string_append_printf(out, "\n[Guest %u]\n", i);
                keyfile_append(out, "URI", g->uri);
                keyfile_append(out, "UUID", g->uuid);
                keyfile_append(out, "Name", g->name);
                g_string_append_printf(out, "Persistent=%s\nSteps=%s\nOutcome=%s\n",
                                       g->persistent ? "true" : "false", steps,
                                       outcome_to_string(g->outcome));
                if (g->error)
                        keyfile_append(out, "Error", g->error);
                if (g->save_file)
                        keyfile_append(out, "SaveFile", g->save_file);
                if (g->xml)
                        keyfile_append(out, "XML", g->xml);
        }
        /* The end marker: a record cut short anywhere fails to parse instead of
         * silently listing fewer guests. */
        g_string_append_printf(out, "\n[End]\nGuests=%u\n", r->guests->len);
        *ret_len = out->len;
        return g_string_free(out, FALSE);
}

#define BAD(...)                                                                                            \
        ({                                                                                                  \
                *ret_error = g_strdup_printf(__VA_ARGS__);                                                  \
                -EBADMSG;                                                                                   \
        })

static int get_required(GKeyFile *kf, const char *group, const char *key, const char *path, char **ret,
                        char **ret_error)
{
        char *v = g_key_file_get_string(kf, group, key, NULL);

        if (!v)
                return BAD("%s: [%s] %s: missing", path, group, key);
        *ret = v;
        return 0;
}

int record_parse(const char *data, gsize len, const char *path, Record **ret, char **ret_error)
{
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) error = NULL;
        g_autoptr(Record) r = record_new(path);
        g_auto(GStrv) groups = NULL;
        gsize ngroups = 0;
        gint64 version, count, end_count;

        if (!g_key_file_load_from_data(kf, data, len, G_KEY_FILE_NONE, &error))
                return BAD("%s: not a record: %s", path, error->message);

        groups = g_key_file_get_groups(kf, &ngroups);
        if (ngroups < 2 || !streq_ptr(groups[0], "Record") || !streq_ptr(groups[ngroups - 1], "End"))
                return BAD("%s: not a complete record (missing [Record] header or [End] marker)", path);

        version = g_key_file_get_int64(kf, "Record", "Version", &error);
        if (error)
                return BAD("%s: [Record] Version: missing or not a number", path);
        if (version != RECORD_VERSION)
                return BAD("%s: [Record] Version: %" G_GINT64_FORMAT
                           " is not a version this guestkeeper reads (%d)",
                           path, version, RECORD_VERSION);
        count = g_key_file_get_int64(kf, "Record", "Guests", &error);
        if (error)
                return BAD("%s: [Record] Guests: missing or not a number", path);
        if (g_key_file_has_key(kf, "Record", "Hold", NULL)) {
                r->hold = g_key_file_get_boolean(kf, "Record", "Hold", &error);
                if (error)
                        return BAD("%s: [Record] Hold: not a boolean", path);
        }
        end_count = g_key_file_get_int64(kf, "End", "Guests", &error);
        if (error || end_count != count || count != (gint64) ngroups - 2)
                return BAD("%s: guest count mismatch (header %" G_GINT64_FORMAT
                           ", found %zu): truncated or edited",
                           path, count, ngroups - 2);

        for (gsize i = 1; i + 1 < ngroups; i++) {
                const char *group = groups[i];
                g_autofree char *uri = NULL, *uuid = NULL, *name = NULL, *steps = NULL, *outcome = NULL;
                g_autofree char *expect = g_strdup_printf("Guest %zu", i - 1);
                RecordGuest *g;
                gboolean persistent;
                int mask, rr;
                Outcome o;

                if (!streq_ptr(group, expect))
                        return BAD("%s: unexpected section [%s] (expected [%s])", path, group, expect);
                if ((rr = get_required(kf, group, "URI", path, &uri, ret_error)) < 0 ||
                    (rr = get_required(kf, group, "UUID", path, &uuid, ret_error)) < 0 ||
                    (rr = get_required(kf, group, "Name", path, &name, ret_error)) < 0 ||
                    (rr = get_required(kf, group, "Steps", path, &steps, ret_error)) < 0 ||
                    (rr = get_required(kf, group, "Outcome", path, &outcome, ret_error)) < 0)
                        return rr;
                if (!g_uuid_string_is_valid(uuid))
                        return BAD("%s: [%s] UUID: \"%s\" is not a UUID", path, group, uuid);
                if (*uri == '\0' || *name == '\0')
                        return BAD("%s: [%s]: empty URI or Name", path, group);
                persistent = g_key_file_get_boolean(kf, group, "Persistent", &error);
                if (error)
                        return BAD("%s: [%s] Persistent: missing or not a boolean", path, group);
                mask = steps_from_string(steps);
                if (mask < 0)
                        return BAD("%s: [%s] Steps: \"%s\" is not a list of save, shutdown, poweroff", path,
                                   group, steps);
                o = outcome_from_string(outcome);
                if (o < 0)
                        return BAD("%s: [%s] Outcome: unknown outcome \"%s\"", path, group, outcome);
                if (record_find(r, uri, uuid))
                        return BAD("%s: [%s]: guest %s listed twice", path, group, uuid);

                g = record_put(r, uri, uuid, name, persistent);
                g->steps = (unsigned) mask;
                g->outcome = o;
                g->error = g_key_file_get_string(kf, group, "Error", NULL);
                g->save_file = g_key_file_get_string(kf, group, "SaveFile", NULL);
                g->xml = g_key_file_get_string(kf, group, "XML", NULL);
                if (!persistent && o == OUTCOME_SAVED && !g->save_file)
                        return BAD("%s: [%s]: transient guest saved without SaveFile", path, group);
        }

        *ret = g_steal_pointer(&r);
        return 0;
}

int record_load(const char *path, Record **ret, char **ret_error)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *data = NULL;
        gsize len = 0;

        if (!g_file_get_contents(path, &data, &len, &error)) {
                if (g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        return -ENOENT;
                *ret_error = g_strdup_printf("%s: cannot read: %s", path, error->message);
                return -EIO;
        }
        return record_parse(data, len, path, ret, ret_error);
}

int record_save(Record *r)
{
        g_autofree char *data = NULL;
        gsize len = 0;

        data = record_serialize(r, &len);
        return write_file_durable(r->path, data, len);
}

int record_load_or_set_aside(const char *path, Record **ret, char **ret_problem)
{
        g_autoptr(GDateTime) now = NULL;
        g_autofree char *error = NULL, *stamp = NULL, *aside = NULL;
        int r;

        *ret_problem = NULL;
        r = record_load(path, ret, &error);
        if (r >= 0)
                return 0;
        *ret = record_new(path);
        if (r == -ENOENT)
                return 0;
        /* Corrupt, or unreadable (EACCES, EIO, a directory): kept aside for a person to look
         * at, never guessed at. The daemon runs on with an empty record either way: one that
         * does not run protects nothing. */
        now = g_date_time_new_now_utc();
        stamp = g_date_time_format(now, "%Y%m%dT%H%M%SZ");
        aside = g_strdup_printf("%s.%s-%s", path, r == -EBADMSG ? "corrupt" : "unreadable", stamp);
        if (rename(path, aside) < 0)
                *ret_problem = g_strdup_printf("%s; could not rename it aside to %s: %s; starting with an "
                                               "empty record",
                                               error, aside, g_strerror(errno));
        else
                *ret_problem =
                        g_strdup_printf("%s; kept as %s, starting with an empty record", error, aside);
        return 0;
}
