"""VFIO-023 kernel-lockdown: kernel lockdown does not refuse an out-of-tree module a fix needs.

What: ``/sys/kernel/security/lockdown`` is ``[none]``, or no target needs an out-of-tree module to
be passed through. Lockdown is on with Secure Boot on most distributions (``[integrity]``, or
``[confidentiality]``), or with ``lockdown=`` on the command line.

Why: a locked-down kernel loads only modules signed with a key it trusts. The fix for the reset bug
of AMD GPUs is vendor-reset (gnif/vendor-reset, see VFIO-014), an out-of-tree module built by DKMS:
unsigned, ``modprobe vendor-reset`` fails with "Key was rejected by service" (``Lockdown:
modprobe: unsigned module loading is restricted``), and the GPU keeps the reset bug. The same holds
for any other DKMS module. Lockdown also refuses writes to a device's PCI config space from user
space (``setpci``), so config-space quirks applied by hand do not work.

How: the mode in brackets in ``/sys/kernel/security/lockdown``; with ``integrity`` or
``confidentiality``, each target VFIO-014 sends to vendor-reset (an AMD GPU, class 03 vendor 1002,
with no reset method) while ``vendor_reset`` is not loaded is named in a warning. A kernel
built without the lockdown LSM (``CONFIG_SECURITY_LOCKDOWN_LSM`` not set) has no lockdown; where the
file cannot be read otherwise (securityfs not mounted, a partial capture), the rule skips with the
reason.

Fix: sign the DKMS modules with a Machine Owner Key the firmware's shim trusts: DKMS 3 makes one
(``/var/lib/dkms/mok.pub``); ``mokutil --import`` it, reboot, enroll it in MokManager, then rebuild
the module (``dkms autoinstall``). Or turn Secure Boot off in the firmware setup.
"""

from typing import List

from rules.device_reset import wants_vendor_reset
from scanner import hookimpl
from scanner.facts.vm_start_hw import parse_lockdown
from scanner.engine.model import Evidence, Finding, Rule, Step

LOCKDOWN_FILE = "/sys/kernel/security/lockdown"
DKMS_KEY = "/var/lib/dkms/mok.pub"


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-023", name="kernel-lockdown", scope="host", severity="medium",
                  title="Kernel lockdown lets the modules the fixes need load", check=check, docs=__doc__))


def needs_vendor_reset(facts, device) -> bool:
    """A target VFIO-014 sends to vendor-reset, which is not loaded yet."""
    return device is not None and wants_vendor_reset(device) and "vendor_reset" not in facts.modules.loaded


def check(facts, scan):
    read = facts.lockdown
    if not read.ok:
        yield _unread(facts, read)
        return
    mode = parse_lockdown(read.text)
    evidence = [Evidence(LOCKDOWN_FILE, read.text.strip())]
    if mode is None:
        yield Finding.skip(f"cannot tell the lockdown mode: no mode in brackets in {LOCKDOWN_FILE}", evidence=evidence)
        return
    if mode == "none":
        yield Finding.passed("kernel lockdown is off: unsigned modules load", observed="lockdown: none",
                             expected="none, or no unsigned module needed", evidence=evidence)
        return
    needing = [t.address for t in scan.targets if needs_vendor_reset(facts, facts.pci.get(t.address))]
    if not needing:
        yield Finding.passed(f"kernel lockdown is on ({mode}): only signed modules load, and no target needs an "
                             "out-of-tree one (vendor-reset is for AMD GPUs)", severity="info",
                             observed=f"lockdown: {mode}", expected="no unsigned module needed", evidence=evidence)
        return
    yield Finding.warn(f"kernel lockdown is on ({mode}): {', '.join(needing)} "
                       f"{'is an AMD GPU' if len(needing) == 1 else 'are AMD GPUs'} whose reset-bug fix, the "
                       "vendor-reset DKMS module, loads only once signed with a key the kernel trusts (MOK)",
                       observed=f"lockdown: {mode}; vendor-reset not loaded",
                       expected="vendor-reset signed, or lockdown none", evidence=evidence,
                       remediation=_steps())


def _unread(facts, read) -> Finding:
    option = facts.kconfig.get("SECURITY_LOCKDOWN_LSM")
    if read.missing and facts.kconfig.source and option in (None, "n"):
        return Finding.passed(f"this kernel has no lockdown (CONFIG_SECURITY_LOCKDOWN_LSM not set in "
                              f"{facts.kconfig.source})", observed="no lockdown LSM", expected="no lockdown",
                              evidence=[Evidence(read.path, f"<{read.reason}>")])
    return Finding.skip(f"cannot read the lockdown mode ({read.describe()})")


def _steps() -> List[Step]:
    return [
        Step(summary=(f"Sign DKMS modules with a Machine Owner Key: import DKMS's key ({DKMS_KEY}, made by DKMS 3 "
                      "when it first signs a module), reboot and enroll it in MokManager at the console, then "
                      "rebuild the modules (`dkms autoinstall`)"),
             phase="modules", commands=[f"mokutil --import {DKMS_KEY}"], manual=True, requires_reboot=True,
             persistent=True, action={"kind": "mok-enroll", "key": DKMS_KEY}),
        Step(summary="Or turn Secure Boot off in the firmware setup (lockdown then stays off unless lockdown= asks for it)",
             phase="firmware", manual=True, requires_reboot=True, persistent=True,
             action={"kind": "firmware", "feature": "secure-boot"}),
    ]
