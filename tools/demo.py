#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guestkeeper demo: the real guestkeeperd on a private system bus with a mocked logind,
guests in libvirt's test driver served by a private libvirtd, a simulated host shutdown
(logind's PrepareForShutdown) and the next boot (guestkeeperd restarts and restores).
Run by tools/demo, which installs and builds first."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'integration'))
import harness  # noqa: E402
import libvirt  # noqa: E402

libvirt.registerErrorHandler(lambda *a: None, None)
BOLD, DIM, OFF = ('\033[1m', '\033[2m', '\033[0m') if sys.stdout.isatty() else ('', '', '')
T0 = time.monotonic()


def say(text=''):
    print(text, flush=True)


def head(text):
    say(f'\n{BOLD}== {text} =={OFF}')


def sh(bus, *args):
    """Shows a busctl command and its output, as a user would type it."""
    say(f'{DIM}$ busctl {" ".join(args)}{OFF}')
    out = harness.busctl(bus, *args)
    for line in out.rstrip().split('\n'):
        say('  ' + line)


def guests_table(client):
    rows = sorted(client.call('ListGuests')[0], key=lambda r: r[2])
    say(f'  {"NAME":<9} {"STATE":<12} {"LAST OUTCOME":<14} UUID')
    for uri, uuid, name, state, outcome in rows:
        say(f'  {name:<9} {state:<12} {outcome or "-":<14} {uuid}')


def follow_log(path, stop):
    """Prints the daemon's log lines as they come, prefixed."""
    pos = 0
    while not stop.is_set():
        try:
            with open(path, errors='replace') as f:
                f.seek(pos)
                for line in f.readlines():
                    if not line.startswith('debug:'):
                        say(f'  {DIM}[{time.monotonic() - T0:6.2f}s] guestkeeperd:{OFF} {line.rstrip()}')
                pos = f.tell()
        except FileNotFoundError:
            pass
        time.sleep(0.05)


def main():
    wd = harness.Workdir()
    head('Setting up: a private libvirtd (test driver), a private system bus, a mocked logind')
    libvirtd = harness.Libvirtd(wd.path)
    bus = harness.PrivateBus(wd.path)
    logind = harness.Logind(bus, os.path.join(wd.path, 'logind.log'))
    notify = harness.NotifyListener(os.path.join(wd.path, 'notify'))
    uri = libvirtd.uri()
    conn = libvirt.open(uri)  # holds the shared test driver for the whole demo
    for d in conn.listAllDomains():
        if d.isActive():
            d.destroy()
        d.undefine()
    for name in ('web1', 'web2', 'db1', 'legacy'):
        conn.defineXML(harness.test_domain_xml(name, 2048)).create()
    conn.createXML(harness.test_domain_xml('scratch', 512), 0)
    conn.defineXML(harness.test_domain_xml('idle', 1024))
    conn.defineXML(harness.test_domain_xml('pinned', 1024)).create()
    # Per-guest policy in the guest's own libvirt metadata (virsh metadata does the same).
    conn.lookupByName('pinned').setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                            '<guest><action>skip</action></guest>', 'gk',
                                            'https://guestkeeper.org/xmlns/guest/1', 0)
    say(f'  libvirt URI: {uri}')
    say('  guests: web1 web2 db1 (persistent), scratch (transient), legacy (persistent), idle (not running),')
    say('          pinned (its libvirt metadata says <action>skip</action>: never touched)')
    say('  injected faults (GUESTKEEPER_FAULTS): legacy\'s save fails (disk full) and it ignores ACPI')

    cfg = os.path.join(wd.path, 'guestkeeper.conf')
    with open(cfg, 'w') as f:
        f.write(f'[Guests]\nURIs={uri}\n[Shutdown]\nSave=all\nShutdownTimeoutSec=3\n'
                '# the database stops after the others and comes back before them\n'
                '[Guest db*]\nOrder=10\n')
    say(f'  config {cfg}:')
    for line in open(cfg):
        say('    ' + line.rstrip())

    stop = threading.Event()
    env = {'GUESTKEEPER_FAULTS': 'legacy=save-fails,legacy=ignore-shutdown'}
    daemon = harness.Daemon(wd.path, bus, notify, cfg, env)
    threading.Thread(target=follow_log, args=(daemon.log_path, stop), daemon=True).start()
    try:
        head('Boot: guestkeeperd starts (Type=notify)')
        daemon.start()
        notify.wait_for('READY', '1')
        client = harness.Client(bus)
        client.wait_state('idle')
        harness.wait_until(lambda: len(client.call('ListGuests')[0]) >= 7, 10, 'guests listed')
        say(f'  sd_notify: READY=1, STATUS={notify.values("STATUS")[-1]}')
        sh(bus, 'get-property', 'org.guestkeeper1', '/org/guestkeeper1', 'org.guestkeeper1.Manager',
           'State', 'InhibitorHeld')
        say(f'{DIM}$ busctl call org.freedesktop.login1 ... ListInhibitors{OFF}')
        for i in logind.inhibitors():
            say(f'  {i[0]} {i[1]} "{i[2]}" {i[3]}')
        say(f'{DIM}$ busctl call org.guestkeeper1 /org/guestkeeper1 org.guestkeeper1.Manager ListGuests{OFF}')
        guests_table(client)
        say(f'{DIM}$ guestkeeperctl plan{OFF}   (what a host shutdown would do now; [source] of each value)')
        ctl = os.path.join(harness.BUILD_DIR, 'ctl', 'guestkeeperctl')
        out = subprocess.run([ctl, 'plan'], capture_output=True, text=True,
                             env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)).stdout
        for line in out.rstrip().split('\n'):
            say('  ' + line)

        head('The host shuts down: logind emits PrepareForShutdown(true)')
        logind.emit_prepare_for_shutdown(True)
        while client.get('State') != 'preserved':
            say(f'  {DIM}[{time.monotonic() - T0:6.2f}s]{OFF} State={client.get("State")} '
                f'Progress={client.get("Progress"):.2f} done={client.get("GuestsDone")}/{client.get("GuestsTotal")}'
                f' STATUS="{(notify.values("STATUS") or [""])[-1]}"')
            time.sleep(0.7)
        kind, done, failed = client.wait_run_finished('preserve')
        say(f'  RunFinished("{kind}", {done}, {failed}); keepalives sent: '
            f'{len(notify.values("EXTEND_TIMEOUT_USEC"))} × EXTEND_TIMEOUT_USEC')
        harness.wait_until(lambda: not logind.our_inhibitors(), 10, 'inhibitor released')
        say('  the delay inhibitor is released: logind may proceed')
        guests_table(client)
        say(f'{DIM}  the record ({daemon.state_dir}/record):{OFF}')
        for name, g in sorted(harness.parse_record(os.path.join(daemon.state_dir, 'record')).items()):
            say(f'    {name:<9} outcome={g["Outcome"]:<9} steps={g["Steps"]}'
                + (f'  error="{g["Error"]}"' if 'Error' in g else ''))

        head('systemd stops guestkeeper.service (SIGTERM): the run is done, it exits 0')
        say(f'  exit status {daemon.stop()}')

        head('Next boot: guestkeeperd starts again and restores what it stopped')
        say('  (the test driver lives in the private libvirtd, which keeps running: it plays the host)')
        client = None
        daemon = harness.Daemon(wd.path, bus, notify, cfg, env)
        client = harness.Client(bus)  # before the start: the restore may end at once
        daemon.start()
        kind, done, failed = client.wait_run_finished('restore', timeout=30)
        client.wait_state('idle')
        say(f'  RunFinished("{kind}", {done}, {failed})')
        guests_table(client)
        say(f'{DIM}$ virsh list --all{OFF}')
        for d in sorted(conn.listAllDomains(), key=lambda d: d.name()):
            say(f'  {d.name():<9} {"running" if d.isActive() else "shut off":<9} '
                f'{"persistent" if d.isPersistent() else "transient"}')
        say(f'  record after the restore: {len(harness.parse_record(os.path.join(daemon.state_dir, "record")))} guests')
        daemon.stop()
    finally:
        stop.set()
        daemon.kill()
        conn.close()
        logind.stop()
        bus.stop()
        libvirtd.stop()
        notify.close()
        wd.cleanup()
    head('Done')


if __name__ == '__main__':
    main()
