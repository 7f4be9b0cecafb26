#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The idle daemon makes no periodic wake-ups. Apart from the daemon tests: it measures time and
wake-ups, which says nothing under valgrind or ASan, so it runs in the plain build only (suite
"idle")."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402
from test_daemon import Base  # noqa: E402


class IdleTest(Base):
    """Own libvirtd that sends no keepalive pings of its own (it would by default, every 5 s, to
    every client that receives events): every wake-up counted here is the daemon's."""
    WINDOW = 15  # s: a timer of up to 5 s fires three times
    BOUND = 2  # wake-ups in WINDOW: a stray one, never a period

    @classmethod
    def setUpClass(cls):
        cls.lvdir = harness.Workdir()
        cls.libvirtd = harness.Libvirtd(cls.lvdir.path, conf='keepalive_interval = -1\n')

    def test_idle_daemon_makes_no_periodic_wake_ups(self):
        for i in range(10):
            self.define(f'g{i}')
        self.start_daemon()
        self.client.wait_state('idle')
        wait_until(lambda: len(self.guests()) == 10, 10, 'the guests listed')
        # A run first: its threads, connections and timers must all be gone afterwards.
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')
        self.client.call('RestoreGuests')
        self.client.wait_run_finished('restore')
        self.client.wait_state('idle')
        self.assertEqual(self.state('g0'), 'running')
        pid = self.daemon.proc.pid
        # GLib ends a pool thread that had nothing to do for 15 s; with it go its connections.
        # The main thread's name is the program's (valgrind's when the daemon runs under it).
        wait_until(lambda: set(harness.thread_stats(pid)) <= {pid} | {
                   tid for tid, (n, _) in harness.thread_stats(pid).items() if n == 'gmain'},
                   30, 'the worker threads to end')

        # A worker's libvirt connection is closed as the thread ends: the main thread then drops
        # that connection's watches and timers, just after the thread left /proc on a busy machine.
        def quiet_for(seconds):
            first = harness.thread_stats(pid)
            time.sleep(seconds)
            return harness.thread_stats(pid) == first

        wait_until(lambda: quiet_for(1), 10, 'the daemon to settle once its last worker ended')
        before = harness.thread_stats(pid)

        def woke():
            now = harness.thread_stats(pid)
            return sum(n - before.get(tid, (None, 0))[1] for tid, (_, n) in now.items())

        try:
            harness.assert_never(lambda: woke() > self.BOUND, self.WINDOW,
                                 f'more than {self.BOUND} wake-ups of the idle daemon in {self.WINDOW} s')
        except AssertionError as e:
            now = harness.thread_stats(pid)
            woken = {f'{name}[{tid}]': n - before.get(tid, (None, 0))[1] for tid, (name, n) in now.items()}
            raise AssertionError(f'{e}; per thread: {woken}; the daemon\'s log ends:\n'
                                 + self.daemon.log_text()[-2000:]) from None
        self.assertEqual(self.client.get('State'), 'idle')


if __name__ == '__main__':
    unittest.main(verbosity=2)
