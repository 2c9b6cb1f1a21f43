"""A small blocking client for the admin API, for the integration tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class AdminClient:
    def __init__(self, base_url: str, token: str | None, scheme: str = "Bearer") -> None:
        self.base = base_url.rstrip("/") + "/api/v1"
        self.token = token
        self.scheme = scheme

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> Answer:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if self.token is not None:
            request.add_header("Authorization", f"{self.scheme} {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return _answer(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as err:
            with err:
                return _answer(err.code, err.read(), dict(err.headers))

    def get(self, path: str) -> Answer:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Answer:
        return self.call("POST", path, body)

    def patch(self, path: str, body: Any) -> Answer:
        return self.call("PATCH", path, body)

    def delete(self, path: str) -> Answer:
        return self.call("DELETE", path)


def _answer(status: int, raw: bytes, headers: dict[str, str]) -> Answer:
    return Answer(status, json.loads(raw) if raw else None, headers)
