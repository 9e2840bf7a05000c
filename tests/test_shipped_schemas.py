"""The shipped schemas are read by the ``schemas`` package's own loader: from an installed directory,
and from a zip, where a plain ``open`` beside ``__file__`` would fail."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scanner.base.schemas import load_schema

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = sorted(p.name[:-len(".schema.json")] for p in (REPO / "schemas").glob("*.schema.json"))


@pytest.mark.parametrize("name", SCHEMAS)
def test_each_shipped_schema_loads_as_its_file_says(name):
    assert load_schema(name) == json.loads((REPO / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8"))


def test_schemas_load_from_a_zip(tmp_path):
    archive = tmp_path / "vfio_scan.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in [*(REPO / "schemas").iterdir(), REPO / "scanner" / "__init__.py",
                     *(REPO / "scanner" / "base").glob("*.py")]:
            if path.is_file():
                bundle.write(path, path.relative_to(REPO).as_posix())
    program = ("import sys; sys.path.insert(0, sys.argv[1])\n"
               "import schemas; from scanner.base.schemas import load_schema\n"
               "print(schemas.__file__.startswith(sys.argv[1]), load_schema('snapshot')['title'])")
    done = subprocess.run([sys.executable, "-I", "-c", program, str(archive)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 1) == ["True", load_schema("snapshot")["title"] + "\n"]
