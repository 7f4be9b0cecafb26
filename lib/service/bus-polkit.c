/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* polkit's CheckAuthorization over sd-bus (no libpolkit): the handler of a privileged method
 * asks, returns, and is called again with the same message once the answer is in. Looking the
 * handler up afresh, rather than keeping a callback, means nothing can run on an object that
 * went away meanwhile. */
#include "gk-build-config.h"

#include <errno.h>
#include <stdbool.h>

#include "bus-polkit.h"
#include "bus-util.h"
#include "log.h"

#define POLKIT_NAME      "org.freedesktop.PolicyKit1"
#define POLKIT_PATH      "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE "org.freedesktop.PolicyKit1.Authority"
/* CheckAuthorization()'s flags: polkit may ask the user through an authentication agent. */
#define POLKIT_ALLOW_USER_INTERACTION 1u

struct PolkitRegistry {
        GHashTable *queries; /* sd_bus_message* (the method call) → PolkitQuery* */
};

typedef struct PolkitQuery {
        PolkitRegistry *registry;
        sd_bus_message *call;   /* the method call waiting for the answer */
        sd_bus_slot *slot;      /* CheckAuthorization() in flight */
        sd_bus_message *answer; /* its reply or error, once in */
        char *action;
        char *caller; /* "uid 1000 (busctl[4242])" */
        uid_t uid;
} PolkitQuery;

static void polkit_query_free(PolkitQuery *q)
{
        if (!q)
                return;
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->call);
        sd_bus_message_unref(q->answer);
        g_free(q->action);
        g_free(q->caller);
        g_free(q);
}

PolkitRegistry *polkit_registry_new(void)
{
        PolkitRegistry *registry = g_new0(PolkitRegistry, 1);

        registry->queries = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                                  (GDestroyNotify) polkit_query_free);
        return registry;
}

PolkitRegistry *polkit_registry_free(PolkitRegistry *registry)
{
        GHashTableIter iter;
        PolkitQuery *q;

        if (!registry)
                return NULL;
        g_hash_table_iter_init(&iter, registry->queries);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *) &q))
                (void) sd_bus_reply_method_errorf(q->call, SD_BUS_ERROR_NO_REPLY,
                                                  "guestkeeperd stopped before polkit answered");
        g_hash_table_destroy(registry->queries);
        g_free(registry);
        return NULL;
}

/* Only what the bus or the kernel vouch for: a uid read from /proc (augmented) may belong to
 * another process by now. */
static int caller_uid(sd_bus_creds *creds, uid_t *ret)
{
        uint64_t augmented = sd_bus_creds_get_augmented_mask(creds);

        if (!(augmented & SD_BUS_CREDS_EUID) && sd_bus_creds_get_euid(creds, ret) >= 0)
                return 0;
        if (!(augmented & SD_BUS_CREDS_UID) && sd_bus_creds_get_uid(creds, ret) >= 0)
                return 0;
        return -ENODATA;
}

static char *describe(sd_bus_creds *creds, uid_t uid)
{
        const char *comm = NULL;
        pid_t pid = 0;

        (void) sd_bus_creds_get_pid(creds, &pid);
        (void) sd_bus_creds_get_comm(creds, &comm);
        if (pid > 0)
                return g_strdup_printf("uid %u (%s[%i])", (unsigned) uid, comm ?: "?", (int) pid);
        return g_strdup_printf("uid %u", (unsigned) uid);
}

static int polkit_answered(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        PolkitQuery *q = userdata;
        sd_bus *bus = sd_bus_message_get_bus(q->call);
        int r;

        q->slot = sd_bus_slot_unref(q->slot);
        q->answer = sd_bus_message_ref(reply);
        /* The handler reads the call's arguments again. */
        r = sd_bus_message_rewind(q->call, true);
        if (r >= 0)
                r = sd_bus_enqueue_for_read(bus, q->call);
        if (r < 0) {
                (void) sd_bus_reply_method_errnof(q->call, r, "Cannot handle polkit's answer: %m");
                g_hash_table_remove(q->registry->queries, q->call);
        }
        return 0;
}

static bool polkit_absent(const sd_bus_error *e)
{
        return sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                      SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT,
                                      SD_BUS_ERROR_DISCONNECTED);
}

/* polkit's answer → 0 (authorized) or a refusal, logged once with who asked. */
static int polkit_verdict(PolkitQuery *q, sd_bus_error *error)
{
        const char *member = sd_bus_message_get_member(q->call);
        int authorized = 0, challenge = 0, r;

        if (sd_bus_message_is_method_error(q->answer, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(q->answer);
                const char *why = e->message ?: e->name;

                if (polkit_absent(e)) {
                        log_warning("%s() by %s: refused, polkit is unavailable: %s", member, q->caller,
                                    why);
                        return sd_bus_error_setf(
                                error, SD_BUS_ERROR_ACCESS_DENIED,
                                "%s() needs root, or polkit's authorization for %s, and polkit "
                                "is unavailable (caller uid %u): %s",
                                member, q->action, (unsigned) q->uid, why);
                }
                log_warning("%s() by %s: refused, polkit failed: %s", member, q->caller, why);
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s() refused: polkit could not authorize %s for uid %u: %s",
                                         member, q->action, (unsigned) q->uid, why);
        }
        r = sd_bus_message_enter_container(q->answer, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(q->answer, "bb", &authorized, &challenge);
        if (r < 0) {
                log_warning("%s() by %s: refused, polkit's answer is unreadable: %s", member, q->caller,
                            g_strerror(-r));
                return sd_bus_error_setf(
                        error, SD_BUS_ERROR_ACCESS_DENIED,
                        "%s() refused: polkit's answer for %s is unreadable (caller uid %u)", member,
                        q->action, (unsigned) q->uid);
        }
        if (authorized) {
                log_notice("%s() by %s: authorized by polkit (%s)", member, q->caller, q->action);
                return 0;
        }
        if (challenge) {
                log_notice("%s() by %s: refused, polkit requires authentication (%s)", member, q->caller,
                           q->action);
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s() refused: %s requires authentication for uid %u; call with "
                                         "interactive authorization allowed and a polkit agent running",
                                         member, q->action, (unsigned) q->uid);
        }
        log_notice("%s() by %s: refused by polkit (%s)", member, q->caller, q->action);
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "%s() refused: polkit does not authorize %s for uid %u", member, q->action,
                                 (unsigned) q->uid);
}

static int ask_polkit(sd_bus_message *msg, PolkitQuery *q)
{
        g_autoptr(sd_bus_message) check = NULL;
        sd_bus *bus = sd_bus_message_get_bus(msg);
        int r;

        r = sd_bus_message_new_method_call(bus, &check, POLKIT_NAME, POLKIT_PATH, POLKIT_INTERFACE,
                                           "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(check, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s",
                                          sd_bus_message_get_sender(msg), q->action, 0,
                                          sd_bus_message_get_allow_interactive_authorization(msg)
                                                  ? POLKIT_ALLOW_USER_INTERACTION
                                                  : 0u,
                                          "");
        if (r >= 0)
                r = sd_bus_call_async(bus, &q->slot, check, polkit_answered, q, 0);
        return r;
}

int bus_authorize(sd_bus_message *msg, const char *action, PolkitRegistry *registry, sd_bus_error *error)
{
        g_autoptr(sd_bus_creds) creds = NULL;
        PolkitQuery *q;
        uid_t uid;
        int r;

        q = g_hash_table_lookup(registry->queries, msg);
        if (q) {
                if (!q->answer)
                        return 1;
                g_hash_table_steal(registry->queries, msg);
                r = polkit_verdict(q, error);
                polkit_query_free(q);
                return r;
        }

        r = sd_bus_query_sender_creds(msg,
                                      SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID | SD_BUS_CREDS_PID |
                                              SD_BUS_CREDS_COMM | SD_BUS_CREDS_AUGMENT,
                                      &creds);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot identify the caller: %m");
        if (caller_uid(creds, &uid) < 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot identify the caller");
        if (uid == 0)
                return 0;

        q = g_new0(PolkitQuery, 1);
        q->registry = registry;
        q->call = sd_bus_message_ref(msg);
        q->action = g_strdup(action);
        q->caller = describe(creds, uid);
        q->uid = uid;
        r = ask_polkit(msg, q);
        if (r < 0) {
                log_warning("%s() by %s: refused, cannot ask polkit: %s", sd_bus_message_get_member(msg),
                            q->caller, g_strerror(-r));
                sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "%s() needs root, or polkit's authorization for %s, and polkit cannot be "
                                  "asked (caller uid %u): %s",
                                  sd_bus_message_get_member(msg), action, (unsigned) uid, g_strerror(-r));
                polkit_query_free(q);
                return -EACCES;
        }
        g_hash_table_insert(registry->queries, msg, q);
        return 1;
}
