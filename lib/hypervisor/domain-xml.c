/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "domain-xml.h"

#include <errno.h>

#include "macro.h"

typedef struct Scan {
        const char *ns;
        DomainXmlInfo *info;
        int depth;
        bool in_devices, in_metadata;
        int reading; /* 1 <currentMemory>, 2 <memory>, 0 none */
        guint64 memory, current;
        bool have_memory, have_current;
        GString *text;
        GString *capture; /* our metadata element, being copied */
        int capture_depth;
        bool captured;
} Scan;

static bool declares_ns(const char **names, const char **values, const char *ns)
{
        for (size_t i = 0; names[i]; i++)
                if ((streq_ptr(names[i], "xmlns") || g_str_has_prefix(names[i], "xmlns:")) &&
                    streq_ptr(values[i], ns))
                        return true;
        return false;
}

static const char *attr(const char **names, const char **values, const char *name)
{
        for (size_t i = 0; names[i]; i++)
                if (streq_ptr(names[i], name))
                        return values[i];
        return NULL;
}

static void on_start(GMarkupParseContext *ctx, const char *name, const char **names, const char **values,
                     gpointer userdata, GError **error)
{
        Scan *s = userdata;

        s->depth++;
        if (s->capture) {
                g_string_append_printf(s->capture, "<%s", name);
                for (size_t i = 0; names[i]; i++) {
                        g_autofree char *v = g_markup_escape_text(values[i], -1);
                        g_string_append_printf(s->capture, " %s=\"%s\"", names[i], v);
                }
                g_string_append_c(s->capture, '>');
                return;
        }
        if (s->depth == 1) {
                if (!streq_ptr(name, "domain"))
                        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT, "not a domain");
                return;
        }
        if (s->depth == 2) {
                s->in_devices = streq_ptr(name, "devices");
                s->in_metadata = streq_ptr(name, "metadata");
                s->reading = streq_ptr(name, "currentMemory") ? 1 : streq_ptr(name, "memory") ? 2 : 0;
                g_string_truncate(s->text, 0);
                return;
        }
        if (s->depth == 3 && s->in_devices &&
            (streq_ptr(name, "hostdev") ||
             (streq_ptr(name, "interface") && streq_ptr(attr(names, values, "type"), "hostdev"))))
                s->info->hostdev = true;
        if (s->depth == 3 && s->in_metadata && !s->captured && declares_ns(names, values, s->ns)) {
                s->capture = g_string_new(NULL);
                s->capture_depth = s->depth;
                s->depth--; /* on_start again, now copying */
                on_start(ctx, name, names, values, userdata, error);
        }
}

static void on_end(GMarkupParseContext *ctx, const char *name, gpointer userdata, GError **error)
{
        Scan *s = userdata;

        if (s->capture) {
                g_string_append_printf(s->capture, "</%s>", name);
                if (s->depth == s->capture_depth) {
                        s->info->metadata = g_string_free(g_steal_pointer(&s->capture), FALSE);
                        s->captured = true;
                }
        } else if (s->depth == 2 && s->reading) {
                char *end;
                guint64 v = g_ascii_strtoull(s->text->str, &end, 10);

                if (end != s->text->str && *end == '\0') {
                        if (s->reading == 1)
                                s->current = v, s->have_current = true;
                        else
                                s->memory = v, s->have_memory = true;
                }
                s->reading = 0;
        }
        s->depth--;
}

static void on_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer userdata, GError **error)
{
        Scan *s = userdata;

        if (s->capture) {
                g_autofree char *v = g_markup_escape_text(text, (gssize) len);
                g_string_append(s->capture, v);
        } else if (s->reading)
                g_string_append_len(s->text, text, (gssize) len);
}

static const GMarkupParser parser = {
        .start_element = on_start,
        .end_element = on_end,
        .text = on_text,
};

int domain_xml_scan(const char *xml, const char *ns, DomainXmlInfo *ret)
{
        g_autoptr(GMarkupParseContext) ctx = NULL;
        DomainXmlInfo info = {};
        Scan s = {.ns = ns, .info = &info, .text = g_string_new(NULL)};
        bool ok;

        ctx = g_markup_parse_context_new(&parser, 0, &s, NULL);
        ok = xml && g_markup_parse_context_parse(ctx, xml, -1, NULL) &&
             g_markup_parse_context_end_parse(ctx, NULL);
        g_string_free(s.text, TRUE);
        if (s.capture)
                g_string_free(s.capture, TRUE);
        if (!ok) {
                domain_xml_info_clear(&info);
                return -EINVAL;
        }
        info.memory_kib = s.have_current ? s.current : s.memory;
        *ret = info;
        return 0;
}

void domain_xml_info_clear(DomainXmlInfo *i)
{
        g_clear_pointer(&i->metadata, g_free);
}
