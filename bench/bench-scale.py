#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench-scale: a whole host shutdown and the next boot with many guests, test driver through a
private libvirtd (the orchestration's own cost: the test driver saves and starts in microseconds).

For each N in SIZES (100 and 1000), CYCLES times (3): the daemon is started with N running
guests and left to go idle, then
  1. PrepareForShutdown(true) → the first guest leaves `running` (its lifecycle event on our own
     connection);
  2. PrepareForShutdown(true) → State=preserved (the whole preserve);
  3. the daemon is stopped and started again (the next boot): its start → all N guests running
     (the N-th STARTED event), the whole restore.
Printed as medians with the goals (first save 20 ms, whole preserve and restore 1 s each) and the
issue's baseline as ratios, and where the time goes: the spread from the first guest saved (started)
to the last.

The signal is emitted by dbusmock's EmitSignal, called on a bus connection opened beforehand: the
clock starts at that call. EMIT=busctl calls it with busctl instead, as the first versions of this
bench did; that adds starting a busctl process (5-15 ms on a busy 2-core machine) to the first save."""

import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
import harness  # noqa: E402
import libvirt  # noqa: E402
from gi.repository import Gio, GLib  # noqa: E402

libvirt.registerErrorHandler(lambda *a: None, None)
SIZES = [int(n) for n in os.environ.get('SIZES', '100 1000').split()]
CYCLES = int(os.environ.get('CYCLES', '3'))
EMIT = os.environ.get('EMIT', 'call')
GOAL = {'first': 0.020, 'preserve': 1.0, 'restore': 1.0}
BASELINE = {('first', 100): 0.102, ('first', 1000): 0.445, ('preserve', 1000): 1.14, ('restore', 1000): 2.01}
WHAT = {'first': 'PrepareForShutdown → first guest leaves running',
        'preserve': 'PrepareForShutdown → State=preserved',
        'restore': 'daemon start → all guests running',
        'saves': '  of which: first guest saved → last',
        'first-start': '  of which: daemon start → first guest running'}


class Events:
    """Lifecycle events of the guests as a libvirt client sees them, with their arrival time."""

    def __init__(self, conn):
        self.lock = threading.Lock()
        self.stopped = []
        self.started = []
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._cb, None)

    def _cb(self, conn, dom, event, detail, opaque):
        t = time.monotonic()
        with self.lock:
            if event in (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED):
                self.stopped.append(t)
            elif event == libvirt.VIR_DOMAIN_EVENT_STARTED:
                self.started.append(t)

    def clear(self):
        with self.lock:
            self.stopped.clear()
            self.started.clear()


class Emitter:
    """PrepareForShutdown(true) from dbusmock's logind, over a connection opened in advance."""

    def __init__(self, bus, logind):
        self.logind = logind
        self.conn = Gio.DBusConnection.new_for_address_sync(
            bus.address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)

    def emit(self):
        if EMIT == 'busctl':
            self.logind.emit_prepare_for_shutdown(True)
            return
        self.conn.call_sync('org.freedesktop.login1', '/org/freedesktop/login1', 'org.freedesktop.DBus.Mock',
                            'EmitSignal', GLib.Variant('(sssav)', ('org.freedesktop.login1.Manager',
                                                                   'PrepareForShutdown', 'b',
                                                                   [GLib.Variant('b', True)])),
                            None, Gio.DBusCallFlags.NONE, 10000, None)

    def close(self):
        self.conn.close_sync(None)


def run_size(lv, conn, events, n, results):
    harness.running_test_guests(conn, n)
    for _ in range(CYCLES):
        wd = harness.Workdir()
        bus = harness.PrivateBus(wd.path)
        logind = harness.Logind(bus, os.path.join(wd.path, 'logind.log'))
        notify = harness.NotifyListener(os.path.join(wd.path, 'notify'))
        cfg = os.path.join(wd.path, 'gk.conf')
        with open(cfg, 'w') as f:
            f.write(f'[Guests]\nURIs={lv.uri()}\n')
        daemon = harness.Daemon(wd.path, bus, notify, cfg, {'G_DEBUG': ''})
        emitter = Emitter(bus, logind)
        try:
            daemon.start()
            client = harness.Client(bus)
            client.wait_state('idle', 60)
            harness.wait_until(lambda: len(client.list_guests()) == n, 60, 'all guests known')
            events.clear()
            t0 = time.monotonic()
            emitter.emit()
            harness.wait_until(lambda: client.states_seen()[-1:] == ['preserved'], 60, 'State=preserved')
            preserved = [t for t, k, v in client.changes if k == 'State' and v == 'preserved'][-1]
            with events.lock:
                results.setdefault(('first', n), []).append(events.stopped[0] - t0)
                results.setdefault(('saves', n), []).append(events.stopped[-1] - events.stopped[0])
            results.setdefault(('preserve', n), []).append(preserved - t0)
            assert not conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE), 'a guest still runs'
            daemon.stop()

            events.clear()
            t0 = time.monotonic()
            daemon.start(wait_ready=False)
            harness.wait_until(lambda: len(events.started) >= n, 60, 'all guests running')
            with events.lock:
                results.setdefault(('restore', n), []).append(events.started[n - 1] - t0)
                results.setdefault(('first-start', n), []).append(events.started[0] - t0)
            client = harness.Client(bus)
            client.wait_state('idle', 60)
            assert len(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)) == n
        finally:
            emitter.close()
            daemon.kill()
            logind.stop()
            bus.stop()
            notify.close()
            wd.cleanup()


def main():
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True).start()
    wd = harness.Workdir()
    lv = harness.Libvirtd(wd.path)
    conn = libvirt.open(lv.uri())
    events = Events(conn)
    results = {}
    try:
        for n in SIZES:
            run_size(lv, conn, events, n, results)
    finally:
        conn.close()
        lv.stop()
        wd.cleanup()

    print(f'Test driver via a private libvirtd, median of {CYCLES} cycles, signal emitted by '
          f'{"busctl" if EMIT == "busctl" else "a call on an open connection"}:')
    order = ['first', 'preserve', 'saves', 'restore', 'first-start']
    for (what, n), xs in sorted(results.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        m = statistics.median(xs)
        line = (f'  {WHAT[what]:<48} {n:5d} guests  {m * 1000:8.1f} ms '
                f'(min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})')
        if what in GOAL:
            line += f'   goal {GOAL[what] * 1000:.0f} ms: {m / GOAL[what]:.2f}x'
        if (what, n) in BASELINE:
            line += f'   baseline {BASELINE[what, n] * 1000:.0f} ms: {m / BASELINE[what, n]:.2f}x'
        print(line)


if __name__ == '__main__':
    main()
