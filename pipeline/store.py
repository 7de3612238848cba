"""Content-addressed artifact store, keyed by node fingerprint.

Layout under the root (ABLATE_STORE, default artifacts/.store; point several clones or
machines at one shared directory to share it)::

    objects/ab/cdef…/   one published entry: payload files + meta.json (read-only)
    tmp/                entries being computed (renamed into objects/ when complete)
    locks/ab/cdef….lock one flock per fingerprint, so concurrent builders compute once
    failures/<fp>.json  the last failure of a fingerprint (exit code, oom), for status

An entry appears by one rename, so a reader sees all of it or nothing; a crash or kill -9
leaves only a tmp/ directory that ``gc`` removes. An entry whose meta.json is missing,
unreadable or names another fingerprint is logged and dropped, never trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.fingerprint import file_digest

log = logging.getLogger(__name__)
META = "meta.json"


def default_root() -> Path:
    from pipeline.paths import artifacts_root

    return Path(os.environ.get("ABLATE_STORE", artifacts_root() / ".store"))


def payload_files(directory: Path) -> list[Path]:
    """Relative paths of every regular file under ``directory`` except meta.json, sorted."""
    files = [p.relative_to(directory) for p in directory.rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted(f for f in files if f != Path(META))


def file_table(directory: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {size, xxh3}} for verification."""
    return {
        str(f): {"size": (directory / f).stat().st_size, "xxh3": file_digest(directory / f)}
        for f in payload_files(directory)
    }


def read_meta(directory: Path) -> dict[str, Any] | None:
    return read_json(directory / META)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _remove_tree(path: Path) -> None:
    """rmtree that also removes read-only files (entries are published read-only)."""
    if path.exists():
        for p in path.rglob("*"):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(path)


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link (no second copy on disk) where the filesystem allows one, else a copy
    (copy2 keeps the mtime, as a link does)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


class StoreUnreachable(OSError):
    """The store directory cannot be created or written (e.g. a shared mount is missing)."""


class Store:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else default_root()

    def require_writable(self) -> None:
        """Refuse, naming the path, a store we cannot write, before any work. A missing
        ABLATE_STORE is created only inside an existing parent: a missing parent usually means
        a shared filesystem that is not mounted, and a private store there would share nothing."""
        shared = bool(os.environ.get("ABLATE_STORE"))
        where = f"ABLATE_STORE={self.root}" if shared else f"store {self.root}"
        if not self.root.exists():
            parent = self.root.parent
            if shared and not parent.is_dir():
                raise StoreUnreachable(f"{where}: its parent directory {parent} does not exist (not mounted?)")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreUnreachable(f"{where}: cannot create it: {e.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreUnreachable(f"{where}: not writable by this user")

    # ---- paths
    def entry(self, fp: str) -> Path:
        return self.root / "objects" / fp[:2] / fp[2:]

    def _failure_path(self, fp: str) -> Path:
        return self.root / "failures" / f"{fp}.json"

    # ---- lookup
    def get(self, fp: str) -> Path | None:
        """The entry for ``fp`` if present and sound (cheap check: meta and file sizes)."""
        path = self.entry(fp)
        if not path.exists():
            return None
        problem = self._check(path, fp, full=False)
        if problem:
            log.warning("store entry %s is corrupt (%s): dropping it", fp, problem)
            self.drop(fp)
            return None
        return path

    def _check(self, path: Path, fp: str, full: bool) -> str | None:
        meta = read_meta(path)
        if meta is None:
            return "meta.json missing or unreadable"
        if meta.get("fingerprint") != fp:
            return f"meta.json names fingerprint {meta.get('fingerprint')}"
        for rel, info in meta.get("files", {}).items():
            f = path / rel
            if not f.is_file() or f.stat().st_size != info["size"]:
                return f"{rel} missing or of the wrong size"
            if full and file_digest(f) != info["xxh3"]:
                return f"{rel} content differs from its recorded hash"
        return None

    def fingerprints(self) -> list[str]:
        objects = self.root / "objects"
        if not objects.exists():
            return []
        return sorted(d.name + e.name for d in objects.iterdir() if d.is_dir() for e in d.iterdir())

    # ---- writing
    @contextlib.contextmanager
    def lock(self, fp: str, on_wait=None) -> Iterator[None]:
        """Exclusive per-fingerprint lock (flock: released by the kernel if we die)."""
        path = self.root / "locks" / fp[:2] / f"{fp[2:]}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait:
                    on_wait()
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def is_locked(self, fp: str) -> bool:
        path = self.root / "locks" / fp[:2] / f"{fp[2:]}.lock"
        if not path.exists():
            return False
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
        return False

    def _tmp_name(self, fp: str, suffix: str = "") -> Path:
        return self.root / "tmp" / f"{fp}__{socket.gethostname()}__{os.getpid()}__{time.time_ns()}{suffix}"

    def new_tmp(self, fp: str) -> Path:
        """A fresh private directory on the store's filesystem (so publish is one rename)."""
        path = self._tmp_name(fp)
        path.mkdir(parents=True)
        return path

    def publish(self, tmp: Path, fp: str, meta: dict[str, Any]) -> Path:
        """Record file hashes in meta.json, make the files read-only, rename into place."""
        meta = {**meta, "fingerprint": fp, "files": file_table(tmp)}
        _write_json(tmp / META, meta)
        for f in tmp.rglob("*"):
            if f.is_file():
                f.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        dest = self.entry(fp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, dest)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            _remove_tree(tmp)  # someone published the same fingerprint first: theirs stands
        self.clear_failure(fp)
        return dest

    def adopt(self, fp: str, directory: Path) -> Path | None:
        """Publish a workspace copy (e.g. from ``dvc pull``) whose meta and file hashes check out.

        Its files are hard-linked where possible (then made read-only, as every entry is): a
        pulled artifact, its DVC cache object and the store entry stay one copy on disk.
        """
        meta = read_meta(directory)
        if meta is None or meta.get("fingerprint") != fp or self._check(directory, fp, full=True):
            return None
        tmp = self.new_tmp(fp)
        for rel in payload_files(directory):
            _link_or_copy(directory / rel, tmp / rel)
        return self.publish(tmp, fp, {k: v for k, v in meta.items() if k not in ("fingerprint", "files")})

    def materialize(self, fp: str, dest: Path) -> None:
        """Make ``dest`` an exact copy of the entry: hard links where possible, else copies.

        Hard links and copy2 keep the entry's mtimes, so engines comparing mtimes see a
        restored artifact as old as when it was computed.
        """
        src = self.entry(fp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.tmp{os.getpid()}"
        _remove_tree(tmp)
        for rel in [*payload_files(src), Path(META)]:
            _link_or_copy(src / rel, tmp / rel)
        old = dest.parent / f".{dest.name}.old{os.getpid()}"
        if dest.exists() or dest.is_symlink():
            os.rename(dest, old)
        os.rename(tmp, dest)
        _remove_tree(old)

    def drop(self, fp: str) -> None:
        path = self.entry(fp)
        trash = self._tmp_name(fp, "__dropped")
        trash.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, trash)
            _remove_tree(trash)

    # ---- failures
    def record_failure(self, fp: str, info: dict[str, Any]) -> None:
        path = self._failure_path(fp)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, info)

    def failure(self, fp: str) -> dict[str, Any] | None:
        return read_json(self._failure_path(fp))

    def clear_failure(self, fp: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._failure_path(fp).unlink()

    # ---- maintenance
    def verify(self, fix: bool = False) -> list[tuple[str, str]]:
        """Re-hash every entry; returns (fingerprint, problem) pairs, dropping them if ``fix``."""
        problems = []
        for fp in self.fingerprints():
            problem = self._check(self.entry(fp), fp, full=True)
            if problem:
                problems.append((fp, problem))
                if fix:
                    self.drop(fp)
        return problems

    def gc(self, keep: set[str], dry_run: bool = True) -> list[str]:
        """Remove entries not in ``keep`` and leftovers of dead builders; returns what goes."""
        gone = [fp for fp in self.fingerprints() if fp not in keep]
        tmp_root = self.root / "tmp"
        stale_tmp = [p for p in tmp_root.iterdir() if not self._owner_alive(p.name)] if tmp_root.exists() else []
        if not dry_run:
            for fp in gone:
                self.drop(fp)
                self.clear_failure(fp)
            for p in stale_tmp:
                _remove_tree(p) if p.is_dir() else p.unlink()
        return gone + [f"tmp/{p.name}" for p in stale_tmp]

    @staticmethod
    def _owner_alive(name: str) -> bool:
        """tmp names are <fp>__<host>__<pid>__<ns>: dead if that pid no longer runs on this host."""
        parts = name.split("__")
        if len(parts) < 4 or not parts[2].isdigit():
            return False
        if parts[1] != socket.gethostname():
            return True  # another machine's builder: we cannot tell, so leave it
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def read_json(path: Path) -> dict[str, Any] | None:
    """Parsed JSON file, or None when missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
