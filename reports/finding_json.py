"""A finding's JSON text written straight from the finding, without making its dict first.

Why: a scan of thousands of targets writes over a hundred thousand findings, and making each one's
dict (:meth:`Finding.to_dict`) only for the writer to walk it key by key was a large part of the
JSON output's time. A plain finding (text fields, evidence, no remediation and no waiver: nearly
every one) is written here in one step, in the very text the dict would give; any other goes the
ordinary way, through its dict.
"""

from __future__ import annotations

from json.encoder import encode_basestring

from reports.jsontext import NEWLINE, Written, escape_surrogates, value_text
from scanner.engine.model import Evidence, Finding

_TEXT_FIELDS = ("rule_id", "rule", "title", "subject", "status")
_AFTER_SEVERITY = ("message", "observed", "expected")


def written(finding) -> Written:
    """What stands for ``finding.to_dict()`` in a streamed document."""
    return Written(lambda level: finding_text(finding, level))


def finding_text(f, level: int) -> str:
    """``value_text(f.to_dict(), level)``, made without the dict for a plain finding."""
    state = f.__dict__ if type(f) is Finding else None
    if state is None or state["remediation"] or state["waiver"] is not None:
        return value_text(f.to_dict(), level)
    severity = state["severity"] or "info"
    values = [state[name] for name in _TEXT_FIELDS] + [severity] + [state[name] for name in _AFTER_SEVERITY]
    if not all(type(value) is str for value in values):
        return value_text(f.to_dict(), level)
    evidence = state["evidence"]
    if evidence:
        item_start, field_sep, item_end = "{" + NEWLINE[level + 3], "," + NEWLINE[level + 3], NEWLINE[level + 2] + "}"
        items = []
        for e in evidence:
            if type(e) is not Evidence or type(e.source) is not str or type(e.value) is not str:
                return value_text(f.to_dict(), level)
            items.append(item_start + '"source": ' + encode_basestring(e.source) + field_sep + '"value": '
                         + encode_basestring(e.value) + item_end)
        evidence_text = "[" + NEWLINE[level + 2] + ("," + NEWLINE[level + 2]).join(items) + NEWLINE[level + 1] + "]"
    else:
        evidence_text = "[]"
    inner = NEWLINE[level + 1]
    sep = "," + inner
    return escape_surrogates(
        "{" + inner + '"rule_id": ' + encode_basestring(values[0]) + sep + '"rule": ' + encode_basestring(values[1])
        + sep + '"title": ' + encode_basestring(values[2]) + sep + '"subject": ' + encode_basestring(values[3])
        + sep + '"status": ' + encode_basestring(values[4]) + sep + '"severity": ' + encode_basestring(values[5])
        + sep + '"message": ' + encode_basestring(values[6]) + sep + '"observed": ' + encode_basestring(values[7])
        + sep + '"expected": ' + encode_basestring(values[8]) + sep + '"evidence": ' + evidence_text
        + sep + '"remediation": []' + NEWLINE[level] + "}")
