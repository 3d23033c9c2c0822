#!/usr/bin/env python3
"""Download, verify and safely extract corpus archives (stage 0 of every downloaded corpus).

One module for all corpora (vctk, librispeech, flickr8k), stdlib only plus tqdm:

* resumable downloads: bytes go to ``<download-dir>/<name>.part``; an interrupted transfer
  (dropped connection, Ctrl-C, crash) continues from there with an HTTP Range request, in the
  same run (``--retries``) or the next one. A server that ignores Range starts again from zero.
* progress: a tqdm bar when stderr is a terminal, one log line every ``--log-interval`` seconds
  otherwise (batch jobs, run.pl logs).
* verification: md5 / sha1 / sha256 sums from ``--checksum ALGO:HEX`` or from checksum files in
  the ``md5sum``/``sha256sum`` format (``HEX  NAME``, algorithm told by the length of HEX; the
  publisher's own ``md5sum.txt`` works as is). Only a verified file is renamed from ``.part`` to
  its final name; a mismatch deletes the bad download and fails with both sums.
* safe extraction: tar members go through Python's ``filter="data"`` and zip members are checked
  by hand; an absolute member or one with ``..`` is refused before anything is written outside
  a private temp dir. Everything is extracted into ``<extract-to>/.extract.<name>.tmp`` first and
  moved into place only when the whole archive succeeded, so a failure leaves nothing
  half-extracted. ``<extract-to>/.<name>.extracted`` then marks the archive done, so a rerun
  skips it.

Examples:
    python3 local/download.py get https://www.openslr.org/resources/12/dev-clean.tar.gz \\
        --download-dir downloads --extract-to db/librispeech --checksum-file local/librispeech/md5sum.txt
    python3 local/download.py fetch URL --download-dir downloads      # download + verify only
    python3 local/download.py extract downloads/x.tar.gz --extract-to db/x
    python3 local/download.py verify downloads/x.tar.gz --checksum md5:0123...
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import logging
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Dict, Iterator, List, Optional, Sequence

CHUNK = 1 << 20  # 1 MiB per read: large enough for speed, small enough for a smooth progress bar
HEX_LENGTH_TO_ALGO = {32: "md5", 40: "sha1", 64: "sha256"}
USER_AGENT = "voiceswap-download/0.1 (+https://github.com/; Python urllib)"


class DownloadError(RuntimeError):
    """A failure the user can act on; the message names the URL/file and says what to do."""


class _Interrupted(Exception):
    """A transfer that stopped early; retried with a Range request."""


# ----------------------------------------------------------------------------------------------
# Progress


class Progress:
    """A tqdm bar on a terminal, periodic log lines elsewhere (logs of batch jobs stay readable)."""

    def __init__(self, desc: str, total: Optional[int], initial: int = 0, unit: str = "B",
                 log_interval: float = 30.0) -> None:
        self.desc, self.total, self.count, self.unit = desc, total, initial, unit
        self.log_interval = log_interval
        self.start_count, self.start_time = initial, time.monotonic()
        self.last_log = self.start_time
        self.bar = None
        self.closed = False
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, total=total, initial=initial, unit=unit,
                            unit_scale=True, unit_divisor=1024 if unit == "B" else 1000, file=sys.stderr)

    def update(self, n: int) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last_log >= self.log_interval:
            self.last_log = now
            logging.info("%s: %s", self.desc, self._summary(now))

    def _summary(self, now: float, final: bool = False) -> str:
        rate = (self.count - self.start_count) / max(now - self.start_time, 1e-6)
        if self.unit == "B":
            done = f"{self.count / 1e6:.1f} MB"
            speed = f"{rate / 1e6:.1f} MB/s"
        else:
            done, speed = f"{self.count} {self.unit}", f"{rate:.0f} {self.unit}/s"
        if self.total and final:
            total = f"{self.total / 1e6:.1f} MB" if self.unit == "B" else str(self.total)
            return f"{done} of {total}, {speed}"
        if self.total:
            eta = (self.total - self.count) / rate if rate > 0 else float("inf")
            eta_text = f"{eta / 60:.1f} min left" if eta != float("inf") else "stalled"
            total = f"{self.total / 1e6:.1f} MB" if self.unit == "B" else str(self.total)
            return f"{done} of {total} ({100 * self.count / self.total:.0f}%), {speed}, {eta_text}"
        return f"{done}, {speed}"

    def close(self, quiet: bool = False) -> None:
        """End the bar; without a bar, log a last summary line unless ``quiet`` (a failure)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif not quiet and not self.closed:
            logging.info("%s: done, %s", self.desc, self._summary(time.monotonic(), final=True))
        self.closed = True


# ----------------------------------------------------------------------------------------------
# Checksums


def parse_checksum(text: str) -> tuple[str, str]:
    """``ALGO:HEX`` or a bare HEX whose length tells the algorithm."""
    algo, _, digest = text.rpartition(":")
    digest = digest.strip().lower()
    if not re.fullmatch(r"[0-9a-f]+", digest):
        raise DownloadError(f"checksum '{text}' is not hexadecimal; give ALGO:HEX, e.g. md5:0123abcd...")
    algo = algo.lower() or HEX_LENGTH_TO_ALGO.get(len(digest), "")
    if algo not in ("md5", "sha1", "sha256") or HEX_LENGTH_TO_ALGO.get(len(digest)) != algo:
        raise DownloadError(
            f"checksum '{text}': expected md5 (32 hex digits), sha1 (40) or sha256 (64)")
    return algo, digest


def read_checksum_file(path: Path, name: str) -> Dict[str, str]:
    """{algo: hex} listed for ``name`` in an md5sum/sha256sum-style file (``HEX  [*]NAME``)."""
    if not path.is_file():
        raise DownloadError(f"checksum file {path} does not exist; fix the --checksum-file path")
    found: Dict[str, str] = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 1)
        if len(fields) != 2:
            raise DownloadError(f"{path}:{line_number}: expected 'HEX  NAME', got '{line}'")
        listed = fields[1].strip().lstrip("*")
        if PurePosixPath(listed).name != name:  # md5sum.txt may list paths: compare base names
            continue
        try:
            algo, digest = parse_checksum(fields[0])
        except DownloadError as error:
            raise DownloadError(f"{path}:{line_number}: {error}") from None
        found[algo] = digest
    return found


def expected_checksums(name: str, checksums: Sequence[str], checksum_files: Sequence[Path]) -> Dict[str, str]:
    """The sums to verify ``name`` with. A later file that lists ``name`` replaces what earlier
    files said (so a user's --checksum-file overrides a recipe's built-in list, e.g. for a
    mirror that repacked an archive); ``--checksum`` values override every file."""
    expected: Dict[str, str] = {}
    for path in checksum_files:
        listed = read_checksum_file(Path(path), name)
        if listed:
            expected = listed
    if checksums:
        expected = dict(parse_checksum(text) for text in checksums)
    return expected


def compute_checksums(path: Path, algos: Sequence[str], log_interval: float) -> Dict[str, str]:
    """Hash the file once for every algorithm (one read of a multi-GB archive, not one per sum)."""
    hashers = {algo: hashlib.new(algo) for algo in algos}
    progress = Progress(f"verifying {path.name.removesuffix('.part')}", path.stat().st_size,
                        log_interval=log_interval)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(block)
            progress.update(len(block))
    progress.close()
    return {algo: hasher.hexdigest() for algo, hasher in hashers.items()}


def verify(path: Path, expected: Dict[str, str], source: str, log_interval: float,
           name: Optional[str] = None) -> None:
    """Raise DownloadError naming both sums when ``path`` (shown as ``name``) does not match."""
    name = name or path.name
    if not expected:
        logging.warning("no checksum known for %s: it is NOT verified (give --checksum-file or "
                        "--checksum to verify it)", name)
        return
    actual = compute_checksums(path, sorted(expected), log_interval)
    for algo in sorted(expected):
        if actual[algo] != expected[algo]:
            raise DownloadError(
                f"{name} from {source} fails verification: {algo} is {actual[algo]}, expected "
                f"{expected[algo]}; the file was removed: rerun to download it again, or check the "
                "mirror (--url-base) and the checksum file")
    logging.info("%s verified (%s)", name, ", ".join(f"{a} {expected[a]}" for a in sorted(expected)))


# ----------------------------------------------------------------------------------------------
# Download


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _transfer(url: str, part: Path, timeout: float, log_interval: float) -> None:
    """One attempt: continue ``part`` from its current size. Raises _Interrupted when the
    server sent less than it announced, so the caller can retry from the new size."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except (http.client.HTTPException, ConnectionError, TimeoutError) as error:  # dropped before headers
        raise _Interrupted(f"{type(error).__name__}: {error}") from None
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Range beyond the end: the .part is already whole, or stale (the file changed).
            match = re.fullmatch(r"bytes \*/(\d+)", error.headers.get("Content-Range", "") or "")
            if match and int(match.group(1)) == offset:
                return
            logging.warning("%s: server refused to resume at byte %d; starting again", part.name, offset)
            part.unlink()
            raise _Interrupted("range not satisfiable") from None
        raise
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        if offset and status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise DownloadError(f"{url}: server answered a resume request at byte {offset} with "
                                    f"Content-Range '{response.headers.get('Content-Range')}'; "
                                    f"delete {part} and rerun")
            total = int(match.group(2)) if match.group(2) != "*" else None
            logging.info("resuming %s at %.1f MB", part.name, offset / 1e6)
            mode = "ab"
        else:
            if offset:
                logging.warning("%s: the server ignores Range requests; downloading from the start", url)
            offset = 0
            total = int(length) if length is not None else None
            mode = "wb"
        if total is not None:
            free = shutil.disk_usage(part.parent).free
            if total - offset > free:
                raise DownloadError(
                    f"{url} needs {(total - offset) / 1e9:.2f} GB but {part.parent} has only "
                    f"{free / 1e9:.2f} GB free; free space or choose another --download-dir")
        progress = Progress(f"downloading {part.name[:-len('.part')]}", total, offset, log_interval=log_interval)
        received = offset
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (http.client.HTTPException, OSError) as error:  # reset, timeout, TLS
                        raise _Interrupted(f"{type(error).__name__}: {error}") from None
                    if not block:
                        break
                    f.write(block)  # an OSError here (disk full) is not retried: it propagates
                    received += len(block)
                    progress.update(len(block))
        finally:
            progress.close(quiet=received != total and total is not None)
        if total is not None and received < total:
            raise _Interrupted(f"connection closed after {received} of {total} bytes")
        if total is not None and received > total:
            part.unlink()
            raise DownloadError(f"{url}: received {received} bytes but the server announced {total}; "
                                "the partial file was removed: rerun")


def fetch(url: str, download_dir: Path, expected: Dict[str, str], retries: int = 5,
          retry_wait: float = 2.0, timeout: float = 60.0, log_interval: float = 30.0) -> Path:
    """Download ``url`` into ``download_dir`` (resuming a ``.part``) and verify it.

    An archive that is already there under its final name is re-verified, not re-downloaded.
    """
    name = archive_name(url)
    download_dir.mkdir(parents=True, exist_ok=True)
    final = download_dir / name
    if final.is_file():
        logging.info("%s is already downloaded; verifying it", final)
        try:
            verify(final, expected, str(final), log_interval)
        except DownloadError:
            final.unlink()
            raise
        return final
    part = download_dir / f"{name}.part"
    attempt = 0
    while True:
        try:
            _transfer(url, part, timeout, log_interval)
            break
        except _Interrupted as error:
            attempt += 1
            size = part.stat().st_size if part.exists() else 0
            if attempt > retries:
                raise DownloadError(
                    f"downloading {url} was interrupted ({error}) {attempt} times; {size / 1e6:.1f} MB "
                    f"are kept in {part}: rerun to resume from there") from None
            wait = min(retry_wait * 2 ** (attempt - 1), 60.0)
            logging.warning("download of %s interrupted (%s) at %.1f MB; resuming in %.0f s (retry %d of %d)",
                            name, error, size / 1e6, wait, attempt, retries)
            time.sleep(wait)
        except urllib.error.HTTPError as error:
            attempt += 1
            if error.code < 500 and error.code != 429 or attempt > retries:  # 5xx/429 may pass: retry
                raise DownloadError(f"HTTP {error.code} {error.reason} for {url}: check the URL, the subset "
                                    "name and --url-base") from None
            logging.warning("HTTP %d from %s; retrying in %.0f s", error.code, url, retry_wait)
            time.sleep(retry_wait)
        except urllib.error.URLError as error:
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"cannot reach {url} ({error.reason}): check the network or use a "
                                    "mirror with --url-base") from None
            logging.warning("cannot reach %s (%s); retrying in %.0f s", url, error.reason, retry_wait)
            time.sleep(retry_wait)
    try:
        verify(part, expected, url, log_interval, name)
    except DownloadError:
        part.unlink()  # a complete but wrong file cannot be resumed into a right one
        raise
    os.replace(part, final)
    return final


def archive_name(url: str) -> str:
    name = PurePosixPath(urllib.parse.urlparse(url).path).name
    if not name:
        raise DownloadError(f"{url} names no file; give the URL of the archive itself")
    return name


# ----------------------------------------------------------------------------------------------
# Extraction


def _unsafe_reason(member: str) -> Optional[str]:
    """Why a member path could land outside the target dir, or None when it cannot."""
    normalised = member.replace("\\", "/")
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        return "is an absolute path"
    if ".." in PurePosixPath(normalised).parts:
        return "contains '..'"
    return None


def _refuse(archive: Path, member: str, reason: str, target: Path) -> DownloadError:
    return DownloadError(
        f"{archive}: member '{member}' {reason} and would be written outside {target}: refusing to "
        "extract; the archive is corrupt or malicious: delete it and download it again from a trusted source")


def _tar_members(tar: tarfile.TarFile, archive: Path, target: Path,
                 progress: Progress) -> Iterator[tarfile.TarInfo]:
    """Stream members (a .tar.gz is read once), refusing unsafe names before extraction."""
    for member in tar:
        reason = _unsafe_reason(member.name)
        if reason:
            raise _refuse(archive, member.name, reason, target)
        progress.update(1)
        yield member


def _extract_into(archive: Path, tmp: Path, target: Path, log_interval: float) -> None:
    progress = Progress(f"extracting {archive.name}", None, unit="files", log_interval=log_interval)
    done = False
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:  # check every name first: the central directory is cheap
                    reason = _unsafe_reason(info.filename)
                    if reason:
                        raise _refuse(archive, info.filename, reason, target)
                progress.total = len(infos)
                for info in infos:
                    zf.extract(info, tmp)
                    progress.update(1)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tar:
                # filter="data" also rejects links pointing outside, device files and odd modes.
                tar.extractall(tmp, members=_tar_members(tar, archive, target, progress), filter="data")
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive; delete it and download "
                                "it again")
        done = True
    except tarfile.FilterError as error:
        member = error.tarinfo.name if getattr(error, "tarinfo", None) else "?"
        raise _refuse(archive, member, f"is unsafe ({error})", target) from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DownloadError(f"{archive} is damaged ({type(error).__name__}: {error}); delete it and "
                            "download it again") from None
    except OSError as error:
        raise DownloadError(f"cannot extract {archive} into {target}: {error}; free space or fix the "
                            "permissions and rerun") from None
    finally:
        progress.close(quiet=not done)


def _merge_move(source: Path, target: Path) -> None:
    """Move the tree ``source`` into ``target`` by renames, merging into existing directories
    (several LibriSpeech archives share ``LibriSpeech/``); files of the same name are replaced."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and destination.is_dir():
            _merge_move(entry, destination)
        else:
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            os.replace(entry, destination)


def extracted_stamp(target: Path, name: str) -> Path:
    return target / f".{name}.extracted"


def extract(archive: Path, target: Path, log_interval: float = 30.0, stamp_text: str = "") -> None:
    """Extract ``archive`` into ``target`` all or nothing, then write its stamp."""
    if not archive.is_file():
        raise DownloadError(f"archive {archive} does not exist; download it first (local/download.py fetch)")
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".extract.{archive.name}.tmp"
    if tmp.exists():  # left by an interrupted run
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _extract_into(archive, tmp, target, log_interval)
        _merge_move(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp = extracted_stamp(target, archive.name)
    tmp_stamp = stamp.with_name(stamp.name + ".tmp")
    tmp_stamp.write_text(stamp_text or f"{archive.name}\n")
    os.replace(tmp_stamp, stamp)
    logging.info("extracted %s into %s", archive.name, target)


def get(url: str, download_dir: Path, target: Path, expected: Dict[str, str], remove_archive: bool = False,
        **fetch_options) -> None:
    """Download + verify + extract, each step skipped when already done."""
    name = archive_name(url)
    if extracted_stamp(target, name).is_file():
        logging.info("%s is already extracted into %s; nothing to do", name, target)
        return
    archive = fetch(url, download_dir, expected, **fetch_options)
    stamp_text = f"{name}\n{url}\n" + "".join(f"{a} {h}\n" for a, h in sorted(expected.items()))
    extract(archive, target, fetch_options.get("log_interval", 30.0), stamp_text)
    if remove_archive:
        archive.unlink()
        logging.info("removed %s (--remove-archive)", archive)


# ----------------------------------------------------------------------------------------------
# CLI


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--verbose", type=int, default=1, help="logging level (0: warnings, 1: info, 2: debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_checksum_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--checksum", action="append", default=[], metavar="ALGO:HEX",
                       help="expected md5/sha1/sha256 (repeatable); overrides the checksum files")
        p.add_argument("--checksum-file", action="append", default=[], type=Path, metavar="FILE",
                       help="'HEX  NAME' lines (md5sum/sha256sum format); a later file naming the "
                            "archive overrides an earlier one")
        p.add_argument("--log-interval", type=float, default=30.0,
                       help="seconds between progress log lines when stderr is not a terminal")

    def add_fetch_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("url", help="URL of the archive")
        p.add_argument("--download-dir", type=Path, default=Path("downloads"), help="where archives go")
        p.add_argument("--retries", type=int, default=5, help="resume attempts after an interruption")
        p.add_argument("--retry-wait", type=float, default=2.0, help="first wait before a retry (doubles)")
        p.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
        add_checksum_options(p)

    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("get", help="download, verify and extract (each skipped when done)", formatter_class=fmt)
    add_fetch_options(p)
    p.add_argument("--extract-to", type=Path, required=True, help="directory to extract into")
    p.add_argument("--remove-archive", action="store_true", help="delete the archive once extracted")
    add_fetch_options(sub.add_parser("fetch", help="download and verify only", formatter_class=fmt))
    p = sub.add_parser("extract", help="safely extract an archive (all or nothing)", formatter_class=fmt)
    p.add_argument("archive", type=Path)
    p.add_argument("--extract-to", type=Path, required=True)
    p.add_argument("--log-interval", type=float, default=30.0)
    p = sub.add_parser("verify", help="check a file against its checksums", formatter_class=fmt)
    p.add_argument("file", type=Path)
    add_checksum_options(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(asctime)s (download.py) %(levelname)s: %(message)s",
    )
    try:
        if args.command in ("get", "fetch"):
            expected = expected_checksums(archive_name(args.url), args.checksum, args.checksum_file)
            options = dict(retries=args.retries, retry_wait=args.retry_wait, timeout=args.timeout,
                           log_interval=args.log_interval)
            if args.command == "get":
                get(args.url, args.download_dir, args.extract_to, expected, args.remove_archive, **options)
            else:
                print(fetch(args.url, args.download_dir, expected, **options))
        elif args.command == "extract":
            extract(args.archive, args.extract_to, args.log_interval)
        else:
            if not args.file.is_file():
                raise DownloadError(f"{args.file} does not exist")
            expected = expected_checksums(args.file.name, args.checksum, args.checksum_file)
            if not expected:
                raise DownloadError(f"no checksum given for {args.file.name}: use --checksum or --checksum-file")
            verify(args.file, expected, str(args.file), args.log_interval)
    except DownloadError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{Path(sys.argv[0]).name}: interrupted; rerun to resume (partial downloads are kept as .part)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
