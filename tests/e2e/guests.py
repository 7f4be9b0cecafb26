# SPDX-License-Identifier: LGPL-2.1-or-later
"""Real QEMU guests (TCG) for the end-to-end tests and benchmarks: the tiny image of
build-guest-image, domain XML of its kinds (optionally with its minimal guest agent), and
reading their serial consoles."""

import os
import re
import subprocess
import time
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE_ROOT = os.environ.get('GK_GUEST_IMAGE_ROOT', '/var/tmp/guestkeeper-guest')


def image_dir():
    """Builds (once, cached) and returns the directory with vmlinuz and initramfs.gz."""
    out = subprocess.run([os.path.join(HERE, 'build-guest-image'), IMAGE_ROOT], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError('cannot build the guest image: ' + out.stderr)
    return out.stdout.strip().split('\n')[-1]


def kvm_usable():
    """/dev/kvm here cannot run ordinary guests. We always use TCG; this only
    reports what the machine has, for the logs."""
    return os.path.exists('/dev/kvm')


KINDS = ('cooperative', 'stuck', 'press-twice')


def domain_xml(name, image, console, kind='cooperative', memory_mib=128, fill_mib=0, uid=None,
               agent=False):
    """kind: 'cooperative' powers off at the first ACPI button press, 'stuck' never does,
    'press-twice' ignores the first press and powers off at the second. agent=True adds the
    guest agent's channel (org.qemu.guest_agent.0) and starts the image's minimal agent."""
    if kind not in KINDS:
        raise ValueError(f'unknown guest kind {kind!r}')
    uid = uid or str(uuidlib.uuid4())
    cmdline = f'console=ttyS0 quiet panic=-1 gk.kind={kind} gk.fill={fill_mib}'
    channel = ''
    if agent:
        cmdline += ' gk.agent=1'
        # libvirt adds the virtio-serial controller and picks the socket path itself.
        channel = '''
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>'''
    return f'''<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uid}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{image}/vmlinuz</kernel>
    <initrd>{image}/initramfs.gz</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{console}' append='on'/>
      <target type='serial' port='0'/>
    </console>{channel}
  </devices>
</domain>'''


class Console:
    """The guest's serial log (append='on': it survives save, restore and reboot)."""

    def __init__(self, path):
        self.path = path

    def text(self):
        try:
            with open(self.path, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def count(self, marker):
        return self.text().count(marker)

    def ticks(self):
        return [int(n) for n in re.findall(r'GK-TICK (\d+)', self.text())]

    def last_tick(self):
        t = self.ticks()
        return t[-1] if t else 0

    def wait_for(self, marker, n=1, timeout=120):
        end = time.monotonic() + timeout
        while self.count(marker) < n:
            if time.monotonic() > end:
                raise AssertionError(f'{self.path}: no {marker!r} (#{n}) within {timeout} s; '
                                     f'tail: {self.text()[-400:]!r}')
            time.sleep(0.1)

    def wait_tick_after(self, value, timeout=60):
        end = time.monotonic() + timeout
        while self.last_tick() <= value:
            if time.monotonic() > end:
                raise AssertionError(f'{self.path}: heartbeat stuck at {self.last_tick()}')
            time.sleep(0.1)
