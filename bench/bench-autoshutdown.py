#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench-autoshutdown: guestkeeper side by side with libvirt 11.3's own host-shutdown handling
(qemu.conf auto_shutdown_*), in the Debian 13 tree of the system suite booted with
systemd-nspawn (tests/system/build-rootfs --suite=trixie; the project built inside it by
tests/system/build-in-tree), a real `systemctl poweroff`, then the next boot.

The same guests for every setup: N_BIG (4) big ones (BIG_MIB 512 MiB, FILL_MIB 400 MiB of
non-zero data), one persistent guest that ignores the ACPI button ("stuck", 128 MiB) and one
transient guest (128 MiB, cooperative). Setups (one run each, a fresh overlay each):
  libvirt        auto_shutdown_try_save=persistent, _try_shutdown=all, _poweroff=all,
                 _restore=1, auto_save_bypass_cache=0 (and auto_start_bypass_cache=0)
  libvirt-bypass the same with both bypass-cache options at 1
  libvirt-delay60 "libvirt" with logind's InhibitDelayMaxSec=60 (5 s as shipped): its saves
                 are not cut short
  guestkeeper    guestkeeper.service enabled at the product defaults (no configuration file,
                 logind and the unit as shipped), libvirt's auto-shutdown off (its default)
  guestkeeper-bypass  the same with BypassCache=yes
  guestkeeper-save-all  the same with Save=all: the transient guest saved too
  both           (BOTH=1) libvirt's settings of "libvirt" and guestkeeper.service enabled
                 (guestkeeper leaves the guests libvirt's keys cover to libvirt)
Measured: the wall time from `systemctl poweroff` (the scenario's clock, in the container: the
host's clock) to the container's exit; from the start of the next boot (systemd-nspawn
started) to every guest that came back running; and each guest's fate, as the next boot sees
it: resumed (running, its heartbeat went on from where it was, its init ran once),
cold-booted (its init ran again), off, or lost (no longer defined). The shutdown's journal lines are kept in OUT_DIR (build/bench-autoshutdown).

Environment: N_BIG, BIG_MIB, FILL_MIB, SETUPS (space-separated names, default all but "both"),
BOTH=1, OUT_DIR."""

import importlib.machinery
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, '..'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'system'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'e2e'))
import guests as guests_mod  # noqa: E402
from test_system import Container  # noqa: E402

_loader = importlib.machinery.SourceFileLoader('build_in_tree', os.path.join(SOURCE_DIR, 'tests', 'system',
                                                                             'build-in-tree'))
_spec = importlib.util.spec_from_loader('build_in_tree', _loader)
build_in_tree = importlib.util.module_from_spec(_spec)
_loader.exec_module(build_in_tree)

N_BIG = int(os.environ.get('N_BIG', '4'))
BIG_MIB = int(os.environ.get('BIG_MIB', '512'))
FILL_MIB = int(os.environ.get('FILL_MIB', '400'))
OUT_DIR = os.environ.get('OUT_DIR', os.path.join(SOURCE_DIR, 'build', 'bench-autoshutdown'))
# name, MiB, filled MiB, kind, persistent
GUESTS = ([(f'big{i}', BIG_MIB, FILL_MIB, 'cooperative', True) for i in range(1, N_BIG + 1)]
          + [('stuck', 128, 0, 'stuck', True), ('transient', 128, 0, 'cooperative', False)])
AUTO_SHUTDOWN = ('auto_shutdown_try_save = "persistent"\nauto_shutdown_try_shutdown = "all"\n'
                 'auto_shutdown_poweroff = "all"\nauto_shutdown_restore = 1\n'
                 'auto_save_bypass_cache = {b}\nauto_start_bypass_cache = {b}\n')
SETUPS = {
    'libvirt': {'qemu_conf': AUTO_SHUTDOWN.format(b=0), 'guestkeeper': False},
    'libvirt-bypass': {'qemu_conf': AUTO_SHUTDOWN.format(b=1), 'guestkeeper': False},
    # logind waits up to 60 s for delay locks (InhibitDelayMaxSec, 5 s as shipped): libvirt's
    # saves, one at a time, all end before systemd stops the guests' scopes.
    'libvirt-delay60': {'qemu_conf': AUTO_SHUTDOWN.format(b=0), 'guestkeeper': False, 'delay': 60},
    'guestkeeper': {'qemu_conf': '', 'guestkeeper': True},
    'guestkeeper-bypass': {'qemu_conf': '', 'guestkeeper': True, 'gk_conf': '[Shutdown]\nBypassCache=yes\n'},
    # The transient guest saved too (to a file, sparse over parallel channels on this stack).
    'guestkeeper-save-all': {'qemu_conf': '', 'guestkeeper': True, 'gk_conf': '[Shutdown]\nSave=all\n'},
    # guestkeeper leaves the guests libvirt's keys cover to libvirt (guestkeeperd(8), OTHER
    # MECHANISMS): libvirt's result, and guestkeeper's for the guests outside its scopes.
    'both': {'qemu_conf': AUTO_SHUTDOWN.format(b=0), 'guestkeeper': True},
}

# Runs in the container as gk-bench.service. Boot 1: start the guests, wait until each is
# ready (and guestkeeperd idle, if it runs), note the time, `systemctl poweroff`. Boot 2: wait
# until every guest that is defined runs (at most 300 s), note the time, write what is seen,
# destroy the guests (nothing left to save) and power off.
SCENARIO = r'''#!/bin/bash
set -u
B=/var/lib/gk-bench
phase=$(cat "$B/phase" 2>/dev/null || echo 0)
v() { virsh -c qemu:///system "$@" 2>/dev/null; }
state() { v domstate "$1" | head -1 | tr ' ' _; }
if [ "$phase" = 0 ]; then
        for g in $(cat "$B/persistent"); do v define "$B/$g.xml" >/dev/null && v start "$g" >/dev/null; done
        for g in $(cat "$B/transient"); do v create "$B/$g.xml" >/dev/null; done
        for g in $(cat "$B/persistent") $(cat "$B/transient"); do
                for _ in $(seq 1 3000); do grep -q GK-READY "$B/$g.console" 2>/dev/null && break; sleep 0.1; done
        done
        if systemctl -q is-active guestkeeper.service; then
                for _ in $(seq 1 600); do
                        case "$(busctl get-property org.guestkeeper1 /org/guestkeeper1 org.guestkeeper1.Manager State 2>/dev/null)" in
                        's "idle"') break ;;
                        esac
                        sleep 0.1
                done
        fi
        for g in $(cat "$B/persistent") $(cat "$B/transient"); do
                echo "$g $(state "$g") $(grep -o 'GK-TICK [0-9]*' "$B/$g.console" | tail -1 | cut -d' ' -f2)"
        done >"$B/before"
        echo 1 >"$B/phase"
        sync
        date +%s.%N >"$B/t-poweroff"
        systemctl poweroff --no-block
elif [ "$phase" = 1 ]; then
        for _ in $(seq 1 3000); do
                ok=1
                for g in $(cat "$B/persistent") $(cat "$B/transient"); do
                        s=$(state "$g")
                        [ -z "$s" ] || [ "$s" = running ] || ok=0
                done
                [ $ok = 1 ] && break
                sleep 0.1
        done
        date +%s.%N >"$B/t-all-running"
        # "running" is not enough: a guest booted afresh runs too. A resumed one's heartbeat goes
        # on past where it was; a cold-booted one prints GK-INIT again (its kernel boots first).
        for g in $(cat "$B/persistent") $(cat "$B/transient"); do
                [ "$(state "$g")" = running ] || continue
                before=$(awk -v g="$g" '$1 == g {print $3}' "$B/before")
                for _ in $(seq 1 900); do
                        [ "$(grep -c GK-INIT "$B/$g.console")" -ge 2 ] && break
                        last=$(grep -o 'GK-TICK [0-9]*' "$B/$g.console" | tail -1 | cut -d' ' -f2)
                        [ "${last:-0}" -gt "$((before + 1))" ] && break
                        sleep 0.1
                done
        done
        for g in $(cat "$B/persistent") $(cat "$B/transient"); do
                echo "$g state=$(state "$g") inits=$(grep -c GK-INIT "$B/$g.console" 2>/dev/null)" \
                        "poweroffs=$(grep -c GK-POWEROFF "$B/$g.console" 2>/dev/null)" \
                        "saved=$(v dominfo "$g" | awk '/^Managed save:/ {print $3}')"
        done >"$B/after"
        for g in $(cat "$B/persistent") $(cat "$B/transient"); do v destroy "$g" >/dev/null; done
        echo 2 >"$B/phase"
        sync
        systemctl poweroff --no-block
fi
'''


def prepare(c, rootfs, cache, setup, tmp):
    stage = os.path.join(tmp, 'stage')
    b = os.path.join(stage, 'var/lib/gk-bench')
    os.makedirs(b)
    image = guests_mod.image_dir()
    shutil.copy(os.path.join(image, 'vmlinuz'), b)
    shutil.copy(os.path.join(image, 'initramfs.gz'), b)
    for name, mem, fill, kind, _ in GUESTS:
        with open(os.path.join(b, f'{name}.xml'), 'w') as f:
            f.write(guests_mod.domain_xml(name, '/var/lib/gk-bench', f'/var/lib/gk-bench/{name}.console', kind, mem,
                                          fill))
    with open(os.path.join(b, 'persistent'), 'w') as f:
        f.write(' '.join(g[0] for g in GUESTS if g[4]) + '\n')
    with open(os.path.join(b, 'transient'), 'w') as f:
        f.write(' '.join(g[0] for g in GUESTS if not g[4]) + '\n')
    os.makedirs(os.path.join(stage, 'usr/local/bin'))
    with open(os.path.join(stage, 'usr/local/bin/gk-bench'), 'w') as f:
        f.write(SCENARIO)
    os.chmod(os.path.join(stage, 'usr/local/bin/gk-bench'), 0o755)
    units = os.path.join(stage, 'etc/systemd/system')
    os.makedirs(os.path.join(units, 'multi-user.target.wants'))
    with open(os.path.join(units, 'gk-bench.service'), 'w') as f:
        f.write('[Unit]\nDescription=guestkeeper benchmark scenario\n'
                'After=libvirtd.service guestkeeper.service\nWants=libvirtd.service\n'
                '[Service]\nType=oneshot\nExecStart=/usr/local/bin/gk-bench\nTimeoutStartSec=900\n'
                '[Install]\nWantedBy=multi-user.target\n')
    enabled = {'gk-bench.service': '/etc/systemd/system/gk-bench.service'}
    if SETUPS[setup]['guestkeeper']:
        r = build_in_tree.in_tree(rootfs, cache, 'meson install -C /gk/build --no-rebuild --quiet --destdir /stage',
                                  binds=[(stage, '/stage')])
        if r.returncode != 0:
            raise RuntimeError(f'meson install in the tree failed: {r.stdout}{r.stderr}')
        enabled['guestkeeper.service'] = '/usr/lib/systemd/system/guestkeeper.service'
    for unit, path in enabled.items():
        os.symlink(path, os.path.join(units, 'multi-user.target.wants', unit))
    os.makedirs(os.path.join(stage, 'etc/libvirt'))
    with open(os.path.join(rootfs, 'etc/libvirt/qemu.conf')) as f:
        base = f.read()
    with open(os.path.join(stage, 'etc/libvirt/qemu.conf'), 'w') as f:
        f.write(base + SETUPS[setup]['qemu_conf'])
    if SETUPS[setup].get('gk_conf'):
        os.makedirs(os.path.join(stage, 'etc/guestkeeper'), exist_ok=True)
        with open(os.path.join(stage, 'etc/guestkeeper/guestkeeper.conf'), 'w') as f:
            f.write(SETUPS[setup]['gk_conf'])
    if SETUPS[setup].get('delay'):
        os.makedirs(os.path.join(stage, 'etc/systemd/logind.conf.d'))
        with open(os.path.join(stage, 'etc/systemd/logind.conf.d/bench.conf'), 'w') as f:
            f.write(f'[Login]\nInhibitDelayMaxSec={SETUPS[setup]["delay"]}\n')
    c.in_overlay(f'tar -C {stage} -cf - . | tar -C {c.merged} -xf - --keep-directory-symlink')


def fate(line):
    kv = dict(x.split('=', 1) for x in line.split()[1:])
    if not kv.get('state'):
        return 'lost'
    if kv['state'] == 'running':
        return 'resumed' if kv['inits'] == '1' else 'cold-booted'
    return kv['state'] + (' (saved)' if kv.get('saved') == 'yes' else '')


def tree_journal(c, boot):
    out = c.in_overlay(f'chroot {c.merged} journalctl -D /var/log/journal --list-boots --no-pager').stdout
    boot_id = re.findall(r'\b[0-9a-f]{32}\b', out)[boot]
    return c.in_overlay(f'chroot {c.merged} journalctl -D /var/log/journal -b {boot_id} --no-pager '
                        '-o short-precise').stdout


def run_setup(rootfs, cache, setup):
    tmp = tempfile.mkdtemp(prefix=f'gk-bench-{setup}-', dir='/var/tmp')
    try:
        c = Container(rootfs, tmp)
        prepare(c, rootfs, cache, setup, tmp)
        c.boot()
        t_exit = time.time()
        t_boot = time.time()
        c.boot()
        b = c.path('/var/lib/gk-bench')
        with open(os.path.join(b, 't-poweroff')) as f:
            t_poweroff = float(f.read())
        with open(os.path.join(b, 't-all-running')) as f:
            t_running = float(f.read())
        with open(os.path.join(b, 'after')) as f:
            fates = {line.split()[0]: fate(line) for line in f if line.strip()}
        journal = tree_journal(c, 0)
        os.makedirs(OUT_DIR, exist_ok=True)
        keep = ('guestkeeperd[', 'libvirtd[', 'Stopping', 'Stopped', 'PrepareForShutdown', 'machine-qemu',
                'guestkeeper.service', 'libvirtd.service', 'power off')
        start = journal.find('The system will power off now!')
        with open(os.path.join(OUT_DIR, f'{setup}.txt'), 'w') as f:
            f.write('\n'.join(line for line in journal[max(0, start - 200):].split('\n')
                              if any(k in line for k in keep)) + '\n')
        return {'poweroff': t_exit - t_poweroff, 'boot': t_running - t_boot, 'fates': fates,
                'conflict': 'CONFLICT' in journal}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    names = os.environ.get('SETUPS', ' '.join(n for n in SETUPS if n != 'both')
                           + (' both' if os.environ.get('BOTH') == '1' else '')).split()
    rootfs = build_in_tree.rootfs_path()
    cache = build_in_tree.build(SOURCE_DIR)
    results = {}
    for setup in names:
        t = time.monotonic()
        results[setup] = run_setup(rootfs, cache, setup)
        r = results[setup]
        print(f'{setup}: poweroff → exit {r["poweroff"]:.1f} s, boot → all running {r["boot"]:.1f} s, '
              f'{r["fates"]} (run took {time.monotonic() - t:.0f} s)', file=sys.stderr)
    guests = [g[0] for g in GUESTS]
    print(f'\n| setup | poweroff → exit | boot → all running | {" | ".join(guests)} |')
    print('|---|---:|---:|' + '---|' * len(guests))
    for setup, r in results.items():
        print(f'| {setup} | {r["poweroff"]:.1f} s | {r["boot"]:.1f} s | '
              + ' | '.join(r['fates'].get(g, '?') for g in guests) + ' |')
    for ours in ('guestkeeper', 'guestkeeper-bypass', 'guestkeeper-save-all'):
        for ref in ('libvirt', 'libvirt-bypass', 'libvirt-delay60'):
            if ours in results and ref in results:
                g, lv = results[ours], results[ref]
                print(f'{ours} / {ref}: poweroff {g["poweroff"] / lv["poweroff"]:.2f}×, '
                      f'boot {g["boot"] / lv["boot"]:.2f}×')


if __name__ == '__main__':
    main()
