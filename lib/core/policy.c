/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "policy.h"

#include <fnmatch.h>

#include "macro.h"
#include "util.h"

static unsigned steps_from_scopes(const Config *c, bool persistent)
{
        unsigned mask = 0;

        if (scope_includes(c->save, persistent))
                mask |= STEP_MASK(STEP_SAVE);
        if (scope_includes(c->shutdown, persistent))
                mask |= STEP_MASK(STEP_SHUTDOWN);
        if (scope_includes(c->poweroff, persistent))
                mask |= STEP_MASK(STEP_POWEROFF);
        return mask;
}

/* The escalation from the chosen first step on: the first step always, the later ones where
 * the global scopes allow them. */
static unsigned steps_from_action(const Config *c, bool persistent, Action a)
{
        unsigned scopes = steps_from_scopes(c, persistent), mask;

        switch (a) {
        case ACTION_SAVE:
                mask = STEP_MASK(STEP_SAVE);
                break;
        case ACTION_SHUTDOWN:
                mask = STEP_MASK(STEP_SHUTDOWN);
                break;
        case ACTION_POWEROFF:
                return STEP_MASK(STEP_POWEROFF);
        default:
                return 0;
        }
        /* Every step after the first one in the escalation's order. */
        return mask | (scopes & ~(mask | (mask - 1)));
}

typedef struct ParseState {
        GuestSettings *s;
        int depth;
        int key; /* GuestKey of the element being read, -1 none */
        GString *text;
        bool root_seen;
} ParseState;

static const char *local_name(const char *name)
{
        const char *colon = strchr(name, ':');

        return colon ? colon + 1 : name;
}

static void on_start(GMarkupParseContext *ctx, const char *name, const char **attr_names,
                     const char **attr_values, gpointer userdata, GError **error)
{
        ParseState *st = userdata;

        st->depth++;
        if (st->depth == 1) {
                if (!streq_ptr(local_name(name), "guest"))
                        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                                    "the root element is <%s>, not <guest>", name);
                st->root_seen = true;
                return;
        }
        if (st->depth > 2) {
                g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT, "<%s> cannot hold <%s>",
                            guest_key_to_string(st->key), name);
                return;
        }
        st->key = guest_key_from_string(local_name(name));
        if (st->key < 0)
                g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_UNKNOWN_ELEMENT,
                            "unknown element <%s> (expected action, shutdown-timeout, order, shutdown-mode, "
                            "start-delay)",
                            name);
        g_string_truncate(st->text, 0);
}

static void on_end(GMarkupParseContext *ctx, const char *name, gpointer userdata, GError **error)
{
        ParseState *st = userdata;
        g_autofree char *what = NULL;

        if (st->depth-- != 2)
                return;
        if (guest_settings_parse(st->s, st->key, g_strstrip(st->text->str), &what) < 0)
                g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT, "<%s>: %s",
                            guest_key_to_string(st->key), what);
        st->key = -1;
}

static void on_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer userdata, GError **error)
{
        ParseState *st = userdata;

        if (st->depth == 2)
                g_string_append_len(st->text, text, (gssize) len);
}

int policy_parse_metadata(const char *xml, GuestSettings *ret, char **ret_error)
{
        static const GMarkupParser parser = {
                .start_element = on_start,
                .end_element = on_end,
                .text = on_text,
        };
        g_autoptr(GString) text = g_string_new(NULL);
        GuestSettings s = {};
        ParseState st = {.s = &s, .key = -1, .text = text};
        g_autoptr(GMarkupParseContext) ctx = g_markup_parse_context_new(&parser, 0, &st, NULL);
        g_autoptr(GError) error = NULL;

        if (!g_markup_parse_context_parse(ctx, xml, -1, &error) ||
            !g_markup_parse_context_end_parse(ctx, &error)) {
                *ret_error = g_strdup(error->message);
                return -EINVAL;
        }
        if (!st.root_seen) {
                *ret_error = g_strdup("empty");
                return -EINVAL;
        }
        *ret = s;
        return 0;
}

static void set_source(GuestPolicy *p, GuestKey k, const char *source)
{
        g_free(p->source[k]);
        p->source[k] = g_strdup(source);
}

static void take(GuestSettings *into, const GuestSettings *from, GuestKey k)
{
        switch (k) {
        case GUEST_KEY_ACTION:
                into->action = from->action;
                break;
        case GUEST_KEY_SHUTDOWN_TIMEOUT:
                into->shutdown_timeout_usec = from->shutdown_timeout_usec;
                break;
        case GUEST_KEY_ORDER:
                into->order = from->order;
                break;
        case GUEST_KEY_SHUTDOWN_MODE:
                into->shutdown_mode = from->shutdown_mode;
                break;
        case GUEST_KEY_START_DELAY:
                into->start_delay_usec = from->start_delay_usec;
                break;
        default:
                g_assert_not_reached();
        }
        into->set |= 1u << k;
}

/* The section's name holds one or more patterns, separated by blanks: any may match. */
static bool section_matches(const GuestSection *s, const char *name)
{
        g_auto(GStrv) globs = NULL;

        if (!name)
                return false;
        globs = g_strsplit_set(s->glob, " \t", -1);
        for (char **g = globs; *g; g++)
                if (**g && fnmatch(*g, name, 0) == 0)
                        return true;
        return false;
}

void policy_for_guest(const Config *c, const char *uri, const char *name, bool persistent,
                      const char *metadata, GuestPolicy *ret)
{
        GuestSettings meta = {}, *e = &ret->effective;

        *ret = (GuestPolicy){};
        if (metadata) {
                g_autofree char *why = NULL;

                if (policy_parse_metadata(metadata, &meta, &why) < 0) {
                        ret->error = g_strdup_printf("malformed guestkeeper metadata, ignored: %s", why);
                        meta = (GuestSettings){};
                }
        }
        for (GuestKey k = 0; k < _GUEST_KEY_MAX; k++) {
                if (meta.set & (1u << k)) {
                        take(e, &meta, k);
                        set_source(ret, k, "metadata");
                        continue;
                }
                /* The last matching section that sets the key wins. */
                for (guint i = c->guest_sections->len; i > 0; i--) {
                        const GuestSection *s = c->guest_sections->pdata[i - 1];

                        if ((s->settings.set & (1u << k)) && section_matches(s, name)) {
                                take(e, &s->settings, k);
                                set_source(ret, k, s->name);
                                break;
                        }
                }
                if (ret->source[k])
                        continue;
                set_source(ret, k, "default");
                switch (k) {
                case GUEST_KEY_SHUTDOWN_TIMEOUT:
                        e->shutdown_timeout_usec = c->shutdown_timeout_usec;
                        e->set |= 1u << k;
                        break;
                case GUEST_KEY_SHUTDOWN_MODE:
                        e->shutdown_mode = c->shutdown_mode;
                        e->set |= 1u << k;
                        break;
                case GUEST_KEY_START_DELAY:
                        e->start_delay_usec = c->start_delay_usec;
                        e->set |= 1u << k;
                        break;
                default:
                        break; /* action and order: unset means "from the scopes" and "none" */
                }
        }

        /* Action=skip of the user's stays the user's: never started at boot either. */
        if (c->libvirt_auto_shutdown != SCOPE_NONE && scope_includes(c->libvirt_auto_shutdown, persistent) &&
            !((e->set & (1u << GUEST_KEY_ACTION)) && e->action == ACTION_SKIP) &&
            uri_is_local_qemu_system(uri)) {
                e->action = ACTION_SKIP;
                e->set |= 1u << GUEST_KEY_ACTION;
                set_source(ret, GUEST_KEY_ACTION, POLICY_SOURCE_LIBVIRT);
                ret->libvirt = true;
        }
        ret->skip = (e->set & (1u << GUEST_KEY_ACTION)) && e->action == ACTION_SKIP;
        ret->steps = (e->set & (1u << GUEST_KEY_ACTION)) ? steps_from_action(c, persistent, e->action)
                                                         : steps_from_scopes(c, persistent);
        ret->shutdown_timeout_usec = e->shutdown_timeout_usec;
        ret->has_order = e->set & (1u << GUEST_KEY_ORDER);
        ret->order = e->order;
        ret->shutdown_mode = e->shutdown_mode;
        ret->start_delay_usec = e->start_delay_usec;
}

void guest_policy_clear(GuestPolicy *p)
{
        for (GuestKey k = 0; k < _GUEST_KEY_MAX; k++)
                g_clear_pointer(&p->source[k], g_free);
        g_clear_pointer(&p->error, g_free);
}
