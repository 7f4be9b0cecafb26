#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Faults a host shutdown must survive (issue 6), on libvirt's test driver via a private
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
from harness import wait_until  # noqa: E402
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

    def test_two_prepare_for_shutdown_in_a_row(self):
        self.define('web1')
        self.define('web2')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': f'web1={SLOW}'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_run_finished('preserve', timeout=30)
        self.client.wait_state('preserved')
        wait_until(lambda: True, 1)
        self.assertEqual(len(self.client.run_finished), 1)
        self.assertEqual((self.state('web1'), self.state('web2')), ('saved', 'saved'))

    def test_cancel_before_and_after_a_run(self):
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(False)  # nothing under way: nothing happens
        wait_until(lambda: True, 1)
        self.assertEqual(self.client.get('State'), 'idle')
        self.assertEqual(self.state('web1'), 'running')
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_run_finished('preserve')
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
        r = harness.busctl(self.bus, 'call', 'org.guestkeeper1', '/org/guestkeeper1', 'org.guestkeeper1.Manager',
                           'PreserveGuests', 's', 'now', check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.client.get('State'), 'idle')  # refused, nothing started
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
        for kind in ('power-off', 'reboot'):
            self.define(f'vm-{kind}')
        self.start_daemon()
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown_with_metadata(True, 'power-off')
        self.client.wait_run_finished('preserve')
        self.assertEqual(self.state('vm-power-off'), 'saved')
        self.logind.emit_prepare_for_shutdown_with_metadata(False, 'power-off')
        self.client.wait_run_finished('restore')
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown_with_metadata(True, 'reboot')
        self.client.wait_run_finished('preserve', count=2)
        self.assertEqual(self.state('vm-reboot'), 'saved')

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
