#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Paths that lost or froze guests on a real host: a libvirtd that never answers,
cancelled shutdowns and restores, an unreadable record, the SIGTERM decision without the
bus, a reload racing a list. Same set-up as test_daemon: a private bus, dbusmock's logind, a
notify socket and a private libvirtd serving the test driver."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402
from test_daemon import Base  # noqa: E402


# A bus call answered from the daemon's own state (never from libvirt) (valgrind: GK_TIME_SCALE).
FAST = 0.1 * harness.SCALE


class SilentServer:
    """A UNIX socket that accepts connections and never answers: a hung libvirtd, or a
    remote host that is gone while its TCP connection is not."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.conns = []
        self.accepted = 0
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.accepted += 1

    def hang_up(self):
        """Closes every connection and the socket: the clients get an error at last. The accept
        thread is woken and joined first: one still in accept() when the fd is closed could take
        the connections of a later socket that got the same fd number."""
        if self.closed:
            return
        self.closed = True
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)
        for c in self.conns:
            c.close()
        self.sock.close()

    def uri(self):
        return f'qemu+unix:///system?socket={self.path}'


PRIVATE_SERVER = r'''
import sys
from gi.repository import Gio, GLib
XML = """<node><interface name="org.freedesktop.systemd1.Manager">
<property name="SystemState" type="s" access="read"/></interface></node>"""
info = Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0]
def get_prop(conn, sender, path, iface, prop):
    return GLib.Variant('s', sys.argv[2])
conns = []  # a connection nobody references is closed
def on_conn(server, conn):
    conn.register_object('/org/freedesktop/systemd1', info, None, get_prop, None)
    conns.append(conn)
    return True
server = Gio.DBusServer.new_sync('unix:path=' + sys.argv[1], Gio.DBusServerFlags.AUTHENTICATION_ALLOW_ANONYMOUS,
                                 Gio.dbus_generate_guid(), None, None)
server.connect('new-connection', on_conn)
server.start()
print('ready', flush=True)
GLib.MainLoop().run()
'''


class PrivateSocket:
    """A stand-in for systemd's /run/systemd/private: a peer-to-peer D-Bus server."""

    def __init__(self, root, state):
        os.makedirs(os.path.join(root, 'run/systemd'), exist_ok=True)
        if os.path.exists(os.path.join(root, 'run/systemd/private')):
            os.unlink(os.path.join(root, 'run/systemd/private'))
        self.proc = subprocess.Popen([harness.PYTHON, '-c', PRIVATE_SERVER, os.path.join(root, 'run/systemd/private'),
                                      state], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == 'ready'

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc.stdout.close()


class SafetyTest(Base):
    def timed_reads(self, seconds):
        """Reads properties and ListGuests for @seconds; returns the slowest call (s)."""
        worst = 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for call in (lambda: self.client.get('State'), lambda: self.client.get('URIs'),
                         self.client.list_guests):
                t = time.monotonic()
                call()
                worst = max(worst, time.monotonic() - t)
            time.sleep(0.02)
        return worst

    def test_hung_uri_never_blocks_the_bus_or_the_run(self):
        """A URI that accepts and never answers, next to a working one."""
        silent = SilentServer(os.path.join(self.wd.path, 'silent-sock'))
        self.addCleanup(silent.hang_up)
        for n in ('a', 'b'):
            self.define(n)
        cfg = self.write_config('ConnectTimeoutSec=3\n', uris=f'{silent.uri()} {self.uri}')
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        wait_until(lambda: silent.accepted > 0, 10, 'the daemon connecting to the silent socket')
        wait_until(lambda: 'a' in self.guests(), 10, 'the working URI listed')
        self.assertLess(self.timed_reads(2), FAST)

        t = time.monotonic()
        self.logind.emit_prepare_for_shutdown(True)
        worst = self.timed_reads(1.5)
        kind, done, failed = self.client.wait_run_finished('preserve', timeout=30)
        took = time.monotonic() - t
        self.assertLess(worst, FAST, 'a bus call waited on the hung URI')
        # The working URI's guests are preserved; the silent one is counted once.
        self.assertEqual((done, failed), (2, 1))
        self.assertEqual(self.state('a'), 'saved')
        self.assertEqual(self.state('b'), 'saved')
        self.assertLess(took, 15 * harness.SCALE, 'the run waited on the hung URI beyond ConnectTimeoutSec')
        wait_until(lambda: self.notify.values('STATUS')[-1].startswith('Preserved'), 5, 'the final STATUS')
        status = self.notify.values('STATUS')[-1]
        self.assertIn('UNREACHABLE', status)
        self.assertIn('silent-sock', status)
        self.assertIn('no answer within 3 s', self.daemon.log_text())
        self.assertFalse(self.client.get('InhibitorHeld'))
        self.assertLess(self.timed_reads(1), FAST)

        # SIGTERM after the run: a clean exit, although a worker is still stuck in libvirt.
        t = time.monotonic()
        self.assertEqual(self.daemon.stop(), 0)
        self.assertLess(time.monotonic() - t, 10 * harness.SCALE)


    # --- item 5: cancelled shutdowns and other guest-losing edges ---

    def test_cancel_while_a_guest_shuts_down_brings_it_back(self):
        """A guest asked to stop must run again after a cancel, even one that takes its time."""
        self.define('slow')
        self.define('quick')
        cfg = self.write_config('[Shutdown]\nSave=none\nShutdownTimeoutSec=40\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': 'slow=ignore-shutdown'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        wait_until(lambda: self.guests().get('slow', [''] * 5)[4] == 'shutting-down', 10, 'slow shutting down')
        wait_until(lambda: self.state('quick') == 'shutoff', 10, 'quick shut down')
        self.logind.emit_prepare_for_shutdown(False)
        # The guest heard the button and powers off, but later than the old 10 s cancel wait.
        time.sleep(12)
        self.conn.lookupByName('slow').destroy()
        self.client.wait_run_finished('restore', timeout=30)
        self.assertEqual(self.state('slow'), 'running')
        self.assertEqual(self.state('quick'), 'running')
        self.client.wait_state('idle')
        self.assertTrue(self.client.get('InhibitorHeld'))

    def test_restore_cancelled_while_listing_starts_nothing(self):
        silent = SilentServer(os.path.join(self.wd.path, 'silent-sock'))
        self.addCleanup(silent.hang_up)
        for n in ('a', 'b'):
            self.define(n)
        cfg = self.write_config()
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.client.wait_run_finished('preserve')
        self.daemon.stop()
        self.assertEqual((self.state('a'), self.state('b')), ('saved', 'saved'))

        # Next boot: the restore waits on the silent URI while listing; the host goes down
        # again meanwhile.
        self.client = None
        # Long enough to emit the signal while it lists, even under valgrind.
        cfg = self.write_config(f'ConnectTimeoutSec={int(5 * harness.SCALE)}\n', uris=f'{silent.uri()} {self.uri}')
        self.start_daemon(cfg)
        self.client.wait_state('restoring')
        self.logind.emit_prepare_for_shutdown(True)
        kind, done, failed = self.client.wait_run_finished('restore', timeout=20)
        self.assertEqual(done, 0)
        self.client.wait_run_finished('preserve', timeout=20)
        self.assertEqual((self.state('a'), self.state('b')), ('saved', 'saved'))
        # Still recorded: the next start-up brings them back.
        self.assertEqual({n: r['Outcome'] for n, r in self.record().items()}, {'a': 'saved', 'b': 'saved'})

    def test_unreadable_record_does_not_stop_the_daemon(self):
        state = os.path.join(self.wd.path, 'state')
        record = os.path.join(state, 'record')
        os.makedirs(record)  # reading it fails with EISDIR: an I/O error, not a parse error
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        log = self.daemon.log_text()
        self.assertIn(f'{record}: cannot read', log)
        self.assertEqual(len([f for f in os.listdir(state) if f.startswith('record.unreadable-')]), 1)
        self.daemon.stop()

        # Cannot even be set aside (an immutable state directory): still up, still says so.
        for f in os.listdir(state):
            os.rename(os.path.join(state, f), record) if f.startswith('record.unreadable-') else None
        subprocess.run(['chattr', '+i', state], check=True)
        self.addCleanup(subprocess.run, ['chattr', '-i', state])
        self.client = None
        self.start_daemon()
        self.client.wait_state('idle')
        self.assertIn('could not rename it aside', self.daemon.log_text())
        self.assertTrue(self.client.get('InhibitorHeld'))

    def test_sigterm_while_systemd_is_stopping(self):
        """The non-logind path: `systemctl start poweroff.target` sends no PrepareForShutdown;
        at our SIGTERM logind says no and systemd says SystemState=stopping."""
        systemd = harness.Systemd(self.bus, 'stopping')
        self.addCleanup(systemd.stop)
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        self.daemon.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.proc.wait(30 * harness.SCALE), 0)
        self.assertEqual(self.state('web1'), 'saved')
        self.assertIn('SystemState=stopping', self.daemon.log_text())

    def test_exit_with_a_systemd_query_in_flight(self):
        """The run's own look at libvirt-guests.service is still unanswered when the run ends
        and the daemon exits: it exits at once, and frees the query (ASan, valgrind)."""
        systemd = harness.Systemd(self.bus, 'stopping', slow_after=1)
        self.addCleanup(systemd.stop)
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        t = time.monotonic()
        self.daemon.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.proc.wait(30 * harness.SCALE), 0)
        self.assertLess(time.monotonic() - t, 4.5 * harness.SCALE)  # not after systemd's 5 s
        self.assertEqual(self.state('web1'), 'saved')
        self.daemon.stop()  # the sanitizers' report

    def test_sigterm_decision_without_the_bus(self):
        """logind and systemd both silent on the bus: systemd's private socket decides; with
        nobody to ask at all, the guests are preserved."""
        self.logind.stop()
        root = os.path.join(self.wd.path, 'root')
        private = PrivateSocket(root, 'running')
        self.addCleanup(lambda: private.stop())
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        self.daemon.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.proc.wait(10 * harness.SCALE), 0)
        self.assertEqual(self.state('web1'), 'running')
        self.assertIn("systemd SystemState=running (asked on systemd's private socket)", self.daemon.log_text())
        self.daemon.stop()

        private.stop()
        private = PrivateSocket(root, 'stopping')
        self.client = None
        self.start_daemon()
        self.client.wait_state('idle')
        self.daemon.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.proc.wait(30 * harness.SCALE), 0)
        self.assertEqual(self.state('web1'), 'saved')
        self.daemon.stop()

        private.stop()
        os.unlink(os.path.join(root, 'run/systemd/private'))
        self.conn.lookupByName('web1').create()
        self.client = None
        self.start_daemon()
        # The properties, not the signal: the restore may end before the client's match is in.
        wait_until(lambda: self.client.get('LastRun') == 'restore' and self.client.get('State') == 'idle',
                   30, 'the restore at start-up')
        self.daemon.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.proc.wait(30 * harness.SCALE), 0)
        self.assertEqual(self.state('web1'), 'saved')
        self.assertIn('assuming the host is going down', self.daemon.log_text())

    def test_reload_replaces_uris_while_a_list_is_in_flight(self):
        """The list job of a dropped URI returns after the Reload (ASan run: no use after free)."""
        silent = SilentServer(os.path.join(self.wd.path, 'silent-sock'))
        self.addCleanup(silent.hang_up)
        self.define('web1')
        cfg = self.write_config(uris=silent.uri())
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        wait_until(lambda: silent.accepted > 0, 10, 'the list under way')
        self.write_config()  # same file, the working URI
        self.client.call('Reload')
        wait_until(lambda: 'web1' in self.guests(), 10, 'the new URI watched')
        silent.hang_up()  # the old list job fails now, after its URI was dropped
        time.sleep(1)
        self.assertIsNone(self.daemon.proc.poll())
        self.assertEqual(self.client.get('URIs'), [self.uri])
        self.assertEqual(set(self.guests()), {'web1'})
        self.assertEqual(self.daemon.stop(), 0)  # and the sanitizer/valgrind report is clean

    # --- item 4: keepalives ---

    def extends_during(self, seconds):
        n = len(self.notify.values('EXTEND_TIMEOUT_USEC'))
        time.sleep(seconds)
        return len(self.notify.values('EXTEND_TIMEOUT_USEC')) - n

    def test_keepalives_stop_on_a_hung_run(self):
        """No deadline, no timeout, a guest that ignores the button: nothing bounds the run,
        so systemd's stop timeout must be left to end it."""
        self.define('stuck')
        cfg = self.write_config('[Shutdown]\nSave=none\nShutdownTimeoutSec=0\nDeadlineSec=0\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': 'stuck=ignore-shutdown'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.notify.wait_for('EXTEND_TIMEOUT_USEC')
        wait_until(lambda: self.guests().get('stuck', [''] * 5)[4] == 'shutting-down', 10, 'the shutdown request')
        # The request itself was progress: the next keepalive (10 s on) may carry it.
        time.sleep(11)
        self.assertEqual(self.extends_during(21), 0)
        self.assertEqual(self.client.get('State'), 'preserving')

    def test_keepalives_go_on_while_the_deadline_bounds_the_run(self):
        self.define('stuck')
        cfg = self.write_config('[Shutdown]\nSave=none\nShutdownTimeoutSec=0\nDeadlineSec=120\n')
        self.start_daemon(cfg, env={'GUESTKEEPER_FAULTS': 'stuck=ignore-shutdown'})
        self.client.wait_state('idle')
        self.logind.emit_prepare_for_shutdown(True)
        self.notify.wait_for('EXTEND_TIMEOUT_USEC')
        self.assertGreaterEqual(self.extends_during(21), 2)
        self.assertTrue(all(int(v) <= 30_000_000 for v in self.notify.values('EXTEND_TIMEOUT_USEC')))


if __name__ == '__main__':
    unittest.main(verbosity=2)
