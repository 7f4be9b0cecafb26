/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Switches the host from libvirt-guests.service to guestkeeper.service, touching no guest:
 * writes @config to @config_path (unless NULL or the file exists), enables and starts
 * guestkeeper, lets libvirt-guests bring back what its last stop left down, then stops it
 * without its stop action and disables it. Prints each step; errors go to stderr. */
int takeover_libvirt_guests(const char *config, const char *config_path);
