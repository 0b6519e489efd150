"""Checkpoints by name: ``hf-hub:ORG/REPO[@REV][:FILE]`` and ``https://…#sha256=HEX`` (open_clip's names: pretrained.py).

Each name becomes local files in the standard Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``) through
``huggingface_hub``: its downloads show progress, retry with HTTP ranges, honour ``HF_ENDPOINT``, ``HF_TOKEN`` and
``HF_HUB_OFFLINE``, and never leave a partial file under a cache name. Every failure becomes one
:class:`HubError` line naming what was asked, what was tried and the way out. Nothing here parses weights: the
loader (model/formats.py) judges the files it is given.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from ..digest import file_sha256
from ..errors import VificlipError
from .formats import FOLDER_LAYOUTS

HF_PREFIX = "hf-hub:"
URL_PREFIXES = ("https://", "http://")
SHA256 = re.compile(r"[0-9a-f]{64}")
WAY_OUT = ("use a local path, a warm cache with HF_HUB_OFFLINE=1, or run `vificlip download {name}` on a "
           "connected machine and copy the cache (HF_HOME)")  # fmt: skip


class HubError(VificlipError):
    """A named checkpoint could not be fetched; the message says what was asked, tried, and the way out."""


def is_remote_name(text: str) -> bool:
    """``hf-hub:…`` or a URL: names that never mean a local path."""
    return text.startswith(HF_PREFIX) or text.startswith(URL_PREFIXES)


def fetch(name: str) -> Path:
    """The local file or folder for ``hf-hub:…`` or a URL (downloaded into the cache once)."""
    return fetch_hf(name) if name.startswith(HF_PREFIX) else fetch_url(name)


def first_line(exc: BaseException) -> str:
    """An exception as one short line (huggingface_hub's messages span paragraphs; the last one says what failed)."""
    text = " ".join(str(exc).split("\n\n")[-1].split()) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


def truncated(exc: BaseException) -> str | None:
    """'N of M bytes' when huggingface_hub's size check failed (a download cut short), else None."""
    found = re.search(r"should be of size (\d+) but has size (\d+)", str(exc))
    return f"{found.group(2)} of {found.group(1)} bytes" if found else None


def hf_constants():
    from huggingface_hub import constants

    return constants


# ---- hf-hub:ORG/REPO[@REVISION][:FILE] -------------------------------------------------------------------------
def parse_hf_name(name: str) -> tuple[str, str, str | None]:
    """``hf-hub:org/repo@rev:dir/file.pth`` → (repo, revision, file); revision defaults to ``main``."""
    body = name[len(HF_PREFIX) :]
    repo_rev, _, filename = body.partition(":")
    repo, _, revision = repo_rev.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise HubError(f"{name!r}: expected hf-hub:ORG/REPO[@REVISION][:FILE]")
    return repo, revision or "main", filename or None


def _wanted_files(files: list[str]) -> list[str] | None:
    """The config and weights of the first folder layout the repo holds (formats.FOLDER_LAYOUTS), else None."""
    for config_name, (_fmt, weight_names) in FOLDER_LAYOUTS.items():
        weights = next((w for w in weight_names if w in files), None)
        if config_name in files and weights:
            return [config_name, weights]
    return None


def _cached_folder(repo: str, revision: str) -> Path | None:
    """The snapshot folder holding a complete layout in the cache, without any network call."""
    for config_name, (_fmt, weight_names) in FOLDER_LAYOUTS.items():
        config = cached_file(repo, config_name, revision)
        if config is not None and any(cached_file(repo, w, revision) for w in weight_names):
            return config.parent
    return None


def cached_file(repo: str, filename: str, revision: str) -> Path | None:
    """The cached copy of one repo file at ``revision`` (a branch, tag or commit), without any network call."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def _check_blob(path: Path, name: str) -> None:
    """Hub LFS blobs are named by their SHA-256: a download whose bytes differ is removed, not kept."""
    blob = Path(os.path.realpath(path))
    if not SHA256.fullmatch(blob.name):
        return
    digest = file_sha256(blob)
    if digest != blob.name:
        blob.unlink(missing_ok=True)
        Path(path).unlink(missing_ok=True)
        raise HubError(f"{name}: downloaded {Path(path).name} has SHA-256 {digest[:12]}…, the Hub says "
                       f"{blob.name[:12]}…; the bad file was removed, retry the download")  # fmt: skip


def _hf_download(name: str, repo: str, filename: str, revision: str) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(repo, filename, revision=revision), str)
    path = Path(hf_hub_download(repo, filename, revision=revision))
    if not cached:
        _check_blob(path, name)
    return path


def repo_files(repo: str, revision: str) -> list[str] | None:
    """The repo's file list, or None when the Hub cannot be reached (offline mode or no connection)."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        info = HfApi().model_info(repo, revision=revision)
    except (OfflineModeIsEnabled, httpx.ConnectError, httpx.TimeoutException):
        return None
    return sorted(s.rfilename for s in info.siblings or [])


def fetch_hf(name: str) -> Path:
    """A file (``:FILE``) or the snapshot folder of a loadable layout; errors translated to one line."""
    repo, revision, filename = parse_hf_name(name)
    try:
        # One listing first: it fails fast without a network (huggingface_hub would retry each file for ~20 s
        # with backoff before giving up on a cold cache), and it names the repo's files in errors.
        files = repo_files(repo, revision)
        if files is None:  # offline or unreachable: whatever the cache holds
            cached = cached_file(repo, filename, revision) if filename else _cached_folder(repo, revision)
            if cached is None:
                raise HubError(offline_message(name))
            return cached
        if filename is not None:
            if filename not in files:
                raise HubError(
                    f"{name}: no file {filename!r} in {repo}@{revision} (files: {', '.join(files)})"
                )
            return _hf_download(name, repo, filename, revision)
        wanted = _wanted_files(files)
        if wanted is None:
            layouts = "; ".join(f"{c} + {' or '.join(w)}" for c, (_f, w) in FOLDER_LAYOUTS.items())
            raise HubError(f"{name}: no loadable model in the repo (files: {', '.join(files) or 'none'}); expected "
                           f"{layouts}, or name one checkpoint file as {HF_PREFIX}{repo}:FILE")  # fmt: skip
        paths = [_hf_download(name, repo, f, revision) for f in wanted]
        return paths[-1].parent
    except HubError:
        raise
    except Exception as exc:  # huggingface_hub's and httpx's errors → one line
        raise _hf_error(name, repo, revision, filename, exc) from None


def offline_message(name: str) -> str:
    c = hf_constants()
    why = "HF_HUB_OFFLINE=1" if c.is_offline_mode() else f"cannot reach {c.ENDPOINT}"
    return f"{name}: not in the cache ({c.HF_HUB_CACHE}) and {why}; {WAY_OUT.format(name=name)}"


def _hf_error(name: str, repo: str, revision: str, filename: str | None, exc: Exception) -> HubError:
    import httpx
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token_hint = "set HF_TOKEN (or run `hf auth login`)"
    if isinstance(exc, GatedRepoError):
        return HubError(f"{name}: {repo} is gated; accept its terms on the Hub, then {token_hint}")
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"{name}: repository {repo} not found on {hf_constants().ENDPOINT}, or private: check the "
                        f"name, or {token_hint} with access to it")  # fmt: skip
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"{name}: revision {revision!r} not found in {repo}")
    if isinstance(exc, LocalEntryNotFoundError | OfflineModeIsEnabled | httpx.TransportError):
        return HubError(offline_message(name))
    if isinstance(exc, EntryNotFoundError):
        try:
            files = repo_files(repo, revision)
        except Exception:  # noqa: BLE001 - the listing only improves the message
            files = None
        listing = f" (files: {', '.join(files)})" if files else ""
        return HubError(f"{name}: no file {filename!r} in {repo}@{revision}{listing}")
    if isinstance(exc, HfHubHTTPError):
        return HubError(f"{name}: the Hub answered {first_line(exc)}")
    if isinstance(exc, OSError) and truncated(exc):
        return HubError(f"{name}: download truncated ({truncated(exc)} arrived); nothing was kept, retry")
    return HubError(f"{name}: download failed ({type(exc).__name__}: {first_line(exc)})")


# ---- https://…#sha256=HEX -------------------------------------------------------------------------------------
def url_cache_dir() -> Path:
    """URL downloads live beside the Hub cache, under ``$HF_HOME/vificlip/urls/<sha256>/``."""
    return Path(hf_constants().HF_HOME) / "vificlip" / "urls"


def fetch_url(name: str) -> Path:
    """Download once into the cache, verified against the SHA-256 in the fragment; a bad file is removed."""
    url, _, fragment = name.partition("#")
    expected = fragment[len("sha256=") :].lower() if fragment.startswith("sha256=") else ""
    if not SHA256.fullmatch(expected):
        raise HubError(f"{name}: a URL needs its file's checksum as #sha256=<64 hex digits>, so that what arrives "
                       "can be verified (sha256sum FILE prints it)")  # fmt: skip
    filename = Path(urlsplit(url).path).name or "checkpoint"
    target = url_cache_dir() / expected / filename
    if target.is_file():
        return target
    if hf_constants().is_offline_mode():
        raise HubError(offline_message(name))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{filename}.{uuid.uuid4().hex[:8]}.incomplete")
    try:
        _download(url, partial, name, filename)
        digest = file_sha256(partial)
        if digest != expected:
            raise HubError(f"{name}: downloaded file has SHA-256 {digest[:12]}…, expected {expected[:12]}…; it was "
                           "removed (a changed file or a wrong checksum)")  # fmt: skip
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
        if not any(target.parent.iterdir()):
            target.parent.rmdir()
    return target


def _download(url: str, partial: Path, name: str, filename: str) -> None:
    # huggingface_hub's own streaming helper rather than a second HTTP client: the same progress bar, proxy and
    # HF_HUB_OFFLINE handling, retries that resume with a Range request, and a size check against Content-Length.
    # No Hub token is sent: the URL may be any host.
    import httpx
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    from huggingface_hub.file_download import http_get

    try:
        with open(partial, "wb") as f:
            http_get(url, f, displayed_filename=filename)
    except OfflineModeIsEnabled:
        raise HubError(offline_message(name)) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise HubError(f"{name}: the server answered HTTP {status}; check the URL") from None
    except OSError as exc:
        if truncated(exc):
            raise HubError(f"{name}: download truncated ({truncated(exc)} arrived); the partial file was removed, "
                           "retry") from None  # fmt: skip
        raise HubError(f"{name}: download failed ({first_line(exc)}); {WAY_OUT.format(name=name)}") from None
    except httpx.HTTPError as exc:
        raise HubError(f"{name}: download failed ({type(exc).__name__}: {first_line(exc)}); "
                       f"{WAY_OUT.format(name=name)}") from None  # fmt: skip


# ---- what the cache holds -------------------------------------------------------------------------------------
def cached_names() -> list[tuple[str, int, str]]:
    """(name, bytes, path) of every Hub model repo and URL download already in the cache."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    found: list[tuple[str, int, str]] = []
    try:
        for repo in scan_cache_dir(hf_constants().HF_HUB_CACHE).repos:
            if repo.repo_type == "model":
                found.append((f"{HF_PREFIX}{repo.repo_id}", repo.size_on_disk, str(repo.repo_path)))
    except CacheNotFound:
        pass
    if url_cache_dir().is_dir():
        for path in sorted(url_cache_dir().glob("*/*")):
            if path.is_file() and not path.name.startswith("."):
                found.append((f"{path.name}#sha256={path.parent.name}", path.stat().st_size, str(path)))
    return found
