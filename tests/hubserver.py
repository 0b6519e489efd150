"""A small, faithful stand-in for the Hugging Face Hub on 127.0.0.1, reached through ``HF_ENDPOINT``.

It answers the requests huggingface_hub 1.x makes (read from its source):

- ``GET /api/models/{repo}/revision/{rev}`` → JSON with ``sha`` and ``siblings`` (``HfApi.model_info``);
- ``HEAD /{repo}/resolve/{rev}/{file}`` → ``X-Repo-Commit``, ``ETag`` (the git blob id for small files, the
  SHA-256 for weights, as LFS files have), ``Content-Length`` (``get_hf_file_metadata``);
- ``GET`` of the same path, with ``Range`` → 206 (``http_get``, which resumes that way);
- errors as the Hub sends them: 404/401 with ``X-Error-Code`` (RepoNotFound, EntryNotFound, RevisionNotFound,
  GatedRepo), which ``hf_raise_for_status`` turns into its typed exceptions.

Uploads (``HfApi.create_repo`` + ``upload_folder``) go through ``POST /api/repos/create``, ``/api/validate-yaml``,
``/api/models/{repo}/preupload/{rev}`` (every file answered as a regular git upload, so no LFS round trip) and
``/api/models/{repo}/commit/{rev}`` (NDJSON with base64 contents), and need the token.

Plain URLs are served under ``/files/``. Switches per file: ``truncate`` (the body stops at half, with a matching
Content-Length, so the size check against the HEAD fails), ``corrupt`` (same length, other bytes), ``cut_once``
(the first GET announces the full length, sends all but 1 kB and drops the connection, as a network failure does; the
next one is served whole). Every request is logged in ``requests`` (with its Range header, if any).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str
    gated: bool = False
    private: bool = False


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    urls: dict[str, bytes] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # "repo/file" or "/files/x" → truncate | corrupt
    token: str = "hf_test_token"
    requests: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(self, repo_id: str, files: dict[str, bytes], **flags) -> str:
        sha = hashlib.sha1(
            repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()
        ).hexdigest()
        self.repos[repo_id] = Repo(dict(files), sha, **flags)
        return sha

    def add_folder(self, repo_id: str, folder: Path, **flags) -> str:
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add_repo(repo_id, files, **flags)

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _etag(name: str, data: bytes) -> str:
    if name.endswith(WEIGHT_SUFFIXES):  # LFS: the Hub's etag is the content's SHA-256
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    # ---- helpers
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, head: bool) -> None:
        message = f"{code} ({self.path})"
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message,
                                  "Content-Type": "application/json"}, head)  # fmt: skip

    def _authorised(self, repo: Repo) -> bool:
        if not (repo.gated or repo.private):
            return True
        return self.headers.get("Authorization") == f"Bearer {self.fake.token}"

    def _repo(self, repo_id: str, head: bool) -> Repo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            self._error(404 if "Authorization" in self.headers else 401, "RepoNotFound", head)
            return None
        if not self._authorised(repo):
            self._error(401, "GatedRepo" if repo.gated else "RepoNotFound", head)
            return None
        return repo

    # ---- routes
    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_POST(self) -> None:
        self.fake.requests.append(f"POST {self.path}")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            return self._error(401, "Unauthorized", head=False)
        if parts == ["api", "validate-yaml"]:
            return self._json({"errors": [], "warnings": []})
        if parts == ["api", "repos", "create"]:
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}"
            if repo_id in self.fake.repos:
                return self._error(409, "RepoExists", head=False)
            self.fake.add_repo(repo_id, {}, private=request.get("visibility") == "private")
            return self._json({"url": f"{self.fake.endpoint}/{repo_id}"})
        repo = self.fake.repos.get("/".join(parts[2:4]))
        if parts[:2] != ["api", "models"] or repo is None or len(parts) < 6:
            return self._error(404, "RepoNotFound", head=False)
        if parts[4] == "preupload":
            files = json.loads(body)["files"]
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                         for f in files]})  # fmt: skip
        if parts[4] == "commit":
            items = [json.loads(line) for line in body.splitlines() if line.strip()]
            files = dict(repo.files)
            for item in (i["value"] for i in items if i["key"] == "file"):
                files[item["path"]] = base64.b64decode(item["content"])
            repo_id = "/".join(parts[2:4])
            sha = self.fake.add_repo(repo_id, files, gated=repo.gated, private=repo.private)
            return self._json({"commitUrl": f"{self.fake.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha})
        self._error(404, "NoRoute", head=False)

    def _json(self, payload: dict) -> None:
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _route(self, head: bool) -> None:
        ranged = f" Range: {self.headers['Range']}" if self.headers.get("Range") else ""
        self.fake.requests.append(f"{self.command} {self.path}{ranged}")
        path = self.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            return self._info(parts[2:], head)
        if parts[0] == "files":
            data = self.fake.urls.get(path)
            if data is None:
                return self._send(404, b"not found", head=head)
            return self._content(path, data, head, {})
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), head)
        self._send(404, b"no route", head=head)

    def _info(self, parts: list[str], head: bool) -> None:
        repo_id = "/".join(parts[:2])
        repo = self._repo(repo_id, head)
        if repo is None:
            return
        revision = parts[3] if len(parts) >= 4 and parts[2] == "revision" else "main"
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", head)
        body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": repo.private,
                           "gated": "auto" if repo.gated else False,
                           "siblings": [{"rfilename": name} for name in sorted(repo.files)]}).encode()  # fmt: skip
        self._send(200, body, {"Content-Type": "application/json"}, head)

    def _resolve(self, repo_id: str, revision: str, filename: str, head: bool) -> None:
        repo = self._repo(repo_id, head)
        if repo is None:
            return
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", head)
        data = repo.files.get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", head)
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{_etag(filename, data)}"'}
        self._content(f"{repo_id}/{filename}", data, head, headers)

    def _content(self, key: str, data: bytes, head: bool, headers: dict) -> None:
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if head:
            return self._send(200, data, headers, head=True)
        mode = self.fake.broken.get(key)
        if mode == "corrupt":
            data = bytes(b ^ 0xFF for b in data)
        start = 0
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and ranged[6:].split("-")[0]:
            start = int(ranged[6:].split("-")[0])
        body = data[start:]
        if mode == "truncate":
            body = body[: len(body) // 2]
        if mode == "cut_once":
            del self.fake.broken[key]
            self.send_response(200)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(
                body[:-1024]
            )  # past huggingface_hub's 10 MB chunk, so it has something to resume
            self.wfile.flush()
            self.close_connection = True
            return
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return self._send(206, body, headers)
        self._send(200, body, headers)
