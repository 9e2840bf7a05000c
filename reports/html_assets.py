"""The HTML report's one style sheet and one script, inlined, and the policy that allows only them.

The page loads nothing: the Content-Security-Policy is ``default-src 'none'`` and lets run only
this style sheet and this script, named by their SHA-256. A browser then refuses any request,
any other script and any inline handler, even one that escaping had missed.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root{--pass:#2e7d32;--fail:#c62828;--warn:#ef6c00;--skip:#757575;--error:#6a1b9a;--waived:#1565c0;
--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:0 auto;
max-width:1200px;padding:16px 24px}
h1{font-size:22px;margin:8px 0}
h2{font-size:18px;margin:24px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
.meta{color:var(--muted);margin:0 0 12px}
.verdict{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.big{border-radius:8px;padding:10px 16px;color:#fff;font-weight:600;font-size:16px}
.big.READY{background:var(--pass)}.big.READY_WITH_WARNINGS{background:var(--warn)}
.big.NOT_READY{background:var(--fail)}.big.UNSCANNED,.big.INCOMPLETE{background:var(--error)}
table.matrix{border-collapse:collapse;font-size:12px}
.matrix th,.matrix td{border:1px solid var(--line);padding:2px 6px;text-align:center;white-space:nowrap}
.matrix th.rule{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:500}
.matrix td.host{text-align:left;max-width:320px;overflow:hidden;text-overflow:ellipsis}
.scroll{overflow-x:auto}
td.st-pass{background:#dcf1dd}td.st-fail{background:#f8d0d0;font-weight:700}td.st-warn{background:#ffe2bf}
td.st-skip{background:#eee;color:var(--muted)}td.st-error{background:#e6d3f0}td.st-waived{background:#d6e6f8}
td.st-none{color:#aaa}
.badge{display:inline-block;min-width:58px;text-align:center;border-radius:4px;color:#fff;font-size:12px;
font-weight:600;padding:1px 6px;margin-right:6px}
.badge.pass{background:var(--pass)}.badge.fail{background:var(--fail)}.badge.warn{background:var(--warn)}
.badge.skip{background:var(--skip)}.badge.error{background:var(--error)}.badge.waived{background:var(--waived)}
details.host{border:1px solid var(--line);border-radius:8px;margin:10px 0;padding:0 12px}
details.host>summary{cursor:pointer;padding:10px 0;font-weight:600}
.finding{border-left:4px solid var(--line);padding:4px 10px;margin:8px 0;background:#fff}
.finding.fail{border-color:var(--fail)}.finding.warn{border-color:var(--warn)}.finding.error{border-color:var(--error)}
.finding.waived{border-color:var(--waived)}
.finding p{margin:4px 0}
.finding .rule{font-weight:600}
.oe{color:var(--muted);font-size:13px}
.evidence li{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;word-break:break-all}
.step{margin:6px 0}
.tag{font-size:11px;border:1px solid var(--line);border-radius:3px;padding:0 4px;margin-left:4px;color:var(--muted)}
.cmd{position:relative}
.cmd pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:8px 70px 8px 10px;
margin:4px 0;overflow-x:auto;font-size:12px}
button.copy{position:absolute;right:6px;top:6px;font-size:12px;padding:2px 8px;cursor:pointer}
details.others>summary{cursor:pointer;color:var(--muted)}
svg.pcitree{max-width:100%;height:auto;background:#fff;border:1px solid var(--line);border-radius:6px}
.pcitree text{font:12px ui-monospace,monospace;fill:var(--ink)}
.pcitree .addr{font-weight:600}.pcitree .ids{fill:var(--muted)}.pcitree .drv{fill:var(--muted)}
.pcitree .vfio .drv{fill:var(--pass);font-weight:700}.pcitree .target{font-weight:700}
.pcitree .group rect{fill:#f3f7ff;stroke:#8aa4d6;stroke-width:1.5}
.pcitree .g-isolated rect{fill:#eef8ef;stroke:var(--pass)}.pcitree .g-slot rect{fill:#eef5fd;stroke:var(--waived)}
.pcitree .g-shared rect{fill:#fff4e5;stroke:var(--warn)}.pcitree .g-blocked rect{fill:#fdecec;stroke:var(--fail);stroke-width:2.5}
.pcitree .glabel{font:11px system-ui,sans-serif;fill:var(--muted)}
.pcitree .link{fill:none;stroke:#9aa4ae}
.pcitree .more{fill:var(--muted);font-style:italic}
.legend{color:var(--muted);font-size:12px}
"""

SCRIPT = """
document.addEventListener('click', function (event) {
  var button = event.target.closest('button.copy');
  if (!button) { return; }
  var block = document.getElementById(button.getAttribute('data-for'));
  if (!block) { return; }
  var text = block.textContent;
  function done() { button.textContent = 'Copied'; setTimeout(function () { button.textContent = 'Copy'; }, 1500); }
  function fallback() {
    var range = document.createRange();
    range.selectNodeContents(block);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { document.execCommand('copy'); done(); } catch (e) { button.textContent = 'Select and copy'; }
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, fallback);
  } else {
    fallback();
  }
});
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


CSP = (f"default-src 'none'; style-src {_sha256(STYLE)}; script-src {_sha256(SCRIPT)}; img-src 'none'; "
       "base-uri 'none'; form-action 'none'")
