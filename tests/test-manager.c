/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The manager without a bus (no name, no logind) against libvirt's test driver
 * (test:///<abs path>.xml): start-up, ListGuests(), a preserve run, Reload while lists are
 * out, the restore. libvirt's view is read through the manager's own connection: each
 * test:/// connection of a process has its own state. */
#include <libvirt/libvirt.h>

#include "manager-private.h"
#include "testlib.h"

#define DEFAULT_URI "test:///default" /* one guest, "test", running */

static char *dir, *state_dir, *config_path, *uri;

static void setup(void)
{
        dir = testlib_tmpdir();
        state_dir = g_build_filename(dir, "state", NULL);
        config_path = g_build_filename(dir, "guestkeeper.conf", NULL);
        uri = g_strdup_printf("test://%s/node-small.xml", g_getenv("GK_TEST_DATA"));
}

static void teardown(void)
{
        testlib_rm_rf(dir);
        g_clear_pointer(&dir, g_free);
        g_clear_pointer(&state_dir, g_free);
        g_clear_pointer(&config_path, g_free);
        g_clear_pointer(&uri, g_free);
}

static Manager *start_with(bool restore, bool after_crash)
{
        Config *c = config_new_default();
        Manager *m = NULL;

        g_strfreev(c->uris);
        c->uris = g_strdupv((char *[]){uri, NULL});
        c->restore = restore;
        c->restore_after_crash = after_crash;
        ck_assert_int_eq(
                manager_new(&(ManagerOptions){.config_path = config_path, .state_dir = state_dir}, c, &m),
                0);
        manager_start(m);
        ck_assert_ptr_null(m->bus);
        ck_assert(m->ready); /* nothing to wait for without a bus */
        return m;
}

static Manager *start(bool restore)
{
        return start_with(restore, true);
}

static const GuestRow *row(GPtrArray *rows, const char *name)
{
        for (guint i = 0; i < rows->len; i++)
                if (streq_ptr(((GuestRow *) rows->pdata[i])->name, name))
                        return rows->pdata[i];
        return NULL;
}

static unsigned n_rows(Manager *m)
{
        g_autoptr(GPtrArray) rows = manager_list_guests(m);

        return rows->len;
}

/* The state ListGuests() shows, "" if the guest is not listed. */
static const char *listed_state(Manager *m, const char *name)
{
        g_autoptr(GPtrArray) rows = manager_list_guests(m);
        const GuestRow *r = row(rows, name);

        return r ? r->state : "";
}

static const char *listed_outcome(Manager *m, const char *name)
{
        g_autoptr(GPtrArray) rows = manager_list_guests(m);
        const GuestRow *r = row(rows, name);

        return r ? r->outcome : "";
}

/* A new reference to the manager's own connection to its first URI. */
static virConnectPtr conn_of(Manager *m)
{
        g_autoptr(GPtrArray) hvs = guest_cache_hypervisors(m->cache);
        virConnectPtr c;

        ck_assert_uint_ge(hvs->len, 1);
        c = hypervisor_libvirt_dup_conn(hvs->pdata[0]);
        ck_assert_ptr_nonnull(c);
        return c;
}

/* libvirt's state of the guest; -1: gone (transient, stopped). */
static int libvirt_state(virConnectPtr c, const char *name, int *ret_managed_save)
{
        virDomainPtr d = virDomainLookupByName(c, name);
        int st = -1, reason;

        if (!d)
                return -1;
        ck_assert_int_eq(virDomainGetState(d, &st, &reason, 0), 0);
        if (ret_managed_save)
                *ret_managed_save = virDomainHasManagedSaveImage(d, 0);
        virDomainFree(d);
        return st;
}

static Record *record_on_disk(void)
{
        g_autofree char *path = g_build_filename(state_dir, "record", NULL), *err = NULL;
        Record *r = NULL;

        ck_assert_msg(record_load(path, &r, &err) == 0, "record: %s", err);
        return r;
}

static void preserve(Manager *m)
{
        RUN_UNTIL(n_rows(m) == 5);
        ck_assert_int_eq(manager_preserve(m, false), 0);
        ck_assert_int_eq(m->state, MANAGER_PRESERVING);
        ck_assert_int_eq(manager_preserve(m, false), -EBUSY);
        RUN_UNTIL(m->state == MANAGER_PRESERVED);
}

START_TEST(test_start_idle_and_list)
{
        g_autoptr(Manager) m = start(true);
        g_autoptr(GPtrArray) rows = NULL;
        g_auto(GStrv) uris = NULL;
        const GuestRow *r;

        RUN_UNTIL(m->state != MANAGER_STARTING);
        ck_assert_int_eq(m->state, MANAGER_IDLE); /* Restore=yes, but nothing recorded */
        RUN_UNTIL(n_rows(m) == 5);
        rows = manager_list_guests(m);
        for (const char *const *n = (const char *const[]){"web1", "web2", "db1", "scratch", NULL}; *n; n++) {
                r = row(rows, *n);
                ck_assert_msg(r, "%s not listed", *n);
                ck_assert_str_eq(r->uri, uri);
                ck_assert_str_eq(r->state, "running");
                ck_assert_str_eq(r->outcome, "");
        }
        ck_assert_str_eq(row(rows, "idle")->state, "shutoff");
        ck_assert_str_eq(row(rows, "web1")->uuid, "6695eb01-f6a4-8304-79aa-97f2502e0001");
        uris = guest_cache_uris(m->cache);
        ck_assert_uint_eq(g_strv_length(uris), 1);
        ck_assert_str_eq(uris[0], uri);
        RUN_UNTIL(streq_ptr(m->last_status, "Watching 5 guests (4 running) on 1 URI; no shutdown inhibitor "
                                            "(logind unavailable)"));
        ck_assert(!manager_inhibitor_held(m));
}
END_TEST

START_TEST(test_preserve)
{
        g_autoptr(Manager) m = start(true);
        g_autoptr(Record) rec = NULL;
        virConnectPtr c;
        int managed_save;

        preserve(m);
        ck_assert_uint_eq(m->last->total, 4);
        ck_assert_uint_eq(m->last->done, 4);
        ck_assert_uint_eq(m->last->failed, 0);
        ck_assert_uint_eq(m->last->by_outcome[OUTCOME_SAVED], 3);
        ck_assert_uint_eq(m->last->by_outcome[OUTCOME_SHUTDOWN], 1);

        c = conn_of(m);
        for (const char *const *n = (const char *const[]){"web1", "web2", "db1", NULL}; *n; n++) {
                ck_assert_int_eq(libvirt_state(c, *n, &managed_save), VIR_DOMAIN_SHUTOFF);
                ck_assert_int_eq(managed_save, 1);
        }
        ck_assert_int_eq(libvirt_state(c, "scratch", NULL), -1); /* transient, shut down */
        ck_assert_int_eq(libvirt_state(c, "idle", &managed_save), VIR_DOMAIN_SHUTOFF);
        ck_assert_int_eq(managed_save, 0);
        virConnectClose(c);

        rec = record_on_disk();
        ck_assert_uint_eq(rec->guests->len, 4);
        for (const char *const *n = (const char *const[]){"web1", "web2", "db1", "scratch", NULL}; *n; n++) {
                bool found = false;

                for (guint i = 0; i < rec->guests->len; i++)
                        found = found || streq_ptr(((RecordGuest *) rec->guests->pdata[i])->name, *n);
                ck_assert_msg(found, "%s not in the record", *n);
        }

        /* The cache follows libvirt; the record shows the transient guest libvirt forgot. */
        RUN_UNTIL(streq_ptr(listed_state(m, "web1"), "saved"));
        ck_assert_str_eq(listed_outcome(m, "web1"), "saved");
        ck_assert_str_eq(listed_state(m, "scratch"), "shutoff");
        ck_assert_str_eq(listed_outcome(m, "scratch"), "shutdown");
        ck_assert_str_eq(listed_outcome(m, "idle"), "");
}
END_TEST

/* Reload with other URIs while the first lists are still out, and again at once before the
 * manager is freed: the dropped watches' results must find nothing freed (valgrind). */
START_TEST(test_reload_while_listing)
{
        g_autoptr(Manager) m = start(true);
        g_autofree char *text = g_strdup_printf("[Guests]\nURIs=%s %s\n", uri, DEFAULT_URI);
        g_autofree char *error = NULL;
        g_auto(GStrv) uris = NULL;

        testlib_write(config_path, text);
        ck_assert_int_eq(manager_reload(m, &error), 0);
        uris = guest_cache_uris(m->cache);
        ck_assert_uint_eq(g_strv_length(uris), 2);
        RUN_UNTIL(n_rows(m) == 6);
        ck_assert_str_eq(listed_state(m, "test"), "running");
        RUN_UNTIL(streq_ptr(m->last_status, "Watching 6 guests (5 running) on 2 URIs; no shutdown inhibitor "
                                            "(logind unavailable)"));

        testlib_write(config_path, "[Guests]\nURIs=" DEFAULT_URI "\n");
        ck_assert_int_eq(manager_reload(m, &error), 0);
        ck_assert_uint_eq(guest_cache_n_uris(m->cache), 1);
        ck_assert_uint_eq(n_rows(m), 0); /* until the new list is back */

        /* A bad file keeps the old configuration. */
        testlib_write(config_path, "[Guests]\nURIs=\n");
        ck_assert_int_lt(manager_reload(m, &error), 0);
        ck_assert_ptr_nonnull(error);
        ck_assert_uint_eq(guest_cache_n_uris(m->cache), 1);
}
END_TEST

START_TEST(test_restore)
{
        g_autoptr(Manager) m = start(true);
        g_autoptr(Record) rec = NULL;
        virConnectPtr c;

        preserve(m);
        ck_assert_int_eq(manager_restore(m), 0);
        ck_assert_int_eq(m->state, MANAGER_RESTORING);
        RUN_UNTIL(m->state == MANAGER_IDLE);
        ck_assert_int_eq(m->last->kind, RUN_RESTORE);
        ck_assert_uint_eq(m->last->done, 4);
        ck_assert_uint_eq(m->last->failed, 0);

        c = conn_of(m);
        for (const char *const *n = (const char *const[]){"web1", "web2", "db1", "scratch", NULL}; *n; n++)
                ck_assert_msg(libvirt_state(c, *n, NULL) == VIR_DOMAIN_RUNNING, "%s not running", *n);
        virConnectClose(c);
        rec = record_on_disk();
        ck_assert_uint_eq(rec->guests->len, 0);
        /* The transient guest libvirt had forgotten is listed again. */
        ck_assert_str_eq(listed_state(m, "scratch"), "running");
        ck_assert_str_eq(listed_outcome(m, "scratch"), "restored");
}
END_TEST

/* A new manager over the state a preserve run of another one left. */
static Manager *start_after_preserve(bool restore)
{
        g_autoptr(Manager) first = start(true);

        preserve(first);
        g_clear_pointer(&first, manager_free);
        return start(restore);
}

/* The new manager's test:/// connection is new too, so libvirt shows every guest running
 * again: the restore run counts them as restored (never started twice). What is checked is
 * that the start-up runs it and empties the record. */
START_TEST(test_restore_at_start)
{
        g_autoptr(Manager) m = start_after_preserve(true);
        g_autoptr(Record) rec = NULL;

        ck_assert_int_eq(m->state, MANAGER_STARTING); /* until the first list is back */
        RUN_UNTIL(m->state != MANAGER_STARTING);
        ck_assert_int_eq(m->state, MANAGER_RESTORING);
        RUN_UNTIL(m->state == MANAGER_IDLE);
        ck_assert_int_eq(m->last->kind, RUN_RESTORE);
        ck_assert_uint_eq(m->last->total, 4);
        ck_assert_uint_eq(m->last->done, 4);
        ck_assert_uint_eq(m->last->failed, 0);
        rec = record_on_disk();
        ck_assert_uint_eq(rec->guests->len, 0);
}
END_TEST

/* Each run is kept once it ends (in memory at once, on disk by the time the manager is
 * freed), with its reason and who asked; a new manager reads the history back. */
START_TEST(test_runs_kept)
{
        g_autoptr(Manager) m = start_after_preserve(true);
        g_autoptr(Manager) again = NULL;
        g_autoptr(GPtrArray) runs = NULL, all = NULL;
        const RunRecord *pre, *res;

        RUN_UNTIL(m->state == MANAGER_IDLE);
        runs = manager_last_runs(m, false);
        ck_assert_uint_eq(runs->len, 2);
        pre = runs->pdata[0];
        res = runs->pdata[1];
        ck_assert_int_eq(pre->kind, RUN_PRESERVE);
        ck_assert_int_eq(pre->reason, RUN_REASON_REHEARSAL);
        ck_assert_str_eq(pre->requested_by, "unknown"); /* no D-Bus caller in this test */
        ck_assert_uint_eq(pre->guests->len, 4);
        ck_assert_int_eq(res->kind, RUN_RESTORE);
        ck_assert_int_eq(res->reason, RUN_REASON_START_UP);
        ck_assert_str_eq(res->requested_by, "start-up");
        ck_assert_str_ne(pre->id, res->id);
        ck_assert_int_le(pre->finished, res->started);

        m->requester = g_strdup("uid 0 via test[1]");
        ck_assert_int_eq(manager_preserve(m, false), 0);
        RUN_UNTIL(m->state == MANAGER_PRESERVED);
        all = manager_last_runs(m, true);
        ck_assert_uint_eq(all->len, 3);
        ck_assert_str_eq(((RunRecord *) all->pdata[2])->requested_by, "uid 0 via test[1]");
        /* The last preserve is now newer than the last restore: oldest first still. */
        g_clear_pointer(&runs, g_ptr_array_unref);
        runs = manager_last_runs(m, false);
        ck_assert_int_eq(((RunRecord *) runs->pdata[0])->kind, RUN_RESTORE);
        ck_assert_int_eq(((RunRecord *) runs->pdata[1])->kind, RUN_PRESERVE);

        g_clear_pointer(&m, manager_free);
        again = start(false);
        ck_assert_uint_eq(again->history->runs->len, 3);
        ck_assert_str_eq(((RunRecord *) again->history->runs->pdata[2])->requested_by, "uid 0 via test[1]");
}
END_TEST

START_TEST(test_no_restore_at_start)
{
        g_autoptr(Manager) m = start_after_preserve(false);
        g_autoptr(Record) rec = NULL;

        RUN_UNTIL(m->state != MANAGER_STARTING);
        ck_assert_int_eq(m->state, MANAGER_IDLE);
        ck_assert_ptr_null(m->last);
        ck_assert_uint_eq(m->record->guests->len, 4);
        rec = record_on_disk();
        ck_assert_uint_eq(rec->guests->len, 4);
}
END_TEST

static Record *running_on_disk(void)
{
        g_autofree char *path = g_build_filename(state_dir, "running", NULL), *err = NULL;
        Record *r = NULL;

        if (record_load(path, &r, &err) == -ENOENT)
                return NULL;
        ck_assert_msg(r, "running set: %s", err);
        return r;
}

static bool lists(Record *r, const char *name)
{
        for (guint i = 0; r && i < r->guests->len; i++)
                if (streq_ptr(((RecordGuest *) r->guests->pdata[i])->name, name))
                        return true;
        return false;
}

static unsigned running_set_len(void)
{
        g_autoptr(Record) r = running_on_disk();

        return r ? r->guests->len : 0;
}

/* The running set follows libvirt, a burst of events being one write. */
START_TEST(test_running_set_kept)
{
        g_autoptr(Manager) m = start(true);
        g_autoptr(Record) r = NULL;
        virConnectPtr c;
        virDomainPtr d;
        unsigned writes;

        RUN_UNTIL(running_set_len() == 4);
        r = running_on_disk();
        for (const char *const *n = (const char *const[]){"web1", "web2", "db1", "scratch", NULL}; *n; n++)
                ck_assert_msg(lists(r, *n), "%s not in the running set", *n);
        ck_assert(!lists(r, "idle"));
        for (guint i = 0; i < r->guests->len; i++) {
                RecordGuest *g = r->guests->pdata[i];
                /* A transient guest keeps what re-creates it. */
                ck_assert(g->persistent == (g->xml == NULL));
        }
        writes = running_set_writes(m->running);

        c = conn_of(m);
        d = virDomainLookupByName(c, "web1");
        ck_assert_int_eq(virDomainDestroy(d), 0);
        virDomainFree(d);
        d = virDomainLookupByName(c, "web2");
        ck_assert_int_eq(virDomainDestroy(d), 0);
        virDomainFree(d);
        virConnectClose(c);
        RUN_UNTIL(running_set_len() == 2);
        ck_assert_uint_eq(running_set_writes(m->running), writes + 1);
}
END_TEST

/* A running set saying "idle" and "web1" ran, and no record: "idle" is off now, so it was lost
 * while nobody watched (a power cut): started again, as "recovered". web1 runs: untouched. */
static void write_running_set(void)
{
        g_autofree char *path = g_build_filename(state_dir, "running", NULL);
        g_autoptr(Record) r = record_new(path);

        g_assert(g_mkdir_with_parents(state_dir, 0700) == 0);
        record_put(r, uri, "6695eb01-f6a4-8304-79aa-97f2502e0005", "idle", true);
        record_put(r, uri, "6695eb01-f6a4-8304-79aa-97f2502e0001", "web1", true);
        ck_assert_int_eq(record_save(r), 0);
}

START_TEST(test_lost_guest_started_again)
{
        g_autoptr(Manager) m = NULL;
        g_autoptr(Record) rec = NULL;
        virConnectPtr c;

        write_running_set();
        m = start(true);
        RUN_UNTIL(m->last && m->state == MANAGER_IDLE);
        ck_assert_int_eq(m->last->kind, RUN_RESTORE);
        ck_assert_uint_eq(m->last->total, 1);
        ck_assert_uint_eq(m->last->by_outcome[OUTCOME_RECOVERED], 1);
        c = conn_of(m);
        ck_assert_int_eq(libvirt_state(c, "idle", NULL), VIR_DOMAIN_RUNNING);
        virConnectClose(c);
        ck_assert_str_eq(listed_outcome(m, "idle"), "recovered");
        ck_assert_str_eq(listed_outcome(m, "web1"), "");
        rec = record_on_disk();
        ck_assert_uint_eq(rec->guests->len, 0);
        /* It runs now: it is in the running set like the others. */
        RUN_UNTIL(running_set_len() == 5);
}
END_TEST

START_TEST(test_lost_guest_left_with_restore_after_crash_no)
{
        g_autoptr(Manager) m = NULL;
        virConnectPtr c;

        write_running_set();
        m = start_with(true, false);
        RUN_UNTIL(m->state == MANAGER_IDLE);
        RUN_UNTIL(running_set_len() == 4); /* "idle" forgotten */
        ck_assert_ptr_null(m->last);
        c = conn_of(m);
        ck_assert_int_eq(libvirt_state(c, "idle", NULL), VIR_DOMAIN_SHUTOFF);
        virConnectClose(c);
}
END_TEST

/* Maintenance: preserved guests stay down across a restart until an explicit restore. */
START_TEST(test_hold)
{
        g_autoptr(Manager) first = start(true), m = NULL;
        g_autoptr(Record) rec = NULL;

        RUN_UNTIL(n_rows(first) == 5);
        ck_assert_int_eq(manager_preserve(first, true), 0);
        ck_assert(manager_held(first));
        RUN_UNTIL(first->state == MANAGER_PRESERVED);
        rec = record_on_disk();
        ck_assert(rec->hold);
        ck_assert_uint_eq(rec->guests->len, 4);
        g_clear_pointer(&rec, record_free);
        g_clear_pointer(&first, manager_free);

        m = start(true);
        RUN_UNTIL(m->state != MANAGER_STARTING);
        ck_assert_int_eq(m->state, MANAGER_IDLE);
        ck_assert_ptr_null(m->last); /* nothing started */
        ck_assert(manager_held(m));
        RUN_UNTIL(strstr(m->last_status ?: "", "HELD: 4 preserved guests stay down"));

        ck_assert_int_eq(manager_restore(m), 0);
        ck_assert(!manager_held(m));
        RUN_UNTIL(m->state == MANAGER_IDLE);
        ck_assert_uint_eq(m->last->done, 4);
        rec = record_on_disk();
        ck_assert(!rec->hold);
        ck_assert_uint_eq(rec->guests->len, 0);
}
END_TEST

static bool record_lists(Record *r, const char *name)
{
        for (guint i = 0; i < r->guests->len; i++)
                if (streq_ptr(((RecordGuest *) r->guests->pdata[i])->name, name))
                        return true;
        return false;
}

/* PreserveGuestsNamed()/RestoreGuestsNamed(): the named guests only, by name or UUID; a name
 * no guest has, or a guest there is nothing to do to, starts nothing. */
START_TEST(test_named)
{
        g_autoptr(Manager) m = start(true);
        g_autoptr(Record) rec = NULL;
        g_autofree char *why = NULL;
        virConnectPtr c;

        RUN_UNTIL(n_rows(m) == 5);
        ck_assert_int_eq(manager_run_named(m, RUN_PRESERVE, (char *[]){"web1", "nope", NULL}, false, &why),
                         -ENOENT);
        ck_assert_str_eq(why, "No guest named nope");
        g_clear_pointer(&why, g_free);
        ck_assert_int_eq(manager_run_named(m, RUN_PRESERVE, (char *[]){"idle", NULL}, false, &why), -EINVAL);
        ck_assert_str_eq(why, "idle is not running");
        g_clear_pointer(&why, g_free);
        ck_assert_int_eq(m->state, MANAGER_IDLE);
        ck_assert_ptr_null(m->last);

        ck_assert_int_eq(manager_run_named(m, RUN_PRESERVE,
                                           (char *[]){"web1", "6695EB01-F6A4-8304-79AA-97F2502E0002", NULL},
                                           false, &why),
                         0);
        RUN_UNTIL(m->state == MANAGER_PRESERVED);
        ck_assert_uint_eq(m->last->total, 2);
        ck_assert_uint_eq(m->last->done, 2);
        c = conn_of(m);
        ck_assert_int_eq(libvirt_state(c, "web1", NULL), VIR_DOMAIN_SHUTOFF);
        ck_assert_int_eq(libvirt_state(c, "web2", NULL), VIR_DOMAIN_SHUTOFF);
        ck_assert_int_eq(libvirt_state(c, "db1", NULL), VIR_DOMAIN_RUNNING);
        ck_assert_int_eq(libvirt_state(c, "scratch", NULL), VIR_DOMAIN_RUNNING);
        rec = record_on_disk();
        ck_assert_uint_eq(rec->guests->len, 2);
        g_clear_pointer(&rec, record_free);

        ck_assert_int_eq(manager_run_named(m, RUN_RESTORE, (char *[]){"db1", NULL}, false, &why), -EINVAL);
        ck_assert_str_eq(why, "db1 was not stopped by guestkeeper: nothing to restore");
        g_clear_pointer(&why, g_free);
        ck_assert_int_eq(manager_run_named(m, RUN_RESTORE, (char *[]){"nope", NULL}, false, &why), -ENOENT);
        g_clear_pointer(&why, g_free);
        ck_assert_int_eq(manager_run_named(m, RUN_RESTORE, (char *[]){"web2", NULL}, false, &why), 0);
        RUN_UNTIL(m->state == MANAGER_IDLE);
        ck_assert_int_eq(m->last->kind, RUN_RESTORE);
        ck_assert_uint_eq(m->last->total, 1);
        ck_assert_int_eq(libvirt_state(c, "web2", NULL), VIR_DOMAIN_RUNNING);
        ck_assert_int_eq(libvirt_state(c, "web1", NULL), VIR_DOMAIN_SHUTOFF);
        virConnectClose(c);
        rec = record_on_disk();
        ck_assert(record_lists(rec, "web1"));
        ck_assert(!record_lists(rec, "web2"));
        /* web1 is not restored behind the caller's back. */
        ck_assert(!manager_maybe_restore(m));
}
END_TEST

/* Cancel(): a rehearsal's guests come back; a restore leaves the rest in the record, with no
 * retry; a host shutdown's run is not ours to cancel. */
START_TEST(test_cancel)
{
        g_autoptr(Manager) m = start(true);
        g_autoptr(Record) rec = NULL;
        g_autoptr(GPtrArray) runs = NULL;
        g_autofree char *why = NULL;
        virConnectPtr c;

        RUN_UNTIL(n_rows(m) == 5);
        ck_assert_int_eq(manager_cancel(m, &why), -ESRCH);
        g_clear_pointer(&why, g_free);

        ck_assert_int_eq(manager_preserve(m, true), 0);
        m->requester = g_strdup("uid 0 via test[2]");
        ck_assert_int_eq(manager_cancel(m, &why), 0);
        ck_assert_int_eq(manager_cancel(m, &why), -ESRCH); /* once is enough */
        g_clear_pointer(&why, g_free);
        RUN_UNTIL(m->state == MANAGER_IDLE);
        ck_assert(!manager_held(m)); /* the hold the cancelled run set is gone */
        runs = manager_last_runs(m, true);
        ck_assert_uint_eq(runs->len, 2);
        ck_assert(((RunRecord *) runs->pdata[0])->cancelled);
        ck_assert_int_eq(((RunRecord *) runs->pdata[1])->kind, RUN_RESTORE);
        ck_assert_int_eq(((RunRecord *) runs->pdata[1])->reason, RUN_REASON_CANCELLED);
        ck_assert_str_eq(((RunRecord *) runs->pdata[1])->requested_by, "uid 0 via test[2]");
        c = conn_of(m);
        for (const char *const *n = (const char *const[]){"web1", "web2", "db1", "scratch", NULL}; *n; n++)
                ck_assert_msg(libvirt_state(c, *n, NULL) == VIR_DOMAIN_RUNNING, "%s not running", *n);
        rec = record_on_disk();
        ck_assert_uint_eq(rec->guests->len, 0);
        g_clear_pointer(&rec, record_free);

        preserve(m);
        m->config->parallel_starts = 1; /* the others wait for the first start: the cancel finds them */
        ck_assert_int_eq(manager_restore(m), 0);
        ck_assert_int_eq(manager_cancel(m, &why), 0);
        RUN_UNTIL(m->state == MANAGER_IDLE);
        ck_assert(m->last->kind == RUN_RESTORE);
        ck_assert_uint_eq(m->last->done, 1);
        rec = record_on_disk();
        ck_assert_uint_eq(rec->guests->len, 3);
        ck_assert_uint_eq(g_hash_table_size(m->waiting), 0);
        ck_assert(!manager_maybe_restore(m));
        virConnectClose(c);

        ck_assert_int_eq(manager_restore(m), 0);
        RUN_UNTIL(m->state == MANAGER_IDLE);

        /* A host shutdown after the cancel of a rehearsal: no restore, a run of its own. */
        ck_assert_int_eq(manager_preserve(m, false), 0);
        ck_assert_int_eq(manager_cancel(m, &why), 0);
        manager_logind_callbacks.prepare_for_shutdown(NULL, true, m);
        ck_assert_int_eq(manager_cancel(m, &why), -ESRCH);
        g_clear_pointer(&why, g_free);
        RUN_UNTIL(m->state == MANAGER_PRESERVED);
        g_clear_pointer(&runs, g_ptr_array_unref);
        runs = manager_last_runs(m, true);
        ck_assert_int_eq(((RunRecord *) runs->pdata[runs->len - 2])->reason, RUN_REASON_REHEARSAL);
        ck_assert_int_eq(((RunRecord *) runs->pdata[runs->len - 1])->reason, RUN_REASON_SHUTDOWN);
        ck_assert_uint_eq(m->last->done, 4);
        ck_assert_int_eq(manager_restore(m), 0);
        RUN_UNTIL(m->state == MANAGER_IDLE);

        manager_logind_callbacks.prepare_for_shutdown(NULL, true, m);
        ck_assert_int_eq(m->state, MANAGER_PRESERVING);
        ck_assert_int_eq(manager_cancel(m, &why), -EBUSY);
        ck_assert_ptr_nonnull(strstr(why, "host shutdown"));
        RUN_UNTIL(m->state == MANAGER_PRESERVED);
        ck_assert_uint_eq(m->last->done, 4);
}
END_TEST

static void on_exit_cb(Manager *m, int code, void *userdata)
{
        *(int *) userdata = code;
}

/* SIGTERM with no logind to ask whether the host goes down: exit at once, no guest touched;
 * during a preserve run: once it is over. */
START_TEST(test_terminate)
{
        g_autoptr(Manager) m = start(true), busy = NULL;
        int code = -1;

        m->on_exit = on_exit_cb;
        m->on_exit_userdata = &code;
        manager_terminate(m);
        ck_assert_int_eq(code, 0);
        ck_assert_int_eq(m->state, MANAGER_STOPPING);

        g_clear_pointer(&m, manager_free);
        busy = start(true);
        busy->on_exit = on_exit_cb;
        busy->on_exit_userdata = &code;
        code = -1;
        RUN_UNTIL(n_rows(busy) == 5);
        ck_assert_int_eq(manager_preserve(busy, false), 0);
        manager_terminate(busy);
        ck_assert_int_eq(code, -1);
        RUN_UNTIL(code == 0);
        ck_assert_int_eq(busy->last->done, 4);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("manager");
        TCase *tc = tcase_create("no-bus");

        /* The manager would wrap its hypervisors, and conn_of() needs the libvirt one. */
        g_unsetenv("GUESTKEEPER_FAULTS");
        hypervisor_libvirt_global_init();
        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_start_idle_and_list);
        tcase_add_test(tc, test_preserve);
        tcase_add_test(tc, test_reload_while_listing);
        tcase_add_test(tc, test_restore);
        tcase_add_test(tc, test_restore_at_start);
        tcase_add_test(tc, test_runs_kept);
        tcase_add_test(tc, test_no_restore_at_start);
        tcase_add_test(tc, test_terminate);
        tcase_add_test(tc, test_running_set_kept);
        tcase_add_test(tc, test_lost_guest_started_again);
        tcase_add_test(tc, test_lost_guest_left_with_restore_after_crash_no);
        tcase_add_test(tc, test_hold);
        tcase_add_test(tc, test_named);
        tcase_add_test(tc, test_cancel);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
