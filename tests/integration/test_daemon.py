#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""guestkeeperd on a private system bus with dbusmock's logind, a NOTIFY_SOCKET listener and a
private libvirtd serving the test driver (guest state survives a daemon restart = next boot).
Assertions are what a user sees: libvirt's guest states, the record, D-Bus, notify, exit codes."""

import os
import re
import signal
import subprocess
import sys
import time
import unittest

import libvirt

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

libvirt.registerErrorHandler(lambda *a: None, None)


class Base(unittest.TestCase):
    """Per test: a private bus, the logind mock, a notify socket, a fresh test driver."""
    libvirtd = None

    @classmethod
    def setUpClass(cls):
        cls.lvdir = harness.Workdir()
        cls.libvirtd = harness.Libvirtd(cls.lvdir.path)

    @classmethod
    def tearDownClass(cls):
        cls.libvirtd.stop()
        cls.lvdir.cleanup()

    def setUp(self):
        harness.setup_environment(self)
        self.uri = self.libvirtd.uri()
        # The holder keeps the shared test driver alive; closing it resets the driver.
        self.conn = libvirt.open(self.uri)
        self.addCleanup(self.conn.close)
        for d in self.conn.listAllDomains():
            if d.isActive():
                d.destroy()
            if d.isPersistent():
                d.undefine()
        self.client = None

    # --- helpers ---

    def define(self, name, persistent=True):
        xml = harness.test_domain_xml(name)
        if persistent:
            d = self.conn.defineXML(xml)
            d.create()
        else:
            self.conn.createXML(xml, 0)

    def state(self, name):
        return harness.guest_state(self.conn, name)

    def write_config(self, extra='', name='guestkeeper.conf', uris=None):
        path = os.path.join(self.wd.path, name)
        with open(path, 'w') as f:
            f.write(f'[Guests]\nURIs={uris or self.uri}\n{extra}')
        return path

    def start_daemon(self, config=None, env=None, wait_ready=True, journal=None):
        self.daemon = harness.Daemon(self.wd.path, self.bus, self.notify, config or self.write_config(), env,
                                     journal=journal)
        self.addCleanup(self.daemon.kill)
        with self.notify.lock:
            self.notify.messages.clear()  # READY=1 must be this daemon's
        if not self.client:  # before the start: signals of the start-up must reach it
            self.client = harness.Client(self.bus)
        self.daemon.start(wait_ready=False)
        if wait_ready:
            try:
                self.notify.wait_for('READY', '1', timeout=20)
            except AssertionError as e:
                raise AssertionError(f'{e}\nguestkeeperd exit status {self.daemon.proc.poll()}, its log:\n'
                                     + self.daemon.log_text()[-3000:]) from None
        return self.daemon

    def record(self):
        return harness.parse_record(os.path.join(self.daemon.state_dir, 'record'))

    def guests(self):
        return self.client.list_guests()



class DaemonTest(Base):
    def test_startup_ready_inhibitor_idle(self):
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        self.assertEqual(len(self.logind.our_inhibitors()), 1)
        what, who, why, mode, _, _ = self.logind.our_inhibitors()[0]
        self.assertEqual((what, who, mode), ('shutdown', 'guestkeeper', 'delay'))
        self.assertTrue(self.client.get('InhibitorHeld'))
        # busctl is enough to see what it does
        out = harness.busctl(self.bus, 'get-property', 'org.guestkeeper1', '/org/guestkeeper1',
                             'org.guestkeeper1.Manager', 'State')
        self.assertEqual(out.strip(), 's "idle"')
        self.assertEqual(self.client.get('URIs'), [self.uri])
        wait_until(lambda: 'web1' in self.guests(), 10, 'web1 in ListGuests')
        self.assertEqual(self.guests()['web1'][3], 'running')
        # sd_notify and the bus are two channels: the datagram may be read after the bus reply.
        wait_until(lambda: 'Watching' in (self.notify.values('STATUS') or [''])[-1], 5, 'STATUS=Watching …')

    def test_shutdown_preserves_then_next_boot_restores(self):
        self.define('web1')
        self.define('web2')
        self.define('scratch', persistent=False)
        self.define('off')
        self.conn.lookupByName('off').destroy()
        self.start_daemon()
        self.client.wait_state('idle')

        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('preserve')
        self.assertEqual((done, failed), (3, 0))
        self.client.wait_state('preserved')
        # The PropertiesChanged signals, as a subscriber sees them (dispatched in order).
        wait_until(lambda: self.client.states_seen()[-1:] == ['preserved'], 5, 'State=preserved signalled')
        self.assertIn('preserving', self.client.states_seen())
        # Persistent guests managed-saved, the transient one shut down (Save=persistent).
        self.assertEqual(self.state('web1'), 'saved')
        self.assertEqual(self.state('web2'), 'saved')
        self.assertEqual(self.state('scratch'), 'gone')
        self.assertEqual(self.state('off'), 'shutoff')
        self.notify.wait_for('EXTEND_TIMEOUT_USEC', timeout=5)  # sent at the run's start
        self.assertLessEqual(int(self.notify.values('EXTEND_TIMEOUT_USEC')[0]), 30_000_000)
        # The inhibitor is released once every guest has an outcome.
        wait_until(lambda: not self.logind.our_inhibitors(), 10, 'the inhibitor released')
        self.assertFalse(self.client.get('InhibitorHeld'))
        rec = self.record()
        self.assertEqual(set(rec), {'web1', 'web2', 'scratch'})
        self.assertEqual(rec['web1']['Outcome'], 'saved')
        self.assertEqual(rec['scratch']['Outcome'], 'shutdown')
        self.assertIn('<name>scratch</name>', rec['scratch']['XML'])
        self.assertEqual(self.guests()['web1'][4], 'saved')
        # Known from the record only, once the cache has seen its stop event (dispatched after
        # the run may have ended: the run learns of the stop by asking libvirt).
        wait_until(lambda: self.guests()['scratch'][3] == 'shutoff', 10, 'scratch shown from the record')
        self.assertTrue(self.client.get('GuestsDone') == 3 and self.client.get('Progress') == 1.0)

        # SIGTERM after the run: exit 0 at once.
        t = time.monotonic()
        self.assertEqual(self.daemon.stop(), 0)
        self.assertLess(time.monotonic() - t, 2 * harness.SCALE)

        # Next boot: the recorded guests come back, the record empties.
        self.client = None
        self.start_daemon()
        kind, done, failed = self.client.wait_run_finished('restore')
        self.assertEqual((done, failed), (3, 0))
        for name in ('web1', 'web2', 'scratch'):
            self.assertEqual(self.state(name), 'running', name)
        self.assertEqual(self.state('off'), 'shutoff')
        self.assertFalse(self.conn.lookupByName('scratch').isPersistent())
        self.assertEqual(self.record(), {})
        self.assertEqual(self.guests()['scratch'][3:], ('running', 'restored'))
        self.client.wait_state('idle')
        self.assertEqual(self.guests()['web1'][4], 'restored')
        wait_until(lambda: self.logind.our_inhibitors(), 10, 'the inhibitor taken again')

    def test_second_instance_waits_for_the_name_then_gives_up(self):
        """A name still owned at start-up is waited for (a restart's old process may still be
        listed); one owned for good is another guestkeeperd: exit 1, say so, touch nothing."""
        self.define('web1')
        first = self.start_daemon()
        self.client.wait_state('idle')
        second = harness.Daemon(self.wd.path, self.bus, self.notify, first.config, name='second')
        self.addCleanup(second.kill)
        second.start(wait_ready=False)
        self.assertEqual(second.proc.wait(30 * harness.SCALE), 1)
        log = second.log_text()
        self.assertIn('still owned by another process; waiting for it', log)
        self.assertIn('Cannot own the bus name org.guestkeeper1: another process owns it', log)
        self.assertEqual(self.client.get('State'), 'idle')
        self.assertEqual(harness.name_owner_pid(self.bus, 'org.guestkeeper1'), first.proc.pid)
        self.assertEqual(self.state('web1'), 'running')
        # When the owner goes, a waiting instance takes the name over.
        third = harness.Daemon(self.wd.path, self.bus, self.notify, first.config, name='third')
        self.addCleanup(third.kill)
        third.start(wait_ready=False)
        wait_until(lambda: 'waiting for it' in third.log_text(), 10, 'the third instance waiting')
        self.assertEqual(first.stop(), 0)
        wait_until(lambda: harness.name_owner_pid(self.bus, 'org.guestkeeper1') == third.proc.pid, 10,
                   'the third instance owning the name')
        self.assertEqual(self.state('web1'), 'running')

    def test_sigterm_outside_shutdown_touches_nothing(self):
        self.define('web1')
        self.define('scratch', persistent=False)
        self.start_daemon()
        self.client.wait_state('idle')
        t = time.monotonic()
        self.daemon.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.proc.wait(5 * harness.SCALE), 0)
        self.assertLess(time.monotonic() - t, 1.0 * harness.SCALE)
        self.assertEqual(self.state('web1'), 'running')
        self.assertEqual(self.state('scratch'), 'running')
        self.assertIn('STOPPING', [k for _, m in self.notify.messages for k in m])
        self.assertFalse(os.path.exists(os.path.join(self.daemon.state_dir, 'record')) and self.record())

    def test_sigterm_during_host_shutdown_preserves_first(self):
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        # logind says the host is going down (its delay is running) but we never saw the
        # signal: SIGTERM must still preserve.
        self.logind.set_preparing(True)
        self.daemon.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.proc.wait(20), 0)
        self.assertEqual(self.state('web1'), 'saved')
        self.assertEqual(self.record()['web1']['Outcome'], 'saved')
        self.notify.wait_for('EXTEND_TIMEOUT_USEC', timeout=5)

    def test_cancelled_shutdown_mid_run(self):
        self.define('web1')
        self.define('stuck')
        # stuck: its save fails and it ignores ACPI, so the run waits on it.
        cfg = self.write_config('[Shutdown]\nShutdownTimeoutSec=3\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': 'stuck=save-fails,stuck=ignore-shutdown'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        wait_until(lambda: self.guests().get('stuck', [''] * 5)[4] == 'shutting-down', 10, 'stuck shutting down')
        wait_until(lambda: self.state('web1') == 'saved', 10, 'web1 saved')
        self.logind.emit_prepare_for_shutdown(False)
        # The run ends without a further step; what it stopped comes back.
        self.client.wait_run_finished('preserve')
        self.client.wait_run_finished('restore', timeout=30)
        self.client.wait_state('idle')
        self.assertEqual(self.state('stuck'), 'running')  # never powered off
        self.assertEqual(self.state('web1'), 'running')   # restored
        wait_until(lambda: self.logind.our_inhibitors(), 10, 'the inhibitor taken again')
        self.assertTrue(self.client.get('InhibitorHeld'))
        self.assertEqual(self.record(), {})

    def test_unprivileged_caller(self):
        """No polkit on the bus: only root may act, and the refusal says why."""
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        for method, action in (('PreserveGuests', 'preserve'), ('RestoreGuests', 'restore'), ('Reload', 'reload')):
            r = harness.call_as(self.bus, 65534, method)
            self.assertNotEqual(r.returncode, 0, method)
            self.assertIn('org.freedesktop.DBus.Error.AccessDenied', r.stdout, method)
            self.assertIn(f"{method}() needs root, or polkit's authorization for org.guestkeeper1.{action}, and "
                          'polkit is unavailable (caller uid 65534)', r.stdout, method)
            self.assertRegex(self.daemon.log_text(), rf'{method}\(\) by uid 65534 \(python3\[\d+\]\): refused, '
                                                     'polkit is unavailable')
        out = harness.busctl(self.bus, 'get-property', 'org.guestkeeper1', '/org/guestkeeper1',
                             'org.guestkeeper1.Manager', 'State', user=65534)
        self.assertEqual(out.strip(), 's "idle"')
        out = harness.busctl(self.bus, 'call', 'org.guestkeeper1', '/org/guestkeeper1',
                             'org.guestkeeper1.Manager', 'ListGuests', user=65534)
        self.assertIn('web1', out)
        self.assertEqual(self.state('web1'), 'running')

    def test_introspection_matches_data(self):
        self.start_daemon()
        served = harness.busctl(self.bus, 'introspect', '--xml-interface', 'org.guestkeeper1',
                                '/org/guestkeeper1')
        with open(os.path.join(harness.SOURCE_DIR, 'data', 'org.guestkeeper1.Manager.xml')) as f:
            shipped = f.read()
        self.assertEqual(harness.introspection_interface(served), harness.introspection_interface(shipped))

    def test_rehearsal_over_dbus(self):
        # (The bus staying responsive during saves is measured on real saves: tests/e2e.)
        self.define('big1')
        self.define('big2')
        cfg = self.write_config('[Shutdown]\nParallelSaves=2\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': 'big1=slow-save,big2=slow-save'})
        self.client.wait_state('idle')
        self.client.call('PreserveGuests')  # rehearsal; returns at once
        self.client.wait_state('preserving')
        self.client.wait_run_finished('preserve')
        self.assertEqual(self.state('big1'), 'saved')
        # A rehearsal never releases the inhibitor.
        self.assertTrue(self.logind.our_inhibitors())
        # Busy while a run is under way, then a restore over D-Bus.
        self.client.call('RestoreGuests')
        self.client.wait_run_finished('restore')
        self.assertEqual(self.state('big1'), 'running')

    def test_status_shows_progress(self):
        self.define('web1')
        self.define('web2')
        self.define('tmp', persistent=False)  # Save=persistent: shut down
        cfg = self.write_config('[Shutdown]\nParallelSaves=1\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': 'web1=slow-save,web2=slow-save'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.assertEqual(self.client.wait_run_finished('preserve', timeout=30)[1:], (3, 0))
        wait_until(lambda: self.notify.values('STATUS')[-1].startswith('Preserved'), 5, 'the final STATUS')
        status = self.notify.values('STATUS')
        # One save at a time, 3 s each: each shows while it runs, with how far the run is.
        # (The test driver has no job stats: 0 %; real percentages are in tests/e2e.)
        saving = [re.fullmatch(r'Preserving (\d)/3 guests: saving (web[12]) \((\d+)%\)', s) for s in status]
        saving = [(int(m[1]), m[2], int(m[3])) for m in saving if m]
        self.assertEqual({name for _, name, _ in saving}, {'web1', 'web2'}, status)
        first, second = saving[0][1], saving[-1][1]
        self.assertNotEqual(first, second)
        self.assertTrue(all(pct == 0 for _, _, pct in saving), saving)
        # The first save starts after the shutdown of tmp or with it; the second after both.
        self.assertIn(saving[0][0], (0, 1))
        self.assertEqual(saving[-1][0], 2)
        self.assertEqual(status[-1], 'Preserved 3 guests: 2 saved, 1 shut down, 0 powered off, 0 failed')

    def test_busy_while_running(self):
        self.define('big1')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': 'big1=slow-save'})
        self.client.wait_state('idle')
        self.client.call('PreserveGuests')
        with self.assertRaisesRegex(Exception, 'org.guestkeeper1.Error.Busy'):
            self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')

    def test_reload_with_bad_config_keeps_old(self):
        cfg = self.write_config('[Shutdown]\nSave=all\n')
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        with open(cfg, 'a') as f:
            f.write('ParallelSaves=lots\n')
        with self.assertRaisesRegex(Exception, r'InvalidConfig.*\[Shutdown\] ParallelSaves: "lots"'):
            self.client.call('Reload')
        self.assertIsNone(self.daemon.proc.poll())
        # SIGHUP with the same bad file: still running, still idle.
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.client.wait_state('idle')
        self.assertIn('keeping the old configuration', self.daemon.log_text())

    def test_logind_restart_and_absence(self):
        self.logind.stop()
        self.start_daemon()  # READY=1 with logind absent
        self.client.wait_state('idle')
        self.assertFalse(self.client.get('InhibitorHeld'))
        self.logind.start()
        wait_until(lambda: self.client.get('InhibitorHeld'), 10, 'the inhibitor taken when logind appears')
        wait_until(lambda: self.logind.our_inhibitors(), 10, 'listed by logind')
        self.logind.stop()
        wait_until(lambda: not self.client.get('InhibitorHeld'), 10, 'InhibitorHeld=false')
        self.logind.start()
        wait_until(lambda: self.logind.our_inhibitors(), 10, 're-taken after the restart')

    def test_watchdog(self):
        self.start_daemon(env={'WATCHDOG_USEC': '200000'})
        self.client.wait_state('idle')
        self.notify.wait_for('WATCHDOG', '1', timeout=2)
        t = time.monotonic()
        n = len(self.notify.values('WATCHDOG'))
        wait_until(lambda: len(self.notify.values('WATCHDOG')) >= n + 3, 3, 'three more WATCHDOG=1')
        self.assertLess(time.monotonic() - t, 1.0 * harness.SCALE)  # at half of 200 ms, not once a second

    def test_bad_config_exits_1(self):
        cfg = self.write_config('[Boot]\nStartDelaySec=soon\n')
        d = harness.Daemon(self.wd.path, self.bus, self.notify, cfg)
        d.start(wait_ready=False)
        self.assertEqual(d.proc.wait(10), 1)
        self.assertIn(f'{cfg}: [Boot] StartDelaySec: "soon" is not a time span (seconds, or e.g. "5min", "1h 30s")',
                      d.log_text())


class PolkitTest(Base):
    """The privileged methods called by someone other than root, dbusmock's polkitd template on
    the bus: its answer decides; root is never asked; the main loop never waits for it."""

    def setUp(self):
        super().setUp()
        self.polkit = harness.Polkitd(self.bus, os.path.join(self.wd.path, 'polkitd.log'))
        self.addCleanup(self.polkit.stop)
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')

    def called(self, r):
        """The caller's unique name and what it got."""
        name, answer = r.stdout.split('\n', 1)
        return name, answer.strip()

    def test_refused_when_polkit_says_no(self):
        calls = (('PreserveGuests', '', (), 'preserve'), ('PreserveGuestsWithFlags', '(t)', (1,), 'preserve'),
                 ('RestoreGuests', '', (), 'restore'), ('Reload', '', (), 'reload'),
                 ('PreserveGuestsNamed', '(ast)', (['web1'], 0), 'preserve'),
                 ('RestoreGuestsNamed', '(as)', (['web1'],), 'restore'), ('Cancel', '', (), 'cancel'))
        names = []
        for method, sig, args, action in calls:
            r = harness.call_as(self.bus, 65534, method, sig, *args)
            name, answer = self.called(r)
            names.append((name, f'org.guestkeeper1.{action}', 0))
            self.assertNotEqual(r.returncode, 0, method)
            self.assertEqual(answer, f'org.freedesktop.DBus.Error.AccessDenied {method}() refused: polkit does not '
                                     f'authorize org.guestkeeper1.{action} for uid 65534')
            self.assertRegex(self.daemon.log_text(), rf'{method}\(\) by uid 65534 \(python3\[\d+\]\): refused by '
                                                     rf'polkit \(org.guestkeeper1.{action}\)')
        # One query per call, about the caller's own bus name, not interactive.
        self.assertEqual(self.polkit.queries(), names)
        self.assertEqual(self.state('web1'), 'running')
        self.assertEqual(self.client.get('State'), 'idle')

    def ctl_as_nobody(self, *args, terminal):
        """guestkeeperctl as uid 65534, on a pseudo-terminal or with nothing but pipes."""
        cmd = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
               os.path.join(harness.BUILD_DIR, 'ctl', 'guestkeeperctl'), *args]
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        if not terminal:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60)
            return r.returncode, r.stdout + r.stderr
        return harness.run_on_terminal(cmd, env)

    def registered_agents(self):
        with open(self.polkit.log_path) as f:
            return f.read().count('RegisterAuthenticationAgent')

    def test_ctl_on_a_terminal_brings_polkits_agent(self):
        """Like systemctl: a user on a terminal gets pkttyagent and an interactive query, so that
        auth_admin_keep can ask for a password; piped, or with --no-ask-password, neither."""
        # What pkttyagent --fallback calls; the template lacks it.
        self.polkit.mock('AddMethod', 'sssss', 'org.freedesktop.PolicyKit1.Authority',
                         'RegisterAuthenticationAgentWithOptions', '(sa{sv})ssa{sv}', '', '')
        rc, out = self.ctl_as_nobody('preserve', 'web1', terminal=True)
        self.assertEqual(rc, 1, out)
        self.assertIn('polkit does not authorize org.guestkeeper1.preserve for uid 65534', out)
        self.assertEqual(self.registered_agents(), 1)
        self.assertEqual([q[1:] for q in self.polkit.queries()], [('org.guestkeeper1.preserve', 1)])

        rc, out = self.ctl_as_nobody('preserve', 'web1', terminal=False)
        self.assertEqual(rc, 1, out)
        rc, out = self.ctl_as_nobody('--no-ask-password', 'cancel', terminal=True)
        self.assertEqual(rc, 1, out)
        self.assertIn('polkit does not authorize org.guestkeeper1.cancel for uid 65534', out)
        self.assertEqual(self.registered_agents(), 1)
        self.assertEqual([q[1:] for q in self.polkit.queries()],
                         [('org.guestkeeper1.preserve', 1), ('org.guestkeeper1.preserve', 0),
                          ('org.guestkeeper1.cancel', 0)])
        self.assertEqual(self.state('web1'), 'running')

    def test_allowed_when_polkit_says_yes(self):
        self.polkit.allow('org.guestkeeper1.preserve')
        r = harness.call_as(self.bus, 65534, 'PreserveGuests', interactive=True)
        name, answer = self.called(r)
        self.assertEqual((r.returncode, answer), (0, 'OK'), r.stdout)
        self.assertEqual(self.client.wait_run_finished('preserve')[1:], (1, 0))
        self.assertEqual(self.state('web1'), 'saved')
        self.assertRegex(self.daemon.log_text(), r'PreserveGuests\(\) by uid 65534 \(python3\[\d+\]\): authorized '
                                                 r'by polkit \(org.guestkeeper1.preserve\)')
        # The caller allowed interactive authorization: polkit was told so.
        self.assertEqual(self.polkit.queries(), [(name, 'org.guestkeeper1.preserve', 1)])
        # The answer is per action: restoring is still refused.
        r = harness.call_as(self.bus, 65534, 'RestoreGuests')
        self.assertIn('polkit does not authorize org.guestkeeper1.restore for uid 65534', r.stdout)
        self.assertEqual(self.state('web1'), 'saved')

    def test_named_guests_once_polkit_says_yes(self):
        # The call goes through its handler again once polkit answers: its arguments too.
        self.define('web2')
        harness.wait_until(lambda: len(self.guests()) == 2, 10, 'guests listed')
        self.polkit.allow('org.guestkeeper1.preserve')
        r = harness.call_as(self.bus, 65534, 'PreserveGuestsNamed', '(ast)', ['web2'], 0)
        self.assertEqual(self.called(r)[1], 'OK', r.stdout)
        self.assertEqual(self.client.wait_run_finished('preserve')[1:], (1, 0))
        self.assertEqual((self.state('web1'), self.state('web2')), ('running', 'saved'))

    def test_root_is_never_asked(self):
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')
        self.client.call('RestoreGuests')
        self.client.wait_run_finished('restore')
        self.client.call('Reload')
        self.assertEqual(self.state('web1'), 'running')
        self.assertEqual(self.polkit.queries(), [])
        self.assertNotIn('() by uid', self.daemon.log_text())  # no authorization to log

    def test_bus_answers_while_polkit_thinks(self):
        """polkitd holds its answer: the daemon keeps answering others; the answer, when it
        comes, completes the call, once."""
        self.polkit.allow('org.guestkeeper1.preserve')
        self.polkit.mock('SimulateHang', 'b', 'true')
        p = harness.call_as(self.bus, 65534, 'PreserveGuests', wait=False)
        self.addCleanup(p.kill)
        wait_until(lambda: self.polkit.mock('HaveHangingCalls', '') == 'b true\n', 15, 'the query at polkitd')
        self.assertEqual(self.client.get('State'), 'idle')
        self.assertIn('web1', self.client.list_guests())
        self.assertIsNone(p.poll())
        self.polkit.mock('ReleaseHangingCalls', '')
        out, _ = p.communicate(timeout=30)
        self.assertEqual((p.returncode, out.split('\n')[1]), (0, 'OK'), out)
        self.client.wait_run_finished('preserve')
        self.assertEqual(self.state('web1'), 'saved')
        self.assertEqual(len(self.polkit.queries()), 1)

    def test_stopping_while_polkit_thinks(self):
        """The daemon stops with a query under way: the caller is told, nothing runs."""
        self.polkit.allow('org.guestkeeper1.preserve')
        self.polkit.mock('SimulateHang', 'b', 'true')
        p = harness.call_as(self.bus, 65534, 'PreserveGuests', wait=False)
        self.addCleanup(p.kill)
        wait_until(lambda: self.polkit.mock('HaveHangingCalls', '') == 'b true\n', 15, 'the query at polkitd')
        self.assertEqual(self.daemon.stop(), 0)
        out, _ = p.communicate(timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('org.freedesktop.DBus.Error.NoReply guestkeeperd stopped before polkit answered', out)
        self.assertEqual(self.state('web1'), 'running')


class PolkitAnswersTest(Base):
    """What polkitd may say besides yes and no, from a hand-made polkitd: authentication
    required, or an error of its own."""

    def start_polkitd(self, code):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        p = subprocess.Popen([harness.PYTHON, '-m', 'dbusmock', '--system', 'org.freedesktop.PolicyKit1',
                              '/org/freedesktop/PolicyKit1/Authority', 'org.freedesktop.PolicyKit1.Authority'],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(p.wait, 10)
        self.addCleanup(p.terminate)
        wait_until(lambda: harness.name_has_owner(self.bus, 'org.freedesktop.PolicyKit1'), 15, 'the polkitd mock')
        harness.busctl(self.bus, 'call', 'org.freedesktop.PolicyKit1', '/org/freedesktop/PolicyKit1/Authority',
                       'org.freedesktop.DBus.Mock', 'AddMethod', 'sssss', 'org.freedesktop.PolicyKit1.Authority',
                       'CheckAuthorization', '(sa{sv})sa{ss}us', '(bba{ss})', code)
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')

    def test_authentication_required(self):
        self.start_polkitd('ret = (False, True, {})')
        r = harness.call_as(self.bus, 65534, 'RestoreGuests')
        self.assertIn('org.freedesktop.DBus.Error.AccessDenied RestoreGuests() refused: org.guestkeeper1.restore '
                      'requires authentication for uid 65534; call with interactive authorization allowed and a '
                      'polkit agent running', r.stdout)
        self.assertRegex(self.daemon.log_text(), r'RestoreGuests\(\) by uid 65534 \(python3\[\d+\]\): refused, '
                                                 r'polkit requires authentication \(org.guestkeeper1.restore\)')

    def test_polkit_error(self):
        self.start_polkitd('raise dbus.exceptions.DBusException("Action org.guestkeeper1.reload is not registered", '
                           'name="org.freedesktop.PolicyKit1.Error.Failed")')
        r = harness.call_as(self.bus, 65534, 'Reload')
        self.assertIn('org.freedesktop.DBus.Error.AccessDenied Reload() refused: polkit could not authorize '
                      'org.guestkeeper1.reload for uid 65534: Action org.guestkeeper1.reload is not registered',
                      r.stdout)
        self.assertRegex(self.daemon.log_text(), r'Reload\(\) by uid 65534 \(python3\[\d+\]\): refused, polkit '
                                                 'failed: Action org.guestkeeper1.reload is not registered')


class LibvirtdFaultTest(Base):
    """Own libvirtd per test: these tests stop and restart it."""

    @classmethod
    def setUpClass(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        pass

    def setUp(self):
        self.lvdir = harness.Workdir()
        self.addCleanup(self.lvdir.cleanup)
        self.libvirtd = harness.Libvirtd(self.lvdir.path)
        self.addCleanup(self.libvirtd.stop)
        super().setUp()

    def test_reconnects_after_libvirtd_restart(self):
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        wait_until(lambda: self.guests().get('web1', [''] * 5)[3] == 'running', 10, 'web1 listed')
        self.libvirtd.stop()
        wait_until(lambda: self.guests().get('web1', [''] * 5)[3] == 'unreachable', 15, 'web1 unreachable')
        self.libvirtd.start()
        self.conn = libvirt.open(self.uri)  # the test driver starts afresh with libvirtd
        self.addCleanup(self.conn.close)
        self.define('web2')
        wait_until(lambda: self.guests().get('web2', [''] * 5)[3] == 'running', 40, 'web2 seen after reconnect')
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_run_finished('preserve')
        self.assertEqual(self.state('web2'), 'saved')

    def test_unreachable_uri_reported_others_preserved(self):
        self.define('web1')
        bad = 'test+unix:///default?socket=/nonexistent/libvirt-sock'
        self.start_daemon(self.write_config(uris=f'{self.uri} {bad}'))
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=30)
        self.assertEqual((done, failed), (1, 1))  # the URI, counted once
        self.assertEqual(self.state('web1'), 'saved')
        self.assertEqual(self.client.get('GuestsFailed'), 1)
        wait_until(lambda: f'UNREACHABLE: {bad}' in self.notify.values('STATUS')[-1], 5, 'STATUS naming the URI')
        self.assertIn(f'error: Cannot reach {bad}', self.daemon.log_text())


if __name__ == '__main__':
    unittest.main(verbosity=2)
