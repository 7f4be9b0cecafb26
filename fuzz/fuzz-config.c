/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer: the configuration parser never crashes, and an accepted file yields values in
 * range (the validation is the only gate between a file and the engine). */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autoptr(Config) c = config_new_default();
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *err = NULL;

        if (config_apply_data(c, "fuzz.conf", (const char *) data, size, warnings, &err) == 0) {
                if (!c->uris || !c->uris[0] || c->save < 0 || c->save >= _SCOPE_MAX ||
                    c->shutdown_timeout_usec > 7ULL * 24 * 3600 * 1000000)
                        abort();
        } else if (!err)
                abort(); /* a refusal always says why */
        return 0;
}
