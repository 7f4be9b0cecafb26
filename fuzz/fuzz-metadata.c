/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer: a guest's libvirt metadata is written by whoever may edit the guest; its parser
 * never crashes, a refusal says why, and an accepted one yields values in range. The whole
 * policy is computed from it too, as a run would. */
#include <stdint.h>
#include <stdlib.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *xml = g_strndup((const char *) data, size);
        g_autoptr(Config) c = config_new_default();
        g_autofree char *err = NULL;
        GuestSettings s;
        GuestPolicy p;

        if (policy_parse_metadata(xml, &s, &err) == 0) {
                if (((s.set & (1u << GUEST_KEY_ORDER)) &&
                     (s.order < -CONFIG_ORDER_MAX || s.order > CONFIG_ORDER_MAX)) ||
                    ((s.set & (1u << GUEST_KEY_ACTION)) && (s.action < 0 || s.action >= _ACTION_MAX)) ||
                    s.shutdown_timeout_usec > (guint64) CONFIG_SECONDS_MAX * 1000000)
                        abort();
        } else if (!err)
                abort();
        policy_for_guest(c, "qemu:///system", "guest", true, xml, &p);
        if (p.steps & ~7u)
                abort();
        guest_policy_clear(&p);
        return 0;
}
