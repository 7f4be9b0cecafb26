/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer: the run history's parser never crashes, never accepts half a run, and whatever it
 * accepts survives serialize → parse unchanged. */
#include <stdint.h>
#include <stdlib.h>

#include "run-history.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autoptr(RunRecord) r = NULL, again = NULL;
        g_autofree char *err = NULL, *err2 = NULL, *text = NULL;
        gsize len = 0;

        if (run_record_parse((const char *) data, size, "fuzz", &r, &err) < 0) {
                if (!err)
                        abort();
                return 0;
        }
        text = run_record_serialize(r, &len);
        if (run_record_parse(text, len, "fuzz-again", &again, &err2) < 0)
                abort();
        if (again->guests->len != r->guests->len || again->kind != r->kind || again->reason != r->reason ||
            again->started != r->started || again->finished != r->finished || again->done != r->done ||
            again->unreachable->len != r->unreachable->len)
                abort();
        for (guint i = 0; i < r->guests->len; i++) {
                RunGuestRecord *a = r->guests->pdata[i], *b = again->guests->pdata[i];

                if (g_strcmp0(a->uuid, b->uuid) || a->outcome != b->outcome || a->bytes != b->bytes ||
                    a->n_steps != b->n_steps || a->duration_usec != b->duration_usec ||
                    (g_utf8_validate(a->name, -1, NULL) && g_strcmp0(a->name, b->name)))
                        abort();
                for (unsigned k = 0; k < a->n_steps; k++)
                        if (a->steps[k].kind != b->steps[k].kind ||
                            a->steps[k].duration_usec != b->steps[k].duration_usec ||
                            (a->steps[k].error && g_utf8_validate(a->steps[k].error, -1, NULL) &&
                             g_strcmp0(a->steps[k].error, b->steps[k].error)))
                                abort();
        }
        return 0;
}
