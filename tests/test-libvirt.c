/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine against libvirt's real test driver (test:///<abs path>.xml): managed save,
 * save to file, shutdown, lifecycle events, start/restore/create, through the libvirt
 * backend the daemon uses. What is checked is libvirt's own view of each guest. */
#include <libvirt/libvirt.h>

#include "domain-xml.h"
#include "engine.h"
#include "policy.h"
#include "util.h"
#include "testlib.h"

static char *dir, *uri;
static Workers *workers;
static Config *config;
static Hypervisor *hv;
static Record *record;
static virConnectPtr conn;
static bool finished;

static void setup(void)
{
        g_autofree char *p = NULL;

        dir = testlib_tmpdir();
        p = g_build_filename(dir, "record", NULL);
        uri = g_strdup_printf("test://%s/node-small.xml", g_getenv("GK_TEST_DATA"));
        workers = workers_new(NULL, 16);
        config = config_new_default();
        hv = hypervisor_libvirt_new(uri, NULL);
        record = record_new(p);
        conn = hypervisor_libvirt_dup_conn(hv);
        ck_assert_msg(conn, "cannot open %s", uri);
        finished = false;
}

static void teardown(void)
{
        virConnectClose(conn);
        g_clear_pointer(&workers, workers_free);
        g_clear_pointer(&hv, hypervisor_unref);
        g_clear_pointer(&config, config_free);
        g_clear_pointer(&record, record_free);
        testlib_rm_rf(dir);
        g_clear_pointer(&dir, g_free);
        g_clear_pointer(&uri, g_free);
}

static void on_finished(Engine *e, void *ud)
{
        finished = true;
}

static const EngineCallbacks callbacks = {.finished = on_finished};

static Engine *run(RunKind kind)
{
        g_autofree char *save_dir = g_build_filename(dir, "save", NULL);
        EngineOptions o = {
                .kind = kind,
                .config = config,
                .save_dir = save_dir,
                .connect_retry_usec = 0,
                .progress_interval_usec = 50 * USEC_PER_MSEC,
        };
        Engine *e = engine_new(&o, &hv, 1, workers, record, &callbacks, NULL);

        finished = false;
        engine_start(e);
        RUN_UNTIL(finished);
        return e;
}

static int state_of(const char *name)
{
        virDomainPtr d = virDomainLookupByName(conn, name);
        int st = -1, reason;

        if (!d)
                return -1; /* gone (transient, stopped) */
        ck_assert_int_eq(virDomainGetState(d, &st, &reason, 0), 0);
        virDomainFree(d);
        return st;
}

static int has_managed_save(const char *name)
{
        virDomainPtr d = virDomainLookupByName(conn, name);
        int r;

        ck_assert_ptr_nonnull(d);
        r = virDomainHasManagedSaveImage(d, 0);
        virDomainFree(d);
        return r;
}

static Outcome outcome_of(Engine *e, const char *name)
{
        g_autoptr(GPtrArray) gs = engine_guests(e);

        for (guint i = 0; i < gs->len; i++)
                if (streq_ptr(((EngineGuest *) gs->pdata[i])->name, name))
                        return ((EngineGuest *) gs->pdata[i])->outcome;
        return _OUTCOME_INVALID;
}

START_TEST(test_domain_xml_scan)
{
        static const char xml[] =
                "<domain type='qemu' id='3'>\n"
                "  <name>vm</name>\n"
                "  <metadata>\n"
                "    <other:x "
                "xmlns:other=\"https://example.org/x\"><other:action>save</other:action></other:x>\n"
                "    <gk:guest xmlns:gk=\"https://guestkeeper.org/xmlns/guest/1\">\n"
                "      <gk:action>shutdown</gk:action>\n"
                "      <gk:order>2</gk:order>\n"
                "    </gk:guest>\n"
                "  </metadata>\n"
                "  <memory unit='KiB'>524288</memory>\n"
                "  <currentMemory unit='KiB'>262144</currentMemory>\n"
                "  <devices>\n"
                "    <hostdev mode='subsystem' type='pci' managed='yes'><source/></hostdev>\n"
                "  </devices>\n"
                "</domain>\n";
        DomainXmlInfo info;
        GuestSettings settings = {};
        g_autofree char *err = NULL;

        ck_assert_int_eq(domain_xml_scan(xml, HYPERVISOR_METADATA_NS, &info), 0);
        ck_assert_uint_eq(info.memory_kib, 262144);
        ck_assert(info.hostdev);
        ck_assert_ptr_nonnull(info.metadata);
        /* What virDomainGetMetadata would give: the policy reads it the same way. */
        ck_assert_int_eq(policy_parse_metadata(info.metadata, &settings, &err), 0);
        ck_assert_int_eq(settings.action, ACTION_SHUTDOWN);
        ck_assert_int_eq(settings.order, 2);
        domain_xml_info_clear(&info);

        ck_assert_int_eq(domain_xml_scan("<domain><memory unit='KiB'>1024</memory><devices><interface "
                                         "type='network'/></devices></domain>",
                                         HYPERVISOR_METADATA_NS, &info),
                         0);
        ck_assert_uint_eq(info.memory_kib, 1024);
        ck_assert(!info.hostdev);
        ck_assert_ptr_null(info.metadata);
        ck_assert_int_eq(domain_xml_scan("<domain><devices><interface type='hostdev'/></devices></domain>",
                                         HYPERVISOR_METADATA_NS, &info),
                         0);
        ck_assert(info.hostdev);
        ck_assert_int_eq(domain_xml_scan("<network/>", HYPERVISOR_METADATA_NS, &info), -EINVAL);
        ck_assert_int_eq(domain_xml_scan("<domain>", HYPERVISOR_METADATA_NS, &info), -EINVAL);
        ck_assert_int_eq(domain_xml_scan(NULL, HYPERVISOR_METADATA_NS, &info), -EINVAL);
}
END_TEST

START_TEST(test_preserve_and_restore_save_all)
{
        g_autoptr(Engine) pre = NULL, post = NULL;
        g_autoptr(Record) disk = NULL;
        g_autofree char *err = NULL;
        RecordGuest *scratch;
        unsigned total, done, failed;
        virDomainPtr d;

        config->save = SCOPE_ALL;
        pre = run(RUN_PRESERVE);

        engine_counts(pre, &total, &done, &failed);
        ck_assert_uint_eq(total, 4); /* "idle" was not running */
        ck_assert_uint_eq(done, 4);
        ck_assert_uint_eq(failed, 0);
        for (const char *const *n = (const char *const[]){"web1", "web2", "db1", NULL}; *n; n++) {
                ck_assert_int_eq(outcome_of(pre, *n), OUTCOME_SAVED);
                ck_assert_int_eq(state_of(*n), VIR_DOMAIN_SHUTOFF);
                ck_assert_int_eq(has_managed_save(*n), 1);
        }
        ck_assert_int_eq(has_managed_save("idle"), 0);
        /* The transient guest is saved to a file and gone from libvirt. */
        ck_assert_int_eq(outcome_of(pre, "scratch"), OUTCOME_SAVED);
        ck_assert_int_eq(state_of("scratch"), -1);
        ck_assert_int_eq(record_load(record->path, &disk, &err), 0);
        ck_assert_uint_eq(disk->guests->len, 4);
        scratch = record_find(disk, uri, "6695eb01-f6a4-8304-79aa-97f2502e0004");
        ck_assert_ptr_nonnull(scratch);
        ck_assert_int_eq(scratch->outcome, OUTCOME_SAVED);
        ck_assert(g_file_test(scratch->save_file, G_FILE_TEST_IS_REGULAR));
        ck_assert(strstr(scratch->xml, "<name>scratch</name>"));

        post = run(RUN_RESTORE);
        engine_counts(post, &total, &done, &failed);
        ck_assert_uint_eq(done, 4);
        ck_assert_uint_eq(failed, 0);
        for (const char *const *n = (const char *const[]){"web1", "web2", "db1", "scratch", NULL}; *n; n++)
                ck_assert_msg(state_of(*n) == VIR_DOMAIN_RUNNING, "%s not running", *n);
        ck_assert_int_eq(has_managed_save("web1"), 0); /* resumed: the image is consumed */
        ck_assert_int_eq(state_of("idle"), VIR_DOMAIN_SHUTOFF);
        d = virDomainLookupByName(conn, "scratch");
        ck_assert_int_eq(virDomainIsPersistent(d), 0); /* comes back transient */
        virDomainFree(d);
        ck_assert_uint_eq(record->guests->len, 0);
}
END_TEST

#define SCRATCH_UUID "6695eb01-f6a4-8304-79aa-97f2502e0004"

/* The test driver is not QEMU: file saves take the plain path, and nobody is told. */
START_TEST(test_file_save_plain_on_other_drivers)
{
        g_autofree char *file = g_build_filename(dir, "scratch.save", NULL);
        g_autofree char *err = NULL;
        SaveRequest req = {.file = file,
                           .channels = SAVE_CHANNELS_AUTO,
                           .memory_kib = 1 << 20,
                           .concurrent = 1};
        SaveOutcome out = {};

        ck_assert_msg(hv->ops->save(hv, SCRATCH_UUID, &req, &out, &err) == 0, "%s", err);
        ck_assert_uint_eq(out.channels, 0);
        ck_assert_ptr_null(out.note);
        ck_assert_int_eq(state_of("scratch"), -1);
        ck_assert_msg(hv->ops->restore(hv, &req, &out, &err) == 0, "%s", err);
        ck_assert_ptr_null(out.note);
        ck_assert_int_eq(state_of("scratch"), VIR_DOMAIN_RUNNING);
}
END_TEST

/* A connection taken for one with parallel saves whose libvirt refuses them (the test driver
 * has no virDomainSaveParams): the save falls back to the plain path, and only the first
 * refusal says why. */
START_TEST(test_parallel_save_refused_falls_back_once)
{
        g_autofree char *f1 = g_build_filename(dir, "scratch.save", NULL);
        g_autofree char *f2 = g_build_filename(dir, "web1.save", NULL);
        g_autofree char *err = NULL;
        SaveRequest req = {.file = f1,
                           .channels = SAVE_CHANNELS_AUTO,
                           .memory_kib = 1 << 20,
                           .concurrent = 1};
        SaveOutcome out = {};

        hypervisor_libvirt_assume_parallel(hv, 4);
        ck_assert_msg(hv->ops->save(hv, SCRATCH_UUID, &req, &out, &err) == 0, "%s", err);
        ck_assert_uint_eq(out.channels, 0);
        ck_assert_ptr_nonnull(out.note);
        ck_assert_msg(strstr(out.note, "libvirt refused the parallel save") &&
                              strstr(out.note, "virDomainSaveParams"),
                      "%s", out.note);
        g_clear_pointer(&out.note, g_free);
        ck_assert_int_eq(state_of("scratch"), -1);
        ck_assert(g_file_test(f1, G_FILE_TEST_IS_REGULAR));

        req.file = f2;
        ck_assert_msg(hv->ops->save(hv, "6695eb01-f6a4-8304-79aa-97f2502e0001", &req, &out, &err) == 0, "%s",
                      err);
        ck_assert_ptr_null(out.note); /* said once */
        ck_assert_int_eq(state_of("web1"), VIR_DOMAIN_SHUTOFF);

        /* The restore's refusal, on a connection asked afresh. */
        hypervisor_libvirt_assume_parallel(hv, 4);
        req.file = f1;
        ck_assert_msg(hv->ops->restore(hv, &req, &out, &err) == 0, "%s", err);
        ck_assert_ptr_nonnull(out.note);
        ck_assert_msg(strstr(out.note, "libvirt refused the parallel restore"), "%s", out.note);
        g_clear_pointer(&out.note, g_free);
        ck_assert_uint_eq(out.channels, 0);
        ck_assert_int_eq(state_of("scratch"), VIR_DOMAIN_RUNNING);
}
END_TEST

START_TEST(test_default_config_transient_shut_down_and_recreated)
{
        g_autoptr(Engine) pre = NULL, post = NULL;

        pre = run(RUN_PRESERVE);
        ck_assert_int_eq(outcome_of(pre, "web1"), OUTCOME_SAVED);
        ck_assert_int_eq(outcome_of(pre, "scratch"), OUTCOME_SHUTDOWN);
        ck_assert_int_eq(state_of("scratch"), -1);

        post = run(RUN_RESTORE);
        ck_assert_int_eq(outcome_of(post, "scratch"), OUTCOME_RESTORED);
        ck_assert_int_eq(state_of("scratch"), VIR_DOMAIN_RUNNING);
        ck_assert_int_eq(state_of("web1"), VIR_DOMAIN_RUNNING);
}
END_TEST

/* Save=none on libvirt's test driver: a graceful shutdown, no image. (That the engine ends a
 * shutdown on the lifecycle event alone is shown by test_faults.py's
 * test_shutdown_only_uses_events: the test driver's shutdown is instant, so the state check
 * after the request would end it here even without events.) */
START_TEST(test_graceful_shutdown_without_save)
{
        g_autoptr(Engine) pre = NULL;

        config->save = SCOPE_NONE;
        config->shutdown_timeout_usec = 30 * USEC_PER_SEC;
        pre = run(RUN_PRESERVE);
        ck_assert_int_eq(outcome_of(pre, "web1"), OUTCOME_SHUTDOWN);
        ck_assert_int_eq(outcome_of(pre, "db1"), OUTCOME_SHUTDOWN);
        ck_assert_int_eq(state_of("web1"), VIR_DOMAIN_SHUTOFF);
        ck_assert_int_eq(has_managed_save("web1"), 0);
}
END_TEST

START_TEST(test_unreachable_uri)
{
        g_autoptr(Hypervisor) bad =
                hypervisor_libvirt_new("qemu+unix:///system?socket=/nonexistent/sock", NULL);
        Hypervisor *both[] = {hv, bad};
        g_autofree char *save_dir = g_build_filename(dir, "save", NULL);
        EngineOptions o = {.kind = RUN_PRESERVE, .config = config, .save_dir = save_dir};
        g_autoptr(Engine) e = engine_new(&o, both, 2, workers, record, &callbacks, NULL);
        unsigned done, failed;
        GPtrArray *un;

        engine_start(e);
        RUN_UNTIL(finished);
        engine_counts(e, NULL, &done, &failed);
        ck_assert_uint_eq(done, 4);
        ck_assert_uint_eq(failed, 1);
        un = engine_unreachable(e);
        ck_assert_uint_eq(un->len, 1);
        ck_assert_msg(strstr(un->pdata[0], "/nonexistent/sock"), "%s", (char *) un->pdata[0]);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("libvirt");
        TCase *tc = tcase_create("test-driver");

        hypervisor_libvirt_global_init();
        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_domain_xml_scan);
        tcase_add_test(tc, test_preserve_and_restore_save_all);
        tcase_add_test(tc, test_file_save_plain_on_other_drivers);
        tcase_add_test(tc, test_parallel_save_refused_falls_back_once);
        tcase_add_test(tc, test_default_config_transient_shut_down_and_recreated);
        tcase_add_test(tc, test_graceful_shutdown_without_save);
        tcase_add_test(tc, test_unreachable_uri);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
