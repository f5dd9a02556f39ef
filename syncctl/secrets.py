"""Secrets: the one owner of ``${VAR}`` references.

- the grammar (what a reference looks like, checked when an admin types one);
- which names carry credentials, so a literal value there is refused;
- expansion from the environment, encoded for the place a value lands (a URL component,
  a header, a query parameter), refusing values that cannot be sent;
- redaction of every spelling a value can take in a message, and in a stored record.

A sync creates its ``Secrets`` before anything that can raise, so every message it
records can be redacted. Imported on the cron tick (through config): standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

from syncctl.errors import SyncError, UsageError

# -- the grammar -------------------------------------------------------------------------

VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_REFERENCE = re.compile(r"\$\{([^}]*)\}")  # to name a malformed one in the refusal
_ONLY_REFERENCES = re.compile(rf"(?:{REFERENCE.pattern})+")


def holds_reference(text: str) -> bool:
    """Does ``text`` refer to a variable (``${VAR}``), so that no secret is in it?"""
    return REFERENCE.search(text) is not None


def only_references(text: str) -> bool:
    """Is ``text`` nothing but ``${VAR}`` references (a password given as one)?"""
    return _ONLY_REFERENCES.fullmatch(text) is not None


def uses_secret(template: str) -> bool:
    """Does ``template`` hold a ``${VAR}`` reference?"""
    return "${" in template and REFERENCE.search(template) is not None


def check_references(text: str, what: str) -> None:
    """Refuse a malformed reference (``${lower-case}``, ``${UNCLOSED``) in what an admin typed."""
    for ref in _ANY_REFERENCE.findall(text):
        if not VAR_NAME.fullmatch(ref):
            raise UsageError(
                f"{what}: ${{{ref}}} is not a valid variable reference",
                "write ${NAME} with letters, digits and '_', e.g. ${API_TOKEN}",
            )
    if "${" in _ANY_REFERENCE.sub("", text):
        raise UsageError(f"{what}: unclosed '${{'", "write a reference as ${NAME}")


# -- names that carry credentials --------------------------------------------------------

# The rule: split the name into words (on '-', '_', '.', spaces and camelCase) and judge
# the last word, so that `api_key`, `X-API-Key` and `accessToken` are credentials while
# `author`, `tokens_per_page`, `cookie_consent` and `oauth_version` are not.
_CREDENTIAL_WORDS = frozenset({
    "auth", "authorization", "token", "key", "secret", "password", "passwd", "pwd",
    "passphrase", "cookie", "credential", "credentials", "signature", "sig",
    # written as one word
    "apikey", "apitoken", "authtoken", "accesstoken", "accesskey", "secretkey", "privatekey",
})
# A key or token that orders, groups or pages is not a credential: `sort_key`, `page_token`.
_NOT_CREDENTIAL_BEFORE_KEY = frozenset({
    "sort", "order", "group", "partition", "primary", "foreign", "cache", "idempotency",
    "lookup", "page", "next", "continuation", "cursor", "sync", "resume",
})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def name_words(name: str) -> list[str]:
    """``X-API-Key`` -> [x, api, key]; ``accessToken`` -> [access, token]."""
    return [w.lower() for piece in re.split(r"[-_.\s]+", name) for w in _WORD.findall(piece)]


def is_credential_name(name: str) -> bool:
    """Does a header or parameter called ``name`` carry a credential?"""
    words = name_words(name)
    if not words or words[-1] not in _CREDENTIAL_WORDS:
        return False
    return not (words[-1] in ("key", "token") and len(words) > 1 and words[-2] in _NOT_CREDENTIAL_BEFORE_KEY)


def suggested_variable(name: str) -> str:
    """A variable name for the secret a header or parameter ``name`` carries:
    ``api_key`` -> API_KEY, ``X-API-Key`` -> X_API_KEY, ``Authorization`` -> API_TOKEN."""
    words = name_words(name)
    if words and words[-1] == "authorization":
        words = [*words[:-1], "token"] if len(words) > 1 else ["api", "token"]
    if len(words) == 1 and words[0] in ("key", "token", "secret", "auth", "sig", "signature"):
        words = ["api", *words]
    variable = "_".join(words).upper() or "API_TOKEN"
    return variable if VAR_NAME.fullmatch(variable) else f"V_{variable}"


# -- spellings of a value ----------------------------------------------------------------

MIN_FRAGMENT = 4
# Where a URL parser or an error message may cut a value: URL and query delimiters, and
# whitespace (CR and LF included).
_CUTS = re.compile(r"[#/?@:&=;,\s]+")
_HEX = re.compile(r"%[0-9A-F]{2}")
_MAX_CUTS = 24


def whole_spellings(value: str) -> set[str]:
    """How ``value`` itself may be written in a message or a response: raw, percent-encoded
    (nothing safe, and '/' safe; upper- and lowercase hex), form-encoded, its escaped
    ``repr`` (``\\r``) and its JSON string escape, once and twice (a JSON body a source
    quotes back inside a JSON error)."""
    # surrogateescape: a value that is not UTF-8 is refused, but its message is redacted too
    encoded = {quote(value, safe="", errors="surrogateescape"), quote(value, errors="surrogateescape"),
               quote_plus(value, errors="surrogateescape")}
    forms = {value, *encoded, *(_HEX.sub(lambda m: m.group().lower(), e) for e in encoded)}
    forms.add(repr(value)[1:-1])
    for ascii_only in (True, False):
        once = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms.add(once)
        forms.add(json.dumps(once, ensure_ascii=ascii_only)[1:-1])  # a JSON body quoted inside a JSON error
    return forms


def spellings(value: str) -> set[str]:
    """Every spelling of ``value`` to redact from a message: its whole spellings and every
    fragment of them a parser may cut out, i.e. every run of pieces between two of the
    places it cuts (``# / ? @ : & = ; ,``, whitespace): ``Zx9p:Q2w#Lm`` gives ``Zx9p``,
    ``Zx9p:Q2w``, ``Q2w#Lm``…. Fragments shorter than MIN_FRAGMENT (4) characters are
    ignored: they cannot identify a secret, and redacting them would blank out ordinary
    words and numbers."""
    forms = whole_spellings(value)
    return forms | {piece for form in forms for piece in _fragments(form) if len(piece) >= MIN_FRAGMENT}


def _fragments(form: str) -> Iterator[str]:
    cuts = [(m.start(), m.end()) for m in _CUTS.finditer(form)]
    starts = [0, *(end for _, end in cuts)]
    ends = [*(start for start, _ in cuts), len(form)]
    if len(cuts) > _MAX_CUTS:  # bounded work for a long value full of delimiters:
        yield from (form[a:b] for a, b in zip(starts, ends, strict=True))  # single pieces,
        yield from (form[:b] for b in ends)  # and what a cut leaves at either end
        yield from (form[a:] for a in starts)
        return
    for i, a in enumerate(starts):
        for b in ends[i:]:
            yield form[a:b]


# -- expansion and redaction for one sync ------------------------------------------------

MASK = "***"
RECORD_MASK = "[redacted]"
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^@/\s]+@")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Secrets:
    """The ``${VAR}`` values of one sync: expands them and redacts every spelling of
    them from messages and records."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.used: list[str] = []  # names referenced, in order (for the 401 hint)
        self.values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._record_needles: tuple[str, ...] = ()
        self._record_forms: tuple[str, ...] | None = None

    # -- learning values -------------------------------------------------------------------

    def learn(self, *texts: str) -> None:
        """Remember the value of every variable ``texts`` refer to, before anything can
        fail: whatever is raised later is redacted."""
        for text in texts:
            for name in REFERENCE.findall(text):
                self._remember(name)

    def _remember(self, name: str) -> str | None:
        if name not in self.used:
            self.used.append(name)
        value = self.env.get(name)
        if value and value not in self.values:
            self._add(value)
        return value

    def add(self, value: str) -> None:
        """A secret that is not a variable's value (a token an endpoint gave): redacted from
        messages and records like one."""
        self._add(value)

    def _add(self, value: str) -> None:
        if len(value) >= 3:
            self.values.add(value)
            self._pattern = self._record_forms = None  # built again with the new value

    def _value(self, name: str) -> str:
        value = self._remember(name)
        if value is None:
            raise SyncError(
                f"environment variable {name} is not set",
                f"export {name} in the environment syncctl runs in (for cron: in the "
                "crontab or a file it sources); no request was sent",
            )
        if any("\ud800" <= c <= "\udfff" for c in value):
            raise SyncError(
                f"{name} is not valid UTF-8 text",
                f"check the encoding of the file {name} is set from (save it as UTF-8); no request was sent",
            )
        return value

    # -- expansion -------------------------------------------------------------------------

    def _expand(self, template: str, encode: Any = None) -> str:
        def substitute(match: re.Match[str]) -> str:
            value = self._value(match.group(1))
            return encode(value) if encode else value

        return REFERENCE.sub(substitute, template) if "${" in template else template

    def expand_url(self, template: str) -> str:
        """The URL with each reference percent-encoded for the component it lands in
        (user, password, path, query, fragment): a value is always data, never structure,
        so ``#``, ``/``, ``?``, ``@``, ``&`` in it cannot change where the request goes."""
        if "${" not in template:
            return template

        def component(text: str) -> str:
            return self._expand(text, lambda v: quote(v, safe=""))

        def credential(text: str) -> str:  # requests sends them as Basic auth, in Latin-1
            for ref in REFERENCE.findall(text):
                if not _latin1(self._value(ref)):
                    raise SyncError(
                        f"the URL's user or password: {ref} holds text that is not Latin-1, which HTTP "
                        "Basic auth from a URL cannot send",
                        f"send it as a header instead: --header 'Authorization: Basic ${{{ref}_BASE64}}' "
                        "(the base64 of user:password in UTF-8); no request was sent",
                    )
            return component(text)

        parts = urlsplit(template)
        userinfo, at, hostport = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        netloc = credential(user) + colon + credential(password) + at + component(hostport)
        url = urlunsplit((parts.scheme, netloc, component(parts.path), component(parts.query),
                          component(parts.fragment)))
        if uses_secret(userinfo):  # sent as Basic auth: that spelling is the secret too
            import base64

            expanded = urlsplit(url)
            credentials = f"{unquote(expanded.username or '')}:{unquote(expanded.password or '')}"
            self._add(base64.b64encode(credentials.encode("utf-8")).decode("ascii"))
        return url

    def expand_param(self, template: str) -> str:
        """A --param value, raw: requests percent-encodes it."""
        return self._expand(template)

    def expand_header(self, name: str, template: str) -> str:
        """A header value, raw; one that cannot be sent (a line break or another control
        character, text outside Latin-1, space at either end) fails the sync, naming the
        variable responsible, before any request."""
        refs = REFERENCE.findall(template)
        value = self._expand(template)
        for i, ref in enumerate(refs):
            raw = self._value(ref)
            problem = header_problem(raw, at_start=i == 0 and template.startswith("${"),
                                     at_end=i == len(refs) - 1 and template.endswith("}"))
            if problem:
                cause, fix = problem
                fix = f"remove it from the value of {ref}" if fix == "remove it" else fix
                if "\r" in raw:
                    cause += " (a secrets file saved with Windows line endings?)"
                    fix += " (e.g. dos2unix FILE)"
                raise SyncError(f"header {name}: {ref} {cause}", f"{fix}; no request was sent")
        problem = header_problem(value)
        if problem:
            cause, fix = problem
            raise SyncError(f"header {name} {cause}", f"{fix}: syncctl edit {{name}} --header '{name}: …'")
        return value

    # -- redaction -------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with every spelling of every secret value (longest first), and any URL
        password, replaced by ``***``."""
        if self.values:
            text = self._compiled().sub(MASK, text)
        return _URL_PASSWORD.sub(rf"\1{MASK}@", text)

    def _compiled(self) -> re.Pattern[str]:
        # Built on the first message to redact (a failure), not for every sync.
        if self._pattern is None:
            forms = {s for v in self.values for s in spellings(v) if len(s) >= 3}
            self._pattern = re.compile("|".join(re.escape(s) for s in sorted(forms, key=len, reverse=True)))
        return self._pattern

    def _record_spellings(self) -> tuple[str, ...]:
        if self._record_forms is None:
            whole = {s for v in self.values for s in whole_spellings(v) if len(s) >= 3}
            self._record_forms = tuple(sorted(whole, key=len, reverse=True))
            # As the records' JSON writes them (ensure_ascii=False, per-character escapes).
            self._record_needles = tuple({json.dumps(s, ensure_ascii=False)[1:-1] for s in whole})
        return self._record_forms

    def in_records(self, serialized: Iterable[str]) -> bool:
        """Might a secret be echoed in these records' JSON? One pass of substring tests
        over the whole page; False at once when the sync has no secrets."""
        if not self.values:
            return False
        self._record_spellings()
        text = "\n".join(serialized)  # a JSON text holds no raw newline: no false joins
        return any(needle in text for needle in self._record_needles)

    def scrub(self, record: Any) -> Any:
        """``record`` with every whole spelling of a secret in its strings, keys and
        numbers replaced by ``[redacted]``."""
        forms = self._record_spellings()

        def clean(value: Any) -> Any:
            if isinstance(value, str):
                for form in forms:
                    if form in value:
                        value = value.replace(form, RECORD_MASK)
                return value
            if isinstance(value, dict):
                return {clean(k): clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return RECORD_MASK if any(form in str(value) for form in forms) else value
            return value

        return clean(record)

    def references(self) -> str:
        return ", ".join("${" + name + "}" for name in self.used)


def header_problem(value: str, *, at_start: bool = True, at_end: bool = True) -> tuple[str, str] | None:
    """Why ``value`` cannot be sent as (part of) a header value, and the fix; None when it
    can. ``at_start``/``at_end``: the value begins/ends the header value (where a space
    would be dropped or refused)."""
    if "\r" in value or "\n" in value:
        return "holds a line break", "remove it"
    if _CONTROL.search(value):
        return "holds a control character", "remove it"
    if not _latin1(value):
        return "holds text that is not Latin-1", "header values must be Latin-1 text; percent-encode it or send it as a --param"
    if (at_start and value[:1].isspace()) or (at_end and value[-1:].isspace()):
        return "starts or ends with a space", "remove it"
    return None


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
