"""A loopback stand-in for the Hugging Face hub: just the endpoints ``snapshot_download`` calls.

Serves one model repository from a folder: repo info (``/api/models/<id>/revision/<rev>``), the file
tree (``/api/models/<id>/tree/<sha>``), and ``/<id>/resolve/<sha>/<file>`` (HEAD with the hub's
commit and ETag headers, then GET). Point ``HF_ENDPOINT`` at :attr:`FakeHub.endpoint`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

SHA = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repo_id: str, folder: Path) -> None:
        self.repo_id = repo_id
        self.files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                payload, headers = hub.route(path)
                if payload is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self.send_response(200)
                for key, value in {**headers, "Content-Length": str(len(payload))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, path: str) -> tuple[bytes | None, dict[str, str]]:
        api = f"/api/models/{self.repo_id}/"
        if path.startswith(api + "revision/"):
            info = {"id": self.repo_id, "modelId": self.repo_id, "sha": SHA, "private": False,
                    "siblings": [{"rfilename": name} for name in self.files]}
            return json.dumps(info).encode(), {"Content-Type": "application/json"}
        if path.startswith(api + "tree/"):
            tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in self.files.items()]
            return json.dumps(tree).encode(), {"Content-Type": "application/json"}
        resolve = f"/{self.repo_id}/resolve/"
        if path.startswith(resolve):
            _, _, name = path.removeprefix(resolve).partition("/")
            if name in self.files:
                data = self.files[name]
                return data, {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
        return None, {}

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
