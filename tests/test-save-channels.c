/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Which connections save with parallel channels, and how many channels a save gets. */
#include "save-channels.h"
#include "testlib.h"

START_TEST(test_available)
{
        /* Debian 13: libvirt 11.3, QEMU 10.0 */
        ck_assert(save_channels_available("QEMU", 11003000, 10000000));
        ck_assert(save_channels_available("QEMU", 11002000, 9000000));
        /* Debian 12: libvirt 9.0, QEMU 7.2 */
        ck_assert(!save_channels_available("QEMU", 9000000, 7002000));
        /* one of the two too old */
        ck_assert(!save_channels_available("QEMU", 11001000, 10000000));
        ck_assert(!save_channels_available("QEMU", 11003000, 8002000));
        /* other drivers have no sparse format */
        ck_assert(!save_channels_available("TEST", 11003000, 10000000));
        ck_assert(!save_channels_available(NULL, 11003000, 10000000));
}
END_TEST

START_TEST(test_pick)
{
        const guint64 GiB = 1024 * 1024;

        /* A number given is taken as it is, 0 is the plain format. */
        ck_assert_uint_eq(save_channels_pick(0, 8 * GiB, 64, 1), 0);
        ck_assert_uint_eq(save_channels_pick(6, 256, 2, 4), 6);
        ck_assert_uint_eq(save_channels_pick(1000, GiB, 2, 1), 255);
        /* auto: the host's CPUs shared by the saves that run at once... */
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 8 * GiB, 2, 1), 2);
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 8 * GiB, 16, 4), 4);
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 8 * GiB, 2, 4), 1);
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 8 * GiB, 0, 1), 1);
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 8 * GiB, 16, 0), 1);
        /* ...one channel per 256 MiB of the guest at most... */
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 128 * 1024, 16, 1), 1);
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 512 * 1024, 16, 1), 2);
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 512 * 1024 + 1, 16, 1), 3);
        /* ...and no more than SAVE_CHANNELS_MAX; an unknown size is no limit. */
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 64 * GiB, 128, 1), SAVE_CHANNELS_MAX);
        ck_assert_uint_eq(save_channels_pick(SAVE_CHANNELS_AUTO, 0, 6, 2), 3);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("save-channels");
        TCase *tc = tcase_create("save-channels");

        tcase_add_test(tc, test_available);
        tcase_add_test(tc, test_pick);
        suite_add_tcase(s, tc);
        return testlib_run_suite(s);
}
