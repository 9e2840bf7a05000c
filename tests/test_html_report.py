"""``--format html`` in a real headless Chromium (Debian's chromium, driven by Playwright).

What a reader of the page would notice: it renders with no console error, nothing leaves the page
(no request but the file itself), the verdict, the grid and the PCI picture are there, the Copy
button copies a fix, and a host whose names carry markup shows that markup as text. Screenshots
of a single host and of a 200-host fleet are saved under ``test-artifacts/html/`` for a person
to look at.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from clihelpers import REPO, run_cli
from hosttree import gpu_on_vfio, workstation

ARTIFACTS = REPO / "test-artifacts" / "html"
HOSTILE = '<script>window.pwned=1</script><img src="http://198.51.100.7/x.png" onerror="window.pwned=2">"\'&'
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if not chromium:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and .ci/run should have installed it")
        pytest.skip("chromium is not installed")
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Page:
    """A page opened on a file, with what it logged and requested."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.grant_permissions(["clipboard-read", "clipboard-write"])
        self.page = self.context.new_page()
        self.console, self.requests, self.dialogs = [], [], []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTIFACTS / name
        self.page.screenshot(path=str(target), full_page=True)
        return target

    def close(self):
        self.context.close()


def html_scan(tmp_path, *args) -> Path:
    out = tmp_path / "report.html"
    proc = run_cli("scan", *args, "--format", "html", "-o", out)
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert "Traceback" not in proc.stderr
    return out


def test_single_host_renders_offline_with_verdict_grid_fixes_and_pci_picture(browser, tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "host"))
    page = Page(browser, html_scan(tmp_path, "--root", tree.root, "--class", "0300"))
    try:
        assert page.console == []
        assert page.requests == [page.url]  # nothing but the file itself
        p = page.page
        assert p.locator(".verdict .big").inner_text() == "NOT READY"
        assert p.locator("table.matrix tbody tr").count() == 1
        assert p.locator("tbody td.st-fail").all_inner_texts() == ["NOT READY", "FAIL"]  # the state, then VFIO-013
        assert p.locator("svg.pcitree").is_visible()
        boxes = p.locator("svg.pcitree g.group")
        assert boxes.count() == 12  # the workstation's groups 0-11, each one box
        assert "IOMMU group 1" in p.locator("svg.pcitree").text_content()
        assert p.locator("svg.pcitree text.target").count() == 2  # both GPUs are targets (--class 0300)
        fix = p.locator("article.finding.fail .cmd").first
        fix.locator("button.copy").click()
        button = fix.locator("button.copy")
        for _ in range(100):  # polled from here: the page's CSP forbids the string eval wait_for_function uses
            if button.inner_text() == "Copied":
                break
            time.sleep(0.1)
        assert button.inner_text() == "Copied"
        copied = p.evaluate("navigator.clipboard.readText()")
        assert copied == fix.locator("pre").inner_text()
        assert "driver_override" in copied
        assert page.screenshot("single-host.png").stat().st_size > 10000
        assert page.console == []
    finally:
        page.close()


def test_hostile_host_text_stays_text(browser, tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "host"))
    tree.write("/proc/sys/kernel/hostname", HOSTILE + "\n")
    tree.bind("0000:00:14.0", "x<b>bold")
    tree.write(f"{tree.device_dir('0000:01:00.0')}/driver_override", HOSTILE + "\n")
    path = html_scan(tmp_path, "--root", tree.root, "--device", "0000:01:00.0")
    page = Page(browser, path)
    try:
        p = page.page
        assert page.requests == [page.url]
        assert page.dialogs == [] and p.evaluate("window.pwned") is None
        assert p.locator("script").count() == 1 and p.locator("img").count() == 0 and p.locator("b").count() == 0
        assert HOSTILE in p.locator("h1").inner_text()  # shown as text, exactly
        assert "x<b>bold" in p.locator("svg.pcitree").text_content()
        assert page.console == []
    finally:
        page.close()


def test_fleet_of_200_hosts_renders_with_one_row_each(browser, tmp_path):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    ready = gpu_on_vfio(workstation(tmp_path / "ready"))
    broken = workstation(tmp_path / "broken")
    broken.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/nvme0n1p2 ro intel_iommu=off")
    for name, tree in (("ready", ready), ("broken", broken)):
        proc = run_cli("collect", "--root", tree.root, "-o", tmp_path / f"{name}.json")
        assert proc.returncode == 0, proc.stderr
    for n in range(198):
        source = tmp_path / ("broken.json" if n % 10 == 3 else "ready.json")
        (fleet / f"gpu-node-{n:03d}.json").write_bytes(source.read_bytes())
    (fleet / "unreadable.json").write_text("{", "utf-8")
    (fleet / f"{HOSTILE.replace('/', '%2F')}.json").write_bytes((tmp_path / "ready.json").read_bytes())
    path = html_scan(tmp_path, "--snapshot", fleet, "--device", "0000:01:00.0")
    page = Page(browser, path)
    try:
        p = page.page
        assert page.console == [] and page.requests == [page.url]
        assert p.locator("table.matrix tbody tr").count() == 200
        assert p.locator("details.host").count() == 200
        badges = p.locator(".verdict .big").all_inner_texts()
        assert badges == ["179 READY", "20 NOT READY", "1 UNSCANNED"], badges
        assert p.evaluate("window.pwned") is None and p.locator("img").count() == 0
        assert page.screenshot("fleet-200-hosts.png").stat().st_size > 10000
    finally:
        page.close()


def test_the_page_names_nothing_outside_itself(tmp_path):
    """No src, no stylesheet link, no off-page href: the only URL in the file is SVG's namespace."""
    import re

    tree = gpu_on_vfio(workstation(tmp_path / "host"))
    text = html_scan(tmp_path, "--root", tree.root, "--class", "0300").read_text("utf-8")
    assert re.findall(r"https?://[^\"' ]+", text) == ["http://www.w3.org/2000/svg"]
    assert not re.search(r"\ssrc=|<link\b|@import|url\(", text)
    assert set(re.findall(r'href="([^"]*)"', text)) <= {f"#host-{i}" for i in range(1)}
    assert "default-src 'none'" in text
