#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The system suite on Debian 13: a trixie tree (tests/system/build-rootfs --suite=trixie)
booted with systemd-nspawn — systemd 257 as PID 1, journald, dbus, logind, and libvirt 11.3 as
Debian ships it (the monolithic libvirtd, socket-activated, with virtlogd and virtlockd: Debian
builds none of the modular daemons) running TCG guests under QEMU 10.0. The project is built inside the tree against its libraries and
its unit suite runs there (tests/system/build-in-tree); that build is what `meson install`
puts into each run's overlay.

The scenarios of the Debian 12 suite (test_system.py, whose Container and scenario machinery
this reuses): a restart of guestkeeper.service touches no guest; a real `systemctl poweroff`
whose saves outlast TimeoutStopSec=1 and logind's delay, carried by the keepalives, while
libvirtd and virtlogd stay up; the next boot resumes the guests."""

import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
import time
import unittest

import test_system
from test_system import (SAVE_ALL_ONE_AT_A_TIME, SYSTEM_URI, TIMEOUT_STOP_SEC, TWO_GUESTS, evidence, seconds_of_day,
                         stop_seconds)

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD_DIR = test_system.BUILD_DIR
SOURCE_DIR = test_system.SOURCE_DIR


def load_build_in_tree():
    loader = importlib.machinery.SourceFileLoader('build_in_tree', os.path.join(HERE, 'build-in-tree'))
    spec = importlib.util.spec_from_loader('build_in_tree', loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


build_in_tree = load_build_in_tree()
# libvirt's own host-shutdown handling (libvirt >= 11.2) configured for its best result, and its
# decisions logged (debug messages of the module that carries them out).
AUTO_SHUTDOWN = ('auto_shutdown_try_save = "persistent"\nauto_shutdown_try_shutdown = "all"\n'
                 'auto_shutdown_poweroff = "all"\nauto_shutdown_restore = 1\n')
AUTO_SHUTDOWN_LOG = 'log_filters = "1:hypervisor.domain_driver"\nlog_outputs = "1:journald"\n'
# The libvirt daemons whose stop must come after the preserve run's end: Debian 13 runs the
# monolithic libvirtd (it builds none of the modular daemons), virtlogd (QEMU's output) and
# virtlockd (its socket: libvirtd wants it).
DAEMONS = ('libvirtd.service', 'virtlogd.service', 'libvirtd.socket', 'virtlogd.socket', 'virtlockd.socket')
# Saved one at a time these take ~3 s under TCG on a quiet machine (more under load), past
# logind's delay (1 s here) and TimeoutStopSec=1 (with only the first two, the run ended 0.94 s
# after the stop began on a quiet machine: not past TimeoutStopSec); smaller than the Debian 12
# suite's three, whose 1024 MiB fill alone took ~3 min here.
GUESTS = [('small', 128, 0), ('medium', 512, 400), ('medium2', 512, 400)]


def first_line(journal, pattern):
    """The time (seconds of the day) of the first journal line matching @pattern, or None."""
    m = re.search(rf'^(\S+ \S+ \S+) .*{pattern}', journal, re.M)
    return seconds_of_day(m.group(1)) if m else None


class TrixieSystemTest(test_system.SystemTest):
    times = {}

    @classmethod
    def setUpClass(cls):
        t = time.monotonic()
        cls.rootfs = build_in_tree.rootfs_path()
        cls.times['tree'] = time.monotonic() - t
        t = time.monotonic()
        cls.cache = build_in_tree.build(os.path.abspath(SOURCE_DIR))
        cls.times['build and unit suite in the tree'] = time.monotonic() - t
        cls.image = test_system.guests_mod.image_dir()

    @classmethod
    def tearDownClass(cls):
        print('\n  trixie: ' + ', '.join(f'{k} {v:.0f} s' for k, v in cls.times.items()), file=sys.stderr)

    def install_into(self, stage):
        """`meson install` of the tree's own build, run in the tree."""
        r = build_in_tree.in_tree(self.rootfs, self.cache, 'meson install -C /gk/build --no-rebuild --quiet '
                                  '--destdir /stage', binds=[(stage, '/stage')])
        if r.returncode != 0:
            raise AssertionError(f'meson install in the tree failed: {r.stdout}{r.stderr}')

    def tree(self, script):
        """@script run in the tree (this run's overlay, chrooted): its output."""
        return self.c.in_overlay(f'chroot {self.c.merged} /bin/sh -ec {subprocess.list2cmdline([script])}').stdout

    def journal(self, boot, *args):
        """The container's journal read by its own journalctl (systemd 257's files)."""
        boot_id = re.findall(r'\b[0-9a-f]{32}\b', self.tree('journalctl -D /var/log/journal --list-boots --no-pager'))[boot]
        return self.tree(f'journalctl -D /var/log/journal -b {boot_id} --no-pager -o short-precise '
                         + ' '.join(args))

    def timed_boot(self, name):
        t = time.monotonic()
        console = self.c.boot()
        self.times[name] = time.monotonic() - t
        return console

    def test_unit_suite_in_the_tree(self):
        """The project built against Debian 13's libraries passed its unit suite there."""
        with open(os.path.join(self.cache, 'build', 'meson-logs', 'meson-log.txt'), errors='replace') as f:
            setup = f.read()
        # "Run-time dependency … found" at the first setup, "Dependency … found (cached)" after a
        # reconfiguration of the incremental build.
        self.assertRegex(setup, r'[Dd]ependency libvirt found: YES 11\.3\.')
        self.assertRegex(setup, r'[Dd]ependency libsystemd found: YES 257')
        with open(os.path.join(self.cache, 'unit.txt'), errors='replace') as f:
            out = f.read()
        self.assertRegex(out, rf'(?m)^Ok: +{len(test_system_unit_tests())}\s*$', out[-3000:])
        self.assertRegex(out, r'(?m)^Fail: +0\s*$')

    def test_restart_poweroff_resume(self):
        """Boot 1: the guests run; `systemctl restart guestkeeper.service`: a new daemon, the same
        QEMU processes, not one lifecycle event. Then `systemctl poweroff`: the saves (one at a
        time, ~3 s) outlast TimeoutStopSec=1 and logind's 1 s delay, carried by the keepalives;
        libvirtd, virtlogd and their sockets are stopped only after the run is over. Boot 2: every guest
        resumed from its image."""
        self.prepare(['guestkeeper.service'], mode='restart', guests=GUESTS, config=SAVE_ALL_ONE_AT_A_TIME)
        self.timed_boot('boot 1 (guests up, restart, poweroff with the saves)')
        first = self.journal(0)
        restart = self.read('/var/lib/gk-scenario/restart')
        events = self.read('/var/lib/gk-scenario/events')
        with open(os.path.join(BUILD_DIR, 'system-trixie.txt'), 'w') as f:
            f.write(f'--- restart\n{restart}\n--- events\n{events}\n--- shutdown\n{evidence(first)}'
                    + '\n'.join(line for line in first.split('\n') if re.search(r'virt\w+d', line)) + '\n')
        # The restart: a new daemon, the same guests, untouched.
        lines = dict(line.split(': ', 1) for line in restart.split('\n') if ': ' in line)
        self.assertIn('restart exit=0', restart)
        qemu = re.search(r'qemu: (.*)$', lines['before']).group(1).strip()
        self.assertRegex(qemu, r'^small=\d+ medium=\d+ medium2=\d+$')
        self.assertRegex(lines['after'], r'^guestkeeper=active/enabled pid=[1-9]\d* ')
        self.assertEqual(re.search(r'qemu: (.*)$', lines['after']).group(1).strip(), qemu)
        pid = re.compile(r'pid=(\d+)')
        self.assertNotEqual(pid.search(lines['before']).group(1), pid.search(lines['after']).group(1))
        for name, _, _ in GUESTS:
            self.assertIn(f'{name} state=running', restart)
            self.assertNotIn(f"domain '{name}'", events, events)
            self.assertNotIn(f'domain {name}', events, events)
        self.assertRegex(events, r"event 'lifecycle' for domain '?probe'?: Defined", events)
        self.assertRegex(first, r'guestkeeperd\[\d+\]: SIGTERM and the host is not shutting down .*: '
                                r'exiting, no guest touched')

        # The poweroff (what follows the restart): a real PrepareForShutdown, the saves carried
        # past TimeoutStopSec.
        self.assertIn('The system will power off now!', first)
        first = first[first.index('The system will power off now!'):]
        self.assertIn('logind: PrepareForShutdown(true)', first)
        self.assertRegex(first, r'Preserve run finished: 3 guests, 3 done, 0 failed')
        self.assertNotIn('end of file', first)
        self.assertNotRegex(first, r'guestkeeper\.service: State .stop-sigterm. timed out')
        self.assertRegex(first, r'guestkeeper\.service: Deactivated successfully')
        self.assertNotRegex(first, r'qemu.*(terminating on signal|shutting down, reason=crashed)')
        stop = first_line(first, r'Stopping guestkeeper\.service')
        done = first_line(first, r'guestkeeperd\[\d+\]: Preserve run finished')
        self.assertTrue(stop and done, first[-3000:])
        carried = done - stop
        self.assertGreater(carried, TIMEOUT_STOP_SEC)
        # The modular daemons outlived the run: each was stopped (or its socket closed) after it.
        order = {}
        for unit in DAEMONS:
            verb = 'Closed' if unit.endswith('.socket') else 'Stopping'
            order[unit] = first_line(first, rf'{verb} {re.escape(unit)}')
            self.assertIsNotNone(order[unit], f'{unit} never stopped:\n{evidence(first)[-3000:]}')
            self.assertGreater(order[unit], done, f'{unit} stopped before the run was over')
        print(f'\n  trixie poweroff: the run finished {carried:.1f} s after the stop began (TimeoutStopSec='
              f'{TIMEOUT_STOP_SEC}; the whole stop took {stop_seconds(first, "guestkeeper.service"):.1f} s); '
              + ', '.join(f'{u} {order[u] - done:+.2f} s' for u in DAEMONS), file=sys.stderr)

        self.timed_boot('boot 2 (resume)')
        r = self.results()
        self.assert_resumed(r, GUESTS)
        second = self.journal(1)
        self.assertRegex(second, r'Restore run finished: 3 guests, 3 done, 0 failed')

    def test_libvirt_auto_shutdown_gets_its_guests(self):
        """libvirt's own auto-shutdown enabled in qemu.conf on a host running guestkeeper.
        libvirt 11.3 acts on logind's PrepareForShutdown, at the same moment as guestkeeperd, so
        no ordering of the units separates them; when both acted, a guest came back paused
        (docs/migration.md). So guestkeeperd reports each key as a CONFLICT and leaves the
        guests the keys cover to libvirt: at the poweroff libvirt alone saves them, and at the
        next boot libvirt's auto_shutdown_restore resumes them, running, not paused; guestkeeper
        neither saves nor starts them. (logind's delay is raised here so that libvirt's saves,
        one at a time, end before it runs out: this checks the handover, not libvirt's limits,
        which bench/bench-autoshutdown.py measures.)"""
        self.prepare(['guestkeeper.service'], guests=TWO_GUESTS, config=SYSTEM_URI)
        m = self.c.merged
        self.c.in_overlay(f"printf '%s' '{AUTO_SHUTDOWN}' >>{m}/etc/libvirt/qemu.conf\n"
                          f"printf '%s' '{AUTO_SHUTDOWN_LOG}' >>{m}/etc/libvirt/libvirtd.conf\n"
                          f"printf '[Login]\\nInhibitDelayMaxSec=60\\n' >{m}/etc/systemd/logind.conf.d/zz-libvirt.conf")
        self.timed_boot('auto-shutdown: boot 1 (libvirt saves)')
        first = self.journal(0)
        with open(os.path.join(BUILD_DIR, 'system-trixie-auto-shutdown.txt'), 'w') as f:
            f.write(evidence(first) + '\n'.join(line for line in first.split('\n') if 'libvirtd[' in line) + '\n')
        for key, value, which in (('try_save', 'persistent', 'the persistent'), ('try_shutdown', 'all', 'all the'),
                                  ('poweroff', 'all', 'all the')):
            self.assertIn(f'CONFLICT: /etc/libvirt/qemu.conf: auto_shutdown_{key} = "{value}": libvirt\'s own '
                          f'auto-shutdown acts at shutdown on {which} guests of qemu:///system; guestkeeper leaves '
                          'them to it', first)
        for name, _, _ in TWO_GUESTS:
            self.assertRegex(first, rf"guestkeeperd\[\d+\]: .*{name}: left to libvirt's own auto-shutdown")
        self.assertRegex(first, r'guestkeeperd\[\d+\]: Preserve run finished: 0 guests')
        self.assertRegex(first, r'libvirtd\[\d+\]: .*Auto shutdown with 2 running domains')
        # libvirt's saves ended on their own: none was aborted, none found its guest gone.
        self.assertNotRegex(first, r'unable to perform managed save|guest unexpectedly quit|operation aborted')
        self.assertNotRegex(first, r'guestkeeperd\[\d+\]: (small|medium): (saved|shutdown|poweroff|preserve failed)')

        self.timed_boot('auto-shutdown: boot 2 (libvirt restores)')
        self.assert_resumed(self.results(), TWO_GUESTS)
        second = self.journal(1)
        with open(os.path.join(BUILD_DIR, 'system-trixie-auto-shutdown.txt'), 'a') as f:
            f.write('--- boot 2\n' + '\n'.join(line for line in second.split('\n')
                                               if re.search(r'libvirtd\[|guestkeeperd\[|gk-scenario|Started|Starting', line))
                    + '\n')
        self.assertNotRegex(second, r'guestkeeperd\[\d+\]: (.*stopped while guestkeeper was not watching|'
                                    r'(small|medium): restored)')
        self.assertNotRegex(second, r'guestkeeperd\[\d+\]: Restore run finished: [1-9]')


def test_system_unit_tests():
    """The unit tests tests/meson.build declares."""
    with open(os.path.join(SOURCE_DIR, 'tests', 'meson.build')) as f:
        text = f.read()
    block = re.search(r'unit_tests = \[(.*?)\]', text, re.S).group(1)
    return re.findall(r"'([^']+)'", block)


def load_tests(loader, tests, pattern):
    """Only the tests written here (not those TrixieSystemTest inherits from the Debian 12 suite)."""
    suite = unittest.TestSuite()
    for name in sorted(n for n in vars(TrixieSystemTest) if n.startswith('test_')):
        suite.addTest(TrixieSystemTest(name))
    return suite


if __name__ == '__main__':
    unittest.main(verbosity=2)
