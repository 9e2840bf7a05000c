"""Kernel config parsing against 13 real distribution configs and what MANIFEST.tsv says they hold."""

import csv
import re

import pytest

from hosttree import SHARED_DATA
from scanner.facts.kconfig import KernelConfig, parse_kconfig

CHECKED = ("INTEL_IOMMU", "INTEL_IOMMU_DEFAULT_ON", "INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF", "AMD_IOMMU",
           "IRQ_REMAP", "VFIO", "VFIO_PCI")


def _kconfig_rows():
    manifest = SHARED_DATA / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["file"].startswith("kconfig/")]
    return [pytest.param(r["file"], r["what_it_shows"], id=r["file"][len("kconfig/"):]) for r in rows]


ROWS = _kconfig_rows()


def stated(what_it_shows):
    """``... INTEL_IOMMU=y AMD_IOMMU=y VFIO=m ...`` -> {"INTEL_IOMMU": "y", ...}."""
    return dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=(\S+)", what_it_shows))


def test_all_13_configs_are_listed():
    if not ROWS:
        pytest.skip("shared data not found")
    assert len(ROWS) == 13


@pytest.mark.parametrize("path, what_it_shows", ROWS)
def test_values_match_manifest(path, what_it_shows):
    options = parse_kconfig((SHARED_DATA / path).read_text())
    expected = stated(what_it_shows)
    assert set(CHECKED) <= set(expected), "MANIFEST row does not state every checked option"
    got = {name: options.get(name, "absent") for name in CHECKED}
    assert got == {name: expected[name] for name in CHECKED}
    # a real config also parses the many other lines: a few thousand options, none with CONFIG_ left on
    assert len(options) > 1000
    assert not any(k.startswith("CONFIG_") for k in options)


def test_not_set_is_n_and_quoted_strings_lose_quotes():
    text = ('#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_VFIO=m\n'
            '# CONFIG_INTEL_IOMMU_DEFAULT_ON is not set\nCONFIG_LOCALVERSION="-pve"\n'
            'CONFIG_LOG_BUF_SHIFT=18\n# CONFIG_VFIO_PCI is a comment, not "not set"\n')
    options = parse_kconfig(text)
    assert options == {"VFIO": "m", "INTEL_IOMMU_DEFAULT_ON": "n", "LOCALVERSION": "-pve", "LOG_BUF_SHIFT": "18"}
    kc = KernelConfig(options=options, source="/boot/config-x")
    assert kc.enabled("CONFIG_VFIO") and not kc.enabled("INTEL_IOMMU_DEFAULT_ON")
    assert kc.get("VFIO_PCI") is None


@pytest.mark.parametrize("junk", ["", "not a config at all\n\x00\xff", "<html><body>404</body></html>",
                                  "CONFIG_\nCONFIG_=y\n=y\n# is not set\n"])
def test_garbage_gives_empty_dict(junk):
    assert parse_kconfig(junk) == {}
