"""Content hashes of the files and directories a run reads, for the stages' fingerprints.

A stage is up to date while the fingerprint of its inputs is unchanged, so a data file rewritten at
the same path, or a model directory replaced by another, must change the fingerprint: a path is not
enough. Hashing a 15 GB model directory on every run is not acceptable either, so each file's
SHA-256 is cached by its resolved path, size and modification time (ns): a file is read again only
when one of those changed. A directory's hash covers the relative path and content of every file
under it; hidden files and folders (``.cache`` of a download, ``.git``) are left out, since they
are not the model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .files import write_text_atomic

MISSING = "missing"
"""The hash of a path that does not exist (yet): a stage whose input appears later runs again."""

CHUNK = 1 << 20
"""Bytes read at a time while hashing (1 MiB)."""


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ContentHashes:
    """SHA-256 of files and directories, cached in memory and, when ``cache_file`` is given, in
    that JSON file (written whole, atomically, by ``save``)."""

    def __init__(self, cache_file: Path | None = None) -> None:
        self.cache_file = cache_file
        self._entries: dict[str, dict] = self._load()
        self._changed = False

    def _load(self) -> dict[str, dict]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        try:
            entries = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def of(self, path: str | Path) -> str:
        """The content hash of a file or of a directory's files; ``MISSING`` when nothing is there."""
        path = Path(path).resolve()
        if path.is_file():
            return self._file(path)
        if path.is_dir():
            digest = hashlib.sha256()
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                digest.update(f"{relative.as_posix()}\0{self._file(file)}\n".encode())
            return digest.hexdigest()
        return MISSING

    def _file(self, path: Path) -> str:
        stat = path.stat()
        key = str(path)
        entry = self._entries.get(key)
        if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            return entry["sha256"]
        sha = _sha256_of_file(path)
        self._entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
        self._changed = True
        return sha

    def save(self) -> None:
        """Write the cache file when hashes were computed since it was read."""
        if self.cache_file is None or not self._changed:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.cache_file, json.dumps(self._entries, indent=0, sort_keys=True) + "\n")
        self._changed = False
