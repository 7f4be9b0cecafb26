/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The guest cache against libvirt's test driver (test:///<abs path>.xml). The worker pool has
 * one thread, so jobs run and come back in the order they were submitted: a test can hold
 * every list back (gate()) or wait until every list submitted so far is back (barrier()). */
#include <libvirt/libvirt.h>

#include "guest-cache.h"
#include "testlib.h"

#define DEFAULT_URI "test:///default" /* one guest, "test", running */

static char *uri;
static Workers *workers;
static GuestCache *cache;
static unsigned changes;
static unsigned lists;

static GMutex gate_lock;
static GCond gate_cond;
static bool gate_closed;

static void on_changed(GuestCache *c, void *userdata)
{
        ck_assert_ptr_eq(c, cache);
        changes++;
}

static void on_listed(GuestCache *c, const char *list_uri, bool ok, void *userdata)
{
        lists++;
}

static const GuestCacheCallbacks callbacks = {.changed = on_changed, .listed = on_listed};

static void setup(void)
{
        uri = g_strdup_printf("test://%s/node-small.xml", g_getenv("GK_TEST_DATA"));
        workers = workers_new(NULL, 1);
        cache = guest_cache_new(workers, &callbacks, NULL);
        changes = 0;
        lists = 0;
}

static void teardown(void)
{
        g_clear_pointer(&cache, guest_cache_free);
        g_clear_pointer(&workers, workers_free);
        g_clear_pointer(&uri, g_free);
}

static void job_nop(gpointer p)
{
}

static void job_set_flag(gpointer p)
{
        *(bool *) p = true;
}

/* Returns once every job submitted before has come back to the main context. */
static void barrier(void)
{
        bool done = false;

        workers_submit(workers, &done, job_nop, job_set_flag, NULL);
        RUN_UNTIL(done);
}

static void gate_run(gpointer p)
{
        g_mutex_lock(&gate_lock);
        while (gate_closed)
                g_cond_wait(&gate_cond, &gate_lock);
        g_mutex_unlock(&gate_lock);
}

/* Closed: the worker is held, so no list submitted from now on comes back. */
static void gate(bool closed)
{
        g_mutex_lock(&gate_lock);
        gate_closed = closed;
        g_cond_broadcast(&gate_cond);
        g_mutex_unlock(&gate_lock);
        if (closed)
                workers_submit(workers, NULL, gate_run, job_nop, NULL);
}

typedef struct Find {
        const char *uri, *name;
        unsigned n;        /* guests of @uri */
        CachedGuest found; /* a shallow copy of @name's, valid until the next call into the cache */
        bool reachable;
} Find;

static void find_one(const char *u, bool reachable, const CachedGuest *g, void *userdata)
{
        Find *f = userdata;

        if (!streq_ptr(u, f->uri))
                return;
        f->n++;
        f->reachable = reachable;
        if (streq_ptr(g->name, f->name))
                f->found = *g;
}

static Find find(const char *u, const char *name)
{
        Find f = {.uri = u, .name = name, .found.state = _GUEST_STATE_INVALID};

        guest_cache_foreach(cache, find_one, &f);
        return f;
}

static unsigned n_guests(const char *u)
{
        return find(u, NULL).n;
}

static GuestState state_of(const char *name)
{
        return find(uri, name).found.state;
}

static void destroy(virConnectPtr conn, const char *name)
{
        virDomainPtr d = virDomainLookupByName(conn, name);

        ck_assert_ptr_nonnull(d);
        ck_assert_int_eq(virDomainDestroy(d), 0);
        virDomainFree(d);
}

START_TEST(test_initial_list)
{
        g_auto(GStrv) uris = NULL;
        g_autoptr(GPtrArray) hvs = NULL;
        unsigned guests, running;
        Find f;

        guest_cache_set_uris(cache, (char *[]){uri, NULL});
        ck_assert_uint_eq(changes, 0); /* no callback from within a call */
        RUN_UNTIL(n_guests(uri) == 5);
        ck_assert_uint_ge(changes, 1);

        f = find(uri, "web1");
        ck_assert(f.reachable);
        ck_assert_str_eq(f.found.uuid, "6695eb01-f6a4-8304-79aa-97f2502e0001");
        ck_assert(f.found.persistent);
        ck_assert_int_eq(f.found.state, GUEST_STATE_RUNNING);
        f = find(uri, "scratch");
        ck_assert(!f.found.persistent);
        ck_assert_int_eq(f.found.state, GUEST_STATE_RUNNING);
        ck_assert_int_eq(state_of("idle"), GUEST_STATE_SHUTOFF);

        guest_cache_count(cache, &guests, &running);
        ck_assert_uint_eq(guests, 5);
        ck_assert_uint_eq(running, 4);
        ck_assert_uint_eq(guest_cache_n_uris(cache), 1);
        uris = guest_cache_uris(cache);
        ck_assert_uint_eq(g_strv_length(uris), 1);
        ck_assert_str_eq(uris[0], uri);
        hvs = guest_cache_hypervisors(cache);
        ck_assert_uint_eq(hvs->len, 1);
}
END_TEST

/* Lifecycle events update the cache on their own: every list is held back meanwhile. */
START_TEST(test_event_updates_without_list)
{
        g_autoptr(GPtrArray) hvs = NULL;
        virConnectPtr conn;
        unsigned before;

        guest_cache_set_uris(cache, (char *[]){uri, NULL});
        barrier(); /* the first list: its connection's CONNECTED event asks for no other */
        barrier();
        ck_assert_uint_eq(lists, 1);
        ck_assert_uint_eq(n_guests(uri), 5);

        hvs = guest_cache_hypervisors(cache);
        conn = hypervisor_libvirt_dup_conn(hvs->pdata[0]); /* test:/// state is per connection */
        ck_assert_ptr_nonnull(conn);
        gate(true);
        before = changes;
        destroy(conn, "web1");
        RUN_UNTIL(state_of("web1") == GUEST_STATE_SHUTOFF);
        ck_assert_uint_eq(changes, before + 1);
        /* A transient guest that stops is gone. */
        destroy(conn, "scratch");
        RUN_UNTIL(n_guests(uri) == 4);
        ck_assert_int_eq(state_of("scratch"), _GUEST_STATE_INVALID);
        ck_assert_int_eq(state_of("web2"), GUEST_STATE_RUNNING);

        gate(false);
        barrier();
        ck_assert_uint_eq(changes, before + 2); /* no list was asked for */
        virConnectClose(conn);
}
END_TEST

START_TEST(test_set_uris_replaces)
{
        g_auto(GStrv) uris = NULL;

        guest_cache_set_uris(cache, (char *[]){uri, NULL});
        RUN_UNTIL(n_guests(uri) == 5);
        guest_cache_set_uris(cache, (char *[]){DEFAULT_URI, NULL});
        ck_assert_uint_eq(n_guests(uri), 0);
        uris = guest_cache_uris(cache);
        ck_assert_uint_eq(g_strv_length(uris), 1);
        ck_assert_str_eq(uris[0], DEFAULT_URI);
        RUN_UNTIL(n_guests(DEFAULT_URI) == 1);
        ck_assert_int_eq(find(DEFAULT_URI, "test").found.state, GUEST_STATE_RUNNING);
}
END_TEST

/* A list still out when its watch is dropped comes back to nothing: no callback, no guest. */
START_TEST(test_dropped_watch_ignores_its_list)
{
        guest_cache_set_uris(cache, (char *[]){uri, NULL});
        guest_cache_set_uris(cache, NULL);
        ck_assert_uint_eq(guest_cache_n_uris(cache), 0);
        barrier();
        ck_assert_uint_eq(changes, 0);
        ck_assert_uint_eq(n_guests(uri), 0);

        /* The same with a new watch in its place: only the new one reports. */
        guest_cache_set_uris(cache, (char *[]){uri, NULL});
        guest_cache_set_uris(cache, (char *[]){DEFAULT_URI, NULL});
        RUN_UNTIL(n_guests(DEFAULT_URI) == 1);
        barrier();
        ck_assert_uint_eq(n_guests(uri), 0);
}
END_TEST

/* Freed while a list is out: the job keeps what it needs and its result is dropped. */
START_TEST(test_free_with_list_in_flight)
{
        guest_cache_set_uris(cache, (char *[]){uri, NULL});
        g_clear_pointer(&cache, guest_cache_free);
        barrier();
        ck_assert_uint_eq(changes, 0);
}
END_TEST

START_TEST(test_unreachable_uri)
{
        const char *bad = "qemu+unix:///system?socket=/nonexistent/sock";
        unsigned guests, running;

        guest_cache_set_uris(cache, (char *[]){(char *) bad, NULL});
        RUN_UNTIL(changes == 1);
        guest_cache_count(cache, &guests, &running);
        ck_assert_uint_eq(guests, 0);
        ck_assert_uint_eq(guest_cache_n_uris(cache), 1);
        /* teardown frees the cache with a reconnect pending: the timer must go with it. */
}
END_TEST

int main(void)
{
        Suite *s = suite_create("guest-cache");
        TCase *tc = tcase_create("test-driver");

        /* The cache would wrap its hypervisors, and the tests need the libvirt one. */
        g_unsetenv("GUESTKEEPER_FAULTS");
        hypervisor_libvirt_global_init();
        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_initial_list);
        tcase_add_test(tc, test_event_updates_without_list);
        tcase_add_test(tc, test_set_uris_replaces);
        tcase_add_test(tc, test_dropped_watch_ignores_its_list);
        tcase_add_test(tc, test_free_with_list_in_flight);
        tcase_add_test(tc, test_unreachable_uri);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
