"""An OpenAI-compatible chat completions client (POST {base_url}/chat/completions),
standard library only.

Transient failures (HTTP 429 and 5xx, timeouts, refused or dropped connections, a
body that is not a chat completion) are retried with exponential backoff,
`backoff_s * 2**(try - 1)` capped at `max_backoff_s` (a longer Retry-After header
wins); after `max_tries` tries the call fails with `EndpointError` naming the last
problem. Other HTTP errors (400, 401, 404, ...) fail at once: retrying cannot fix a
wrong model name or key.

Redirects are never followed: the request carries the API key, and urllib would send it
on to whatever host a 3xx names (and turn the POST into a GET). A redirect is an
`EndpointError` naming its target; point --base-url at the target if you trust it.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from engine.errors import InputError


class EndpointError(InputError):
    """The endpoint gave no usable answer; what was generated before is cached."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Every 3xx reaches the caller as an HTTPError instead of a new request."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


class _Transient(Exception):
    """A failure worth another try; `wait_s` is the server's Retry-After, if any."""

    def __init__(self, message: str, wait_s: float = 0.0):
        super().__init__(message)
        self.wait_s = wait_s


@dataclass(frozen=True)
class EndpointConfig:
    base_url: str                  # e.g. http://127.0.0.1:8000/v1
    model: str                     # the "model" field of each request
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0        # per request
    max_tries: int = 6
    backoff_s: float = 1.0         # first wait; doubles after every failed try
    max_backoff_s: float = 60.0


class ChatEndpoint:
    """`complete(prompt, seed)` -> the assistant's text; `answer(batch)` runs a batch
    of prompts concurrently."""

    def __init__(self, config: EndpointConfig, sampling: dict):
        if config.max_tries < 1:
            raise InputError(f"max_tries must be at least 1; got {config.max_tries}")
        self.config = config
        self.sampling = sampling          # temperature, top_p, max_tokens
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(config.api_key_env, "")

    def complete(self, prompt: str, seed: int) -> str:
        payload = {"model": self.config.model, "messages": [{"role": "user", "content": prompt}],
                   "seed": seed, **self.sampling}
        last = "no try made"
        for attempt in range(1, self.config.max_tries + 1):
            try:
                return self._post(payload)
            except _Transient as err:
                last = str(err)
                if attempt < self.config.max_tries:
                    delay = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (attempt - 1))
                    time.sleep(max(delay, min(err.wait_s, self.config.max_backoff_s)))
        raise EndpointError(f"{self.url}: no answer after {self.config.max_tries} tries (last: {last})")

    def answer(self, batch: list[tuple[str, str, int]]):
        """(key, prompt, seed) -> yields (key, text) as requests finish; after the
        batch, raises the first failure (the others are yielded, so kept)."""
        failures = []
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            futures = {pool.submit(self.complete, prompt, seed): key for key, prompt, seed in batch}
            for future in as_completed(futures):
                try:
                    yield futures[future], future.result()
                except EndpointError as err:
                    failures.append(err)
        if failures:
            raise EndpointError(f"{len(failures)} of {len(batch)} requests failed; first: {failures[0]}")

    def _post(self, payload: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(payload).encode("utf-8"), headers, method="POST")
        try:
            with _OPENER.open(request, timeout=self.config.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            raise _http_error(err, self.url, self.config.api_key_env) from err
        except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError,
                http.client.HTTPException) as err:
            raise _Transient(f"{type(err).__name__}: {getattr(err, 'reason', err)}") from err
        return _content(body)


def _http_error(err: urllib.error.HTTPError, url: str, key_env: str) -> Exception:
    if 300 <= err.code < 400:
        target = err.headers.get("Location", "(no Location header)") if err.headers else "(no Location header)"
        return EndpointError(f"{url}: HTTP {err.code} redirects to {target}; redirects are not followed because "
                             "the request carries the API key: set --base-url to the target if you trust it")
    detail = err.read(300).decode("utf-8", "replace").strip()
    if err.code == 429 or err.code >= 500:
        retry_after = err.headers.get("Retry-After", "") if err.headers else ""
        return _Transient(f"HTTP {err.code}", float(retry_after) if retry_after.isdigit() else 0.0)
    hint = f"; is ${key_env} set to a valid key?" if err.code in (401, 403) else ""
    return EndpointError(f"{url}: HTTP {err.code} {err.reason}: {detail}{hint}")


def _content(body: bytes) -> str:
    """The first choice's message text; a body that is not a chat completion is a
    transient failure (proxies answer with HTML pages under load)."""
    try:
        message = json.loads(body)["choices"][0]["message"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, RecursionError) as err:
        raise _Transient(f"malformed response ({type(err).__name__}): {body[:80]!r}") from err
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""
