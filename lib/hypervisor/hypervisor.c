/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "hypervisor.h"

#include "util.h"

static const char *const guest_state_table[_GUEST_STATE_MAX] = {
        [GUEST_STATE_RUNNING] = "running",         [GUEST_STATE_PAUSED] = "paused",
        [GUEST_STATE_SHUTOFF] = "shutoff",         [GUEST_STATE_SAVED] = "saved",
        [GUEST_STATE_UNREACHABLE] = "unreachable",
};
DEFINE_STRING_TABLE(guest_state, GuestState, _GUEST_STATE_MAX);

typedef struct Listener {
        guint id;
        HypervisorListener cb;
        void *userdata;
} Listener;

GuestInfo *guest_info_free(GuestInfo *g)
{
        if (!g)
                return NULL;
        g_free(g->uuid);
        g_free(g->name);
        g_free(g->xml);
        g_free(g->metadata);
        g_free(g);
        return NULL;
}

void guest_info_destroy(gpointer g)
{
        guest_info_free(g);
}

GuestInfo *guest_info_copy(const GuestInfo *g)
{
        GuestInfo *c = g_memdup2(g, sizeof(GuestInfo));

        c->uuid = g_strdup(g->uuid);
        c->name = g_strdup(g->name);
        c->xml = g_strdup(g->xml);
        c->metadata = g_strdup(g->metadata);
        return c;
}

void hypervisor_init_base(Hypervisor *h, const HypervisorOps *ops, const char *uri, GMainContext *ctx)
{
        h->ops = ops;
        h->ref = 1;
        h->uri = g_strdup(uri);
        h->context = g_main_context_ref(ctx ? ctx : g_main_context_default());
        g_mutex_init(&h->lock);
        h->listeners = g_array_new(FALSE, TRUE, sizeof(Listener));
        h->next_listener_id = 1;
}

Hypervisor *hypervisor_ref(Hypervisor *h)
{
        g_atomic_int_inc(&h->ref);
        return h;
}

Hypervisor *hypervisor_unref(Hypervisor *h)
{
        if (!h || !g_atomic_int_dec_and_test(&h->ref))
                return NULL;
        h->ops->free(h);
        g_array_unref(h->listeners);
        g_main_context_unref(h->context);
        g_mutex_clear(&h->lock);
        g_free(h->uri);
        g_free(h->resolved_uri);
        g_free(h);
        return NULL;
}

void hypervisor_destroy(gpointer h)
{
        hypervisor_unref(h);
}

guint hypervisor_add_listener(Hypervisor *h, HypervisorListener cb, void *userdata)
{
        Listener l = {.id = h->next_listener_id++, .cb = cb, .userdata = userdata};

        g_array_append_val(h->listeners, l);
        return l.id;
}

void hypervisor_remove_listener(Hypervisor *h, guint id)
{
        for (guint i = 0; i < h->listeners->len; i++)
                if (g_array_index(h->listeners, Listener, i).id == id) {
                        g_array_remove_index(h->listeners, i);
                        return;
                }
}

void hypervisor_dispatch(Hypervisor *h, const char *uuid, GuestEvent event, int detail)
{
        /* Copy: a listener may remove itself (or another) while we iterate. */
        g_autoptr(GArray) copy = g_array_copy(h->listeners);

        if (event == GUEST_EVENT_CONNECTED)
                h->connected = true;
        else if (event == GUEST_EVENT_DISCONNECTED)
                h->connected = false;

        for (guint i = 0; i < copy->len; i++) {
                Listener *l = &g_array_index(copy, Listener, i);
                bool still = false;

                for (guint j = 0; j < h->listeners->len; j++)
                        if (g_array_index(h->listeners, Listener, j).id == l->id)
                                still = true;
                if (still)
                        l->cb(h, uuid, event, detail, l->userdata);
        }
}

typedef struct AsyncEvent {
        Hypervisor *h;
        char *uuid;
        GuestEvent event;
        int detail;
} AsyncEvent;

static gboolean async_event_cb(gpointer p)
{
        AsyncEvent *e = p;

        hypervisor_dispatch(e->h, e->uuid, e->event, e->detail);
        return G_SOURCE_REMOVE;
}

static void async_event_free(gpointer p)
{
        AsyncEvent *e = p;

        hypervisor_unref(e->h);
        g_free(e->uuid);
        g_free(e);
}

void hypervisor_dispatch_async(Hypervisor *h, const char *uuid, GuestEvent event, int detail)
{
        AsyncEvent *e = g_new0(AsyncEvent, 1);

        e->h = hypervisor_ref(h);
        e->uuid = g_strdup(uuid);
        e->event = event;
        e->detail = detail;
        context_post(h->context, G_PRIORITY_DEFAULT, async_event_cb, e, async_event_free);
}

char *hypervisor_get_uri(Hypervisor *h)
{
        char *s;

        g_mutex_lock(&h->lock);
        s = g_strdup(h->resolved_uri ? h->resolved_uri : h->uri);
        g_mutex_unlock(&h->lock);
        return s;
}
