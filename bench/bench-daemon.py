#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench-daemon: guestkeeperd's reaction time and bus responsiveness.

1. PrepareForShutdown(true) → the first guest's save completed in libvirt (its lifecycle event
   STOPPED/SAVED on our own connection), test driver through a private libvirtd: the daemon's
   reaction time (logind signal → list → record write → first save), N cycles.
2. Property reads (Get Progress) during a preserve run whose saves take seconds, against the
   same reads while idle: the ratio shows whether the bus waits on saves."""

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
CYCLES = int(os.environ.get('CYCLES', '20'))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    wd = harness.Workdir()
    lv = harness.Libvirtd(wd.path)
    bus = harness.PrivateBus(wd.path)
    logind = harness.Logind(bus, os.path.join(wd.path, 'logind.log'))
    notify = harness.NotifyListener(os.path.join(wd.path, 'notify'))
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True).start()
    conn = libvirt.open(lv.uri())
    for d in conn.listAllDomains():
        d.destroy()
        d.undefine()
    for i in range(4):
        conn.defineXML(harness.test_domain_xml(f'g{i}')).create()
    conn.defineXML(harness.test_domain_xml('big1')).create()
    conn.defineXML(harness.test_domain_xml('big2')).create()
    saved_at = []
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda c, d, ev, det, o: saved_at.append(time.monotonic())
                                if ev == libvirt.VIR_DOMAIN_EVENT_STOPPED else None, None)
    cfg = os.path.join(wd.path, 'gk.conf')
    with open(cfg, 'w') as f:
        f.write(f'[Guests]\nURIs={lv.uri()}\n[Shutdown]\nParallelSaves=2\n')
    daemon = harness.Daemon(wd.path, bus, notify, cfg,
                            {'GUESTKEEPER_FAULTS': 'big1=slow-save,big2=slow-save'}).start()
    client = harness.Client(bus)
    mock = Gio.DBusConnection.new_for_address_sync(
        bus.address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
        Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
    try:
        client.wait_state('idle')
        idle = []
        for _ in range(200):
            t = time.monotonic()
            client.get('Progress')
            idle.append(time.monotonic() - t)

        # 1. reaction time; the slow guests are paused out of the way (not running → not preserved)
        conn.lookupByName('big1').destroy()
        conn.lookupByName('big2').destroy()
        reaction = []
        for _ in range(CYCLES):
            saved_at.clear()
            t0 = time.monotonic()
            mock.call_sync('org.freedesktop.login1', '/org/freedesktop/login1', 'org.freedesktop.DBus.Mock',
                           'EmitSignal', GLib.Variant('(sssav)', ('org.freedesktop.login1.Manager',
                                                                  'PrepareForShutdown', 'b',
                                                                  [GLib.Variant('b', True)])),
                           None, Gio.DBusCallFlags.NONE, 5000, None)
            harness.wait_until(lambda: saved_at, 10, 'first save')
            reaction.append(saved_at[0] - t0)
            client.wait_state('preserved')
            mock.call_sync('org.freedesktop.login1', '/org/freedesktop/login1', 'org.freedesktop.DBus.Mock',
                           'EmitSignal', GLib.Variant('(sssav)', ('org.freedesktop.login1.Manager',
                                                                  'PrepareForShutdown', 'b',
                                                                  [GLib.Variant('b', False)])),
                           None, Gio.DBusCallFlags.NONE, 5000, None)
            harness.wait_until(lambda: client.get('State') == 'idle' and
                               all(conn.lookupByName(f'g{i}').isActive() for i in range(4)), 20, 'restored')

        # 2. reads during a run with two 3-second saves
        for n in ('big1', 'big2'):
            conn.lookupByName(n).create()
        client.call('PreserveGuests')
        client.wait_state('preserving')
        during = []
        while client.get('State') == 'preserving':
            t = time.monotonic()
            client.get('Progress')
            during.append(time.monotonic() - t)
    finally:
        daemon.kill()
        conn.close()
        logind.stop()
        bus.stop()
        lv.stop()
        wd.cleanup()

    ms = 1000
    print(f'PrepareForShutdown(true) → first save done in libvirt, {CYCLES} cycles, 4 guests, test driver via libvirtd:')
    print(f'  median {statistics.median(reaction) * ms:.1f} ms   p90 {pct(reaction, 90) * ms:.1f} ms   '
          f'max {max(reaction) * ms:.1f} ms')
    print(f'Property read (Get Progress), {len(idle)} idle vs {len(during)} during a run with two 3 s saves:')
    print(f'  idle   median {statistics.median(idle) * ms:.2f} ms   p99 {pct(idle, 99) * ms:.2f} ms   max {max(idle) * ms:.2f} ms')
    print(f'  run    median {statistics.median(during) * ms:.2f} ms   p99 {pct(during, 99) * ms:.2f} ms   max {max(during) * ms:.2f} ms')
    print(f'  ratio run/idle: median {statistics.median(during) / statistics.median(idle):.2f}x   '
          f'p99 {pct(during, 99) / pct(idle, 99):.2f}x')


if __name__ == '__main__':
    main()
