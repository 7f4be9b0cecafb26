/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer: the record parser never crashes, never accepts half a record, and whatever it
 * accepts survives serialize → parse unchanged (what we write is what we read). */
#include <stdint.h>
#include <stdlib.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autoptr(Record) r = NULL, again = NULL;
        g_autofree char *err = NULL, *err2 = NULL, *text = NULL;
        gsize len = 0;

        if (record_parse((const char *) data, size, "fuzz", &r, &err) < 0) {
                if (!err)
                        abort();
                return 0;
        }
        text = record_serialize(r, &len);
        if (record_parse(text, len, "fuzz-again", &again, &err2) < 0)
                abort();
        if (again->guests->len != r->guests->len)
                abort();
        for (guint i = 0; i < r->guests->len; i++) {
                RecordGuest *a = r->guests->pdata[i], *b = again->guests->pdata[i];
                if (g_strcmp0(a->uuid, b->uuid) || g_strcmp0(a->uri, b->uri) || a->outcome != b->outcome ||
                    a->steps != b->steps || a->persistent != b->persistent ||
                    (g_utf8_validate(a->name, -1, NULL) && g_strcmp0(a->name, b->name)) ||
                    (a->xml && g_utf8_validate(a->xml, -1, NULL) && g_strcmp0(a->xml, b->xml)))
                        abort();
        }
        return 0;
}
