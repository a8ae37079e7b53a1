"""Chat names are data, not paths: a reversible mapping from any name to one safe file name.

Ordinary names stay ``{name}.json`` so a folder written by the original server is read as
is. Only what is unsafe in a file name is escaped as ``%XX`` (UTF-8 bytes): ``/``, ``\\``,
NUL and other control characters, ``%`` itself, and a leading ``.`` (which would hide the
file, or make ``.``/``..``). Every file name we create for a chat therefore starts with
something other than a dot, so dotfiles in the folder are ours (temp and lock files) or the
user's, never a chat.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from functools import lru_cache

from .errors import InvalidChatName

SUFFIX = ".json"
MAX_NAME_CHARS = 200
# NAME_MAX is 255 bytes on common filesystems; keep room for ".json" and the temp-file
# decoration ("." + stem + ".json." + 8 hex + ".tmp").
MAX_STEM_BYTES = 230

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\%]")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _escape_char(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())


def stem_for(name: str) -> str:
    """The file stem for ``name``; raises InvalidChatName for a name no file can hold."""
    if not isinstance(name, str) or not name:
        raise InvalidChatName("name must be a non-empty string")
    return _stem_for(name)


@lru_cache(maxsize=4096)  # asked several times per change, of the same few names
def _stem_for(name: str) -> str:
    if len(name) > MAX_NAME_CHARS:
        raise InvalidChatName(f"name is too long: {len(name)} characters, at most {MAX_NAME_CHARS}")
    if any("\ud800" <= char <= "\udfff" for char in name):
        raise InvalidChatName("name contains an unpaired surrogate, which no file name can hold")
    stem = _UNSAFE.sub(lambda m: _escape_char(m.group()), name)
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if len(stem.encode()) > MAX_STEM_BYTES:
        raise InvalidChatName(
            f"name is too long to store: at most {MAX_STEM_BYTES} bytes once encoded as a file name"
        )
    return stem


def fitted(name: str, room: int = 0) -> str:
    """``name`` cut short enough to be stored with ``room`` characters to spare (imports take
    titles as they come; a lone surrogate becomes U+FFFD)."""
    name = name.encode("utf-8", "replace").decode("utf-8").strip() or "Untitled"
    name = name[: MAX_NAME_CHARS - room]
    while len(_UNSAFE.sub(lambda m: _escape_char(m.group()), name).encode()) + 3 * room > MAX_STEM_BYTES:
        name = name[:-1]
    return name


def generated() -> str:
    """A name for a chat its creator did not name: URL-safe, sorted by when it was made (UTC),
    e.g. ``chat-20261203-0830-3f9a``."""
    return datetime.now(timezone.utc).strftime("chat-%Y%m%d-%H%M-") + secrets.token_hex(2)


def file_name_for(name: str) -> str:
    return stem_for(name) + SUFFIX


def name_for(file_name: str) -> str | None:
    """The chat name stored in ``file_name``, or None if it is not a chat file."""
    if not file_name.endswith(SUFFIX) or file_name.startswith("."):
        return None
    stem = file_name[: -len(SUFFIX)]
    if not stem:
        return None
    if "%" not in stem:
        return stem
    # Decode runs of %XX as UTF-8 bytes; a lone "%" (legacy file) stays literal.
    out = bytearray()
    for part in re.split(r"(%[0-9A-Fa-f]{2})", stem):
        if _ESCAPE.fullmatch(part):
            out.append(int(part[1:], 16))
        else:
            out += part.encode()
    return out.decode("utf-8", errors="replace")
