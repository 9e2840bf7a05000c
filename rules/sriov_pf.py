"""VFIO-011 sriov-pf: a requested PF has SR-IOV and the requested VFs are enabled.

What: for each ``--vfs ADDRESS=N`` request, the physical function (PF) has the SR-IOV capability
(``sriov_totalvfs`` > 0), N is within ``sriov_totalvfs``, a driver is bound to the PF, and
``sriov_numvfs`` is N. A virtual function given as a target passes and names its PF
(``physfn``); any other target without a ``--vfs`` request is skipped.

Why: a NIC, NVMe drive or GPU shared through SR-IOV is handed to VMs one virtual function at a
time, and the VFs exist only once the PF's driver has created them. The kernel refuses the
usual first attempts: more VFs than the device offers (``Numerical result out of range``), a PF
without its driver (``no driver bound to device; cannot configure SR-IOV`` — blacklisting the PF
driver for passthrough is a common mistake; vfio-pci creates VFs only with ``enable_sriov=1``),
and a change from N to M VFs (``N VFs already enabled. Disable before enabling M VFs``). VFs
created while ``sriov_drivers_autoprobe`` is 1 are grabbed by host drivers at once. The count
is lost at every reboot. When the firmware left too little MMIO space for the VF BARs, the
kernel logs ``not enough MMIO resources for SR-IOV`` and the write fails with ``Cannot allocate
memory``.

How: ``/sys/bus/pci/devices/<PF>/sriov_totalvfs``, ``sriov_numvfs``,
``sriov_drivers_autoprobe``, the ``driver`` and ``virtfnN`` links, a VF's ``physfn`` link, and
the kernel log for the PF's MMIO shortfall.

Fix: enable "SR-IOV Support" in the firmware (some NICs in their own firmware, e.g. Mellanox
``mlxconfig -d <dev> set SRIOV_EN=1 NUM_OF_VFS=N``); bind the PF to its own driver; then
``echo 0 > sriov_drivers_autoprobe``, ``echo 0 > sriov_numvfs`` when VFs exist, ``echo N >
sriov_numvfs``; persist the count with a udev rule on the PF's bind event. MMIO shortfall:
"Above 4G Decoding" in the firmware, or ``pci=realloc`` on the kernel command line.
"""


from scanner import hookimpl
from scanner.facts.cmdline import truthy
from scanner.engine.model import Evidence, Finding, Rule, Step

SRIOV_FILES = ("sriov_totalvfs", "sriov_numvfs", "sriov_drivers_autoprobe")
MMIO_MESSAGES = r"(not enough MMIO resources for SR-IOV|Failed to enable PCI sriov: -12)"


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-011", name="sriov-pf", scope="device", severity="high",
                  title="Requested SR-IOV virtual functions enabled", check=check, docs=__doc__))


def _evidence(device):
    from scanner.facts.pci import describe

    base = f"/sys/bus/pci/devices/{device.address}"
    items = [Evidence(base, describe(device))]
    for name in SRIOV_FILES:
        value = getattr(device, name)
        if value is not None:
            items.append(Evidence(f"{base}/{name}", str(value)))
    if device.virtfns:
        items.append(Evidence(f"{base}/virtfn*", " ".join(device.virtfns)))
    return items


def _vf_finding(facts, target, device):
    from scanner.facts.pci import describe
    from scanner.remediation.sriov import vfs

    pf = facts.pci.get(device.physfn)
    index = f"virtfn{pf.virtfns.index(target.address)} " if pf and target.address in pf.virtfns else ""
    of = f" ({describe(pf)}, {vfs(len(pf.virtfns))} enabled)" if pf else ""
    evidence = [Evidence(f"/sys/bus/pci/devices/{target.address}/physfn", device.physfn)]
    if target.vfs is not None:
        return Finding.fail(f"{target.address} is itself a virtual function ({index}of PF {device.physfn}): VFs "
                            f"cannot have VFs; request them on the PF (--vfs {device.physfn}={target.vfs})",
                            subject=target.address, observed=f"virtual function of {device.physfn}",
                            expected="a physical function with SR-IOV", evidence=evidence,
                            remediation=[Step(summary=f"Ask for the VFs on the PF: --vfs {device.physfn}={target.vfs}",
                                              phase="sriov", manual=True)])
    return Finding.passed(f"virtual function {index}of PF {device.physfn}{of}", subject=target.address,
                          observed=f"physfn -> {device.physfn}", expected="an SR-IOV VF or a PF with its VFs",
                          evidence=evidence)


def _no_sriov(facts, target, device, evidence):
    from scanner.remediation.shell import PCI_ADDRESS, quote
    from scanner.remediation.sriov import vfs

    why = "sriov_totalvfs is 0" if device.sriov_totalvfs == 0 else "no sriov_totalvfs file"
    kc = facts.kconfig
    kernel = ""
    if kc.found and kc.get("PCI_IOV") != "y":
        kernel = f"; the kernel is built without CONFIG_PCI_IOV ({kc.source}), so no device shows SR-IOV"
        evidence.append(Evidence(kc.source, f"CONFIG_PCI_IOV={kc.get('PCI_IOV') or 'absent'}"))
    addr = quote(target.address, PCI_ADDRESS, "PCI address")
    steps = [Step(summary=(
        f"Enable SR-IOV for {target.address}: \"SR-IOV Support\" in the firmware (BIOS/UEFI) setup, and on cards "
        f"that keep it in their own firmware the vendor tool (Mellanox/NVIDIA ConnectX: mlxconfig -d {addr} set "
        f"SRIOV_EN=1 NUM_OF_VFS={target.vfs}, then reboot or mlxfwreset); a device without the SR-IOV capability "
        "(lspci -vvv shows no \"Single Root I/O Virtualization\") cannot have VFs: pass the whole device instead"),
        phase="firmware", manual=True, requires_reboot=True, persistent=True,
        action={"kind": "firmware", "feature": "sriov", "address": target.address})]
    if kernel:
        steps.insert(0, Step(summary="Boot a kernel built with CONFIG_PCI_IOV=y (every distribution kernel is)",
                             phase="kernel", manual=True, requires_reboot=True, persistent=True))
    return Finding.fail(f"no SR-IOV capability: {why}; {vfs(target.vfs)} requested{kernel}", subject=target.address,
                        observed=why, expected=f"sriov_totalvfs >= {target.vfs}", evidence=evidence,
                        remediation=steps)


def _mmio(facts, device):
    """Kernel log lines saying the VF BARs did not fit, with the fixes; ([], []) when none."""
    from scanner.remediation.remedies import cmdline_steps

    lines = facts.kernel_log.about(device.address, MMIO_MESSAGES)
    if not lines:
        return [], []
    steps = [Step(summary=("Enable \"Above 4G Decoding\" (\"PCIe MMIO above 4GB\", \"Large BAR support\") and "
                           "\"SR-IOV Support\" in the firmware setup, so the VF BARs get address space"),
                  phase="firmware", manual=True, requires_reboot=True, persistent=True,
                  action={"kind": "firmware", "feature": "above-4g-decoding"})]
    cl = facts.cmdline
    if cl is None or "realloc" not in cl.options("pci"):
        steps += cmdline_steps(facts.boot, add=["pci=realloc"],
                               why="lets the kernel reassign bridge windows so the VF BARs fit")
    return [Evidence("kernel log", line) for line in lines[:3]], steps


def check(facts, scan):
    from scanner.facts.pci import is_vfio_driver
    from scanner.remediation.sriov import bind_vfs_step, numvfs_step, persist_step, pf_driver_step, udev_rule_file, vfs
    from scanner.remediation.binding import critical_evidence, host_critical, scanned_ids, vf_vfio_choice

    for target in scan.targets:
        device = facts.pci[target.address]
        if device.physfn:
            yield _vf_finding(facts, target, device)
            continue
        evidence = _evidence(device)
        if target.vfs is None:
            capable = (f"it is SR-IOV capable ({device.sriov_totalvfs} VFs max, {device.sriov_numvfs} enabled); "
                       if device.sriov_totalvfs else "")
            yield Finding.skip(f"no VFs requested; {capable}use --vfs {target.address}=N to check VF enablement",
                               subject=target.address, evidence=evidence)
            continue
        wanted, total, current = target.vfs, device.sriov_totalvfs, device.sriov_numvfs
        unreadable = device.unreadable(*SRIOV_FILES)
        if unreadable:
            yield Finding.skip(f"cannot read the SR-IOV state ({'; '.join(unreadable)})", subject=target.address,
                               evidence=evidence)
            continue
        if not total:
            yield _no_sriov(facts, target, device, evidence)
            continue
        if wanted > total:
            yield Finding.fail(
                f"{vfs(wanted)} requested, but the device supports at most {total} (sriov_totalvfs); the kernel "
                "refuses more (\"Numerical result out of range\")", subject=target.address,
                observed=f"sriov_totalvfs {total}", expected=f"sriov_totalvfs >= {wanted}", evidence=evidence,
                remediation=[Step(summary=(f"Request at most {vfs(total)} (--vfs {target.address}={total}); a few "
                                           "cards raise their maximum in their own firmware (e.g. mlxconfig "
                                           "NUM_OF_VFS), then reboot"), phase="sriov", manual=True)])
            continue
        if current is None:  # a PF whose sriov_numvfs file is missing: the kernel did not expose SR-IOV control
            yield Finding.skip("sriov_totalvfs is present but sriov_numvfs is not: cannot tell how many VFs are "
                               "enabled", subject=target.address, evidence=evidence)
            continue
        if current == wanted:
            if wanted == 0:
                message = "0 VFs requested and none enabled"
            else:
                shown = ", ".join(device.virtfns) or "no virtfn links readable"
                message = f"{current} of {vfs(total)} enabled as requested: {shown}"
                if device.sriov_drivers_autoprobe:
                    message += ("; sriov_drivers_autoprobe is 1, so host drivers may hold them "
                                "(VFIO-013 checks each VF's binding)")
            yield Finding.passed(message, subject=target.address, observed=f"sriov_numvfs {current}",
                                 expected=f"sriov_numvfs {wanted}", evidence=evidence)
            continue

        problems, steps = [f"{vfs(wanted)} requested, {current} enabled (sriov_numvfs; at most {total})"], []
        driver = device.driver
        if not driver:
            problems.append("no driver bound to device; cannot configure SR-IOV: the kernel creates VFs only "
                            "through the PF's own driver")
            steps.append(pf_driver_step(target.address, None, device.driver_override, scanned_ids(device)))
        elif is_vfio_driver(driver) and not (driver == "vfio-pci" and truthy(
                facts.module_param("vfio_pci", "enable_sriov").value())):
            problems.append(f"the PF is bound to {driver}, which creates VFs only when loaded with "
                            "enable_sriov=1 (and its VFs then need a VF token); normally the PF keeps its host "
                            "driver and only the VFs go to vfio-pci")
            steps.append(pf_driver_step(target.address, driver, device.driver_override, scanned_ids(device)))
        if current > 0 and wanted > 0:
            problems.append(f"the kernel refuses to change {vfs(current)} to {wanted} directly (\"{current} VFs "
                            f"already enabled. Disable before enabling {wanted} VFs\"): 0 is written first")
        mmio_evidence, mmio_steps = _mmio(facts, device)
        if mmio_evidence:
            problems.append("the kernel log shows the VF BARs did not fit (\"not enough MMIO resources for "
                            "SR-IOV\"): enable Above 4G Decoding in the firmware or boot with pci=realloc")
        critical = host_critical(facts, target.address) if current > 0 else None
        if critical:  # writing 0 first removes the VFs the host runs on
            problems.append(f"the host needs this PF's VFs as they are: {critical}")
            steps.append(Step(summary=(f"Do NOT change the VF count of {target.address} on this host: {critical}. Move "
                                       "the host's network off its VFs first"), phase="sriov", manual=True,
                              action={"kind": "sriov-numvfs", "address": target.address, "host_critical": critical}))
            yield Finding.fail("; ".join(problems), subject=target.address, observed=f"sriov_numvfs {current}",
                               expected=f"sriov_numvfs {wanted}", evidence=evidence + critical_evidence(facts, target.address),
                               remediation=mmio_steps + steps)
            continue
        steps.append(numvfs_step(target.address, current, wanted, device.sriov_drivers_autoprobe, scanned_ids(device)))
        if wanted > 0:
            steps.append(persist_step(target.address, wanted, device.sriov_drivers_autoprobe,
                                      facts.etc_file(udev_rule_file(target.address))))
            if device.sriov_drivers_autoprobe is not None:  # autoprobe goes to 0: the new VFs need binding
                steps.append(bind_vfs_step(target.address, vf_vfio_choice(facts, device).driver))
        yield Finding.fail("; ".join(problems), subject=target.address, observed=f"sriov_numvfs {current}",
                           expected=f"sriov_numvfs {wanted}", evidence=evidence + mmio_evidence,
                           remediation=mmio_steps + steps)
