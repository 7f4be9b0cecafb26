#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end on real QEMU guests (TCG) under a private libvirtd, with guestkeeperd on a private
system bus, dbusmock's logind and a NOTIFY_SOCKET listener. What is asserted is what a user
checks: libvirt's view of each guest, the record, D-Bus, notify messages, and the guest's own
serial console (a resumed guest's heartbeat goes on; a booted one starts again)."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

import libvirt

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
sys.path.insert(0, HERE)
import guests  # noqa: E402
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

libvirt.registerErrorHandler(lambda *a: None, None)


class E2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.image = guests.image_dir()
        cls.lvdir = harness.Workdir()
        cls.libvirtd = harness.Libvirtd(cls.lvdir.path)
        cls.uri = cls.libvirtd.uri('qemu', '/system')

    @classmethod
    def tearDownClass(cls):
        cls.libvirtd.stop()
        cls.lvdir.cleanup()

    def setUp(self):
        harness.setup_environment(self)
        self.conn = libvirt.open(self.uri)
        self.addCleanup(lambda: self.conn.close())  # whichever connection is current by then
        self.consoles = {}
        self.client = None
        self.addCleanup(self.remove_guests)

    def remove_guests(self):
        for d in self.conn.listAllDomains():
            persistent = d.isPersistent()
            if d.isActive():
                d.destroy()
            if persistent:
                if d.hasManagedSaveImage():
                    d.managedSaveRemove()
                d.undefine()

    def boot(self, *specs):
        """specs: (name, kind, memory MiB, fill MiB, persistent). Starts them all, then waits
        until each one's init is ready."""
        for name, kind, mem, fill, persistent in specs:
            console = os.path.join(self.wd.path, f'{name}.console')
            self.consoles[name] = guests.Console(console)
            xml = guests.domain_xml(name, self.image, console, kind, mem, fill)
            if persistent:
                self.conn.defineXML(xml).create()
            else:
                self.conn.createXML(xml, 0)
        for name, *_ in specs:
            self.consoles[name].wait_for('GK-READY', timeout=180)

    def state(self, name):
        return harness.guest_state(self.conn, name)

    def start_daemon(self, extra='', uris=None, wait_idle=True):
        cfg = os.path.join(self.wd.path, 'guestkeeper.conf')
        with open(cfg, 'w') as f:
            f.write(f'[Guests]\nURIs={uris or self.uri}\n{extra}')
        self.daemon = harness.Daemon(self.wd.path, self.bus, self.notify, cfg)
        self.addCleanup(self.daemon.kill)
        self.client = harness.Client(self.bus)  # before the start: the restore may end at once
        self.daemon.start()
        if wait_idle:
            self.client.wait_state('idle', timeout=30)
        return self.daemon

    def record(self):
        return harness.parse_record(os.path.join(self.daemon.state_dir, 'record'))

    def save_path(self, name):
        return os.path.join(self.libvirtd.dir, 'lib', 'qemu', 'save', f'{name}.save')

    def test_hung_uri_next_to_real_guests(self):
        """On real guests: one URI accepts and never answers (a hung libvirtd);
        the bus stays fast the whole time and the other URI's real guests are preserved."""
        from test_safety import SilentServer
        silent = SilentServer(os.path.join(self.wd.path, 'silent-sock'))
        self.addCleanup(silent.hang_up)
        self.boot(('coop', 'cooperative', 128, 0, True), ('big', 'cooperative', 512, 300, True))
        self.start_daemon('ConnectTimeoutSec=3\n[Shutdown]\nSave=all\n', uris=f'{silent.uri()} {self.uri}')
        wait_until(lambda: silent.accepted > 0, 10, 'a connection to the silent socket')
        worst = 0.0

        def read():
            nonlocal worst
            t = time.monotonic()
            self.client.get('State')
            self.client.list_guests()
            worst = max(worst, time.monotonic() - t)
            return self.client.run_finished

        self.logind.emit_prepare_for_shutdown(True)
        wait_until(read, 120, 'RunFinished')
        self.assertEqual(self.client.run_finished[0][1:], (2, 1))
        self.assertLess(worst, 0.2 * harness.SCALE, 'a bus call waited on the hung URI')
        self.assertEqual((self.state('coop'), self.state('big')), ('saved', 'saved'))
        self.assertFalse(self.client.get('InhibitorHeld'))
        self.assertEqual(self.daemon.stop(), 0)

    def test_host_shutdown_then_next_boot(self):
        self.boot(('coop', 'cooperative', 128, 0, True), ('big', 'cooperative', 512, 300, True),
                  ('tmp', 'cooperative', 128, 0, False), ('failsave', 'cooperative', 128, 0, True))
        # A real failing save: a directory where libvirt writes failsave's image (EISDIR).
        os.makedirs(self.save_path('failsave'))
        self.start_daemon('[Shutdown]\nSave=all\nShutdownTimeoutSec=30\nParallelSaves=2\n')
        ticks = {n: c.last_tick() for n, c in self.consoles.items()}

        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=120)
        self.assertEqual((done, failed), (4, 0))
        self.assertEqual(self.state('coop'), 'saved')
        self.assertEqual(self.state('big'), 'saved')
        self.assertEqual(self.state('tmp'), 'gone')
        self.assertEqual(self.state('failsave'), 'shutoff')
        self.assertIn('GK-POWEROFF', self.consoles['failsave'].text())  # it heard the ACPI button
        rec = self.record()
        self.assertEqual({n: g['Outcome'] for n, g in rec.items()},
                         {'coop': 'saved', 'big': 'saved', 'tmp': 'saved', 'failsave': 'shutdown'})
        self.assertIn('save failed', rec['failsave']['Error'])
        self.assertTrue(os.path.getsize(rec['tmp']['SaveFile']) > 1 << 20)
        self.assertGreater(os.path.getsize(self.save_path('big')), 300 << 20)  # the filled memory
        self.assertTrue(self.notify.values('EXTEND_TIMEOUT_USEC'))
        wait_until(lambda: not self.logind.our_inhibitors(), 10, 'the inhibitor released')
        self.assertEqual(self.daemon.stop(), 0)

        # Next boot (the admin freed failsave's save path), with SyncTime=yes: the tiny image
        # has no guest agent, so setting a resumed guest's clock fails for real, which must
        # cost a warning and nothing else.
        os.rmdir(self.save_path('failsave'))
        self.start_daemon('[Shutdown]\nSave=all\n[Boot]\nSyncTime=yes\n')
        kind, done, failed = self.client.wait_run_finished('restore', timeout=120)
        self.assertEqual((done, failed), (4, 0))
        for n in ('coop', 'big', 'tmp'):  # resumed from a save: their clocks are behind
            wait_until(lambda: f'warning: Could not set the clock of {n}: ' in self.daemon.log_text(), 30,
                       f'the clock of {n} set (attempted)')
        self.assertIn('guest agent', self.daemon.log_text())
        self.assertNotIn('Could not set the clock of failsave', self.daemon.log_text())  # booted afresh
        for n in ('coop', 'big', 'tmp', 'failsave'):
            self.assertEqual(self.state(n), 'running', n)
        self.assertFalse(self.conn.lookupByName('tmp').isPersistent())
        # Proof from inside: the saved guests resumed (no second init, the heartbeat goes on),
        # the one that was shut down booted again.
        for n in ('coop', 'big', 'tmp'):
            c = self.consoles[n]
            c.wait_tick_after(ticks[n])
            self.assertEqual(c.count('GK-INIT'), 1, f'{n} booted instead of resuming')
        self.consoles['failsave'].wait_for('GK-INIT', 2)
        self.assertEqual(self.record(), {})

    def test_stuck_guest_powered_off_after_timeout(self):
        self.boot(('stuck', 'stuck', 128, 0, True), ('coop', 'cooperative', 128, 0, True))
        self.start_daemon('[Shutdown]\nSave=none\nShutdownTimeoutSec=5\n')
        t = time.monotonic()
        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=60)
        took = time.monotonic() - t
        self.assertEqual((done, failed), (2, 0))
        self.assertGreaterEqual(took, 5)
        rec = self.record()
        self.assertEqual(rec['stuck']['Outcome'], 'poweroff')
        self.assertIn('did not shut down within 5 s', rec['stuck']['Error'])
        self.assertEqual(rec['coop']['Outcome'], 'shutdown')
        self.assertIn('GK-POWEROFF', self.consoles['coop'].text())
        self.assertNotIn('GK-POWEROFF', self.consoles['stuck'].text())
        self.assertEqual(self.state('stuck'), 'shutoff')

    def test_rehearsal_preserve_then_restore(self):
        self.boot(('vm1', 'cooperative', 128, 0, True), ('vm2', 'cooperative', 256, 100, True))
        self.start_daemon('[Shutdown]\nParallelSaves=2\n')
        ticks = {n: c.last_tick() for n, c in self.consoles.items()}
        self.client.call('PreserveGuests')
        self.assertEqual(self.client.wait_run_finished('preserve', timeout=60)[1:], (2, 0))
        self.assertEqual(self.state('vm1'), 'saved')
        self.assertEqual(self.state('vm2'), 'saved')
        self.assertTrue(self.logind.our_inhibitors())  # a rehearsal keeps the lock
        self.client.call('RestoreGuests')
        self.assertEqual(self.client.wait_run_finished('restore', timeout=60)[1:], (2, 0))
        for n in ('vm1', 'vm2'):
            self.assertEqual(self.state(n), 'running')
            self.consoles[n].wait_tick_after(ticks[n])
            self.assertEqual(self.consoles[n].count('GK-INIT'), 1)

    def test_progress_and_bus_during_a_real_save(self):
        """A real save of a big guest (~4 s here; progress is read every second, so the save
        must last a few of them): Progress counts its bytes (libvirt's job stats), STATUS shows
        a percentage, and the bus answers at once all along."""
        self.boot(('big', 'cooperative', 1536, 1100, True))
        self.start_daemon('[Shutdown]\nSave=all\n')
        self.client.call('PreserveGuests')  # rehearsal; returns at once
        self.client.wait_state('preserving')
        worst, reads, progress = 0, 0, set()
        while self.client.get('State') == 'preserving':
            t = time.monotonic()
            progress.add(self.client.get('Progress'))
            worst = max(worst, time.monotonic() - t)
            reads += 1
        self.assertEqual(self.client.wait_run_finished('preserve', timeout=60)[1:], (1, 0))
        self.assertEqual(self.state('big'), 'saved')
        self.assertGreater(reads, 20)
        self.assertLess(worst, 0.1 * harness.SCALE, f'a property read took {worst * 1000:.0f} ms during the save')
        # One guest: without the bytes of the save in flight, Progress is only ever 0 or 1.
        self.assertTrue([p for p in progress if 0 < p < 1], f'Progress took only {sorted(progress)}')
        pct = [int(m[1]) for m in (re.fullmatch(r'Preserving 0/1 guests: saving big \((\d+)%\)', s)
                                   for s in self.notify.values('STATUS')) if m]
        self.assertTrue([p for p in pct if 0 < p < 100], f'STATUS percentages: {pct}')
        self.assertEqual(pct, sorted(pct))  # never backwards

    def test_plain_sigterm_leaves_guests_running(self):
        self.boot(('vm1', 'cooperative', 128, 0, True), ('tmp', 'cooperative', 128, 0, False))
        d = self.start_daemon()
        d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(d.proc.wait(5), 0)
        self.assertEqual(self.state('vm1'), 'running')
        self.assertEqual(self.state('tmp'), 'running')
        tick = self.consoles['vm1'].last_tick()
        self.consoles['vm1'].wait_tick_after(tick)  # still alive, not paused


class GuestFaultsE2E(E2E):
    """Guests that pause, stop by themselves, or outlast the deadline, for real."""

    test_hung_uri_next_to_real_guests = None
    test_host_shutdown_then_next_boot = None
    test_stuck_guest_powered_off_after_timeout = None
    test_rehearsal_preserve_then_restore = None
    test_plain_sigterm_leaves_guests_running = None
    test_progress_and_bus_during_a_real_save = None

    def test_paused_and_self_stopping_guests(self):
        # One save slot and two big guests (a save of ~3 s each): whichever is saved first,
        # the other one waits for the slot, and powers itself off meanwhile (its ACPI button,
        # from outside guestkeeper). The paused one is saved before or after them.
        self.boot(('big1', 'cooperative', 1024, 700, True), ('big2', 'cooperative', 1024, 700, True),
                  ('napper', 'cooperative', 128, 0, True))
        self.conn.lookupByName('napper').suspend()
        self.start_daemon('[Shutdown]\nSave=all\nParallelSaves=1\n')
        self.logind.emit_prepare_for_shutdown(True)
        saving = wait_until(lambda: [n for n, r in self.client.list_guests().items()
                                     if r[4] == 'saving' and n.startswith('big')], 30, 'a big save')[0]
        leaver = 'big2' if saving == 'big1' else 'big1'
        self.assertEqual(self.client.list_guests()[leaver][4], '')  # waiting for the slot
        self.conn.lookupByName(leaver).shutdown()
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=120)
        self.assertEqual((done, failed), (3, 0))
        rec = self.record()
        self.assertEqual({n: g['Outcome'] for n, g in rec.items()},
                         {saving: 'saved', leaver: 'shutdown', 'napper': 'saved'})
        self.assertIn(f'{leaver} stopped by itself', self.daemon.log_text())  # while it waited
        self.assertIn('GK-POWEROFF', self.consoles[leaver].text())
        self.assertEqual((self.state(saving), self.state(leaver), self.state('napper')),
                         ('saved', 'shutoff', 'saved'))
        self.client.call('RestoreGuests')
        self.client.wait_run_finished('restore', timeout=120)
        self.assertEqual(self.state(leaver), 'running')
        # The paused guest comes back as it was: paused.
        self.assertEqual(self.conn.lookupByName('napper').info()[0], libvirt.VIR_DOMAIN_PAUSED)

    def test_deadline_during_real_saves(self):
        self.boot(('big1', 'cooperative', 512, 400, True), ('big2', 'cooperative', 512, 400, True))
        self.start_daemon('[Shutdown]\nSave=all\nParallelSaves=1\nDeadlineSec=1\n')
        t = time.monotonic()
        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=60)
        took = time.monotonic() - t
        self.assertEqual(failed, 0)
        self.assertLess(took, 1 + 5, f'run took {took:.1f} s with DeadlineSec=1')
        rec = self.record()
        # Whatever was not saved by the deadline was powered off: nothing left running.
        for n in ('big1', 'big2'):
            self.assertIn(rec[n]['Outcome'], ('saved', 'poweroff'), rec[n])
            self.assertNotEqual(self.state(n), 'running')
        self.assertIn('poweroff', [rec[n]['Outcome'] for n in ('big1', 'big2')])


NS = 'https://guestkeeper.org/xmlns/guest/1'


class PolicyE2E(E2E):
    """Per-guest policy on real guests: order groups both ways (the guest agent answering
    between groups at boot), skip, metadata over a config section, a guest that misses the
    first ACPI press, and a shutdown through the guest agent."""

    test_host_shutdown_then_next_boot = None
    test_stuck_guest_powered_off_after_timeout = None
    test_rehearsal_preserve_then_restore = None
    test_plain_sigterm_leaves_guests_running = None
    test_progress_and_bus_during_a_real_save = None
    test_hung_uri_next_to_real_guests = None

    def set_metadata(self, name, body):
        d = self.conn.lookupByName(name)
        d.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, f'<guest>{body}</guest>', 'gk', NS,
                      libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)

    def boot_with_agent(self, name):
        console = os.path.join(self.wd.path, f'{name}.console')
        self.consoles[name] = guests.Console(console)
        self.conn.defineXML(guests.domain_xml(name, self.image, console, 'cooperative', agent=True)).create()

    def watch_run(self, kind, groups, timeout=180):
        """Polls ListGuests until the run ends. Returns (snapshots, first active, last done):
        every snapshot is checked for the barrier: no guest of a later group has begun while a
        guest of an earlier group has not finished."""
        final = {'preserve': ('saved', 'shutdown', 'poweroff', 'failed'), 'restore': ('restored', 'failed')}[kind]
        t0 = time.monotonic()
        began, finished, snapshots = {}, {}, []
        count = len([r for r in self.client.run_finished if r[0] == kind])
        while len([r for r in self.client.run_finished if r[0] == kind]) <= count:
            rows = self.client.list_guests()
            now = time.monotonic() - t0
            out = {n: rows[n][4] for g in groups for n in g if n in rows}
            snapshots.append((now, out))
            for n, o in out.items():
                if o and o not in ('skipped',) and (kind == 'preserve' or o in ('restoring', 'restored')):
                    began.setdefault(n, now)
                if o in final:
                    finished.setdefault(n, now)
            for i, later in enumerate(groups[1:], 1):
                for n in later:
                    if n in began and began[n] == now:
                        for m in (m for g in groups[:i] for m in g):
                            self.assertIn(out.get(m), final, f'{kind}: {n} began at {now:.1f} s while {m} was '
                                                             f'{out.get(m)!r}: {snapshots[-3:]}')
            self.assertLess(now, timeout, f'{kind} run too long')
            harness.iterate(0.05)
        return snapshots, began, finished

    def test_groups_policy_and_modes(self):
        self.boot(('front', 'press-twice', 128, 0, True), ('app', 'cooperative', 128, 0, True),
                  ('meta', 'cooperative', 128, 0, True), ('skipme', 'cooperative', 128, 0, True))
        self.boot_with_agent('infra')
        self.consoles['infra'].wait_for('GK-AGENT-READY', timeout=180)
        self.set_metadata('infra', '<order>1</order><action>shutdown</action><shutdown-mode>agent</shutdown-mode>')
        self.set_metadata('skipme', '<action>skip</action>')
        self.start_daemon('[Shutdown]\nSave=all\nShutdownTimeoutSec=60\nShutdownRepeatSec=4\n'
                          '[Guest app*]\nOrder=10\n'
                          '[Guest front]\nAction=shutdown\n'
                          '[Guest me*]\nAction=poweroff\n')
        # Set while the daemon runs: libvirt's metadata-change event brings it in.
        self.set_metadata('meta', '<action>save</action>')
        plan = wait_until(lambda: (p := {r[2]: r for r in self.client.call('Plan')[0]})['meta'][3].startswith('save')
                          and p, 20, "meta's metadata in Plan()")
        settings = {n: {k: (v, src) for k, v, src in r[5]} for n, r in plan.items()}
        self.assertEqual(settings['meta']['action'], ('save', 'metadata'))  # metadata beats [Guest me*]
        self.assertEqual(settings['app']['order'], ('10', 'Guest app*'))
        self.assertEqual(settings['infra']['order'], ('1', 'metadata'))
        self.assertEqual(settings['infra']['shutdown-mode'], ('agent', 'metadata'))
        self.assertEqual(settings['front']['shutdown-timeout'], ('60', 'default'))
        self.assertEqual(settings['skipme']['action'], ('skip', 'metadata'))
        self.assertEqual(plan['skipme'][3], '')
        self.assertEqual(self.client.list_guests()['skipme'][4], 'skipped')
        ticks = {n: c.last_tick() for n, c in self.consoles.items()}

        groups = [['front', 'meta'], ['app'], ['infra']]
        self.logind.emit_prepare_for_shutdown(True)
        snaps, began, finished = self.watch_run('preserve', groups)
        kind, done, failed = self.client.run_finished[-1]
        self.assertEqual((done, failed), (4, 0))
        rec = self.record()
        self.assertEqual({n: g['Outcome'] for n, g in rec.items()},
                         {'front': 'shutdown', 'meta': 'saved', 'app': 'saved', 'infra': 'shutdown'})
        # The guest that missed the first press heard a repeated one: shut down, not forced.
        self.assertIn('GK-IGNORED-PRESS', self.consoles['front'].text())
        self.assertIn('GK-POWEROFF', self.consoles['front'].text())
        self.assertIn('front is still running: shutdown request 2', self.daemon.log_text())
        # Through the guest agent, not the button.
        self.assertIn('GK-AGENT-SHUTDOWN', self.consoles['infra'].text())
        self.assertNotIn('GK-POWEROFF', self.consoles['infra'].text())
        # skip: untouched, not recorded, still alive.
        self.assertEqual(self.state('skipme'), 'running')
        self.consoles['skipme'].wait_tick_after(ticks['skipme'])
        log = self.daemon.log_text()
        # The daemon's own sequence: one group's outcomes, then the next group begins.
        order = [max(log.index('front: shutdown'), log.index('meta: saved'))] + [
            log.index(s) for s in ('Shutdown: the guests order 10 begin', 'app: saved',
                                   'Shutdown: the guests order 1 begin', 'infra: shutdown')]
        self.assertEqual(order, sorted(order), log)
        self.assertGreaterEqual(began['app'], max(finished['front'], finished['meta']))
        self.assertGreaterEqual(began['infra'], finished['app'])
        print(f'\npreserve: began {began}\n          finished {finished}', file=sys.stderr)
        self.assertEqual(self.daemon.stop(), 0)

        # Next boot: the other way round, infra's agent answering before group 10 starts.
        self.start_daemon('[Guest app*]\nOrder=10\n', wait_idle=False)
        snaps, began, finished = self.watch_run('restore', list(reversed(groups)))
        self.assertEqual(self.client.run_finished[-1][1:], (4, 0))
        log = self.daemon.log_text()
        order = [log.index(s) for s in ('Start-up: the guests order 1 begin', 'infra: restored',
                                        'infra: its guest agent answers', 'Start-up: the guests order 10 begin',
                                        'app: restored', 'Start-up: the guests without an order begin')]
        self.assertEqual(order, sorted(order), log)
        self.assertIn('GK-AGENT-READY', self.consoles['infra'].text())
        # infra booted afresh (it was shut down): its agent needs seconds, app waited for it.
        self.assertGreater(began['app'] - finished['infra'], 2.0)
        print(f'restore:  began {began}\n          finished {finished}', file=sys.stderr)
        for n in ('front', 'meta', 'app', 'infra', 'skipme'):
            self.assertEqual(self.state(n), 'running', n)
        for n in ('meta', 'app'):  # resumed, not booted
            self.consoles[n].wait_tick_after(ticks[n])
            self.assertEqual(self.consoles[n].count('GK-INIT'), 1, n)
        self.assertEqual(self.consoles['skipme'].count('GK-INIT'), 1)
        self.assertEqual(self.record(), {})


    def test_auto_shutdown_keys_that_this_libvirt_ignores(self):
        """libvirt's auto_shutdown_try_save = "persistent" in qemu.conf on Debian 12: libvirt 9.0
        ignores the key (its auto-shutdown came with 11.2), so nothing is left to it — a guest
        left to libvirt there would be left to nobody. guestkeeper keeps the guest, and the
        conflict says why. (The handover itself, against libvirt 11.3 acting for real, is in
        the system-trixie suite; its rules in tests/test-policy.c.)"""
        self.boot(('vm1', 'cooperative', 128, 0, True))
        conf = os.path.join(self.wd.path, 'root', 'etc', 'libvirt', 'qemu.conf')
        os.makedirs(os.path.dirname(conf))
        with open(conf, 'w') as f:
            f.write('auto_shutdown_try_save = "persistent"\n')
        self.start_daemon()
        self.assertEqual(self.conn.getLibVersion() // 1000000, 9, 'this test is about a libvirt before 11.2')
        settings = {r[2]: {k: (v, src) for k, v, src in r[5]} for r in self.client.call('Plan')[0]}
        self.assertEqual(settings['vm1']['action'], ('save', 'default'))
        conflicts = wait_until(lambda: self.client.get('Conflicts'), 10, 'the conflict')
        self.assertEqual(len(conflicts), 1)
        self.assertRegex(conflicts[0], r'auto_shutdown_try_save = "persistent": libvirt 9\.0\.\d+ here ignores it')
        self.client.call('PreserveGuests')
        self.assertEqual(self.client.wait_run_finished('preserve', timeout=60)[1:], (1, 0))
        self.assertEqual(self.state('vm1'), 'saved')

class LibvirtdCrashE2E(E2E):
    """Its own libvirtd: this test kills it."""

    test_hung_uri_next_to_real_guests = None
    test_host_shutdown_then_next_boot = None
    test_stuck_guest_powered_off_after_timeout = None
    test_rehearsal_preserve_then_restore = None
    test_plain_sigterm_leaves_guests_running = None
    test_progress_and_bus_during_a_real_save = None

    def test_libvirtd_killed_mid_save(self):
        self.boot(('big1', 'cooperative', 512, 400, True), ('big2', 'cooperative', 512, 400, True))
        self.start_daemon('[Shutdown]\nSave=all\nParallelSaves=1\n')
        ticks = {n: c.last_tick() for n, c in self.consoles.items()}
        self.logind.emit_prepare_for_shutdown(True)
        wait_until(lambda: any(r[4] == 'saving' for r in self.client.list_guests().values()), 30, 'a save')
        time.sleep(0.3)  # well inside the save (it takes ~2.5 s here)
        self.libvirtd.proc.kill()  # libvirtd crashes: QEMU keeps running
        self.libvirtd.proc.wait()
        self.libvirtd.start()
        self.conn = libvirt.open(self.uri)  # the old one died with libvirtd
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=120)
        # No guest left running and unrecorded: both saved after the reconnection.
        self.assertEqual((done, failed), (2, 0))
        rec = self.record()
        self.assertEqual({n: g['Outcome'] for n, g in rec.items()}, {'big1': 'saved', 'big2': 'saved'})
        self.assertEqual(self.state('big1'), 'saved')
        self.assertEqual(self.state('big2'), 'saved')
        self.assertIn('Lost the connection', self.daemon.log_text())
        self.client.call('RestoreGuests')
        self.client.wait_run_finished('restore', timeout=60)
        for n in ('big1', 'big2'):
            self.consoles[n].wait_tick_after(ticks[n])
            self.assertEqual(self.consoles[n].count('GK-INIT'), 1)


class WatchE2E(E2E):
    """The running set and the deferred restore on real guests. Its own libvirtd: one test stops
    it."""

    test_hung_uri_next_to_real_guests = None
    test_host_shutdown_then_next_boot = None
    test_stuck_guest_powered_off_after_timeout = None
    test_rehearsal_preserve_then_restore = None
    test_plain_sigterm_leaves_guests_running = None
    test_progress_and_bus_during_a_real_save = None

    def running_set(self):
        path = os.path.join(self.daemon.state_dir, 'running')
        return harness.parse_record(path) if os.path.exists(path) else {}

    def power_cut(self, *names):
        """The daemon dies with the host (SIGKILL: it writes nothing more), and so do the
        guests, as libvirt sees a power cut: their QEMU is gone, no managed save."""
        self.daemon.proc.kill()
        self.daemon.proc.wait()
        for n in names:
            self.conn.lookupByName(n).destroy()

    def test_power_cut(self):
        self.boot(('vm1', 'cooperative', 128, 0, True), ('tmp', 'cooperative', 128, 0, False))
        off = guests.domain_xml('off', self.image, os.path.join(self.wd.path, 'off.console'))
        self.conn.defineXML(off)  # defined, never running: must stay off
        self.start_daemon()
        wait_until(lambda: set(self.running_set()) == {'vm1', 'tmp'}, 10, 'the running set on disk')
        self.assertIn('<domain', self.running_set()['tmp']['XML'])  # what re-creates it
        self.power_cut('vm1', 'tmp')
        self.assertEqual((self.state('vm1'), self.state('tmp'), self.state('off')), ('shutoff', 'gone', 'shutoff'))

        self.start_daemon(wait_idle=False)
        kind, done, failed = self.client.wait_run_finished('restore', timeout=120)
        self.assertEqual((done, failed), (2, 0))
        self.assertEqual((self.state('vm1'), self.state('tmp'), self.state('off')), ('running', 'running', 'shutoff'))
        self.assertFalse(self.conn.lookupByName('tmp').isPersistent())
        for n in ('vm1', 'tmp'):  # a cold boot: init ran again
            wait_until(lambda: self.consoles[n].count('GK-READY') == 2, 180, f'{n} booted again')
            self.assertEqual(self.consoles[n].count('GK-INIT'), 2)
        rows = self.client.list_guests()
        self.assertEqual((rows['vm1'][4], rows['tmp'][4], rows['off'][4]), ('recovered', 'recovered', ''))
        log = self.daemon.log_text()
        for n in ('vm1', 'tmp'):
            self.assertIn(f'{n}: restored after an unclean stop', log)
        self.assertIn('2 restored after an unclean stop', log)
        self.assertEqual(self.record(), {})
        wait_until(lambda: set(self.running_set()) == {'vm1', 'tmp'}, 10, 'the running set again')

        # A plain restart is not a power cut: nothing is started, nothing is "recovered".
        def owner_shutdown():  # its owner shuts it down while we watch
            try:
                self.conn.lookupByName('vm1').shutdown()  # again: init may not listen yet
            except libvirt.libvirtError:
                pass  # it stopped meanwhile
            return self.state('vm1') == 'shutoff'
        wait_until(owner_shutdown, 60, 'vm1 shut down by its owner')
        wait_until(lambda: set(self.running_set()) == {'tmp'}, 10, 'vm1 out of the running set')
        self.daemon.stop()
        self.start_daemon()  # idle comes after the first list, and after a restore it would start
        self.assertEqual(self.client.get('LastRun'), '')
        self.assertEqual(self.state('vm1'), 'shutoff')

    def test_restore_waits_for_libvirtd(self):
        """The daemon starts before libvirtd (socket-activated late, say): the saved guest waits,
        and is restored once libvirtd answers, 20 s later."""
        self.boot(('vm1', 'cooperative', 128, 0, True))
        ticks = self.consoles['vm1'].last_tick()
        self.start_daemon()
        self.client.call('PreserveGuests')
        self.assertEqual(self.client.wait_run_finished('preserve', timeout=60)[1:], (1, 0))
        self.assertEqual(self.state('vm1'), 'saved')
        self.assertEqual(self.daemon.stop(), 0)
        self.conn.close()
        self.libvirtd.stop()

        self.start_daemon()  # idle: it does not wait for libvirtd to start
        waiting = self.client.get('RestoreWaiting')
        self.assertEqual([(w[2], w[3]) for w in waiting], [('vm1', 'its URI does not answer yet')])
        self.assertEqual(self.client.list_guests()['vm1'][4], 'waiting')
        time.sleep(20)  # the scenario: libvirtd comes up late
        self.libvirtd.start()
        self.conn = libvirt.open(self.uri)
        kind, done, failed = self.client.wait_run_finished('restore', timeout=90)
        self.assertEqual((done, failed), (1, 0))
        self.assertEqual(self.state('vm1'), 'running')
        self.consoles['vm1'].wait_tick_after(ticks)
        self.assertEqual(self.consoles['vm1'].count('GK-INIT'), 1)  # resumed, not booted
        self.assertEqual(self.client.get('RestoreWaiting'), [])
        self.assertEqual(self.record(), {})

    def test_restore_retried_until_the_disk_appears(self):
        """A guest whose disk is on storage that is not there yet at boot (NFS, iSCSI): its
        start fails, is retried, and succeeds once the disk appears 10 s later; it is never
        reported failed."""
        disk = os.path.join(self.wd.path, 'data.img')
        with open(disk, 'wb') as f:
            f.truncate(1 << 20)
        console = os.path.join(self.wd.path, 'disky.console')
        self.consoles['disky'] = guests.Console(console)
        xml = guests.domain_xml('disky', self.image, console).replace(
            '</devices>', f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                          f"<source file='{disk}'/><target dev='vdb' bus='virtio'/></disk></devices>")
        self.conn.defineXML(xml).create()
        self.consoles['disky'].wait_for('GK-READY', timeout=180)
        self.start_daemon()
        wait_until(lambda: set(self.running_set()) == {'disky'}, 10, 'the running set on disk')
        self.power_cut('disky')
        os.unlink(disk)  # at the next boot, its storage is not mounted yet

        self.start_daemon(wait_idle=False)
        wait_until(lambda: [w for w in self.client.get('RestoreWaiting') if 'start failed' in w[3]], 60,
                   'disky waiting for a retry after a failed start')
        self.assertEqual(self.client.list_guests()['disky'][4], 'waiting')
        first = self.client.wait_run_finished('restore', timeout=30)
        self.assertEqual(first[1:], (0, 0))  # waiting, not failed
        time.sleep(10)  # the scenario: the storage appears later
        with open(disk, 'wb') as f:
            f.truncate(1 << 20)
        wait_until(lambda: self.state('disky') == 'running', 60, 'disky started on a retry')
        wait_until(lambda: self.client.list_guests()['disky'][4] == 'recovered', 30, 'disky recovered')
        self.assertEqual(self.client.get('RestoreWaiting'), [])
        self.assertEqual([r for r in self.client.run_finished if r[2] > 0], [])  # never failed
        self.assertNotIn('giving up', self.daemon.log_text())
        self.assertIn('start retried in', self.daemon.log_text())



class PreflightE2E(E2E):
    """Pre-flight on real guests: a save directory too small for both guests (a tmpfs over
    libvirt's managed-save directory, inside libvirtd's mount namespace), and a guest whose
    domain job (a dump to a slowly read FIFO) runs when the preserve run starts."""

    test_host_shutdown_then_next_boot = None
    test_stuck_guest_powered_off_after_timeout = None
    test_rehearsal_preserve_then_restore = None
    test_plain_sigterm_leaves_guests_running = None
    test_progress_and_bus_during_a_real_save = None
    test_hung_uri_next_to_real_guests = None

    def small_save_dir(self, mib):
        """A tmpfs of @mib MiB over /var/lib/libvirt/qemu/save as libvirtd sees it. Returns the
        path under which the daemon (in our mount namespace) sees that same tmpfs."""
        pid = self.libvirtd.proc.pid
        inside = '/var/lib/libvirt/qemu/save'
        # -r: its root too; entering a mount namespace alone resets the root to the namespace's, which
        # is not ours when the tests run in a chroot.
        subprocess.run(['nsenter', '-t', str(pid), '-m', '-r', 'mount', '-t', 'tmpfs',
                        '-o', f'size={mib}m,mode=0711', 'gk-small-save', inside], check=True)

        def unmount():
            self.remove_guests()  # their images are on it
            subprocess.run(['nsenter', '-t', str(pid), '-m', '-r', 'umount', inside], check=True)
        self.addCleanup(unmount)
        return f'/proc/{pid}/root{inside}'

    def test_not_enough_space(self):
        """440 MiB of save space, two 320 MiB guests with 200 MiB of their memory filled: both
        images (~230 MiB each) do not fit. The first in run order is saved; the second is
        planned straight to a graceful shutdown ("not enough space"), so no save ever fails for
        want of space."""
        save_dir = self.small_save_dir(440)
        self.boot(('first', 'cooperative', 320, 200, True), ('second', 'cooperative', 320, 200, True))
        # [Guest second] Order=1: it comes after the guests without an order at shutdown.
        self.start_daemon(f'[Shutdown]\nManagedSaveDirectory={save_dir}\n[Guest second]\nOrder=1\n')
        reason = f'not enough space in {save_dir}: needs 320 MiB, 120 MiB free'
        plan = harness.wait_until(
            lambda: (p := {row[2]: row for row in self.client.call('Plan')[0]}) and len(p) == 2 and p, 30,
            'both guests in Plan()')
        settings = {k: (v, src) for k, v, src in plan['second'][5]}
        self.assertEqual(plan['second'][3], 'shutdown,poweroff')
        self.assertEqual(settings['not-saved'], (reason, 'pre-flight'))
        self.assertEqual(plan['first'][3], 'save,shutdown,poweroff')
        self.assertIn('save-estimate', {row[0] for row in plan['first'][5]})

        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=180)
        self.assertEqual((done, failed), (2, 0))
        self.assertEqual(self.state('first'), 'saved')
        self.assertTrue(os.path.getsize(os.path.join(save_dir, 'first.save')) > 150 << 20)
        self.assertEqual(self.state('second'), 'shutoff')
        self.assertIn('GK-POWEROFF', self.consoles['second'].text())  # it heard the ACPI button
        rec = self.record()
        self.assertEqual((rec['first']['Outcome'], rec['second']['Outcome']), ('saved', 'shutdown'))
        self.assertIn(reason, rec['second']['Error'])
        log = self.daemon.log_text()
        self.assertIn(f'second will not be saved: {reason}; shutting it down instead', log)
        # No save was tried that could fill the disk: none failed, nothing ran out of space.
        self.assertNotIn('Save of', log)
        self.assertNotIn('No space left', log)
        with open(os.path.join(self.libvirtd.dir, 'libvirtd.log'), errors='replace') as f:
            self.assertNotIn('No space left', f.read())
        self.assertFalse(os.path.exists(os.path.join(save_dir, 'second.save')))
        self.assertEqual(self.daemon.stop(), 0)

    def test_running_dump_job_aborted_then_saved(self):
        """A real domain job: `virsh dump --live` of the guest into a FIFO whose reader takes
        4 KiB every 50 ms, so the dump runs for minutes. A preserve run aborts it, logs it, and
        saves the guest."""
        self.boot(('dumped', 'cooperative', 256, 100, True))
        dom = self.conn.lookupByName('dumped')
        fifo = os.path.join(self.wd.path, 'dump.fifo')
        os.mkfifo(fifo)
        read = {'bytes': 0}
        stop = threading.Event()

        def slow_reader():
            with open(fifo, 'rb') as f:
                while not stop.is_set():
                    chunk = f.read(4096)
                    if not chunk:
                        return
                    read['bytes'] += len(chunk)
                    time.sleep(0.05)

        dump_error = {}

        def dump():
            try:
                libvirt.open(self.uri).lookupByName('dumped').coreDump(fifo, libvirt.VIR_DUMP_LIVE)
            except libvirt.libvirtError as e:
                dump_error['message'] = e.get_error_message()

        reader = threading.Thread(target=slow_reader, daemon=True)
        reader.start()
        dumper = threading.Thread(target=dump, daemon=True)
        dumper.start()
        self.addCleanup(stop.set)
        wait_until(lambda: dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE and read['bytes'] > 0, 30,
                   'the dump job running')

        save_dir = os.path.join(self.libvirtd.dir, 'lib', 'qemu', 'save')
        self.start_daemon(f'[Shutdown]\nManagedSaveDirectory={save_dir}\n')
        self.assertNotEqual(dom.jobInfo()[0], libvirt.VIR_DOMAIN_JOB_NONE, 'the dump ended by itself')
        self.client.call('PreserveGuests')
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=120)
        self.assertEqual((done, failed), (1, 0))
        self.assertEqual(self.state('dumped'), 'saved')
        self.assertIn('Aborted the dump job of dumped to save it', self.daemon.log_text())
        dumper.join(30)
        self.assertFalse(dumper.is_alive())
        self.assertIn('message', dump_error)  # the dump did not complete: it was aborted
        self.assertEqual(self.record()['dumped']['Outcome'], 'saved')


if __name__ == '__main__':
    unittest.main(verbosity=2)
