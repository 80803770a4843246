"""One redaction rule for every URL the roller prints, and for foreign error texts.

Hosted endpoints carry credentials in every part of a URL except scheme, host and port:
userinfo (`redis://:pw@host`), path (`https://rpc.example/v3/<api key>`) and query
(`?apikey=...`). So a printed URL keeps scheme, host and port and shows only that the rest
was there (`https://***@rpc.example:443/***?***`).

Foreign libraries put URLs into their exception texts: `requests` writes the full URL
(`... for url: https://host/v3/<key>`) or its path (`Max retries exceeded with url:
/v3/<key>`); websocket-client and redis-py write host and port only. `describe(exc)` is the
one crossing point: every place that turns a requests/websocket/redis/kombu exception into
a roller error, a log line, a metric or a failure report uses it (or `scrub` for a text).
`register_secret`/`register_url` add the process's own secrets (from its config), scrubbed
from every text as well: a belt for texts that carry a credential without a URL around it.
`RedactingFilter` applies `scrub` to every log record a handler writes, for library logs
the roller does not format itself.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"
# A URL with a scheme: up to whitespace, a quote, or a closing bracket/paren that ends it.
_URL_RE = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
# urllib3's "Max retries exceeded with url: /path?query" names the path alone, and its DEBUG
# lines (like http.server's access log) the request line `"POST /path?query HTTP/1.1"`.
_URL_PATH_RE = re.compile(r"(\burl: |\b(?:GET|POST|PUT|DELETE|HEAD|PATCH|OPTIONS) )"
                          r"(/[^\s'\"<>()]*)")
# Path segments that look like a credential (an API key, a token) are registered as secrets
# on their own too: an upstream answer may echo the key without the URL around it.
_MIN_SECRET_SEGMENT = 16
# Shorter registered strings would scrub ordinary words out of texts.
_MIN_SECRET = 4

_lock = threading.Lock()
_secrets: set[str] = set()


def redact_url(url: str) -> str:
    """`url` with userinfo, path, query and fragment replaced by `***` (scheme, host and port
    kept); a text that does not parse as a URL with a host is masked whole."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or host is None:
        return MASK if url else url
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    out = f"{parts.scheme}://{netloc}"
    if parts.path not in ("", "/"):
        out += "/" + MASK
    if parts.query:
        out += "?" + MASK
    if parts.fragment:
        out += "#" + MASK
    return out


def register_secret(*values: str | None) -> None:
    """Scrub these strings (passwords, tokens) from every text `scrub` sees in this process."""
    with _lock:
        for value in values:
            if value and len(value) >= _MIN_SECRET:
                _secrets.add(value)


def register_url(*urls: str | None) -> None:
    """Register the secret parts of configured URLs: userinfo, password, path, query, query
    values and long path segments (raw and percent-decoded); never scheme, host or port."""
    for url in urls:
        if url:
            register_secret(*_url_secrets(url))


def _url_secrets(url: str) -> Iterable[str]:
    try:
        parts = urlsplit(url.strip())
        # A user name alone ("default", "admin") is no secret, and scrubbing it would blank
        # ordinary words; the password and the whole userinfo are.
        pieces = [parts.password, parts.netloc.rpartition("@")[0]]
    except ValueError:
        return [url]
    if parts.path not in ("", "/"):
        pieces.append(parts.path)
        pieces += [s for s in parts.path.split("/") if len(s) >= _MIN_SECRET_SEGMENT]
    if parts.query:
        pieces.append(parts.query)
        pieces += [kv.partition("=")[2] for kv in parts.query.split("&")]
    pieces.append(parts.fragment)
    out = []
    for piece in pieces:
        if piece:
            out += [piece, unquote(piece)]
    return out


def forget_secrets() -> None:
    """Drop every registered secret (tests)."""
    with _lock:
        _secrets.clear()


def scrub(text: str) -> str:
    """`text` with every URL redacted, urllib3's bare `url: /path` masked and every registered
    secret replaced by `***`."""
    if not text:
        return text
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    text = _URL_PATH_RE.sub(lambda m: m.group(1) + "/" + MASK, text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # a longer one first: no tail left
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def describe(exc: BaseException) -> str:
    """`ExcType: text` of a foreign exception, scrubbed: what a roller error may carry."""
    text = scrub(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RedactingFilter(logging.Filter):
    """Scrubs each record a handler writes (message, arguments and traceback text), for the
    lines of libraries (celery, kombu, urllib3) that print their own exceptions."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a library's bad format string: keep it as it was
            return True
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put a RedactingFilter on every handler of `logger` (default: the root logger), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
