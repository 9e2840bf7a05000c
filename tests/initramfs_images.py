"""Initramfs images built the way the distributions build them: GNU cpio in ``newc`` format, an
uncompressed early microcode archive first, then the main archive through the real compressor
(initramfs-tools: ``cpio -o -H newc`` piped to ``zstd -q -19``, ``gzip -9``, ``xz --check=crc32``,
``lz4 -l``, ...)."""

import os
import shutil
import subprocess
from pathlib import Path

COMPRESSORS = {
    "gzip": ["gzip", "-n", "-9"],
    "xz": ["xz", "--check=crc32"],
    "zstd": ["zstd", "-q", "-19"],
    "lz4": ["lz4", "-l", "-q"],
    "bzip2": ["bzip2"],
    "lzma": ["lzma"],
}
TOOLS = ["cpio"] + sorted({argv[0] for argv in COMPRESSORS.values()})


def missing_tools():
    return [t for t in TOOLS if shutil.which(t) is None]


def cpio(directory: Path) -> bytes:
    names = subprocess.run("find . | LC_ALL=C sort", shell=True, cwd=directory, capture_output=True, check=True).stdout
    return subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=directory, input=names, capture_output=True,
                          check=True).stdout


def build_image(work: Path, files: dict, compression: str = "zstd", early: bool = True) -> bytes:
    """The bytes of an image holding ``files`` (name -> text or bytes), compressed with ``compression``
    (None: an uncompressed archive), after an early microcode archive when ``early``."""
    work.mkdir(parents=True, exist_ok=True)
    main = work / "main"
    for name, content in files.items():
        path = main / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    image = b""
    if early:
        micro = work / "early" / "kernel" / "x86" / "microcode"
        micro.mkdir(parents=True, exist_ok=True)
        (micro / "GenuineIntel.bin").write_bytes(os.urandom(3000))
        image += cpio(work / "early")
    body = cpio(main)
    if compression:
        body = subprocess.run(COMPRESSORS[compression], input=body, capture_output=True, check=True).stdout
    return image + body


def module_path(release: str, relative: str) -> str:
    """Where initramfs-tools puts a module: usr/lib/modules/<release>/kernel/<relative> (merged /usr)."""
    return f"usr/lib/modules/{release}/kernel/{relative}"
