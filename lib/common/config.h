/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <glib.h>

#include "terms.h"

#define CONFIG_DEFAULT_PATH SYSCONFDIR "/guestkeeper/guestkeeper.conf"

/* Upper bounds of the seconds and count keys: a week, and 100000. Larger is a typo, and it
 * keeps µs arithmetic far from overflow. Shared with the libvirt-guests importer. */
#define CONFIG_SECONDS_MAX (7u * 24u * 3600u)
#define CONFIG_COUNT_MAX   100000u

/* systemd's poweroff.target (and reboot/halt/kexec) has JobTimeoutSec=30min: a preserve run
 * longer than that is cut short by the host powering off. */
#define CONFIG_POWEROFF_JOB_TIMEOUT_SEC (30u * 60u)

/* What can be set per guest, in a [Guest GLOB] section or in the guest's libvirt metadata. */
typedef enum GuestKey {
        GUEST_KEY_ACTION,
        GUEST_KEY_SHUTDOWN_TIMEOUT,
        GUEST_KEY_ORDER,
        GUEST_KEY_SHUTDOWN_MODE,
        GUEST_KEY_START_DELAY,
        _GUEST_KEY_MAX,
        _GUEST_KEY_INVALID = -EINVAL,
} GuestKey;

/* The metadata's element names ("shutdown-timeout"), which are also Plan()'s keys. */
const char *guest_key_to_string(GuestKey k);
GuestKey guest_key_from_string(const char *s);
/* The config keys ("ShutdownTimeoutSec"). */
const char *guest_key_to_config_key(GuestKey k);

#define CONFIG_ORDER_MAX 100000

typedef struct GuestSettings {
        unsigned set; /* 1 << GuestKey: the keys given */
        Action action;
        guint64 shutdown_timeout_usec;
        int order;
        unsigned shutdown_mode; /* SHUTDOWN_MODE_* */
        guint64 start_delay_usec;
} GuestSettings;

/* Parses @value for @key into @s and marks it set; on error *ret_what says what is wrong. */
int guest_settings_parse(GuestSettings *s, GuestKey key, const char *value, char **ret_what);
/* The value of a set key as text (the forms the parser accepts). */
char *guest_settings_format(const GuestSettings *s, GuestKey key);

typedef struct GuestSection {
        char *name; /* "Guest web-*", as written */
        char *glob; /* fnmatch(3) patterns on the guest name, separated by blanks */
        GuestSettings settings;
} GuestSection;

GuestSection *guest_section_free(GuestSection *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GuestSection, guest_section_free);

/* SaveChannels=auto, and the most QEMU takes (multifd-channels). */
#define CONFIG_SAVE_CHANNELS_AUTO G_MAXUINT
#define CONFIG_SAVE_CHANNELS_MAX  255u

/* The parsed configuration: a plain struct, every key of guestkeeper.conf(5). Times in µs. */
typedef struct Config {
        char **uris; /* "default" kept as is: the hypervisor layer resolves it */
        Scope save;
        Scope shutdown;
        Scope poweroff;
        guint64 shutdown_timeout_usec; /* 0 = no limit */
        guint64 deadline_usec;         /* 0 = no limit */
        unsigned parallel_saves;       /* 0 = no limit */
        unsigned parallel_shutdowns;   /* 0 = no limit */
        bool bypass_cache;
        unsigned save_channels; /* CONFIG_SAVE_CHANNELS_AUTO, 0 = the plain format, N channels */
        bool restore;
        guint64 start_delay_usec;
        guint64 connect_timeout_usec; /* a URI silent that long is unreachable for the run; 0 = none */
        unsigned parallel_starts;     /* 0 = no limit */
        bool sync_time;
        unsigned shutdown_mode;       /* SHUTDOWN_MODE_* */
        guint64 shutdown_repeat_usec; /* re-send a graceful request this often; 0 = once */
        guint64 agent_timeout_usec;   /* at boot, how long a group waits for guest agents */
        bool restore_after_crash;     /* start guests lost while nobody watched (power cut, crash) */
        guint64 restore_retry_usec;   /* how long failed starts are retried after a restore began */
        char *managed_save_dir;       /* libvirt's managed-save images: NULL = by URI, "" = no check */
        bool abort_jobs;              /* abort a running domain job (backup, dump) before a save */
        char *metrics_textfile;       /* node_exporter textfile kept up to date; NULL = none */
        GPtrArray *guest_sections;    /* GuestSection*, in the order read (later wins) */
        /* Not a guestkeeper.conf key: the guests of the local QEMU system driver that libvirt's
         * own auto-shutdown acts on (qemu.conf), which guestkeeper leaves to it at shutdown. Set
         * by the manager from conflicts_libvirt_auto_shutdown(). */
        Scope libvirt_auto_shutdown;
} Config;

Config *config_new_default(void);
Config *config_copy(const Config *c);
Config *config_free(Config *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Config, config_free);

/* Reads @path, then @path.d/\*.conf in lexical order (later wins).
 * @must_exist: a missing @path is an error (given with --config) rather than "all defaults".
 * On error returns negative errno and sets *ret_error to "FILE: [Section] Key: what is wrong".
 * Unknown groups/keys are appended to @warnings (may be NULL) as strings of the same form. */
int config_load(const char *path, bool must_exist, Config **ret, GPtrArray *warnings, char **ret_error);

/* Parses a value of a *Sec= key: a systemd.time(7) span ("300", "5min", "1h 30s", "1.5s",
 * "500ms"; several parts are summed; no unit = seconds) up to CONFIG_SECONDS_MAX.
 * -EINVAL when it is not a span, -ERANGE when too large, -EDOM when not 0 but below 1 µs. */
int config_parse_timespan(const char *v, guint64 *ret_usec);

/* Parses plain decimal digits (no sign, unit or hex) up to @max: -EINVAL, -ERANGE. */
int config_parse_unsigned(const char *v, unsigned max, unsigned *ret);

/* Parses one file's text into @c (used by config_load and the fuzzer). @name is for messages. */
int config_apply_data(Config *c, const char *name, const char *data, gsize len, GPtrArray *warnings,
                      char **ret_error);
