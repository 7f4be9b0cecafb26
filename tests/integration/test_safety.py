#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Paths that lost or froze guests on a real host (issue 10): a libvirtd that never answers,
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
        """Closes every connection and the socket: the clients get an error at last."""
        self.closed = True
        for c in self.conns:
            c.close()
        self.sock.close()

    def uri(self):
        return f'qemu+unix:///system?socket={self.path}'


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
        """Issue 10 item 3: a URI that accepts and never answers, next to a working one."""
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


if __name__ == '__main__':
    unittest.main(verbosity=2)
