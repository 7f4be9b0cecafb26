/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine against the scripted fake backend: the escalation, caps, timeouts, deadline,
 * cancellation, unreachable URIs and the restore. Times are scaled down (ms instead of
 * minutes) but the code paths are the daemon's. */
#include "engine.h"
#include "hypervisor-fake.h"
#include "util.h"
#include "testlib.h"

static char *dir;
static Workers *workers;
static Config *config;
static Hypervisor *hv;
static Record *record;

typedef struct Run {
        Engine *e;
        bool finished;
        unsigned changes;
        GPtrArray *messages;
        GPtrArray *preflight; /* the messages about pre-flight (ENGINE_TOPIC_PREFLIGHT) */
        GPtrArray *events;    /* "name outcome" at each step start and outcome, in order */
        /* cancel when this guest starts its save, or its graceful shutdown */
        const char *cancel_on_saving;
        const char *cancel_on_shutting_down;
} Run;

static void setup(void)
{
        g_autofree char *p = NULL;

        dir = testlib_tmpdir();
        p = g_build_filename(dir, "record", NULL);
        workers = workers_new(NULL, 32);
        config = config_new_default();
        hv = hypervisor_fake_new("fake:///one", NULL);
        record = record_new(p);
}

static void teardown(void)
{
        g_clear_pointer(&workers, workers_free);
        g_clear_pointer(&hv, hypervisor_unref);
        g_clear_pointer(&config, config_free);
        g_clear_pointer(&record, record_free);
        testlib_rm_rf(dir);
        g_clear_pointer(&dir, g_free);
}

static void on_changed(Engine *e, const EngineGuest *g, void *ud)
{
        Run *run = ud;

        run->changes++;
        if (g->outcome != OUTCOME_NONE || g->finished)
                g_ptr_array_add(run->events,
                                g_strdup_printf("%s %s", g->name, outcome_to_string(g->outcome)));
        if (run->cancel_on_saving && g->outcome == OUTCOME_SAVING &&
            streq_ptr(g->name, run->cancel_on_saving))
                engine_cancel(e);
        if (run->cancel_on_shutting_down && g->outcome == OUTCOME_SHUTTING_DOWN &&
            streq_ptr(g->name, run->cancel_on_shutting_down))
                engine_cancel(e);
}

static void on_message(Engine *e, EngineLevel level, EngineTopic topic, const EngineGuest *g,
                       const char *uri, const char *text, void *ud)
{
        Run *run = ud;

        g_ptr_array_add(run->messages, g_strdup(text));
        if (topic == ENGINE_TOPIC_PREFLIGHT)
                g_ptr_array_add(run->preflight, g_strdup(text));
}

static void on_finished(Engine *e, void *ud)
{
        ((Run *) ud)->finished = true;
}

static const EngineCallbacks callbacks = {
        .guest_changed = on_changed,
        .message = on_message,
        .finished = on_finished,
};

static Run *run_new(RunKind kind, Hypervisor **hvs, guint n)
{
        Run *run = g_new0(Run, 1);
        g_autofree char *save_dir = g_build_filename(dir, "save", NULL);
        EngineOptions o = {
                .kind = kind,
                .config = config,
                .save_dir = save_dir,
                .connect_retry_usec = 100 * USEC_PER_MSEC,
                .progress_interval_usec = 20 * USEC_PER_MSEC,
        };

        run->messages = g_ptr_array_new_with_free_func(g_free);
        run->preflight = g_ptr_array_new_with_free_func(g_free);
        run->events = g_ptr_array_new_with_free_func(g_free);
        run->e = engine_new(&o, hvs, n, workers, record, &callbacks, run);
        return run;
}

static void run_free(Run *run)
{
        engine_unref(run->e);
        g_ptr_array_unref(run->messages);
        g_ptr_array_unref(run->preflight);
        g_ptr_array_unref(run->events);
        g_free(run);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Run, run_free);

static Run *run_to_end(RunKind kind)
{
        Run *run = run_new(kind, &hv, 1);

        engine_start(run->e);
        RUN_UNTIL(run->finished);
        return run;
}

static const EngineGuest *guest(Run *run, const char *name)
{
        g_autoptr(GPtrArray) gs = engine_guests(run->e);

        for (guint i = 0; i < gs->len; i++) {
                const EngineGuest *g = gs->pdata[i];
                if (streq_ptr(g->name, name))
                        return g;
        }
        ck_abort_msg("guest %s not in the run", name);
        return NULL;
}

static RecordGuest *recorded(const char *name)
{
        g_autoptr(Record) r = NULL;
        g_autofree char *err = NULL;
        static Record *keep;

        /* Read back from disk: the record on disk is what counts. */
        ck_assert_msg(record_load(record->path, &r, &err) == 0, "record: %s", err);
        g_clear_pointer(&keep, record_free);
        keep = g_steal_pointer(&r);
        for (guint i = 0; i < keep->guests->len; i++) {
                RecordGuest *g = keep->guests->pdata[i];
                if (streq_ptr(g->name, name))
                        return g;
        }
        return NULL;
}

static void add(const char *name, bool persistent)
{
        FakeGuestSpec s = {.name = name, .persistent = persistent, .memory_kib = 1024};
        fake_add_guest(hv, &s);
}

#define ADD(...) fake_add_guest(hv, &(FakeGuestSpec){__VA_ARGS__})

/* Position of the first event "name outcome" (outcome "" = any), -1 if none. */
static int event_at(Run *run, const char *name, const char *outcome)
{
        g_autofree char *prefix = g_strdup_printf("%s ", name);

        for (guint i = 0; i < run->events->len; i++) {
                const char *ev = run->events->pdata[i];
                if (g_str_has_prefix(ev, prefix) && (!*outcome || streq_ptr(ev + strlen(prefix), outcome)))
                        return (int) i;
        }
        return -1;
}

#define META(body) "<gk:guest xmlns:gk=\"https://guestkeeper.org/xmlns/guest/1\">" body "</gk:guest>"

/* ---- preserve ---- */

START_TEST(test_default_escalation)
{
        g_autoptr(Run) run = NULL;
        unsigned total, done, failed;

        add("web1", true);
        add("web2", true);
        ADD(.name = "tmp", .persistent = false, .shutdown_ms = 5);
        ADD(.name = "paused", .persistent = true, .paused = true);

        run = run_to_end(RUN_PRESERVE);
        /* Persistent guests: managed save. */
        ck_assert_int_eq(guest(run, "web1")->outcome, OUTCOME_SAVED);
        ck_assert(fake_has_managed_save(hv, "web1"));
        ck_assert_int_eq(fake_guest_state(hv, "web2"), GUEST_STATE_SAVED);
        ck_assert_int_eq(guest(run, "paused")->outcome, OUTCOME_SAVED);
        /* Transient, default Save=persistent: graceful shutdown. */
        ck_assert_int_eq(guest(run, "tmp")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_calls(hv, "tmp", FAKE_SAVE), 0);

        engine_counts(run->e, &total, &done, &failed);
        ck_assert_uint_eq(total, 4);
        ck_assert_uint_eq(done, 4);
        ck_assert_uint_eq(failed, 0);
        ck_assert(engine_progress(run->e) == 1.0);

        /* The record on disk lists every guest with its outcome. */
        ck_assert_int_eq(recorded("web1")->outcome, OUTCOME_SAVED);
        ck_assert_int_eq(recorded("tmp")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_ptr_nonnull(recorded("tmp")->xml);
        ck_assert_uint_eq(recorded("web1")->steps, STEPS_ALL);
}
END_TEST

START_TEST(test_save_failure_falls_to_shutdown)
{
        g_autoptr(Run) run = NULL;

        ADD(.name = "full", .persistent = true, .save_fails = true, .shutdown_ms = 5);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "full")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_calls(hv, "full", FAKE_SAVE), 1);
        ck_assert_uint_eq(fake_calls(hv, "full", FAKE_SHUTDOWN), 1);
        ck_assert_uint_eq(fake_calls(hv, "full", FAKE_DESTROY), 0);
        ck_assert_int_eq(fake_guest_state(hv, "full"), GUEST_STATE_SHUTOFF);
        ck_assert_int_eq(recorded("full")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_msg(strstr(recorded("full")->error, "save failed"), "%s", recorded("full")->error);
}
END_TEST

START_TEST(test_stuck_guest_powered_off_after_timeout)
{
        g_autoptr(Run) run = NULL;
        guint64 t0;

        config->save = SCOPE_NONE;
        config->shutdown_timeout_usec = 200 * USEC_PER_MSEC;
        ADD(.name = "stuck", .persistent = true, .ignore_shutdown = true);
        add("nice", true);

        t0 = now_usec();
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "stuck")->outcome, OUTCOME_POWEROFF);
        ck_assert_int_eq(guest(run, "nice")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_calls(hv, "nice", FAKE_DESTROY), 0);
        /* Not before the timeout. */
        ck_assert_uint_ge(now_usec() - t0, 200 * USEC_PER_MSEC);
        ck_assert_int_eq(fake_guest_state(hv, "stuck"), GUEST_STATE_SHUTOFF);
        ck_assert_msg(strstr(recorded("stuck")->error, "did not shut down within"), "%s",
                      recorded("stuck")->error);
}
END_TEST

START_TEST(test_deadline_powers_off)
{
        g_autoptr(Run) run = NULL;
        guint64 t0, took;

        config->deadline_usec = 300 * USEC_PER_MSEC;
        config->parallel_saves = 1;
        ADD(.name = "slow1", .persistent = true, .save_ms = 1500);
        ADD(.name = "slow2", .persistent = true, .save_ms = 1500);

        t0 = now_usec();
        run = run_to_end(RUN_PRESERVE);
        took = now_usec() - t0;
        /* slow1 was saving, slow2 waiting for the slot: both forced off at the deadline, and
         * the run ends then, not when the save would have ended. */
        ck_assert_int_eq(guest(run, "slow1")->outcome, OUTCOME_POWEROFF);
        ck_assert_int_eq(guest(run, "slow2")->outcome, OUTCOME_POWEROFF);
        ck_assert_uint_eq(fake_calls(hv, "slow2", FAKE_SAVE), 0);
        ck_assert_msg(took < 1200 * USEC_PER_MSEC, "run took %" G_GUINT64_FORMAT " ms", took / 1000);
        ck_assert_uint_ge(took, 300 * USEC_PER_MSEC);
}
END_TEST

START_TEST(test_deadline_without_poweroff_scope_fails_loudly)
{
        g_autoptr(Run) run = NULL;

        config->save = SCOPE_NONE;
        config->poweroff = SCOPE_NONE;
        config->deadline_usec = 100 * USEC_PER_MSEC;
        config->parallel_shutdowns = 1;
        ADD(.name = "stuck1", .persistent = true, .ignore_shutdown = true);
        ADD(.name = "stuck2", .persistent = true, .ignore_shutdown = true);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "stuck1")->outcome, OUTCOME_FAILED);
        ck_assert_int_eq(guest(run, "stuck2")->outcome, OUTCOME_FAILED);
        ck_assert_int_eq(fake_guest_state(hv, "stuck1"), GUEST_STATE_RUNNING);
        ck_assert_uint_eq(fake_calls(hv, "stuck1", FAKE_DESTROY), 0);
}
END_TEST

START_TEST(test_save_cap_never_exceeded)
{
        g_autoptr(Run) run = NULL;
        unsigned peak_saves;

        config->parallel_saves = 3;
        for (int i = 0; i < 10; i++) {
                g_autofree char *n = g_strdup_printf("g%d", i);
                ADD(.name = n, .persistent = true, .save_ms = 30);
        }
        run = run_to_end(RUN_PRESERVE);
        engine_peaks(run->e, &peak_saves, NULL, NULL);
        ck_assert_uint_eq(fake_peak(hv, FAKE_SAVE), 3); /* counted inside the backend */
        ck_assert_uint_eq(peak_saves, 3);
        for (int i = 0; i < 10; i++) {
                g_autofree char *n = g_strdup_printf("g%d", i);
                ck_assert_int_eq(guest(run, n)->outcome, OUTCOME_SAVED);
        }
}
END_TEST

START_TEST(test_unlimited_saves_run_together)
{
        g_autoptr(Run) run = NULL;

        config->parallel_saves = 0;
        for (int i = 0; i < 8; i++) {
                g_autofree char *n = g_strdup_printf("g%d", i);
                ADD(.name = n, .persistent = true);
        }
        /* Hold every save inside the backend: all 8 must be in at once. */
        fake_gate_saves(hv, true);
        run = run_new(RUN_PRESERVE, &hv, 1);
        engine_start(run->e);
        RUN_UNTIL(fake_active(hv, FAKE_SAVE) == 8);
        fake_gate_saves(hv, false);
        RUN_UNTIL(run->finished);
        ck_assert_uint_eq(fake_peak(hv, FAKE_SAVE), 8);
}
END_TEST

START_TEST(test_shutdown_cap_never_exceeded)
{
        g_autoptr(Run) run = NULL;

        config->save = SCOPE_NONE;
        config->parallel_shutdowns = 2;
        for (int i = 0; i < 7; i++) {
                g_autofree char *n = g_strdup_printf("s%d", i);
                ADD(.name = n, .persistent = i % 2, .shutdown_ms = 30);
        }
        run = run_to_end(RUN_PRESERVE);
        /* The fake counts a shutdown from the request until the guest is off. */
        ck_assert_uint_eq(fake_peak(hv, FAKE_SHUTDOWN), 2);
        for (int i = 0; i < 7; i++) {
                g_autofree char *n = g_strdup_printf("s%d", i);
                ck_assert_int_eq(guest(run, n)->outcome, OUTCOME_SHUTDOWN);
        }
}
END_TEST

START_TEST(test_cancel_starts_no_new_step)
{
        g_autoptr(Run) run = NULL;
        unsigned total, done, failed;

        config->parallel_saves = 1;
        ADD(.name = "a", .persistent = true, .save_ms = 100);
        ADD(.name = "b", .persistent = true, .save_ms = 100);
        ADD(.name = "c", .persistent = true, .save_ms = 100);

        run = run_new(RUN_PRESERVE, &hv, 1);
        run->cancel_on_saving = "a";
        engine_start(run->e);
        RUN_UNTIL(run->finished);

        ck_assert(engine_is_cancelled(run->e));
        /* The save under way completes; nothing else is touched. */
        ck_assert_int_eq(guest(run, "a")->outcome, OUTCOME_SAVED);
        ck_assert_int_eq(guest(run, "b")->outcome, OUTCOME_NONE);
        ck_assert_int_eq(guest(run, "c")->outcome, OUTCOME_NONE);
        ck_assert_int_eq(fake_guest_state(hv, "b"), GUEST_STATE_RUNNING);
        ck_assert_uint_eq(fake_calls(hv, "b", FAKE_SAVE) + fake_calls(hv, "c", FAKE_SAVE), 0);
        engine_counts(run->e, &total, &done, &failed);
        ck_assert_uint_eq(done, 1);
        ck_assert_uint_eq(failed, 0);
        ck_assert_int_eq(recorded("b")->outcome, OUTCOME_NONE);
}
END_TEST

START_TEST(test_nothing_in_scope_is_failed)
{
        g_autoptr(Run) run = NULL;
        unsigned failed;

        config->save = SCOPE_NONE;
        config->shutdown = SCOPE_PERSISTENT;
        config->poweroff = SCOPE_PERSISTENT;
        add("tmp", false);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "tmp")->outcome, OUTCOME_FAILED);
        ck_assert_int_eq(fake_guest_state(hv, "tmp"), GUEST_STATE_RUNNING);
        engine_counts(run->e, NULL, NULL, &failed);
        ck_assert_uint_eq(failed, 1);
}
END_TEST

START_TEST(test_poweroff_failure_is_failed)
{
        g_autoptr(Run) run = NULL;

        config->save = SCOPE_NONE;
        config->shutdown_timeout_usec = 50 * USEC_PER_MSEC;
        ADD(.name = "wedged", .persistent = true, .ignore_shutdown = true, .destroy_fails = true);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "wedged")->outcome, OUTCOME_FAILED);
        ck_assert_int_eq(fake_guest_state(hv, "wedged"), GUEST_STATE_RUNNING);
        ck_assert_int_eq(recorded("wedged")->outcome, OUTCOME_FAILED);
        ck_assert_msg(strstr(recorded("wedged")->error, "poweroff failed"), "%s", recorded("wedged")->error);
}
END_TEST

START_TEST(test_guest_stopping_by_itself_counts_as_shutdown)
{
        g_autoptr(Run) run = NULL;

        config->parallel_saves = 1;
        ADD(.name = "busy", .persistent = true, .save_ms = 300);
        ADD(.name = "leaver", .persistent = true, .save_ms = 300);
        run = run_new(RUN_PRESERVE, &hv, 1);
        engine_start(run->e);
        /* Wait until "busy" holds the only save slot, then "leaver" stops on its own. */
        RUN_UNTIL(fake_peak(hv, FAKE_SAVE) == 1);
        fake_guest_stop(hv, "leaver");
        RUN_UNTIL(run->finished);
        ck_assert_int_eq(guest(run, "leaver")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_calls(hv, "leaver", FAKE_SAVE), 0);
        ck_assert_int_eq(guest(run, "busy")->outcome, OUTCOME_SAVED);
}
END_TEST

START_TEST(test_progress_counts_bytes)
{
        g_autoptr(Run) run = NULL;

        ADD(.name = "big", .persistent = true, .save_ms = 400, .memory_kib = 512 * 1024);
        run = run_new(RUN_PRESERVE, &hv, 1);
        engine_start(run->e);
        /* Before the save ends, the progress reflects the bytes of the save in flight. */
        RUN_UNTIL(engine_progress(run->e) > 0.2 || run->finished);
        ck_assert(!run->finished);
        ck_assert(engine_progress(run->e) < 1.0);
        RUN_UNTIL(run->finished);
        ck_assert(engine_progress(run->e) == 1.0);
}
END_TEST

/* What the run's history needs: each guest's steps in order, with their times and errors, and
 * the bytes its save wrote when the backend reports them. */
START_TEST(test_history_steps_times_errors_bytes)
{
        g_autoptr(Run) run = NULL;
        const EngineGuest *stuck, *big, *nice;
        guint64 t0, t1;

        config->shutdown_timeout_usec = 200 * USEC_PER_MSEC;
        ADD(.name = "stuck", .persistent = true, .save_fails = true, .ignore_shutdown = true);
        ADD(.name = "big", .persistent = true, .save_ms = 300, .memory_kib = 512 * 1024);
        ADD(.name = "nice", .persistent = false);
        run = run_to_end(RUN_PRESERVE);
        engine_times(run->e, &t0, &t1);
        ck_assert_uint_gt(t1, t0);

        stuck = guest(run, "stuck");
        ck_assert_uint_eq(stuck->n_history, 3);
        ck_assert_int_eq(stuck->history[0].kind, ENGINE_STEP_SAVE);
        ck_assert_int_eq(stuck->history[1].kind, ENGINE_STEP_SHUTDOWN);
        ck_assert_int_eq(stuck->history[2].kind, ENGINE_STEP_POWEROFF);
        ck_assert_msg(strstr(stuck->history[0].error, "save failed"), "%s", stuck->history[0].error);
        ck_assert_msg(strstr(stuck->history[1].error, "did not shut down within"), "%s",
                      stuck->history[1].error);
        ck_assert_ptr_null(stuck->history[2].error);
        for (unsigned i = 0; i < 3; i++) {
                ck_assert_uint_ge(stuck->history[i].start_usec, t0);
                ck_assert_uint_ge(stuck->history[i].end_usec, stuck->history[i].start_usec);
                ck_assert_uint_le(stuck->history[i].end_usec, stuck->end_usec);
                if (i > 0)
                        ck_assert_uint_ge(stuck->history[i].start_usec, stuck->history[i - 1].end_usec);
        }
        /* The shutdown step lasted its timeout. */
        ck_assert_uint_ge(stuck->history[1].end_usec - stuck->history[1].start_usec, 200 * USEC_PER_MSEC);
        ck_assert(!stuck->bytes_known);

        big = guest(run, "big");
        ck_assert_uint_eq(big->n_history, 1);
        ck_assert_ptr_null(big->history[0].error);
        ck_assert_uint_ge(big->history[0].end_usec - big->history[0].start_usec, 300 * USEC_PER_MSEC);
        ck_assert(big->bytes_known);
        ck_assert_uint_eq(big->bytes_written, 512ull * 1024 * 1024);

        nice = guest(run, "nice"); /* transient: Save=persistent, so straight to shutdown */
        ck_assert_uint_eq(nice->n_history, 1);
        ck_assert_int_eq(nice->history[0].kind, ENGINE_STEP_SHUTDOWN);
}
END_TEST

START_TEST(test_history_restore_and_deadline)
{
        g_autoptr(Run) pre = NULL, post = NULL;
        const EngineGuest *g;

        config->deadline_usec = 200 * USEC_PER_MSEC;
        ADD(.name = "slow", .persistent = true, .save_ms = 1500);
        pre = run_to_end(RUN_PRESERVE);
        g = guest(pre, "slow");
        ck_assert_int_eq(g->outcome, OUTCOME_POWEROFF);
        ck_assert_uint_eq(g->n_history, 2);
        ck_assert_str_eq(g->history[0].error, "cut short: the deadline was spent");
        ck_assert_int_eq(g->history[1].kind, ENGINE_STEP_POWEROFF);

        post = run_to_end(RUN_RESTORE);
        g = guest(post, "slow");
        ck_assert_int_eq(g->outcome, OUTCOME_RESTORED);
        ck_assert_uint_eq(g->n_history, 1);
        ck_assert_int_eq(g->history[0].kind, ENGINE_STEP_START);
        ck_assert_ptr_null(g->history[0].error);
        ck_assert_str_eq(engine_step_kind_to_string(g->history[0].kind), "start");
}
END_TEST

START_TEST(test_unreachable_uri_reported_others_preserved)
{
        g_autoptr(Hypervisor) down = hypervisor_fake_new("fake:///down", NULL);
        Hypervisor *both[] = {hv, down};
        g_autoptr(Run) run = NULL;
        FakeGuestSpec s = {.name = "lost", .persistent = true};
        unsigned total, done, failed;
        GPtrArray *un;

        add("ok", true);
        fake_add_guest(down, &s);
        fake_set_unreachable(down, true);

        run = run_new(RUN_PRESERVE, both, 2);
        engine_start(run->e);
        RUN_UNTIL(run->finished);
        ck_assert_int_eq(guest(run, "ok")->outcome, OUTCOME_SAVED);
        un = engine_unreachable(run->e);
        ck_assert_uint_eq(un->len, 1);
        ck_assert_msg(g_str_has_prefix(un->pdata[0], "fake:///down: "), "%s", (char *) un->pdata[0]);
        engine_counts(run->e, &total, &done, &failed);
        ck_assert_uint_eq(done, 1);
        ck_assert_uint_eq(failed, 1); /* the URI, counted once */
        ck_assert_uint_eq(total, 2);
}
END_TEST

static gboolean reconnect_cb(gpointer p)
{
        fake_set_unreachable(p, false);
        return G_SOURCE_REMOVE;
}

START_TEST(test_connection_lost_mid_save_is_retried)
{
        g_autoptr(Run) run = NULL;

        add("vm", true);
        fake_gate_saves(hv, true);
        run = run_new(RUN_PRESERVE, &hv, 1);
        engine_start(run->e);
        RUN_UNTIL(fake_active(hv, FAKE_SAVE) == 1);
        /* libvirtd goes away while the save runs, and is back 1.2 s later. */
        fake_set_unreachable(hv, true);
        fake_gate_saves(hv, false);
        g_timeout_add(1200, reconnect_cb, hv);
        RUN_UNTIL(run->finished);
        ck_assert_int_eq(guest(run, "vm")->outcome, OUTCOME_SAVED);
        ck_assert_uint_ge(fake_calls(hv, "vm", FAKE_SAVE), 2);
        ck_assert_uint_eq(fake_calls(hv, "vm", FAKE_DESTROY), 0);
        ck_assert_int_eq(recorded("vm")->outcome, OUTCOME_SAVED);
}
END_TEST

START_TEST(test_transient_save_to_file)
{
        g_autoptr(Run) run = NULL;
        RecordGuest *rg;

        config->save = SCOPE_ALL;
        add("tmp", false);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "tmp")->outcome, OUTCOME_SAVED);
        rg = recorded("tmp");
        ck_assert_ptr_nonnull(rg->save_file);
        ck_assert(g_str_has_prefix(rg->save_file, dir));
        ck_assert(g_file_test(rg->save_file, G_FILE_TEST_IS_REGULAR));
        /* A transient guest that is saved no longer exists in libvirt. */
        ck_assert_int_eq(fake_guest_state(hv, "tmp"), _GUEST_STATE_INVALID);
}
END_TEST

/* ---- restore ---- */

/* Three groups: no order first, then 20, then 10; a group begins only when every guest of the
 * group before has its outcome, whatever the caps. */
START_TEST(test_order_groups_at_shutdown)
{
        g_autoptr(Run) run = NULL;

        config->parallel_saves = 0;
        ADD(.name = "storage", .persistent = true, .save_ms = 50,
            .metadata = META("<gk:order>10</gk:order>"));
        ADD(.name = "app1", .persistent = true, .save_ms = 100, .metadata = META("<gk:order>20</gk:order>"));
        ADD(.name = "app2", .persistent = true, .save_ms = 30, .metadata = META("<gk:order>20</gk:order>"));
        ADD(.name = "loose", .persistent = true, .save_ms = 80);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_lt(event_at(run, "loose", "saved"), event_at(run, "app1", "saving"));
        ck_assert_int_lt(event_at(run, "loose", "saved"), event_at(run, "app2", "saving"));
        ck_assert_int_lt(event_at(run, "app1", "saved"), event_at(run, "storage", "saving"));
        ck_assert_int_lt(event_at(run, "app2", "saved"), event_at(run, "storage", "saving"));
        /* Within a group the caps apply: both of 20 saved side by side. */
        ck_assert_int_lt(event_at(run, "app2", "saving"), event_at(run, "app1", "saved"));
        ck_assert_int_eq(guest(run, "storage")->outcome, OUTCOME_SAVED);
}
END_TEST

/* The deadline powers off every remaining guest of every group at once. */
START_TEST(test_deadline_reaches_every_group)
{
        g_autoptr(Run) run = NULL;

        config->save = SCOPE_NONE;
        config->deadline_usec = 200 * USEC_PER_MSEC;
        ADD(.name = "first", .persistent = true, .ignore_shutdown = true);
        ADD(.name = "last", .persistent = true, .metadata = META("<gk:order>1</gk:order>"));
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "first")->outcome, OUTCOME_POWEROFF);
        ck_assert_int_eq(guest(run, "last")->outcome, OUTCOME_POWEROFF);
        ck_assert_uint_eq(fake_calls(hv, "last", FAKE_SHUTDOWN), 0);
}
END_TEST

/* skip: untouched, not in the record; metadata beats a config section; bad metadata falls back. */
START_TEST(test_skip_and_precedence)
{
        g_autoptr(Run) run = NULL;
        g_autofree char *error = NULL;
        const char *conf = "[Guest keep-*]\nAction=skip\n[Guest web-*]\nAction=poweroff\n";

        ck_assert_int_ge(config_apply_data(config, "t.conf", conf, strlen(conf), NULL, &error), 0);
        add("keep-me", true);
        ADD(.name = "keep-but", .persistent = true, .metadata = META("<gk:action>save</gk:action>"));
        add("web-1", true);
        ADD(.name = "web-2", .persistent = true, .metadata = META("<gk:action>sav</gk:action>"));
        run = run_to_end(RUN_PRESERVE);
        {
                g_autoptr(GPtrArray) gs = engine_guests(run->e);
                ck_assert_uint_eq(gs->len, 3);
        }
        ck_assert_int_eq(fake_guest_state(hv, "keep-me"), GUEST_STATE_RUNNING);
        ck_assert_uint_eq(fake_calls(hv, "keep-me", FAKE_SAVE) + fake_calls(hv, "keep-me", FAKE_SHUTDOWN) +
                                  fake_calls(hv, "keep-me", FAKE_DESTROY),
                          0);
        ck_assert_ptr_null(recorded("keep-me"));
        ck_assert_int_eq(guest(run, "keep-but")->outcome, OUTCOME_SAVED);
        ck_assert_int_eq(guest(run, "web-1")->outcome, OUTCOME_POWEROFF);
        ck_assert_uint_eq(recorded("web-1")->steps, STEP_MASK(STEP_POWEROFF));
        /* Malformed metadata: reported, and the section applies. */
        ck_assert_int_eq(guest(run, "web-2")->outcome, OUTCOME_POWEROFF);
        ck_assert(testlib_has_message(run->messages, "web-2: malformed guestkeeper metadata"));
}
END_TEST

/* ShutdownMode reaches the backend; agent alone without an agent fails over to poweroff, and
 * agent,acpi falls back to the button. */
START_TEST(test_shutdown_modes)
{
        g_autoptr(Run) run = NULL;

        config->save = SCOPE_NONE;
        config->shutdown_timeout_usec = 2 * USEC_PER_SEC;
        ADD(.name = "agent", .persistent = true, .agent = true, .shutdown_ms = 5,
            .metadata = META("<gk:shutdown-mode>agent</gk:shutdown-mode>"));
        ADD(.name = "noagent", .persistent = true, .shutdown_ms = 5,
            .metadata = META("<gk:shutdown-mode>agent</gk:shutdown-mode>"));
        ADD(.name = "both", .persistent = true, .shutdown_ms = 5,
            .metadata = META("<gk:shutdown-mode>agent,acpi</gk:shutdown-mode>"));
        add("plain", true);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "agent")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_last_shutdown_mode(hv, "agent"), SHUTDOWN_MODE_AGENT);
        ck_assert_int_eq(guest(run, "noagent")->outcome, OUTCOME_POWEROFF);
        ck_assert_int_eq(guest(run, "both")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_last_shutdown_mode(hv, "both"), SHUTDOWN_MODE_AGENT | SHUTDOWN_MODE_ACPI);
        ck_assert_uint_eq(fake_last_shutdown_mode(hv, "plain"), SHUTDOWN_MODE_ACPI);
}
END_TEST

/* A guest that misses the first press hears the repeated one: shut down, not powered off. */
START_TEST(test_repeated_requests)
{
        g_autoptr(Run) run = NULL;

        config->save = SCOPE_NONE;
        config->shutdown_timeout_usec = 3 * USEC_PER_SEC;
        config->shutdown_repeat_usec = 100 * USEC_PER_MSEC;
        ADD(.name = "deaf-once", .persistent = true, .ignore_presses = 1, .shutdown_ms = 5);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "deaf-once")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_calls(hv, "deaf-once", FAKE_SHUTDOWN), 2);
        ck_assert_uint_eq(fake_calls(hv, "deaf-once", FAKE_DESTROY), 0);
}
END_TEST

/* A cancelled shutdown awaits the request already sent, and sends no more. */
START_TEST(test_cancel_stops_repeats)
{
        g_autoptr(Run) run = NULL;

        config->save = SCOPE_NONE;
        config->shutdown_timeout_usec = 500 * USEC_PER_MSEC;
        config->shutdown_repeat_usec = 50 * USEC_PER_MSEC;
        ADD(.name = "deaf-once", .persistent = true, .ignore_presses = 1, .shutdown_ms = 5);
        run = run_new(RUN_PRESERVE, &hv, 1);
        run->cancel_on_shutting_down = "deaf-once";
        engine_start(run->e);
        RUN_UNTIL(run->finished);
        ck_assert_uint_eq(fake_calls(hv, "deaf-once", FAKE_SHUTDOWN), 1);
        ck_assert_int_eq(guest(run, "deaf-once")->outcome, OUTCOME_NONE);
        ck_assert_int_eq(fake_guest_state(hv, "deaf-once"), GUEST_STATE_RUNNING);
}
END_TEST

START_TEST(test_no_repeat_powers_off)
{
        g_autoptr(Run) run = NULL;

        config->save = SCOPE_NONE;
        config->shutdown_timeout_usec = 300 * USEC_PER_MSEC;
        config->shutdown_repeat_usec = 0;
        ADD(.name = "deaf-once", .persistent = true, .ignore_presses = 1, .shutdown_ms = 5);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "deaf-once")->outcome, OUTCOME_POWEROFF);
        ck_assert_uint_eq(fake_calls(hv, "deaf-once", FAKE_SHUTDOWN), 1);
}
END_TEST

/* A preserve of some guests (PreserveGuestsNamed()): the others are left alone and stay out of
 * the record. */
START_TEST(test_preserve_only_named_guests)
{
        g_autoptr(GHashTable) only = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_autofree char *uri = hypervisor_get_uri(hv);
        g_autofree char *save_dir = g_build_filename(dir, "save", NULL);
        g_autoptr(Run) run = g_new0(Run, 1);
        const char *uuid;
        unsigned total, done, failed;

        add("left", true);
        uuid = fake_add_guest(hv, &(FakeGuestSpec){.name = "named", .persistent = true, .memory_kib = 1024});
        g_hash_table_add(only, g_strconcat(uri, "\n", uuid, NULL));
        run->messages = g_ptr_array_new_with_free_func(g_free);
        run->preflight = g_ptr_array_new_with_free_func(g_free);
        run->events = g_ptr_array_new_with_free_func(g_free);
        run->e = engine_new(&(EngineOptions){.kind = RUN_PRESERVE,
                                             .config = config,
                                             .save_dir = save_dir,
                                             .connect_retry_usec = 100 * USEC_PER_MSEC,
                                             .progress_interval_usec = 20 * USEC_PER_MSEC,
                                             .only = only},
                            &hv, 1, workers, record, &callbacks, run);
        engine_start(run->e);
        RUN_UNTIL(run->finished);
        engine_counts(run->e, &total, &done, &failed);
        ck_assert_uint_eq(total, 1);
        ck_assert_int_eq(guest(run, "named")->outcome, OUTCOME_SAVED);
        ck_assert_int_eq(fake_guest_state(hv, "left"), GUEST_STATE_RUNNING);
        ck_assert_uint_eq(fake_calls(hv, "left", FAKE_SAVE), 0);
        ck_assert_ptr_nonnull(recorded("named"));
        ck_assert_ptr_null(recorded("left"));
}
END_TEST

START_TEST(test_restore_only_recorded_guests)
{
        g_autoptr(Run) pre = NULL, post = NULL;
        unsigned total, done, failed;
        g_autofree char *save_file = NULL;

        config->save = SCOPE_ALL;
        add("saved", true);
        ADD(.name = "downed", .persistent = true, .save_fails = true, .shutdown_ms = 5);
        add("tmp", false);
        add("never", true);

        /* "never" was not running at shutdown: not ours to start. */
        fake_guest_stop(hv, "never");
        RUN_UNTIL(fake_guest_state(hv, "never") == GUEST_STATE_SHUTOFF);

        pre = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(pre, "downed")->outcome, OUTCOME_SHUTDOWN);
        save_file = g_strdup(recorded("tmp")->save_file);

        post = run_to_end(RUN_RESTORE);
        ck_assert_int_eq(guest(post, "saved")->outcome, OUTCOME_RESTORED);
        ck_assert_int_eq(guest(post, "downed")->outcome, OUTCOME_RESTORED);
        ck_assert_int_eq(guest(post, "tmp")->outcome, OUTCOME_RESTORED);
        ck_assert_int_eq(fake_guest_state(hv, "saved"), GUEST_STATE_RUNNING);
        ck_assert_int_eq(fake_guest_state(hv, "downed"), GUEST_STATE_RUNNING);
        ck_assert_int_eq(fake_guest_state(hv, "tmp"), GUEST_STATE_RUNNING);
        ck_assert_int_eq(fake_guest_state(hv, "never"), GUEST_STATE_SHUTOFF);
        ck_assert_uint_eq(fake_calls(hv, "never", FAKE_START), 0);
        /* The transient one came back from its file, which is then gone. */
        ck_assert(!g_file_test(save_file, G_FILE_TEST_EXISTS));
        engine_counts(post->e, &total, &done, &failed);
        ck_assert_uint_eq(total, 3);
        ck_assert_uint_eq(done, 3);
        ck_assert_uint_eq(failed, 0);
        /* Cleared guest by guest: nothing left. */
        ck_assert_ptr_null(recorded("saved"));
        ck_assert_ptr_null(recorded("tmp"));
}
END_TEST

START_TEST(test_restore_already_running_not_started_twice)
{
        g_autoptr(Run) pre = NULL, post = NULL;
        unsigned done;

        add("vm", true);
        pre = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(pre, "vm")->outcome, OUTCOME_SAVED);
        fake_set_running(hv, "vm"); /* somebody started it before us */

        post = run_to_end(RUN_RESTORE);
        ck_assert_int_eq(guest(post, "vm")->outcome, OUTCOME_RESTORED);
        ck_assert_uint_eq(fake_calls(hv, "vm", FAKE_START), 0);
        engine_counts(post->e, NULL, &done, NULL);
        ck_assert_uint_eq(done, 1);
        ck_assert_ptr_null(recorded("vm"));
}
END_TEST

START_TEST(test_restore_failure_kept_for_next_time)
{
        g_autoptr(Run) pre = NULL, post = NULL, again = NULL;
        FakeGuestSpec fixed = {.name = "flaky", .persistent = true, .memory_kib = 1024};
        RecordGuest *rg;
        unsigned failed;

        ADD(.name = "flaky", .persistent = true, .start_fails = true);
        add("fine", true);
        pre = run_to_end(RUN_PRESERVE);

        post = run_to_end(RUN_RESTORE);
        ck_assert_int_eq(guest(post, "flaky")->outcome, OUTCOME_FAILED);
        ck_assert_int_eq(guest(post, "fine")->outcome, OUTCOME_RESTORED);
        engine_counts(post->e, NULL, NULL, &failed);
        ck_assert_uint_eq(failed, 1);
        rg = recorded("flaky");
        ck_assert_ptr_nonnull(rg);
        ck_assert_int_eq(rg->outcome, OUTCOME_SAVED); /* still what it was */
        ck_assert_msg(rg->error && strstr(rg->error, "start failed"), "%s", rg->error);
        ck_assert_ptr_null(recorded("fine"));

        /* Next start-up: retried, and this time it works. */
        fake_update_guest(hv, &fixed);
        again = run_to_end(RUN_RESTORE);
        ck_assert_int_eq(guest(again, "flaky")->outcome, OUTCOME_RESTORED);
        ck_assert_int_eq(fake_guest_state(hv, "flaky"), GUEST_STATE_RUNNING);
        ck_assert_ptr_null(recorded("flaky"));
}
END_TEST

START_TEST(test_restore_parallel_starts_cap)
{
        g_autoptr(Run) pre = NULL, post = NULL;
        unsigned peak;

        config->parallel_starts = 2;
        for (int i = 0; i < 7; i++) {
                g_autofree char *n = g_strdup_printf("r%d", i);
                ADD(.name = n, .persistent = true, .start_ms = 30);
        }
        pre = run_to_end(RUN_PRESERVE);
        post = run_to_end(RUN_RESTORE);
        engine_peaks(post->e, NULL, NULL, &peak);
        ck_assert_uint_eq(fake_peak(hv, FAKE_START), 2);
        ck_assert_uint_eq(peak, 2);
}
END_TEST

START_TEST(test_restore_start_delay_serialises)
{
        g_autoptr(Run) pre = NULL, post = NULL;
        guint64 t0;

        config->start_delay_usec = 1 * USEC_PER_SEC;
        config->parallel_starts = 4;
        add("d1", true);
        add("d2", true);
        pre = run_to_end(RUN_PRESERVE);
        t0 = now_usec();
        post = run_to_end(RUN_RESTORE);
        ck_assert_uint_eq(fake_peak(hv, FAKE_START), 1);
        ck_assert_uint_ge(now_usec() - t0, 1 * USEC_PER_SEC);
        ck_assert_int_eq(fake_guest_state(hv, "d2"), GUEST_STATE_RUNNING);
}
END_TEST

/* At boot: ascending order, no order last; a group waits for the agents of the one before
 * (agent mode), and a guest that never answers holds it back only AgentTimeoutSec. */
START_TEST(test_restore_order_and_agent_readiness)
{
        g_autoptr(Run) pre = NULL, post = NULL;

        config->parallel_starts = 0;
        config->agent_timeout_usec = 400 * USEC_PER_MSEC;
        ADD(.name = "dns", .persistent = true, .agent = true, .agent_ready_ms = 300,
            .metadata = META("<gk:order>1</gk:order><gk:shutdown-mode>agent,acpi</gk:shutdown-mode>"));
        ADD(.name = "db", .persistent = true,
            .metadata = META("<gk:order>2</gk:order><gk:shutdown-mode>agent,acpi</gk:shutdown-mode>"));
        ADD(.name = "app", .persistent = true, .metadata = META("<gk:order>3</gk:order>"));
        add("loose", true);
        pre = run_to_end(RUN_PRESERVE);
        /* Shutdown went the other way round. */
        ck_assert_int_lt(event_at(pre, "app", "saved"), event_at(pre, "db", "saving"));
        ck_assert_int_lt(event_at(pre, "db", "saved"), event_at(pre, "dns", "saving"));

        post = run_to_end(RUN_RESTORE);
        ck_assert_int_lt(event_at(post, "dns", "restored"), event_at(post, "db", "restoring"));
        ck_assert_int_lt(event_at(post, "db", "restored"), event_at(post, "app", "restoring"));
        ck_assert_int_lt(event_at(post, "app", "restored"), event_at(post, "loose", "restoring"));
        /* dns answered after some pings; db has no agent: waited for, then reported. */
        ck_assert_uint_ge(fake_calls(hv, "dns", FAKE_PING), 2);
        ck_assert(testlib_has_message(post->messages, "dns: its guest agent answers"));
        ck_assert(testlib_has_message(post->messages, "db: its guest agent did not answer within"));
        ck_assert_uint_eq(fake_calls(hv, "app", FAKE_PING), 0);
        ck_assert_int_eq(fake_guest_state(hv, "loose"), GUEST_STATE_RUNNING);
}
END_TEST

/* A guest marked skip after it was saved is not started at boot. */
START_TEST(test_restore_skips_skip)
{
        g_autoptr(Run) pre = NULL, post = NULL;

        add("later-skipped", true);
        pre = run_to_end(RUN_PRESERVE);
        fake_set_metadata(hv, "later-skipped", META("<gk:action>skip</gk:action>"));
        post = run_to_end(RUN_RESTORE);
        ck_assert_uint_eq(fake_calls(hv, "later-skipped", FAKE_START), 0);
        ck_assert_int_eq(fake_guest_state(hv, "later-skipped"), GUEST_STATE_SAVED);
        ck_assert_ptr_null(recorded("later-skipped"));
}
END_TEST

START_TEST(test_restore_transient_shutdown_recreated_from_xml)
{
        g_autoptr(Run) pre = NULL, post = NULL;

        ADD(.name = "tmp", .persistent = false, .shutdown_ms = 5);
        pre = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(pre, "tmp")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_int_eq(fake_guest_state(hv, "tmp"), _GUEST_STATE_INVALID);
        post = run_to_end(RUN_RESTORE);
        ck_assert_int_eq(guest(post, "tmp")->outcome, OUTCOME_RESTORED);
        ck_assert_int_eq(fake_guest_state(hv, "tmp"), GUEST_STATE_RUNNING);
}
END_TEST

START_TEST(test_bypass_cache_reaches_save_and_start)
{
        g_autoptr(Run) pre = NULL, post = NULL;

        add("plain", true);
        pre = run_to_end(RUN_PRESERVE);
        ck_assert(!fake_last_bypass(hv, "plain", FAKE_SAVE));
        post = run_to_end(RUN_RESTORE);
        ck_assert(!fake_last_bypass(hv, "plain", FAKE_START));

        config->bypass_cache = true;
        g_clear_pointer(&pre, run_free);
        g_clear_pointer(&post, run_free);
        pre = run_to_end(RUN_PRESERVE);
        ck_assert(fake_last_bypass(hv, "plain", FAKE_SAVE));
        post = run_to_end(RUN_RESTORE);
        ck_assert(fake_last_bypass(hv, "plain", FAKE_START));
}
END_TEST

START_TEST(test_save_channels_reach_file_saves_and_restores)
{
        g_autoptr(Run) pre = NULL, post = NULL;
        SaveRequest req;

        /* Two transient guests of 1 GiB, one persistent; a host with 4 CPUs. */
        config->save = SCOPE_ALL;
        ADD(.name = "t1", .memory_kib = 1024 * 1024);
        ADD(.name = "t2", .memory_kib = 1024 * 1024);
        ADD(.name = "p", .persistent = true, .memory_kib = 1024 * 1024);
        fake_set_parallel(hv, 4);
        pre = run_to_end(RUN_PRESERVE);
        ck_assert(fake_last_request(hv, "t1", FAKE_SAVE, &req));
        ck_assert_uint_eq(req.channels, SAVE_CHANNELS_AUTO);
        ck_assert_uint_eq(req.memory_kib, 1024 * 1024);
        ck_assert_uint_eq(req.concurrent, 3); /* ParallelSaves=4, three saves */
        /* 4 CPUs shared by 3 saves: one channel each. */
        ck_assert(testlib_has_message(pre->messages, "Saved t1 in the sparse format over 1 channel"));
        ck_assert(testlib_has_message(pre->messages, "Saved t2 in the sparse format over 1 channel"));
        /* A managed save has no channels. */
        ck_assert(!testlib_has_message(pre->messages, "Saved p in the sparse format"));

        post = run_to_end(RUN_RESTORE);
        ck_assert(fake_last_request(hv, "t1", FAKE_START, &req));
        ck_assert_uint_eq(req.channels, SAVE_CHANNELS_AUTO);
        ck_assert_uint_eq(req.concurrent, 3); /* ParallelStarts=4, three starts */
        ck_assert(testlib_has_message(post->messages, "Restored t1 in the sparse format over 1 channel"));
        ck_assert_int_eq(fake_guest_state(hv, "t1"), GUEST_STATE_RUNNING);

        /* One save at a time: it has the CPUs to itself, and a 1 GiB guest takes 4 channels. */
        config->parallel_saves = 1;
        g_clear_pointer(&pre, run_free);
        pre = run_to_end(RUN_PRESERVE);
        ck_assert(fake_last_request(hv, "t2", FAKE_SAVE, &req));
        ck_assert_uint_eq(req.concurrent, 1);
        ck_assert(testlib_has_message(pre->messages, "Saved t2 in the sparse format over 4 channels"));
        g_clear_pointer(&post, run_free);
        post = run_to_end(RUN_RESTORE);

        /* SaveChannels=0: the plain format. */
        config->save_channels = 0;
        g_clear_pointer(&pre, run_free);
        pre = run_to_end(RUN_PRESERVE);
        ck_assert(fake_last_request(hv, "t1", FAKE_SAVE, &req));
        ck_assert_uint_eq(req.channels, 0);
        ck_assert(!testlib_has_message(pre->messages, "sparse format"));
        ck_assert_int_eq(fake_guest_state(hv, "t1"), _GUEST_STATE_INVALID); /* saved to its file */
}
END_TEST

START_TEST(test_restore_failed_skipped_unwritten_outcome_started)
{
        g_autoptr(Run) post = NULL;
        RecordGuest *c, *d, *e;
        unsigned done;

        c = record_put(record, "fake:///one",
                       fake_add_guest(hv, &(FakeGuestSpec){.name = "c", .persistent = true}), "c", true);
        c->outcome = OUTCOME_FAILED; /* still running at the end of the run: not stopped by us */
        d = record_put(record, "fake:///one",
                       fake_add_guest(hv, &(FakeGuestSpec){.name = "d", .persistent = true}), "d", true);
        d->outcome = OUTCOME_NONE; /* the daemon died before writing d's outcome: d is off */
        e = record_put(record, "fake:///one",
                       fake_add_guest(hv, &(FakeGuestSpec){.name = "e", .persistent = true}), "e", true);
        e->outcome = OUTCOME_NONE; /* never reached: still running */
        fake_guest_stop(hv, "c");
        fake_guest_stop(hv, "d");
        RUN_UNTIL(fake_guest_state(hv, "d") == GUEST_STATE_SHUTOFF &&
                  fake_guest_state(hv, "c") == GUEST_STATE_SHUTOFF);
        ck_assert_int_eq(record_save(record), 0);

        post = run_to_end(RUN_RESTORE);
        ck_assert_uint_eq(fake_calls(hv, "c", FAKE_START), 0);
        ck_assert_int_eq(fake_guest_state(hv, "c"), GUEST_STATE_SHUTOFF);
        ck_assert_uint_eq(fake_calls(hv, "d", FAKE_START), 1);
        ck_assert_int_eq(fake_guest_state(hv, "d"), GUEST_STATE_RUNNING);
        ck_assert_uint_eq(fake_calls(hv, "e", FAKE_START), 0); /* counted, not started twice */
        engine_counts(post->e, NULL, &done, NULL);
        ck_assert_uint_eq(done, 2);
        ck_assert_ptr_null(recorded("c"));
        ck_assert_ptr_null(recorded("d"));
        ck_assert_ptr_null(recorded("e"));
}
END_TEST

/* ---- pre-flight ---- */

START_TEST(test_preflight_drops_saves_that_cannot_be_done)
{
        g_autoptr(Run) run = NULL;
        g_autofree char *needle = NULL;

        /* A petabyte of memory fits on no disk; the checked directory is the test's own. */
        config->managed_save_dir = g_strdup(dir);
        ADD(.name = "huge", .persistent = true, .memory_kib = (guint64) 1 << 40);
        ADD(.name = "vfio", .persistent = true, .memory_kib = 1024, .hostdev = true);
        ADD(.name = "small", .persistent = true, .memory_kib = 1024);

        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "small")->outcome, OUTCOME_SAVED);
        ck_assert_uint_gt(guest(run, "small")->estimate_usec, 0);
        ck_assert_int_eq(guest(run, "huge")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_calls(hv, "huge", FAKE_SAVE), 0);
        needle = g_strdup_printf("not enough space in %s: needs 1073741824 MiB", dir);
        ck_assert_ptr_nonnull(strstr(guest(run, "huge")->error, needle));
        ck_assert_uint_eq(guest(run, "huge")->estimate_usec, 0);
        ck_assert_int_eq(guest(run, "vfio")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_calls(hv, "vfio", FAKE_SAVE), 0);
        ck_assert_str_eq(guest(run, "vfio")->error, "host device passthrough cannot be saved");
        ck_assert(testlib_has_message(run->preflight,
                                      "vfio will not be saved: host device passthrough cannot "
                                      "be saved; shutting it down instead"));
        /* The record says so before anything happens, and keeps the reason. */
        ck_assert_uint_eq(recorded("huge")->steps, STEP_MASK(STEP_SHUTDOWN) | STEP_MASK(STEP_POWEROFF));
        ck_assert_ptr_nonnull(strstr(recorded("huge")->error, "not enough space"));
}
END_TEST

START_TEST(test_preflight_aborts_domain_job)
{
        g_autoptr(Run) run = NULL;

        ADD(.name = "busy", .persistent = true, .memory_kib = 1024, .job = "backup", .save_ms = 20);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "busy")->outcome, OUTCOME_SAVED);
        ck_assert_uint_eq(fake_calls(hv, "busy", FAKE_ABORT), 1);
        ck_assert(testlib_has_message(run->messages, "Aborted the backup job of busy to save it"));
        ck_assert_uint_ge(guest(run, "busy")->save_usec, 20 * USEC_PER_MSEC);
}
END_TEST

START_TEST(test_preflight_abort_jobs_no_shuts_down)
{
        g_autoptr(Run) run = NULL;

        config->abort_jobs = false;
        ADD(.name = "busy", .persistent = true, .memory_kib = 1024, .job = "backup");
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_eq(guest(run, "busy")->outcome, OUTCOME_SHUTDOWN);
        ck_assert_uint_eq(fake_calls(hv, "busy", FAKE_ABORT), 0);
        ck_assert_uint_eq(fake_calls(hv, "busy", FAKE_SAVE), 0);
        ck_assert_str_eq(guest(run, "busy")->error, "save failed: a backup job is running (AbortJobs=no)");
}
END_TEST

START_TEST(test_preflight_deadline_shortest_first)
{
        g_autoptr(Run) run = NULL;

        /* One save at a time, 1.3 s + 350 MiB/s each (no measurement yet): 4 GiB, 1 GiB and
         * 128 MiB are ~19 s in all, over a 10 s deadline: the shortest go first. */
        config->parallel_saves = 1;
        config->deadline_usec = 10 * USEC_PER_SEC;
        ADD(.name = "large", .persistent = true, .memory_kib = 4 << 20);
        ADD(.name = "mid", .persistent = true, .memory_kib = 1 << 20);
        ADD(.name = "small", .persistent = true, .memory_kib = 128 << 10);
        run = run_to_end(RUN_PRESERVE);
        ck_assert_int_lt(event_at(run, "small", "saving"), event_at(run, "mid", "saving"));
        ck_assert_int_lt(event_at(run, "mid", "saving"), event_at(run, "large", "saving"));
        ck_assert(testlib_has_message(run->preflight,
                                      "Pre-flight: the saves are estimated to take 18.9 s, more "
                                      "than the deadline of 10.0 s: 2 of 3 saves are expected "
                                      "to end in time (shortest first)"));
}
END_TEST

int main(void)
{
        Suite *s = suite_create("engine");
        TCase *tc = tcase_create("preserve");
        TCase *tr = tcase_create("restore");

        tcase_set_timeout(tc, 60);
        tcase_set_timeout(tr, 60);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_checked_fixture(tr, setup, teardown);
        tcase_add_test(tc, test_default_escalation);
        tcase_add_test(tc, test_preflight_drops_saves_that_cannot_be_done);
        tcase_add_test(tc, test_preflight_aborts_domain_job);
        tcase_add_test(tc, test_preflight_abort_jobs_no_shuts_down);
        tcase_add_test(tc, test_preflight_deadline_shortest_first);
        tcase_add_test(tc, test_save_failure_falls_to_shutdown);
        tcase_add_test(tc, test_stuck_guest_powered_off_after_timeout);
        tcase_add_test(tc, test_deadline_powers_off);
        tcase_add_test(tc, test_deadline_without_poweroff_scope_fails_loudly);
        tcase_add_test(tc, test_save_cap_never_exceeded);
        tcase_add_test(tc, test_unlimited_saves_run_together);
        tcase_add_test(tc, test_shutdown_cap_never_exceeded);
        tcase_add_test(tc, test_cancel_starts_no_new_step);
        tcase_add_test(tc, test_nothing_in_scope_is_failed);
        tcase_add_test(tc, test_poweroff_failure_is_failed);
        tcase_add_test(tc, test_guest_stopping_by_itself_counts_as_shutdown);
        tcase_add_test(tc, test_progress_counts_bytes);
        tcase_add_test(tc, test_history_steps_times_errors_bytes);
        tcase_add_test(tc, test_history_restore_and_deadline);
        tcase_add_test(tc, test_unreachable_uri_reported_others_preserved);
        tcase_add_test(tc, test_transient_save_to_file);
        tcase_add_test(tc, test_connection_lost_mid_save_is_retried);
        tcase_add_test(tc, test_order_groups_at_shutdown);
        tcase_add_test(tc, test_deadline_reaches_every_group);
        tcase_add_test(tc, test_skip_and_precedence);
        tcase_add_test(tc, test_shutdown_modes);
        tcase_add_test(tc, test_repeated_requests);
        tcase_add_test(tc, test_no_repeat_powers_off);
        tcase_add_test(tc, test_cancel_stops_repeats);
        tcase_add_test(tr, test_restore_order_and_agent_readiness);
        tcase_add_test(tr, test_restore_skips_skip);
        tcase_add_test(tr, test_restore_only_recorded_guests);
        tcase_add_test(tr, test_preserve_only_named_guests);
        tcase_add_test(tr, test_restore_already_running_not_started_twice);
        tcase_add_test(tr, test_restore_failure_kept_for_next_time);
        tcase_add_test(tr, test_restore_parallel_starts_cap);
        tcase_add_test(tr, test_restore_start_delay_serialises);
        tcase_add_test(tr, test_restore_transient_shutdown_recreated_from_xml);
        tcase_add_test(tr, test_restore_failed_skipped_unwritten_outcome_started);
        tcase_add_test(tr, test_bypass_cache_reaches_save_and_start);
        tcase_add_test(tr, test_save_channels_reach_file_saves_and_restores);
        suite_add_tcase(s, tc);
        suite_add_tcase(s, tr);
        return testlib_run_suite(s);
}
