/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A scripted backend for unit tests, benchmarks and fault injection: guests with delays,
 * failures and guests that ignore shutdown. Thread-safe like the real one; its lifecycle
 * events reach listeners on the hypervisor's main context. Delays are real time: a "slow
 * save" keeps a worker busy exactly like a real one, which is what the caps are about. */

#include "hypervisor.h"

typedef struct FakeGuestSpec {
        const char *name;
        const char *uuid; /* NULL: made up from the name */
        bool persistent;
        bool paused;
        guint64 memory_kib;
        guint save_ms;        /* how long a save takes */
        guint shutdown_ms;    /* from the ACPI request to the guest stopping */
        bool ignore_shutdown; /* never reacts to the ACPI request */
        guint destroy_ms;
        guint start_ms;
        bool save_fails;
        bool shutdown_fails; /* the request itself errors */
        bool destroy_fails;
        bool start_fails;
        const char *metadata;    /* our metadata element (HYPERVISOR_METADATA_NS), copied */
        unsigned ignore_presses; /* ACPI requests ignored before one is obeyed */
        bool agent;              /* has a guest agent: agent shutdown and ping work */
        guint agent_ready_ms;    /* the agent answers pings this long after a start */
        bool hostdev;            /* has host device passthrough */
        const char *job;         /* a domain job under way ("backup"), copied; a save fails while it runs */
        bool job_stuck;          /* the job ignores an abort */
} FakeGuestSpec;

typedef enum FakeCounter {
        FAKE_SAVE,
        FAKE_SHUTDOWN, /* request sent, not stopped yet: a graceful shutdown in progress */
        FAKE_DESTROY,
        FAKE_START, /* start, restore, create */
        FAKE_PING,  /* guest agent pings, answered or not */
        FAKE_ABORT, /* domain job aborts */
        _FAKE_COUNTER_MAX,
} FakeCounter;

Hypervisor *hypervisor_fake_new(const char *uri, GMainContext *ctx);
/* Returns the guest's UUID (owned by the fake). */
const char *fake_add_guest(Hypervisor *h, const FakeGuestSpec *spec);
/* Change behaviour of an existing guest (same fields as the spec, name selects). */
void fake_update_guest(Hypervisor *h, const FakeGuestSpec *spec);
/* State of a guest by name; _GUEST_STATE_INVALID if it does not exist (a transient guest
 * that was saved or stopped). */
GuestState fake_guest_state(Hypervisor *h, const char *name);
bool fake_has_managed_save(Hypervisor *h, const char *name);
/* How often an operation was called for a guest. */
unsigned fake_calls(Hypervisor *h, const char *name, FakeCounter c);
/* Whether the guest's last save / start asked to bypass the page cache. */
bool fake_last_bypass(Hypervisor *h, const char *name, FakeCounter c);
/* The guest's last save (FAKE_SAVE) or save-file restore (FAKE_START) request, its file NULL;
 * false if there is no such guest. */
bool fake_last_request(Hypervisor *h, const char *name, FakeCounter c, SaveRequest *ret);
/* Offers parallel-channel file saves as on a host with @host_cpus CPUs (0: the plain path only,
 * the default): a save's outcome then reports the channels libvirt's backend would pick. */
void fake_set_parallel(Hypervisor *h, unsigned host_cpus);
/* Most operations of a kind in progress at once, over all guests. */
unsigned fake_peak(Hypervisor *h, FakeCounter c);
/* Operations of a kind in progress right now. */
unsigned fake_active(Hypervisor *h, FakeCounter c);
/* While closed, saves entering the fake wait (after counting as active) until it opens:
 * lets a test observe true concurrency without depending on timing. */
void fake_gate_saves(Hypervisor *h, bool closed);
/* Makes the guest stop by itself (as if shut down from inside). Main context. */
void fake_guest_stop(Hypervisor *h, const char *name);
/* Makes the whole hypervisor unreachable (connect/list fail with -ENOTCONN). */
void fake_set_unreachable(Hypervisor *h, bool unreachable);
/* The SHUTDOWN_MODE_* flags of the guest's last shutdown request. */
unsigned fake_last_shutdown_mode(Hypervisor *h, const char *name);
/* Replaces the guest's metadata (NULL: none) and sends GUEST_EVENT_METADATA. Main context. */
void fake_set_metadata(Hypervisor *h, const char *name, const char *metadata);
/* Sets the guest running (next boot: fake state survives, like libvirtd's). */
void fake_set_running(Hypervisor *h, const char *name);
