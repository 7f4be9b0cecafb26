#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Cockpit page (cockpit/) in headless Chromium, driven by Selenium through chromedriver,
against the real daemon: guestkeeperd on a private bus with a private libvirtd's test driver
(tests/integration/harness.py), Debian's cockpit-ws and cockpit-bridge serving the page from
the source tree (XDG_DATA_DIRS) on 127.0.0.1.

What is asserted is what a person sees (the page's text, its buttons) and what libvirt says
of the guests; every wait is bounded (WebDriverWait). Screenshots go to
<build>/meson-logs/screenshots/."""

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import libvirt
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
import harness  # noqa: E402

libvirt.registerErrorHandler(lambda *a: None, None)

COCKPIT_WS = '/usr/lib/cockpit/cockpit-ws'
PAGE_SRC = os.path.join(os.path.abspath(harness.SOURCE_DIR), 'cockpit')
SCREENSHOTS = os.path.join(os.path.abspath(harness.BUILD_DIR), 'meson-logs', 'screenshots')
WAIT = 30 * harness.SCALE
# An unprivileged Cockpit user: its bridge runs as this uid, with no way to become root.
USER = 'nobody'


class CockpitWs:
    """cockpit-ws --local-session: no login, the bridge runs as the user that runs cockpit-ws
    (root, or @user through setpriv), with the page's package found through XDG_DATA_DIRS."""

    def __init__(self, workdir, bus, data_dir, user=None):
        self.port = harness.free_port()
        self.log_path = os.path.join(workdir, f'cockpit-ws-{user or "root"}.log')
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address, XDG_DATA_DIRS=f'{data_dir}:/usr/share')
        for k in ('XDG_DATA_HOME', 'XDG_CONFIG_HOME', 'XDG_RUNTIME_DIR', 'DBUS_SESSION_BUS_ADDRESS'):
            env.pop(k, None)
        cmd = [COCKPIT_WS, '--no-tls', '--port', str(self.port), '--address', '127.0.0.1',
               '--local-session=cockpit-bridge']
        if user:
            pw = pwd.getpwnam(user)
            home = os.path.join(workdir, f'home-{user}')
            os.makedirs(home)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            env.update(HOME=home, USER=user, LOGNAME=user)
            cmd = ['setpriv', f'--reuid={pw.pw_uid}', f'--regid={pw.pw_gid}', '--clear-groups', *cmd]
        else:
            env.update(HOME=os.path.join(workdir, 'home-root'))
        with open(self.log_path, 'ab') as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        harness.wait_until(lambda: self.proc.poll() is not None or self._answers(), 20, 'cockpit-ws listening')
        if self.proc.poll() is not None:
            raise AssertionError(f'cockpit-ws exited with {self.proc.returncode}: {self.log()}')
        self.url = f'http://127.0.0.1:{self.port}/cockpit/@localhost/guestkeeper/index.html'

    def _answers(self):
        with socket.socket() as s:
            return s.connect_ex(('127.0.0.1', self.port)) == 0

    def log(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()[-3000:]

    def stop(self):
        harness.stop_process(self.proc, 10)


def start_browser(width=1280, height=1100):
    opts = Options()
    opts.binary_location = '/usr/bin/chromium'
    for a in ('--headless=new', '--disable-gpu', '--disable-dev-shm-usage', f'--window-size={width},{height}',
              '--no-first-run', '--disable-extensions', '--lang=en-US'):
        opts.add_argument(a)
    if os.geteuid() == 0:
        opts.add_argument('--no-sandbox')  # Chromium refuses to run as root with its sandbox
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service('/usr/bin/chromedriver'), options=opts)


# Records, from the page itself, every text #gk-state and #gk-counts showed: what a person
# watching the page saw, however fast it changed.
WATCH_JS = '''
window.gkSeen = {state: [], counts: []};
const note = () => {
    const s = document.getElementById("gk-state");
    const c = document.getElementById("gk-counts");
    for (const [k, el] of [["state", s], ["counts", c]]) {
        const list = window.gkSeen[k];
        if (el && list[list.length - 1] !== el.textContent)
            list.push(el.textContent);
    }
};
new MutationObserver(note).observe(document.getElementById("gk-app"),
                                   {subtree: true, childList: true, characterData: true});
note();
'''

# A call forced through the page's own cockpit.js, as the page would make it.
FORCE_PRESERVE_JS = '''
const done = arguments[arguments.length - 1];
cockpit.dbus("org.guestkeeper1", {bus: "system", superuser: "try"})
    .call("/org/guestkeeper1", "org.guestkeeper1.Manager", "PreserveGuests", [])
    .then(() => done("OK"), e => done(e.name + " " + e.message));
'''


class CockpitPage(unittest.TestCase):
    libvirtd = None

    @classmethod
    def setUpClass(cls):
        cls.lvdir = harness.Workdir()
        cls.libvirtd = harness.Libvirtd(cls.lvdir.path)
        # The package directory Cockpit looks in, holding a copy of the page's files: readable by
        # the unprivileged session too (a checkout under /root is not).
        cls.data_dir = tempfile.mkdtemp(prefix='gk-cockpit-data-')
        os.chmod(cls.data_dir, 0o755)
        os.makedirs(os.path.join(cls.data_dir, 'cockpit'))
        page = os.path.join(cls.data_dir, 'cockpit', 'guestkeeper')
        shutil.copytree(PAGE_SRC, page, ignore=shutil.ignore_patterns('meson.build', 'package*.json'))
        for d, _, files in os.walk(page):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        os.makedirs(SCREENSHOTS, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.libvirtd.stop()
        cls.lvdir.cleanup()
        shutil.rmtree(cls.data_dir, ignore_errors=True)

    def setUp(self):
        harness.setup_environment(self)
        self.uri = self.libvirtd.uri()
        self.conn = libvirt.open(self.uri)
        self.addCleanup(self.conn.close)
        harness.running_test_guests(self.conn, 0)
        for name in ('web1', 'web2', 'db1'):
            self.conn.defineXML(harness.test_domain_xml(name)).create()
        self.conn.defineXML(harness.test_domain_xml('spare'))  # defined, shut off

    # --- helpers ---

    def start_daemon(self, config_extra='', env=None):
        cfg = os.path.join(self.wd.path, 'guestkeeper.conf')
        with open(cfg, 'w') as f:
            f.write(f'[Guests]\nURIs={self.uri}\n[Shutdown]\nParallelSaves=1\n'
                    '[Guest web*]\nOrder=10\nShutdownTimeoutSec=2min\n' + config_extra)
        self.daemon = harness.Daemon(self.wd.path, self.bus, self.notify, cfg, env)
        self.addCleanup(self.daemon.kill)
        self.client = harness.Client(self.bus)
        self.daemon.start()
        self.notify.wait_for('READY', '1', timeout=20)
        self.client.wait_state('idle')
        harness.wait_until(lambda: len(self.client.list_guests()) == 4, 10, 'the four guests listed')

    def open_page(self, user=None, width=1280, height=1100, guests=True):
        self.ws = CockpitWs(self.wd.path, self.bus, self.data_dir, user)
        self.addCleanup(self.ws.stop)
        self.browser = start_browser(width, height)
        self.addCleanup(self.browser.quit)
        self.browser.get(self.ws.url)
        self.wait(lambda d: d.find_element(By.ID, 'gk-app').get_attribute('aria-busy') == 'false', 'the page rendered')
        if guests:
            self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, '#gk-guests tr[data-guest]'), 'the guests shown')

    def wait(self, cond, what, timeout=WAIT):
        try:
            return WebDriverWait(self.browser, timeout, poll_frequency=0.1).until(cond)
        except Exception as e:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}; the page shows:\n'
                                 + self.text('gk-app') + '\ncockpit-ws: ' + self.ws.log()) from e

    def text(self, element_id):
        """What an element shows, read in one script: the page redraws whole sections, so an
        element found in one call may be gone in the next."""
        return self.browser.execute_script(
            'const e = document.getElementById(arguments[0]); return e ? e.innerText.trim() : "";', element_id)

    def texts(self, selector):
        return self.browser.execute_script(
            'return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText.trim());', selector)

    def button(self, action):
        """(enabled, tooltip) of an action's button."""
        return self.browser.execute_script(
            'const b = document.getElementById(arguments[0]); return [!b.disabled, b.title];', f'gk-{action}')

    def shown_guests(self, selector='#gk-guests'):
        """{name: {field: text}} of a table on the page."""
        return self.browser.execute_script('''
            const out = {};
            for (const tr of document.querySelectorAll(arguments[0] + " tr[data-guest]")) {
                out[tr.dataset.guest] = {};
                for (const td of tr.querySelectorAll("td"))
                    out[tr.dataset.guest][td.dataset.field] = td.innerText.trim();
            }
            return out;''', selector)

    def screenshot(self, name):
        path = os.path.join(SCREENSHOTS, f'{name}.png')
        self.browser.save_screenshot(path)
        print(f'screenshot: {path}', flush=True)
        return path

    def full_page_screenshot(self, name, width):
        """The whole page: the window made as tall as the page first."""
        height = self.browser.execute_script('return document.documentElement.scrollHeight')
        self.browser.set_window_size(width, height + 140)  # + the browser's own frame
        return self.screenshot(name)

    def shell_screenshot(self, name):
        """The page inside Cockpit's shell, as a person opens it: "Guest shutdown" in the menu,
        the page in its frame, the window as tall as the page."""
        self.browser.get(f'http://127.0.0.1:{self.ws.port}/guestkeeper')
        self.wait(lambda d: d.find_elements(By.XPATH, '//nav//a[normalize-space()="Guest shutdown"]'),
                  '"Guest shutdown" in the menu')
        frame = self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, 'iframe[name$="/guestkeeper"]'), 'the frame')[0]
        self.browser.switch_to.frame(frame)
        try:
            self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, '#gk-guests tr[data-guest]') and
                      d.find_elements(By.CSS_SELECTOR, '#gk-last-runs [data-run-kind]'), 'the page in the shell')
            height = self.browser.execute_script('return document.documentElement.scrollHeight')
        finally:
            self.browser.switch_to.default_content()
        self.browser.set_window_size(1280, height + 200)  # + the shell's header and the browser's frame
        return self.screenshot(name)

    def console_errors(self):
        return [e for e in self.browser.get_log('browser') if e['level'] in ('SEVERE', 'ERROR')]

    def confirm(self, action):
        """Clicks an action's button (found again if a redraw replaced it), waits for the
        confirmation and returns its confirm button (the modal is outside what redraws)."""
        self.assertEqual(self.button(action)[0], True, f'#gk-{action} disabled')

        def click(d):
            try:
                d.find_element(By.ID, f'gk-{action}').click()
                return True
            except StaleElementReferenceException:
                return False
        self.wait(click, f'#gk-{action} clicked')
        self.wait(lambda d: d.find_elements(By.ID, 'gk-modal'), 'the confirmation')
        return self.browser.find_element(By.ID, 'gk-confirm')

    def state(self, name):
        return harness.guest_state(self.conn, name)

    # --- tests ---

    def test_shows_guests_plan_and_last_run(self):
        self.start_daemon()
        # A run before the page opens: the page shows it from LastRuns, not from having seen it.
        self.client.call('PreserveGuests')
        self.client.wait_run_finished('preserve')
        self.client.call('RestoreGuests')
        self.client.wait_run_finished('restore')
        self.client.wait_state('idle')
        self.open_page()

        self.assertEqual(self.text('gk-state'), 'idle')
        self.assertEqual(self.text('gk-inhibitor'), 'held')
        shown = self.shown_guests()
        listed = self.client.list_guests()
        self.assertEqual(set(shown), set(listed))
        for name, row in listed.items():
            self.assertEqual(shown[name]['state'], row[3], name)
        self.assertEqual(shown['spare']['state'], 'shutoff')
        self.assertEqual(shown['web1']['outcome'], 'restored')
        # The plan: the steps and each setting with where it came from.
        self.assertRegex(shown['web1']['steps'], r'^save → shutdown → poweroff\nsave ≈ [\d.]+ s$')
        self.assertEqual(shown['web1']['order'], '10\nGuest web*')
        self.assertEqual(shown['web2']['shutdown-timeout'], '120 s\nGuest web*')
        self.assertEqual(shown['db1']['action'], 'save\ndefault')
        self.assertEqual(shown['spare']['steps'], '—')  # not running: nothing to do at a shutdown
        self.assertIn('3 running guests; 3 saves planned', self.text('gk-plan-summary'))
        # The last runs, newest first, with each guest's outcome.
        self.assertEqual(self.browser.execute_script(
            'return Array.from(document.querySelectorAll("#gk-last-runs [data-run-kind]"), e => e.dataset.runKind)'),
            ['restore', 'preserve'])
        preserve_run = self.texts('#gk-last-runs [data-run-kind=preserve]')[0]
        self.assertIn('Last preserve run: rehearsal', preserve_run)
        self.assertIn('3 of 3 done, 0 failed', preserve_run)
        preserved = self.shown_guests('#gk-last-runs [data-run-kind=preserve]')
        self.assertEqual({n: r['outcome'] for n, r in preserved.items()},
                         {'web1': 'saved', 'web2': 'saved', 'db1': 'saved'})
        self.assertEqual(self.console_errors(), [])

    def test_rehearsal_and_restore_from_the_page(self):
        # One save at a time, two of them slow: the run lasts seconds and its counts move.
        self.start_daemon(env={'GUESTKEEPER_FAULTS': 'web1=slow-save,web2=slow-save'})
        self.open_page()
        self.assertEqual(self.text('gk-state'), 'idle')
        self.screenshot('cockpit-idle')
        self.browser.execute_script(WATCH_JS)

        confirm = self.confirm('preserve')
        self.assertIn('3 running guests', self.text('gk-modal'))
        self.screenshot('cockpit-confirm')
        self.assertEqual(self.client.get('State'), 'idle')  # nothing happens before the confirmation
        confirm.click()
        self.wait(lambda d: self.text('gk-state') == 'preserving', 'State preserving on the page')
        self.wait(lambda d: self.text('gk-in-flight'), 'the guest being saved shown')
        self.assertIn('saving', self.text('gk-in-flight'))
        self.screenshot('cockpit-during-run')
        self.wait(lambda d: self.text('gk-state') == 'preserved', 'State preserved on the page')
        self.wait(lambda d: 'Preserve run finished: 3 done, 0 failed' in self.text('gk-run-finished'),
                  'RunFinished shown')
        self.assertEqual(len(self.texts('#gk-run-finished.pf-c-alert.pf-m-success')), 1)
        # libvirt says so, not only the page.
        for name in ('web1', 'web2', 'db1'):
            self.assertEqual(self.state(name), 'saved', name)
        self.assertEqual(self.state('spare'), 'shutoff')
        self.assertEqual(self.text('gk-counts'), '3 of 3 done, 0 failed')
        self.wait(lambda d: all(r['state'] == 'saved' for n, r in self.shown_guests().items() if n != 'spare'),
                  'the guests shown saved')
        seen = self.browser.execute_script('return window.gkSeen')
        # The page followed the run as it went: each state, and the count of guests done rising.
        self.assertEqual([s for s in seen['state'] if s in ('idle', 'preserving', 'preserved')],
                         ['idle', 'preserving', 'preserved'], seen)
        done_counts = [int(c.split()[0]) for c in seen['counts'] if c.endswith('done, 0 failed')]
        self.assertEqual(sorted(done_counts), done_counts, seen)
        self.assertTrue({1, 2, 3} <= set(done_counts), seen)

        self.confirm('restore').click()
        self.wait(lambda d: 'Restore run finished: 3 done, 0 failed' in self.text('gk-run-finished'),
                  'RunFinished (restore) shown')
        self.wait(lambda d: self.text('gk-state') == 'idle', 'State idle on the page')
        for name in ('web1', 'web2', 'db1'):
            self.assertEqual(self.state(name), 'running', name)
        self.wait(lambda d: self.shown_guests()['web1']['outcome'] == 'restored', 'web1 shown restored')
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#gk-last-runs [data-run-kind]')) == 2,
                  'both runs in Last runs')
        self.assertEqual(self.console_errors(), [])
        self.full_page_screenshot('cockpit-after-run', 1280)

        # A narrow window: everything still fits its width.
        self.browser.set_window_size(400, 900)
        self.wait(lambda d: d.execute_script('return window.innerWidth') <= 400, 'the narrow window')
        overflow = self.browser.execute_script(
            'return document.documentElement.scrollWidth - document.documentElement.clientWidth')
        self.assertLessEqual(overflow, 0, 'the page is wider than a 400 px window')
        self.screenshot('cockpit-narrow')
        self.full_page_screenshot('cockpit-narrow-full', 400)

        self.shell_screenshot('cockpit-in-shell')

    def test_failures_stand_out(self):
        # db1 cannot be saved, ignores the ACPI button and cannot be powered off: it fails.
        self.start_daemon('[Guest db1]\nShutdownTimeoutSec=1\n',
                          env={'GUESTKEEPER_FAULTS': 'db1=save-fails,db1=ignore-shutdown,db1=destroy-fails'})
        self.open_page()
        self.confirm('preserve').click()
        self.wait(lambda d: 'Preserve run finished: 2 done, 1 failed' in self.text('gk-run-finished'),
                  'RunFinished with a failure shown')
        self.assertEqual(self.state('db1'), 'running')
        self.assertEqual((self.state('web1'), self.state('web2')), ('saved', 'saved'))
        # In red: the end of the run, the progress bar, the guest's outcome, its row in the run.
        self.assertEqual(len(self.texts('#gk-run-finished.pf-c-alert.pf-m-danger')), 1)
        self.assertEqual(self.texts('#gk-progress.pf-m-danger #gk-counts'), ['2 of 3 done, 1 failed'])
        self.wait(lambda d: self.texts('#gk-guests tr[data-guest=db1] [data-field=outcome] .pf-c-label.pf-m-red')
                  == ['failed'], 'db1 shown failed in red')
        self.wait(lambda d: self.texts('[data-run-kind=preserve] h3 .pf-c-label.pf-m-red') == ['1 failed'],
                  'the last run shown with its failure')
        failed_rows = self.texts('[data-run-kind=preserve] tr.gk-failed[data-guest=db1]')
        self.assertEqual(len(failed_rows), 1)
        self.assertTrue(self.texts('[data-run-kind=preserve] tr[data-guest=db1] [data-field=error] .gk-danger-text')
                        [0], failed_rows)
        self.assertEqual(self.console_errors(), [])
        self.full_page_screenshot('cockpit-failure', 1280)

    def test_non_admin_sees_everything_and_changes_nothing(self):
        self.start_daemon()
        self.open_page(user=USER)
        shown = self.shown_guests()
        self.assertEqual(set(shown), {'web1', 'web2', 'db1', 'spare'})
        self.assertEqual(shown['web1']['state'], 'running')
        self.assertIn('Administrative access is needed', self.text('gk-need-admin'))
        for action in ('preserve', 'restore', 'cancel'):
            enabled, tooltip = self.button(action)
            self.assertFalse(enabled, action)
            self.assertIn('Administrative access is needed', tooltip)
        # Forced through the page's own cockpit.dbus, the daemon refuses.
        self.browser.set_script_timeout(WAIT)
        reply = self.browser.execute_async_script(FORCE_PRESERVE_JS)
        self.assertTrue(reply.startswith('org.freedesktop.DBus.Error.AccessDenied PreserveGuests()'), reply)
        self.assertEqual(self.client.get('State'), 'idle')
        for name in ('web1', 'web2', 'db1'):
            self.assertEqual(self.state(name), 'running', name)
        self.assertEqual(self.client.get('LastRun'), '')
        self.assertEqual(self.console_errors(), [])

    def test_in_cockpits_menu(self):
        """Cockpit lists the page in its menu as "Guest shutdown" (manifests.json is what the
        shell builds its menu from)."""
        self.ws = CockpitWs(self.wd.path, self.bus, self.data_dir)
        self.addCleanup(self.ws.stop)
        with urllib.request.urlopen(f'http://127.0.0.1:{self.ws.port}/cockpit/@localhost/manifests.json',
                                    timeout=WAIT) as r:
            manifests = json.load(r)
        self.assertEqual(manifests['guestkeeper']['menu']['index']['label'], 'Guest shutdown')

    def test_daemon_started_after_the_page(self):
        """The page says when guestkeeperd is not running, picks it up when it starts, and sees
        it stop."""
        self.open_page(guests=False)
        self.assertIn('guestkeeperd is not running', self.text('gk-not-running'))
        self.assertEqual(self.texts('#gk-preserve'), [])  # no action offered
        self.start_daemon()
        self.wait(lambda d: len(self.shown_guests()) == 4, 'the guests shown once the daemon runs')
        self.assertEqual(self.text('gk-state'), 'idle')
        self.assertEqual(self.text('gk-not-running'), '')
        self.daemon.stop()
        self.wait(lambda d: 'guestkeeperd is not running' in self.text('gk-not-running'), 'the daemon shown stopped')
        self.assertEqual(self.console_errors(), [])

    def test_conflicts_show_their_fix(self):
        root = os.path.join(self.wd.path, 'root', 'etc', 'libvirt')
        os.makedirs(root)
        with open(os.path.join(root, 'qemu.conf'), 'w') as f:
            f.write('auto_shutdown_try_save = "persistent"\n')
        systemd = harness.Systemd(self.bus, units={'libvirt-guests.service': ('enabled', 'active')})
        self.addCleanup(systemd.stop)
        self.start_daemon()
        harness.wait_until(lambda: len(self.client.get('Conflicts')) == 2, 10, 'two conflicts')
        self.open_page()
        conflicts = self.texts('.pf-c-alert.pf-m-warning.gk-conflict')  # warnings, styled so
        self.assertEqual(len(conflicts), 2)
        texts = '\n'.join(conflicts)
        self.assertIn('libvirt-guests.service is enabled and active', texts)
        self.assertIn('guestkeeperctl import-libvirt-guests --takeover', texts)
        self.assertIn('auto_shutdown_try_save', texts)
        self.assertIn('guestkeeperctl reload', texts)
        self.assertIn('systemctl try-restart libvirtd.service', texts)
        # The one way out that would shut every guest down is never offered.
        self.assertNotIn('systemctl stop', self.text('gk-app'))
        self.assertNotIn('disable --now', self.text('gk-app'))
        self.assertEqual(self.text('gk-conflicts'), '2')
        self.assertEqual(self.console_errors(), [])
        self.screenshot('cockpit-conflicts')


if __name__ == '__main__':
    unittest.main(verbosity=2)
