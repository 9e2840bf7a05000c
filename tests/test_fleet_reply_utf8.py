"""A fleet host's collector reply that is not UTF-8 is refused, as its saved copy is by a later scan.

The collector writes ASCII only. A reply with other bytes was decoded with replacement and scanned
(READY), while the copy ``--save-snapshots`` kept, the very bytes, was refused when scanned later:
the audit and its evidence disagreed.
"""

from clihelpers import run_cli
from test_snapshot_of_no_host import snapshots


def test_a_fleet_reply_that_is_not_utf8_is_refused_as_its_saved_copy_is_by_a_later_scan(tmp_path):
    from test_fleet_hostile import Fake, fleet, notes_of

    sound, _ = snapshots(tmp_path)
    latin = tmp_path / "latin.json"
    latin.write_bytes(sound.read_bytes().replace(b'"hostname": "', b'"hostname": "\xff', 1))
    fake = Fake(tmp_path, latin)
    saved = tmp_path / "saved"
    proc = fleet(fake, "web1", "--save-snapshots", saved, "--format", "json")
    assert proc.returncode == 3, proc.stderr
    (note,) = notes_of(proc)["web1"]
    assert note.startswith("the collector's reply from web1: line ") and note.endswith(": not UTF-8 text (byte 0xff)")
    later = run_cli("scan", "--snapshot", saved / "web1.json")
    assert later.returncode == 2 and "not UTF-8 text (byte 0xff)" in later.stderr
