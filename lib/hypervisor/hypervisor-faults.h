/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Fault injection around a real backend: every call goes to the inner hypervisor except
 * the faults set for a guest (by name). Used by the demo (a test-driver guest that ignores
 * ACPI) and the fault-injection tests. */

#include "hypervisor.h"

typedef enum Fault {
        FAULT_SAVE_FAILS = 1 << 0,      /* save returns an error, the guest keeps running */
        FAULT_IGNORE_SHUTDOWN = 1 << 1, /* the ACPI request "succeeds" and nothing happens */
        FAULT_DESTROY_FAILS = 1 << 2,
        FAULT_START_FAILS = 1 << 3,
        FAULT_SLOW_SAVE = 1 << 4, /* the save starts 3 s late: a save that takes time */
        /* The ACPI request is accepted and the guest stops 1 s later, while every state query
         * still says it runs: only the lifecycle event can tell that it stopped. */
        FAULT_LATE_STOP = 1 << 5,
        FAULT_SLOW_START = 1 << 6, /* the start (or resume) begins 3 s late */
} Fault;

#define FAULT_SLOW_SAVE_USEC  (3 * USEC_PER_SEC)
#define FAULT_LATE_STOP_USEC  (1 * USEC_PER_SEC)
#define FAULT_SLOW_START_USEC (3 * USEC_PER_SEC)

Hypervisor *hypervisor_faults_new(Hypervisor *inner);
/* Adds @faults to the guest's; 0 clears them. */
void faults_set(Hypervisor *h, const char *guest_name, unsigned faults);
/* Parses "save-fails", "ignore-shutdown", "destroy-fails", "start-fails", "slow-save",
 * "late-stop", "slow-start"; -EINVAL otherwise. */
int fault_from_string(const char *s);
/* Applies "NAME=KIND[,NAME=KIND...]" (the GUESTKEEPER_FAULTS testing aid). -EINVAL with
 * *ret_error on a bad item. */
int faults_parse(Hypervisor *h, const char *spec, char **ret_error);
