"""What an initramfs image holds: its kernel modules and its module configuration.

Why read it: the initramfs loads drivers before the real root is mounted. When it holds the host
driver of a target (``amdgpu``, ``nvidia``) but not vfio-pci, or not the ``vfio-pci ids=`` line,
that driver takes the device first at every boot, whatever ``/etc/modprobe.d`` says now.

An image is what the kernel unpacks (``init/initramfs.c``): one or more ``newc`` cpio archives
(magic ``070701``/``070702``), each either as is -- the early microcode archive that
initramfs-tools, dracut and mkinitcpio put first -- or compressed with gzip, xz, lzma, bzip2,
zstd or lz4 (the kernel's legacy lz4 format), with NUL padding between them. The image is read
as a stream and file data is skipped, not kept: memory stays small however big the image, and
every count is capped (a crafted image in a ``--root`` tree or snapshot cannot exhaust memory:
decompressed bytes, entries, segments, name and config sizes). Only the host layer calls this:
it hands in the file's chunks.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from scanner.base.record import record

NEWC = (b"070701", b"070702")
HEADER = 110
TRAILER = "TRAILER!!!"
#: Leading bytes of each compressed stream the kernel can unpack (lib/decompress.c).
COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\x1f\x9e", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x5d\x00\x00", "lzma"),
              (b"BZh", "bzip2"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x02\x21\x4c\x18", "lz4"),
              (b"\x89LZO", "lzo"))

MAX_UNPACKED = 2 << 30  # all archives together, decompressed: real images unpack to 100-600 MB
MAX_ENTRIES = 200000
MAX_SEGMENTS = 32
MAX_NAME = 4096  # PATH_MAX
MAX_CONFIG = 64 << 10  # one configuration file kept whole
MAX_CONFIGS = 256
_FEED = 2048  # compressed bytes per decompressor call: bounds the output of one call (zstd expands up to 32768x)
_OUT = 1 << 20  # decompressed bytes asked for at once where the decompressor can bound it
_LZ4_BLOCK = 8 << 20  # the legacy format's block size

#: Kernel modules: lib/modules/<release>/.../name.ko, maybe compressed, under /usr too (merged /usr).
_MODULE = re.compile(r"(?:^|/)lib/modules/[^/]+/.+/([^/]+)\.ko(?:\.(?:xz|zst|gz))?\Z")
#: The files that say which modules load first and with which options.
_CONFIG = re.compile(r"\A(?:usr/)?(?:etc|lib)/(?:modprobe\.d|modules-load\.d)/[^/]+\.conf\Z"
                     r"|\Aetc/modules\Z|\Aconf/modules\Z|\Aetc/cmdline\.d/[^/]+\.conf\Z|\Aetc/mkinitcpio\.conf\Z")


class Garbled(Exception):
    """The image is not what the kernel would unpack, or is past a cap; ``str()`` says where."""


@record(frozen=True)
class Initramfs:
    """What an image holds: its modules, its module configuration, how it was packed.

    ``modules`` are module names as modprobe spells them (``vfio_pci``); ``files`` the text of the
    module configuration files (``etc/modprobe.d/vfio.conf``, ``conf/modules``) as (name, text);
    ``formats`` each segment's packing in order (``cpio``, ``zstd``); ``entries`` the number of
    names in all archives.
    """

    modules: Tuple[str, ...] = ()
    files: Tuple[Tuple[str, str], ...] = ()
    formats: Tuple[str, ...] = ()
    entries: int = 0

    def to_dict(self) -> dict:
        return {"modules": list(self.modules), "files": {name: text for name, text in self.files},
                "formats": list(self.formats), "entries": self.entries}


MAX_IMAGE = 1 << 30  # the image file itself; real ones are 20-300 MB


@record(frozen=True)
class InitramfsRead:
    """The answer to reading an image: ``contents`` when it worked, else ``reason`` says why not."""

    path: str
    contents: Optional[Initramfs] = None
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.contents is not None

    @property
    def missing(self) -> bool:
        return self.reason == "missing"


def read_image(path: str, chunks: Iterable[bytes]) -> InitramfsRead:
    """:func:`read_initramfs` as a host read: the reason instead of an exception."""
    try:
        return InitramfsRead(path, read_initramfs(chunks))
    except Garbled as exc:
        return InitramfsRead(path, reason=f"garbled: {exc}")
    except OSError as exc:
        return InitramfsRead(path, reason=f"read error: {exc.strerror or exc}")


class _Input:
    """Bytes from an iterator of chunks, read exactly, skipped, or given back."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self.offset = 0  # bytes consumed so far

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                return
            self._buffer += chunk

    def peek(self, size: int) -> bytes:
        self._fill(size)
        return bytes(self._buffer[:size])

    def read(self, size: int) -> bytes:
        self._fill(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.offset += len(data)
        return data

    def skip(self, size: int) -> int:
        skipped = 0
        while skipped < size:
            if not self._buffer:
                self._fill(1)
                if not self._buffer:
                    break
            take = min(size - skipped, len(self._buffer))
            del self._buffer[:take]
            skipped += take
        self.offset += skipped
        return skipped

    def skip_zeros(self) -> None:
        while True:
            self._fill(1)
            if not self._buffer:
                return
            kept = self._buffer.lstrip(b"\0")
            self.offset += len(self._buffer) - len(kept)
            self._buffer = bytearray(kept)
            if self._buffer:
                return

    def unread(self, data: bytes) -> None:
        self._buffer[:0] = data
        self.offset -= len(data)

    def pieces(self, size: int) -> Iterator[bytes]:
        """The rest, ``size`` bytes at a time (each piece consumed as it is handed out)."""
        while True:
            piece = self.read(size)
            if not piece:
                return
            yield piece


def read_initramfs(chunks: Iterable[bytes]) -> Initramfs:
    """Read an image from its chunks; raises :class:`Garbled` with where and why."""
    raw = _Input(chunks)
    state = _State()
    formats: List[str] = []
    while True:
        raw.skip_zeros()
        head = raw.peek(8)
        if not head:
            break
        if len(formats) >= MAX_SEGMENTS:
            raise Garbled(f"over {MAX_SEGMENTS} segments")
        if head[:6] in NEWC:
            formats.append("cpio")
            _archive(raw, state)
            continue
        kind = next((name for magic, name in COMPRESSED if head.startswith(magic)), None)
        if kind is None:
            raise Garbled(f"neither a cpio archive nor a compressed one at byte {raw.offset}")
        formats.append(kind)
        start = raw.offset
        inner = _Input(_decompressed(kind, raw, state))
        try:
            while True:
                inner.skip_zeros()
                if not inner.peek(1):
                    break
                if inner.peek(6) not in NEWC:
                    raise Garbled(f"the {kind} data at byte {start} does not hold a cpio archive")
                _archive(inner, state)
        except _Corrupt as exc:
            raise Garbled(f"the {kind} data at byte {start} is corrupt ({exc})") from None
    if not formats:
        raise Garbled("empty")
    return Initramfs(modules=tuple(sorted(state.modules)), files=tuple(sorted(state.files.items())),
                     formats=tuple(formats), entries=state.entries)


class _Corrupt(Exception):
    """A decompressor refused its input."""


class _State:
    def __init__(self):
        self.modules: set = set()
        self.files: Dict[str, str] = {}
        self.entries = 0
        self.unpacked = 0

    def count(self, size: int) -> None:
        self.unpacked += size
        if self.unpacked > MAX_UNPACKED:
            raise Garbled(f"unpacks to over {MAX_UNPACKED >> 20} MiB")


def _archive(stream: _Input, state: _State) -> None:
    """One newc archive, up to and with its trailer."""
    while True:
        where = stream.offset
        header = stream.read(HEADER)
        if len(header) < HEADER:
            raise Garbled(f"cpio header cut short at byte {where}")
        if header[:6] not in NEWC:
            raise Garbled(f"no cpio header at byte {where}")
        try:
            fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise Garbled(f"cpio header at byte {where} is not hexadecimal") from None
        mode, size, name_size = fields[1], fields[6], fields[11]
        if not 1 <= name_size <= MAX_NAME:
            raise Garbled(f"cpio name of {name_size} bytes at byte {where}")
        name = stream.read(name_size)
        if len(name) < name_size:
            raise Garbled(f"cpio name cut short at byte {where}")
        stream.skip(-(HEADER + name_size) % 4)
        text = name.rstrip(b"\0").decode("utf-8", "surrogateescape")
        if text == TRAILER:
            return
        state.entries += 1
        if state.entries > MAX_ENTRIES:
            raise Garbled(f"over {MAX_ENTRIES} entries")
        path = text[2:] if text.startswith("./") else text.lstrip("/")
        regular = mode & 0o170000 == 0o100000
        if regular and size <= MAX_CONFIG and len(state.files) < MAX_CONFIGS and _CONFIG.match(path):
            data = stream.read(size)
            if len(data) < size:
                raise Garbled(f"cpio data of {path!r} cut short")
            state.files[path] = data.decode("utf-8", "replace")
        elif stream.skip(size) < size:
            raise Garbled(f"cpio data of {path!r} cut short")
        if regular:
            module = _MODULE.search(path)
            if module:
                state.modules.add(module.group(1).replace("-", "_"))
        stream.skip(-size % 4)


def _decompressed(kind: str, raw: _Input, state: _State) -> Iterator[bytes]:
    """The decompressed bytes of the stream at ``raw``'s position; what follows it goes back to ``raw``."""
    if kind == "lz4":
        for out in _lz4_legacy(raw):
            state.count(len(out))
            yield out
        return
    decompressor = _decompressor(kind)
    for piece in raw.pieces(_FEED):
        for out in _guarded(_drain(decompressor, piece)):
            state.count(len(out))
            yield out
        if decompressor.eof:
            raw.unread(decompressor.unused_data)
            return
    raise _Corrupt("the compressed stream ends before its end marker")


def _guarded(outputs: Iterator[bytes]) -> Iterator[bytes]:
    """Each output of a bounded decompressor; its refusal of the input becomes :class:`_Corrupt`."""
    while True:
        try:
            out = next(outputs, None)
        except Exception as exc:  # zlib.error, lzma.LZMAError, zstandard.ZstdError, OSError (bz2), EOFError
            raise _Corrupt(str(exc) or type(exc).__name__) from None
        if out is None:
            return
        yield out


def _drain(decompressor, piece: bytes) -> Iterator[bytes]:
    bounded = getattr(decompressor, "bounded", False)
    if not bounded:
        out = decompressor.decompress(piece)
        if out:
            yield out
        return
    out = decompressor.decompress(piece, _OUT)
    while out:
        yield out
        if decompressor.eof or decompressor.done():
            return
        out = decompressor.decompress(b"", _OUT)


class _Bounded:
    """zlib, lzma and bz2 behind one interface that bounds each call's output."""

    bounded = True

    def __init__(self, kind: str):
        import bz2
        import lzma
        import zlib

        self._kind = kind
        if kind == "gzip":
            self._d = zlib.decompressobj(47)  # 32 + 15: a gzip or zlib header, the largest window
        elif kind in ("xz", "lzma"):
            self._d = lzma.LZMADecompressor(lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)
        else:
            self._d = bz2.BZ2Decompressor()

    def decompress(self, data: bytes, limit: int) -> bytes:
        if self._kind == "gzip":
            tail = self._d.unconsumed_tail
            return self._d.decompress(tail + data, limit)
        if self._d.eof:
            return b""
        return self._d.decompress(data, limit)

    def done(self) -> bool:
        """No more output without more input."""
        if self._kind == "gzip":
            return not self._d.unconsumed_tail
        return getattr(self._d, "needs_input", True)

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data


def _decompressor(kind: str):
    if kind in ("gzip", "xz", "lzma", "bzip2"):
        return _Bounded(kind)
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise Garbled("zstd-compressed, and the zstandard module is not installed") from None
        return zstandard.ZstdDecompressor(max_window_size=1 << 27).decompressobj()
    raise Garbled(f"{kind}-compressed, which is not read")


def _lz4_legacy(raw: _Input) -> Iterator[bytes]:
    """The kernel's lz4 format: the magic, then blocks of (little-endian size, data), each up to
    8 MiB unpacked; the magic may repeat; a size of 0 or the end of the file ends it."""
    try:
        import lz4.block
    except ImportError:
        raise Garbled("lz4-compressed, and the lz4 module is not installed") from None
    bound = _LZ4_BLOCK + _LZ4_BLOCK // 255 + 16
    while True:
        word = raw.read(4)
        if len(word) < 4:
            return
        if word == b"\x02\x21\x4c\x18":
            continue
        size = int.from_bytes(word, "little")
        if size == 0 or size > bound:
            raw.unread(word)
            return
        block = raw.read(size)
        if len(block) < size:
            raise _Corrupt("an lz4 block is cut short")
        try:
            yield lz4.block.decompress(block, uncompressed_size=_LZ4_BLOCK)
        except Exception as exc:  # lz4.block.LZ4BlockError
            raise _Corrupt(str(exc)) from None


__all__ = ["Garbled", "Initramfs", "InitramfsRead", "read_image", "read_initramfs"]
