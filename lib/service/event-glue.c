/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "event-glue.h"

typedef struct EventSource {
        GSource source;
        GPollFD pollfd;
        sd_event *event;
} EventSource;

/* sd_event_prepare() may not be called again while the loop is still PENDING (GLib skips
 * dispatching a ready source when one of higher priority is ready): ask for the state. */
static gboolean event_prepare(GSource *source, gint *timeout)
{
        sd_event *e = ((EventSource *) source)->event;
        int state = sd_event_get_state(e);

        *timeout = -1; /* sd-event's timers live in its epoll fd (timerfd) */
        if (state == SD_EVENT_PENDING)
                return TRUE;
        if (state != SD_EVENT_INITIAL)
                return FALSE;
        return sd_event_prepare(e) > 0;
}

static gboolean event_check(GSource *source)
{
        sd_event *e = ((EventSource *) source)->event;
        int state = sd_event_get_state(e);

        if (state == SD_EVENT_PENDING)
                return TRUE;
        if (state != SD_EVENT_ARMED)
                return FALSE;
        return sd_event_wait(e, 0) > 0;
}

static gboolean event_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
        sd_event *e = ((EventSource *) source)->event;

        if (sd_event_get_state(e) == SD_EVENT_PENDING)
                (void) sd_event_dispatch(e);
        return G_SOURCE_CONTINUE;
}

static void event_finalize(GSource *source)
{
        sd_event_unref(((EventSource *) source)->event);
}

static GSourceFuncs event_funcs = {
        .prepare = event_prepare,
        .check = event_check,
        .dispatch = event_dispatch,
        .finalize = event_finalize,
};

GSource *event_glue_attach(sd_event *event, GMainContext *ctx)
{
        EventSource *s = (EventSource *) g_source_new(&event_funcs, sizeof(EventSource));

        s->event = sd_event_ref(event);
        s->pollfd.fd = sd_event_get_fd(event);
        s->pollfd.events = G_IO_IN | G_IO_HUP | G_IO_ERR;
        g_source_add_poll(&s->source, &s->pollfd);
        g_source_set_name(&s->source, "sd-event");
        g_source_attach(&s->source, ctx);
        return &s->source;
}
