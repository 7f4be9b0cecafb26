#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""guestkeeperctl against the real daemon on a private bus (harness.py), each command in text
and JSON, exit statuses, and clear errors when the daemon is not running."""

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_daemon import Base  # noqa: E402

CTL = os.path.join(harness.BUILD_DIR, 'ctl', 'guestkeeperctl')
_german = []


def german_locale_env():
    """LC_ALL=de_DE.UTF-8 (decimal comma), compiled into a private LOCPATH when the system
    has not generated it: needs only Debian's "locales" package, not root."""
    if not _german:
        env = {'LC_ALL': 'de_DE.UTF-8'}
        have = subprocess.run(['locale', '-a'], capture_output=True, text=True).stdout.split()
        if 'de_DE.utf8' not in have:
            d = tempfile.mkdtemp(prefix='gk-locale-')
            atexit.register(shutil.rmtree, d, True)
            r = subprocess.run(['localedef', '-i', 'de_DE', '-f', 'UTF-8', os.path.join(d, 'de_DE.UTF-8')],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise AssertionError(f'localedef de_DE.UTF-8 failed (tools/install-deps test): {r.stderr}')
            env['LOCPATH'] = d
        # The test means something only if this locale really prints a decimal comma.
        out = subprocess.run(['/usr/bin/printf', '%.3f', '0.5'], capture_output=True, text=True,
                             env=dict(os.environ, **env)).stdout
        if out != '0,500':
            raise AssertionError(f'de_DE.UTF-8 prints 0.5 as {out!r}, not 0,500')
        _german.append(env)
    return _german[0]


class CtlTest(Base):
    def ctl(self, *args, check=True, env=None):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address, **(env or {}))
        r = subprocess.run([CTL, *args], capture_output=True, text=True, env=env, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f'guestkeeperctl {" ".join(args)} exited {r.returncode}: {r.stderr}')
        return r

    def test_not_running(self):
        r = self.ctl('status', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('guestkeeperd is not running', r.stderr)

    def test_status_list_plan(self):
        self.define('web1')
        self.define('tmp', persistent=False)
        self.start_daemon()
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 2, 10, 'guests listed')
        out = self.ctl('status').stdout
        self.assertRegex(out, r'guestkeeperd \S+: idle')
        self.assertIn('Inhibitor: held', out)
        self.assertIn(self.uri, out)
        st = json.loads(self.ctl('--json', 'status').stdout)
        self.assertEqual((st['state'], st['inhibitor_held'], st['uris']), ('idle', True, [self.uri]))

        out = self.ctl('list').stdout
        self.assertRegex(out, r'NAME +STATE +LAST OUTCOME +URI')
        self.assertRegex(out, r'web1 +running +- +')
        self.assertIn('2 guests listed.', out)
        self.assertNotIn('NAME', self.ctl('--no-legend', 'list').stdout)
        rows = {g['name']: g for g in json.loads(self.ctl('--json', 'list').stdout)}
        self.assertEqual(rows['tmp']['state'], 'running')

        out = self.ctl('plan').stdout
        self.assertRegex(out, r'web1 +persistent +save → shutdown → poweroff')
        self.assertRegex(out, r'tmp +transient +shutdown → poweroff')
        plan = {g['name']: g for g in json.loads(self.ctl('--json', 'plan').stdout)}
        self.assertEqual(plan['web1']['steps'], ['save', 'shutdown', 'poweroff'])
        # plan does nothing
        self.assertEqual(self.state('web1'), 'running')

    def test_plan_per_guest_policy(self):
        """Per-guest values and their sources: metadata over a [Guest] section over the
        defaults; skip shown as skipped (plan and list); metadata set while the daemon runs
        is seen through libvirt's metadata event; malformed metadata is reported."""
        import libvirt
        ns = 'https://guestkeeper.org/xmlns/guest/1'
        for n in ('web1', 'web2', 'keep', 'odd'):
            self.define(n)
        self.conn.lookupByName('web2').setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                                   '<guest><order>3</order></guest>', 'gk', ns, 0)
        self.start_daemon(self.write_config('[Shutdown]\nShutdownMode=agent,acpi\n'
                                            '[Guest web*]\nOrder=10\nShutdownTimeoutSec=2min\n'
                                            '[Guest keep]\nAction=skip\n'))
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 4, 10, 'guests listed')
        self.conn.lookupByName('odd').setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                                  '<guest><order>first</order></guest>', 'gk', ns, 0)
        js = harness.wait_until(
            lambda: (p := {g['name']: g for g in json.loads(self.ctl('--json', 'plan').stdout)})
            and 'metadata-error' in p['odd']['settings'] and p, 10, 'the metadata event')
        self.assertEqual(js['web1']['settings']['order'], {'value': '10', 'source': 'Guest web*'})
        self.assertEqual(js['web2']['settings']['order'], {'value': '3', 'source': 'metadata'})
        self.assertEqual(js['web2']['settings']['shutdown-timeout'], {'value': '120', 'source': 'Guest web*'})
        self.assertEqual(js['web2']['settings']['shutdown-mode'], {'value': 'agent,acpi', 'source': 'default'})
        self.assertEqual(js['keep']['settings']['action'], {'value': 'skip', 'source': 'Guest keep'})
        self.assertEqual(js['keep']['steps'], [])
        self.assertIn('<order>: "first" is not an integer', js['odd']['settings']['metadata-error']['value'])
        r = self.ctl('plan')
        self.assertRegex(r.stdout, r'web2 +persistent +save → shutdown → poweroff +3 \[metadata\] +120 \[Guest web\*\]'
                                   r' +agent,acpi +0 ')
        self.assertRegex(r.stdout, r'keep +persistent +skipped \[Guest keep\]')
        self.assertIn('odd: malformed guestkeeper metadata, ignored', r.stderr)
        # ... and in the journal as soon as the guest is listed with it, not at the next shutdown.
        self.assertIn('warning: odd: malformed guestkeeper metadata, ignored: <order>', self.daemon.log_text())
        self.assertEqual(self.guests()['keep'][4], 'skipped')
        self.assertRegex(self.ctl('list').stdout, r'keep +running +skipped')
        # The order reaches the run: web2 (3) after web1 (10) after the others.
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve', timeout=30)
        log = self.daemon.log_text()
        self.assertLess(log.index('Shutdown: the guests order 10 begin'), log.index('web1: saved'))
        self.assertLess(log.index('web1: saved'), log.index('Shutdown: the guests order 3 begin'))
        self.assertEqual(self.state('keep'), 'running')

    def test_preserve_restore_follow(self):
        self.define('web1')
        self.define('web2')
        self.start_daemon()
        self.client.wait_state('idle')
        r = self.ctl('preserve')
        self.assertIn('preserve run finished: 2 done, 0 failed', r.stdout)
        self.assertEqual(self.state('web1'), 'saved')
        r = self.ctl('--json', 'restore')
        self.assertEqual(json.loads(r.stdout), {'kind': 'restore', 'done': 2, 'failed': 0})
        self.assertEqual(self.state('web1'), 'running')
        st = json.loads(self.ctl('--json', 'status').stdout)
        self.assertEqual((st['last_run'], st['guests_done']), ('restore', 2))

    def test_status_names_recovered_guests(self):
        """A guest the running set lists, found off at the next start (SIGKILLed daemon, guest
        destroyed: a power cut as libvirt sees it) and started again: status names it."""
        self.define('web1')
        self.define('web2')
        daemon = self.start_daemon()
        self.client.wait_state('idle')
        running = os.path.join(daemon.state_dir, 'running')
        harness.wait_until(lambda: os.path.exists(running) and sorted(harness.parse_record(running)) == ['web1', 'web2'],
                           10, 'the running set')
        daemon.kill()
        self.conn.lookupByName('web1').destroy()
        self.start_daemon()
        self.client.wait_run_finished('restore')
        out = self.ctl('status').stdout
        self.assertIn(f'Recovered: web1 ({self.uri}): restored after an unclean stop', out)
        self.assertNotIn('web2', out)
        st = json.loads(self.ctl('--json', 'status').stdout)
        self.assertEqual([(g['name'], g['uri']) for g in st['recovered']], [('web1', self.uri)])
        self.assertEqual(st['restore_waiting'], [])

    def test_status_names_guests_waiting_to_be_restored(self):
        """A recorded guest on a URI that does not answer waits to be restored: status says so,
        and its JSON stays JSON."""
        self.define('web1')
        self.start_daemon()
        self.client.wait_state('idle')
        self.ctl('preserve')
        self.daemon.stop()
        # The record now says web1 was saved on a URI whose libvirtd is not there.
        down = f'test+unix:///default?socket={self.wd.path}/no-such-libvirt-sock'
        path = os.path.join(self.daemon.state_dir, 'record')
        with open(path) as f:
            text = f.read()
        with open(path, 'w') as f:
            f.write(text.replace(f'URI={self.uri}\n', f'URI={down}\n'))
        self.start_daemon(config=self.write_config('ConnectTimeoutSec=1\n', uris=f'{self.uri} {down}'))
        harness.wait_until(lambda: self.ctl('status').stdout.count('Waiting: web1'), 20, 'web1 waiting')
        self.assertRegex(self.ctl('status').stdout, rf'Waiting: web1 \({re.escape(down)}\): \S')
        st = json.loads(self.ctl('--json', 'status').stdout)
        self.assertEqual([(g['name'], g['uri']) for g in st['restore_waiting']], [('web1', down)])
        self.assertTrue(st['restore_waiting'][0]['why'])
        self.assertEqual(st['recovered'], [])

    def follow_a_slow_preserve(self):
        """`guestkeeperctl preserve`, following a run whose save takes 3 s, once it is under way."""
        self.define('web1')
        self.start_daemon(env={'GUESTKEEPER_FAULTS': 'web1=slow-save'})
        self.client.wait_state('idle')
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        ctl = subprocess.Popen([CTL, 'preserve'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
        self.addCleanup(ctl.kill)
        harness.wait_until(lambda: self.client.get('State') == 'preserving', 10, 'the run started')
        return ctl

    def test_follow_survives_other_clients_leaving(self):
        # Every client that leaves the bus makes it broadcast NameOwnerChanged(":1.N", ":1.N",
        # ""); only the daemon's name leaving may end the follow.
        ctl = self.follow_a_slow_preserve()
        clients = 0
        while ctl.poll() is None and clients < 200:
            harness.busctl(self.bus, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                           'org.freedesktop.DBus', 'GetId')
            clients += 1
        out, err = ctl.communicate(timeout=30)
        self.assertEqual(ctl.returncode, 0, err)
        self.assertIn('preserve run finished: 1 done, 0 failed', out)
        self.assertGreater(clients, 3)  # the bus really was busy while it followed

    def test_follow_ends_when_the_daemon_dies(self):
        ctl = self.follow_a_slow_preserve()
        self.daemon.kill()
        out, err = ctl.communicate(timeout=30)
        self.assertEqual(ctl.returncode, 1)
        self.assertIn('guestkeeperd went away during the preserve run', err)

    def test_json_for_every_command_in_any_locale(self):
        self.define('web1')
        self.define('tmp', persistent=False)
        cfg = self.write_config()
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.guests()) == 2, 10, 'guests listed')
        lg = os.path.join(self.wd.path, 'libvirt-guests')
        with open(lg, 'w') as f:
            f.write('ON_SHUTDOWN=suspend\nFROB="a \\"quoted\\" value"\n')
        de = german_locale_env()

        def js(*args):
            # json.loads takes exactly one document: a second line or a decimal comma fails.
            r = self.ctl('--json', *args, env=de)
            try:
                return json.loads(r.stdout)
            except ValueError as e:
                raise AssertionError(f'guestkeeperctl --json {" ".join(args)}: {e}: {r.stdout!r}')

        for st in (js(), js('status')):
            self.assertEqual((st['state'], st['progress'], st['uris']), ('idle', 0.0, [self.uri]))
        self.assertEqual({g['name'] for g in js('list')}, {'web1', 'tmp'})
        self.assertEqual({g['name']: g['steps'] for g in js('plan')}['tmp'], ['shutdown', 'poweroff'])
        self.assertEqual(js('preserve'), {'kind': 'preserve', 'done': 2, 'failed': 0})
        st = js('status')
        self.assertEqual((st['last_run'], st['progress'], st['guests_done']), ('preserve', 1.0, 2))
        self.assertEqual(js('restore'), {'kind': 'restore', 'done': 2, 'failed': 0})
        self.assertEqual(js('reload'), {'reloaded': True})
        imp = js('import-libvirt-guests', lg)
        self.assertEqual((imp['file'], imp['defaults'], imp['warnings']), (lg, 'debian', []))
        self.assertIn('Save=persistent\n', imp['config'])
        self.assertTrue(any(n.startswith('FROB:') for n in imp['notes']), imp['notes'])

    def test_preserve_with_failure_exits_1(self):
        self.define('web1')
        cfg = self.write_config('[Shutdown]\nSave=none\nShutdown=none\nPowerOff=none\n')
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        r = self.ctl('preserve', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('0 done, 1 failed', r.stdout)

    def test_reload_and_refusals(self):
        cfg = self.write_config()
        self.start_daemon(cfg)
        self.client.wait_state('idle')
        self.assertIn('reloaded', self.ctl('reload').stdout)
        with open(cfg, 'a') as f:
            f.write('[Boot]\nRestore=perhaps\n')
        r = self.ctl('reload', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f'{cfg}: [Boot] Restore: "perhaps" is not a boolean', r.stderr)
        r = subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', CTL, 'preserve'],
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address))
        self.assertEqual(r.returncode, 1)
        self.assertIn('PreserveGuests is for root only', r.stderr)
        self.assertEqual(self.ctl('frobnicate', check=False).returncode, 2)

    def test_conflicts_reported(self):
        """libvirt-guests.service as systemd sees it (not by scanning *.wants), and qemu.conf."""
        systemd = harness.Systemd(self.bus, units={'libvirt-guests.service': ('enabled', 'active')})
        self.addCleanup(systemd.stop)
        root = os.path.join(self.wd.path, 'fakeroot')
        os.makedirs(os.path.join(root, 'etc/libvirt'))
        with open(os.path.join(root, 'etc/libvirt/qemu.conf'), 'w') as f:
            f.write('#auto_shutdown_try_save = "all"\nauto_shutdown_try_save = "persistent"\n'
                    'auto_shutdown_poweroff = "none"\n')
        self.start_daemon(env={'GUESTKEEPER_ROOT': root})
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.client.get("Conflicts")) == 2, 10, 'two conflicts')
        conflicts = self.client.get('Conflicts')
        self.assertIn('libvirt-guests.service is enabled and active (UnitFileState=enabled, ActiveState=active)',
                      conflicts[0])
        self.assertIn('--takeover', conflicts[0])
        self.assertIn('auto_shutdown_try_save = "persistent"', conflicts[1])
        self.assertIn('CONFLICTS:', self.ctl('status').stdout)
        self.assertEqual(len(json.loads(self.ctl('--json', 'status').stdout)['conflicts']), 2)
        self.assertIn('warning: CONFLICT: libvirt-guests.service is enabled', self.daemon.log_text())

    def test_conflict_rechecked_on_reload_and_before_a_run(self):
        systemd = harness.Systemd(self.bus, units={'libvirt-guests.service': ('disabled', None)})
        self.start_daemon()
        self.client.wait_state('idle')
        harness.assert_never(lambda: self.client.get('Conflicts'), 1, 'a conflict')
        # Enabled while guestkeeper runs (not loaded yet, so not active): Reload sees it.
        systemd.stop()
        systemd = harness.Systemd(self.bus, units={'libvirt-guests.service': ('enabled', None)})
        self.addCleanup(systemd.stop)
        self.client.call('Reload')
        harness.wait_until(lambda: self.client.get("Conflicts"), 10, 'the conflict after Reload')
        self.assertIn('is enabled (UnitFileState=enabled, ActiveState=inactive)', self.client.get('Conflicts')[0])
        # Disabled again: the next run's check clears it.
        systemd.stop()
        systemd = harness.Systemd(self.bus, units={'libvirt-guests.service': ('disabled', None)})
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')
        harness.wait_until(lambda: self.client.get("Conflicts") == [], 10, 'the conflict gone before the run')

    def test_no_conflicts(self):
        self.start_daemon()
        self.client.wait_state('idle')
        self.assertEqual(self.client.get('Conflicts'), [])

    def test_import_libvirt_guests(self):
        path = os.path.join(self.wd.path, 'libvirt-guests')
        with open(path, 'w') as f:
            f.write('# comment\nURIS="qemu:///system lxc:///"\nON_BOOT=start\nON_SHUTDOWN=suspend\n'
                    "PERSISTENT_ONLY=false\nSHUTDOWN_TIMEOUT='120'\nPARALLEL_SHUTDOWN=3\nBYPASS_CACHE=1\n"
                    'CONNECT_RETRIES=10\nFROB=1\n')
        r = self.ctl('import-libvirt-guests', path)
        conf = os.path.join(self.wd.path, 'imported.conf')
        with open(conf, 'w') as f:
            f.write(r.stdout)
        self.assertIn('URIs=qemu:///system lxc:///', r.stdout)
        self.assertIn('Save=all', r.stdout)
        self.assertIn('ParallelShutdowns=3', r.stdout)
        self.assertIn('CONNECT_RETRIES: not needed', r.stderr)
        self.assertIn('FROB: not a libvirt-guests setting', r.stderr)
        # what it prints is a config the daemon accepts
        d = harness.Daemon(self.wd.path, self.bus, self.notify, conf)
        d.start(wait_ready=False)
        harness.wait_until(lambda: d.proc.poll() is not None or 'Ready' in d.log_text(), 15, 'daemon up')
        self.assertIn('Ready', d.log_text())
        self.assertNotIn(f'{conf}:', d.log_text())  # no complaint about the file itself
        d.kill()
        with open(path, 'w') as f:
            f.write('ON_SHUTDOWN=hibernate\n')
        r = self.ctl('import-libvirt-guests', path, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('ON_SHUTDOWN=hibernate', r.stderr)

    def test_import_defaults_and_warnings(self):
        # An empty file: all is the script's defaults — Debian's unless it is a sysconfig file.
        os.makedirs(os.path.join(self.wd.path, 'sysconfig'))
        for path, option, save, restore in (('libvirt-guests', None, 'none', 'no'),
                                            ('sysconfig/libvirt-guests', None, 'persistent', 'yes'),
                                            ('libvirt-guests', '--defaults=upstream', 'persistent', 'yes'),
                                            ('sysconfig/libvirt-guests', '--defaults=debian', 'none', 'no')):
            path = os.path.join(self.wd.path, path)
            open(path, 'w').close()
            out = self.ctl(*([option] if option else []), 'import-libvirt-guests', path).stdout
            self.assertIn(f'\nSave={save}\n', out, (path, option))
            self.assertIn(f'\nRestore={restore}\n', out, (path, option))
        with open(path, 'w') as f:
            f.write('SHUTDOWN_TIMEOUT=0\n')
        r = self.ctl('import-libvirt-guests', path)
        self.assertIn('warning: SHUTDOWN_TIMEOUT=0: libvirt-guests waits for ever', r.stderr)
        self.assertIn('consider ShutdownTimeoutSec=300', r.stderr)
        self.assertEqual(self.ctl('--defaults=suse', 'import-libvirt-guests', path, check=False).returncode, 2)
        self.assertEqual(self.ctl('--defaults=debian', 'status', check=False).returncode, 2)


if __name__ == '__main__':
    unittest.main(verbosity=2)
