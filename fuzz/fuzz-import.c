/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer: the libvirt-guests importer never crashes, and what it prints is always a
 * configuration guestkeeper accepts without a warning. */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *text = g_strndup((const char *) data, size);
        g_autofree char *conf = NULL, *err = NULL, *err2 = NULL;
        g_autoptr(GPtrArray) notes = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(Config) c = config_new_default();

        /* The first byte picks whose defaults, so both are fuzzed. */
        if (import_libvirt_guests(
                    "fuzz", size > 0 && data[0] % 2 ? IMPORT_DEFAULTS_UPSTREAM : IMPORT_DEFAULTS_DEBIAN,
                    text, &conf, notes, warnings, &err) < 0) {
                if (!err)
                        abort();
                return 0;
        }
        g_ptr_array_set_size(warnings, 0);
        if (config_apply_data(c, "imported", conf, strlen(conf), warnings, &err2) < 0 || warnings->len > 0)
                abort();
        return 0;
}
