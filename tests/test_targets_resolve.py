"""Selectors resolved against a host's devices: the class index gives what matching every selector
against every device gave (the reference below is that matching, kept as it was)."""

from types import SimpleNamespace
from typing import Dict, List

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.facts.targets import Selector, Target, parse_class, parse_device, policy_selector, resolve


def reference_resolve(selectors, vfs, devices):
    """``resolve`` before the class index: each selector matched against every device."""
    chosen: Dict[str, List[str]] = {}
    drivers: Dict[str, Selector] = {}
    counts: Dict[str, Selector] = {}
    unmatched: List[Selector] = []
    for sel in selectors:
        hits = [a for a, d in devices.items() if sel.matches(d)]
        if not hits:
            unmatched.append(sel)
        for a in hits:
            chosen.setdefault(a, []).append(sel.text)
            for wanted, pick in ((sel.driver, drivers), (sel.vfs, counts)):
                if wanted is not None and (a not in pick or sel.specificity > pick[a].specificity):
                    pick[a] = sel
    for address in vfs:
        if address in devices:
            chosen.setdefault(address, []).append(f"--vfs {address}={vfs[address]}")
        elif not any(s.kind == "address" and s.value == address for s in unmatched):
            unmatched.append(Selector("address", address, address))
    targets = [Target(a, tuple(chosen[a]), vfs[a] if a in vfs else (counts[a].vfs if a in counts else None),
                      drivers[a].driver if a in drivers else None) for a in sorted(chosen)]
    return targets, unmatched


class CountingDevice(SimpleNamespace):
    """A device that counts how often its class is asked."""

    asked = 0

    def __getattribute__(self, name):
        if name == "pci_class":
            CountingDevice.asked += 1
        return super().__getattribute__(name)


CLASSES = ["010802", "020000", "030000", "030200", "040300", "060400", "0c0330", "", None]
ADDRESSES = [f"0000:{bus:02x}:00.{fn}" for bus in (0x01, 0x3b, 0x10, 0xc1) for fn in range(3)]
IDS = ["10de:2204", "8086:1572", "8086:154c", "1022:1483"]


@st.composite
def hosts(draw):
    addresses = draw(st.lists(st.sampled_from(ADDRESSES), unique=True, max_size=len(ADDRESSES)))
    devices = {}
    for address in addresses:
        vendor, device = draw(st.sampled_from(IDS)).split(":")
        devices[address] = SimpleNamespace(address=address, vendor=vendor, device=device, ids=f"{vendor}:{device}",
                                           pci_class=draw(st.sampled_from(CLASSES)),
                                           subsystem_vendor=None, subsystem_device=None)
    return devices


selector = st.one_of(
    st.sampled_from(["01", "02", "0200", "03", "0300", "030000", "0302", "04", "06", "0c", "0c03", "0x03", "ff",
                     "0300ff"]).map(parse_class),
    st.sampled_from(ADDRESSES + ["01:00.0", "3b:00.1", "0000:99:00.0"] + IDS + ["ffff:0000"]).map(parse_device),
    st.builds(lambda c, d, v: policy_selector(match={"class": c}, driver=d, vfs=v),
              st.sampled_from(["02", "03", "0300"]), st.sampled_from([None, "vfio-pci", "iavf"]),
              st.sampled_from([None, 4])),
    st.builds(lambda a, d: policy_selector(address=a, driver=d), st.sampled_from(ADDRESSES),
              st.sampled_from([None, "vfio-pci"])),
)


@settings(max_examples=400, deadline=None)
@given(hosts(), st.lists(selector, max_size=8),
       st.dictionaries(st.sampled_from(ADDRESSES + ["0000:99:00.0"]), st.integers(0, 8), max_size=3))
def test_resolve_gives_what_matching_every_selector_gave(devices, selectors, vfs):
    assert resolve(selectors, vfs, devices) == reference_resolve(selectors, vfs, devices)


def test_each_device_is_asked_its_class_once_however_many_class_selectors():
    devices = {a: CountingDevice(address=a, ids="10de:2204", pci_class=CLASSES[i % 7]) for i, a in enumerate(ADDRESSES)}
    CountingDevice.asked = 0
    targets, unmatched = resolve([parse_class(c) for c in ("01", "02", "03", "04", "06", "0c")], {}, devices)
    assert CountingDevice.asked == len(devices)
    assert [t.address for t in targets] == sorted(ADDRESSES)
    assert unmatched == []
