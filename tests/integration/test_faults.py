#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Faults a host shutdown must survive, on libvirt's test driver via a private
libvirtd. Each asserts what a user checks afterwards: libvirt's view of every guest, the
record, the D-Bus state, exit codes. (Real-guest faults: tests/e2e.)"""

import glob
import os
import signal
import subprocess
import sys
import time
import unittest

import libvirt

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Gio, GLib, wait_until  # noqa: E402
from test_daemon import Base  # noqa: E402

SLOW = 'slow-save'  # GUESTKEEPER_FAULTS: the save starts 3 s late


class FaultTest(Base):
    def test_daemon_sigkilled_mid_run_then_restarted(self):
        for n in ('a', 'b', 'c'):
            self.define(n)
        cfg = self.write_config('[Shutdown]\nParallelSaves=1\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': f'a={SLOW},b={SLOW},c={SLOW}'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        wait_until(lambda: sum(self.state(n) == 'saved' for n in 'abc') == 1, 20, 'one guest saved')
        saved = [n for n in 'abc' if self.state(n) == 'saved'][0]
        self.daemon.kill()  # SIGKILL in the middle of the run
        rec = self.record()  # valid, and lists every guest of the run
        self.assertEqual(set(rec), {'a', 'b', 'c'})
        # Its outcome may or may not have reached the disk (group commit): both restore it.
        self.assertIn(rec[saved]['Outcome'], ('saved', 'saving', ''))
        # Next start: the saved guest comes back, the others were never stopped and are
        # counted, not started twice.
        self.client = None
        self.start_daemon(cfg)
        kind, done, failed = self.client.wait_run_finished('restore')
        self.assertEqual(failed, 0)
        for n in 'abc':
            self.assertEqual(self.state(n), 'running', n)
        self.assertEqual(self.record(), {})

    def test_corrupt_record_set_aside(self):
        for content, why in (('[Record]\nVersion=1\nGuests=2\n[Guest 0]\nURI=x\n', 'truncated'),
                             ('[Record]\nVersion=7\nGuests=0\n[End]\nGuests=0\n', 'Version: 7'),
                             ('\x00\xff garbage', 'not a record')):
            state = os.path.join(self.wd.path, 'state')
            os.makedirs(state, exist_ok=True)
            for f in glob.glob(os.path.join(state, 'record*')):
                os.unlink(f)
            with open(os.path.join(state, 'record'), 'w') as f:
                f.write(content)
            self.start_daemon()
            self.client.wait_state('idle')
            log = self.daemon.log_text()
            self.assertIn(f'error: Unreadable record: {state}/record', log)
            self.assertTrue(glob.glob(os.path.join(state, 'record.corrupt-*')), why)
            self.assertEqual(self.daemon.stop(), 0)
            os.unlink(self.daemon.log_path)
            self.client = None

    def test_message_ids_a_sysadmin_acts_on(self):
        """What needs a sysadmin carries its MESSAGE_ID (each explained by the journal catalog):
        an unreadable record at start-up, a URI unreachable at a run, and the run's end with a
        failure, not the MESSAGE_ID of a run that went well."""
        journal = harness.Journal(self.wd.path)
        self.addCleanup(journal.close)
        state = os.path.join(self.wd.path, 'state')
        os.makedirs(state)
        with open(os.path.join(state, 'record'), 'w') as f:
            f.write('\x00\xff garbage')
        gone = 'test+unix:///default?socket=' + os.path.join(self.wd.path, 'no-libvirtd-here')
        self.define('web1')
        self.start_daemon(self.write_config('ConnectTimeoutSec=2\n', uris=f'{self.uri} {gone}'), journal=journal)
        self.client.wait_state('idle')
        unreadable, = journal.matching(MESSAGE_ID='53eba6bf678347519839ca67b84e3fc3')
        self.assertTrue(unreadable['MESSAGE'].startswith(f'Unreadable record: {state}/record'), unreadable)
        self.assertEqual(unreadable['PRIORITY'], '3')

        self.client.call('PreserveGuests')
        wait_until(lambda: journal.matching(MESSAGE_ID='9f4f62c203f344ebb709c46ed5eda07d'), 20,
                   'the run with a failure in the journal')
        end, = journal.matching(MESSAGE_ID='9f4f62c203f344ebb709c46ed5eda07d')
        self.assertEqual((end['GUESTKEEPER_GUESTS_DONE'], end['GUESTKEEPER_GUESTS_FAILED']), ('1', '1'))
        self.assertEqual(journal.matching(MESSAGE_ID='7b1d9e3f5a2c4e6b8d0f1a3c5e7b9d4f'), [])
        unreachable, = journal.matching(MESSAGE_ID='3d5729f856024d528bface4eac3e8fea')
        self.assertEqual((unreachable['GUEST_URI'], unreachable['GUESTKEEPER_RUN_ID'], unreachable['PRIORITY']),
                         (gone, end['GUESTKEEPER_RUN_ID'], '3'))
        self.assertIn(f'Cannot reach {gone}', unreachable['MESSAGE'])

    def test_two_prepare_for_shutdown_in_a_row(self):
        self.define('web1')
        self.define('web2')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': f'web1={SLOW}'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.logind.emit_prepare_for_shutdown(True)
        # The bus keeps the order: this call reaches the daemon after both signals, so its
        # answer comes once the daemon has handled them (web1's slow save keeps the run going).
        self.assertEqual(self.client.get('State'), 'preserving')
        self.assertEqual(self.daemon.log_text().count('PrepareForShutdown(true)'), 2)
        self.client.wait_run_finished('preserve', timeout=30)
        self.client.wait_state('preserved')
        # A second run would start now, right after the first: none comes.
        harness.assert_never(lambda: len(self.client.run_finished) > 1 or
                             self.client.states_seen().count('preserving') > 1, 3, 'a second run')
        self.assertEqual(self.client.get('State'), 'preserved')
        self.assertEqual(self.daemon.log_text().count('Preserve run started'), 1)
        self.assertEqual((self.state('web1'), self.state('web2')), ('saved', 'saved'))

    def test_cancel_before_and_after_a_run(self):
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        seen = len(self.client.states_seen())
        self.logind.emit_prepare_for_shutdown(False)  # nothing under way: nothing happens
        self.assertEqual(self.client.get('State'), 'idle')  # answered after the signal was handled
        self.assertIn('PrepareForShutdown(false)', self.daemon.log_text())
        harness.assert_never(lambda: self.client.run_finished or
                             any(s != 'idle' for s in self.client.states_seen()[seen:]), 2,
                             'a run after PrepareForShutdown(false) with nothing under way')
        self.assertEqual(self.state('web1'), 'running')
        self.assertEqual(len(self.logind.our_inhibitors()), 1)
        self.assertFalse(os.path.exists(os.path.join(self.daemon.state_dir, 'record')) and self.record())
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_run_finished('preserve')
        self.assertEqual(self.state('web1'), 'saved')
        wait_until(lambda: not self.logind.our_inhibitors(), 10, 'released')
        self.logind.emit_prepare_for_shutdown(False)  # cancelled after the run: restore
        self.client.wait_run_finished('restore')
        self.assertEqual(self.state('web1'), 'running')
        wait_until(lambda: self.logind.our_inhibitors(), 10, 'taken again')
        self.client.wait_state('idle')

    def test_logind_restarts_during_run(self):
        self.define('web1')
        self.define('web2')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': f'web1={SLOW}'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_state('preserving')
        self.logind.stop()
        self.logind.start()
        self.client.wait_run_finished('preserve', timeout=30)
        self.assertEqual((self.state('web1'), self.state('web2')), ('saved', 'saved'))
        self.assertEqual(self.client.get('State'), 'preserved')

    def test_guest_stops_by_itself_mid_run(self):
        self.define('busy')
        self.define('leaver')
        cfg = self.write_config('[Shutdown]\nParallelSaves=1\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': f'busy={SLOW},leaver={SLOW}'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        wait_until(lambda: any(r[4] == 'saving' for r in self.guests().values()), 10, 'a save under way')
        waiting = [n for n, r in self.guests().items() if r[4] != 'saving'][0]
        self.conn.lookupByName(waiting).destroy()  # it stops by itself while waiting for its turn
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=30)
        self.assertEqual((done, failed), (2, 0))
        self.assertEqual(self.record()[waiting]['Outcome'], 'shutdown')
        self.assertEqual(self.state(waiting), 'shutoff')

    def test_paused_guest_is_preserved(self):
        self.define('sleepy')
        self.conn.lookupByName('sleepy').suspend()
        self.start_daemon()
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_run_finished('preserve')
        self.assertEqual(self.state('sleepy'), 'saved')
        self.assertEqual(self.record()['sleepy']['Outcome'], 'saved')

    def test_deadline_with_saves_running(self):
        self.define('s1')
        self.define('s2')
        cfg = self.write_config('[Shutdown]\nDeadlineSec=1\nParallelSaves=1\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': f's1={SLOW},s2={SLOW}'})
        self.client.wait_state('idle')
        t = time.monotonic()
        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=30)
        took = time.monotonic() - t
        self.assertLess(took, (1 + 2.5) * harness.SCALE, f'the run took {took:.1f} s with DeadlineSec=1')
        self.assertEqual((done, failed), (2, 0))
        rec = self.record()
        self.assertEqual((rec['s1']['Outcome'], rec['s2']['Outcome']), ('poweroff', 'poweroff'))
        self.assertEqual((self.state('s1'), self.state('s2')), ('shutoff', 'shutoff'))

    def test_malformed_arguments_and_vanishing_client(self):
        self.define('web1')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': f'web1={SLOW}'})
        self.client.wait_state('idle')
        for method, args in (('PreserveGuests', GLib.Variant('(s)', ('now',))),
                              ('RestoreGuests', GLib.Variant('(b)', (True,))),
                              ('Reload', GLib.Variant('(u)', (1,))),
                              ('ListGuests', GLib.Variant('(s)', ('all',)))):
            err = harness.remote_error(self.client.conn.call_sync, harness.BUS_NAME, harness.OBJ, harness.IFACE,
                                       method, args, None, Gio.DBusCallFlags.NONE, 10000, None)
            self.assertEqual(err, 'org.freedesktop.DBus.Error.InvalidArgs', method)
        self.assertEqual(self.client.get('State'), 'idle')  # refused, nothing started
        self.assertEqual(self.client.run_finished, [])
        self.assertEqual(self.state('web1'), 'running')
        # A client following a run goes away: the run goes on.
        ctl = os.path.join(harness.BUILD_DIR, 'ctl', 'guestkeeperctl')
        p = subprocess.Popen([ctl, 'preserve'], env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client.wait_state('preserving')
        p.send_signal(signal.SIGKILL)
        p.wait()
        self.client.wait_run_finished('preserve', timeout=30)
        self.assertEqual(self.state('web1'), 'saved')
        self.assertIsNone(self.daemon.proc.poll())

    def test_prepare_for_shutdown_with_metadata(self):
        """systemd >= 255's logind sends PrepareForShutdownWithMetadata and PrepareForShutdown
        for one shutdown (and both again for its cancellation): one run each time."""
        for kind in ('power-off', 'reboot'):
            self.define(f'vm-{kind}')
        self.start_daemon()
        self.client.wait_state('idle')

        def runs(kind):
            return [r for r in self.client.run_finished if r[0] == kind]

        harness.emit_shutdown_signals_like_logind(self.logind, True, 'power-off')
        self.client.get('State')  # the daemon has handled both signals when this returns
        # The plain signal after the metadata one is the same event: acted on once.
        self.assertEqual(self.daemon.log_text().count('PrepareForShutdown(true)'), 1)
        self.client.wait_run_finished('preserve')
        harness.assert_never(lambda: len(self.client.run_finished) > 1, 2, 'a second run')
        self.assertEqual(self.daemon.log_text().count('Preserve run started'), 1)
        self.assertEqual((self.state('vm-power-off'), self.state('vm-reboot')), ('saved', 'saved'))

        harness.emit_shutdown_signals_like_logind(self.logind, False, 'power-off')
        self.client.get('State')
        self.client.wait_run_finished('restore')
        self.client.wait_state('idle')
        harness.assert_never(lambda: len(self.client.run_finished) > 2, 2, 'a second run')
        self.assertEqual((len(runs('preserve')), len(runs('restore'))), (1, 1))
        self.assertEqual((self.state('vm-power-off'), self.state('vm-reboot')), ('running', 'running'))

        harness.emit_shutdown_signals_like_logind(self.logind, True, 'reboot')
        self.client.get('State')
        self.client.wait_run_finished('preserve', count=2)
        harness.assert_never(lambda: len(self.client.run_finished) > 3, 2, 'a second run')
        self.assertEqual((len(runs('preserve')), len(runs('restore'))), (2, 1))
        self.assertEqual(runs('preserve')[1][1:], (2, 0))
        self.assertEqual((self.state('vm-power-off'), self.state('vm-reboot')), ('saved', 'saved'))

    def test_shutdown_only_uses_events(self):
        """A graceful shutdown ends on the guest's lifecycle event: "late" stops 1 s after the
        ACPI request while every state query still says it runs, and the timeout is 60 s away.
        Only the STOPPED event can end this run in seconds with the outcome "shutdown"."""
        self.define('late')
        cfg = self.write_config('[Shutdown]\nSave=none\nShutdownTimeoutSec=60\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': 'late=late-stop'})
        self.client.wait_state('idle')
        t = time.monotonic()
        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=15)
        took = time.monotonic() - t
        self.assertEqual((done, failed), (1, 0))
        self.assertGreaterEqual(took, 1.0)  # not before the guest stopped
        self.assertLess(took, 10 * harness.SCALE)
        rec = self.record()['late']
        self.assertEqual(rec['Outcome'], 'shutdown')
        self.assertEqual(rec.get('Error', ''), '')
        self.assertEqual(self.state('late'), 'shutoff')

    def test_shutdown_during_boot_restore(self):
        for n in ('a', 'b', 'c'):
            self.define(n)
        self.start_daemon()
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.assertEqual(self.client.wait_run_finished('preserve')[1:], (3, 0))
        self.assertEqual(self.daemon.stop(), 0)
        self.define('fresh')  # started by hand meanwhile: running, not in the record

        # Next boot: the starts are slow and one at a time; the host shuts down again while
        # the first one is under way.
        self.client = None
        cfg = self.write_config('[Boot]\nParallelStarts=1\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': 'a=slow-start,b=slow-start,c=slow-start'})
        wait_until(lambda: any(r[4] == 'restoring' for r in self.guests().values()), 10, 'a start under way')
        first = [n for n, r in self.guests().items() if r[4] == 'restoring'][0]
        self.assertEqual(self.client.get('State'), 'restoring')
        wait_until(lambda: f'Restoring 0/3 guests: starting {first}' in self.notify.values('STATUS'), 2,
                   'STATUS naming the start under way')
        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=30)
        # The restore ended first: the start under way finished, no other one began.
        self.assertEqual([r[0] for r in self.client.run_finished], ['restore', 'preserve'])
        self.assertEqual(self.client.run_finished[0][1], 1)
        self.assertEqual(self.daemon.log_text().count('Restore run started'), 1)
        # Then the running guests were preserved: the one just started and "fresh".
        self.assertEqual((done, failed), (2, 0))
        for n in ('a', 'b', 'c', 'fresh'):
            self.assertEqual(self.state(n), 'saved', n)
        rec = self.record()
        self.assertEqual({n: g['Outcome'] for n, g in rec.items()}, {n: 'saved' for n in ('a', 'b', 'c', 'fresh')})
        self.client.wait_state('preserved')
        wait_until(lambda: not self.logind.our_inhibitors(), 10, 'the inhibitor released')

        # The boot after that brings all four back.
        self.assertEqual(self.daemon.stop(), 0)
        self.client = None
        self.start_daemon()
        self.assertEqual(self.client.wait_run_finished('restore')[1:], (4, 0))
        for n in ('a', 'b', 'c', 'fresh'):
            self.assertEqual(self.state(n), 'running', n)
        self.assertEqual(self.record(), {})

    def test_save_failure_falls_through(self):
        self.define('full')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': 'full=save-fails'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_run_finished('preserve')
        rec = self.record()['full']
        self.assertEqual(rec['Outcome'], 'shutdown')
        self.assertIn('save failed', rec['Error'])
        self.assertEqual(self.state('full'), 'shutoff')


if __name__ == '__main__':
    unittest.main(verbosity=2)
