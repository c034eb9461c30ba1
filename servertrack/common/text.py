"""Text from elsewhere made safe to show on a terminal or to send: pure functions, no I/O.

A string that came from another machine (a process name, a hostname, an API's
error message) may hold characters that a terminal acts on instead of showing:
ESC starts a control sequence (clear the screen, set the window title, ...),
CR and LF move the cursor, U+202E turns the rest of the line around.
``escape_unprintable`` replaces every character ``str.isprintable`` refuses by
a visible escape in Python's own spelling (``\\x1b``, ``\\u202e``,
``\\U000e0001``), so the text is shown, never obeyed. A backslash already in
the text is left as it is: the result is for reading, not for decoding back.
"""

from __future__ import annotations


def _escape(char: str) -> str:
    """The visible escape of one character: ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _shown(char: str) -> str:
    """``char`` itself if printable, else its escape."""
    return char if char.isprintable() else _escape(char)


def escape_unprintable(text: str) -> str:
    """``text`` with every non-printable character (``not c.isprintable()``) replaced by its escape.

    Non-printable are the C0 controls (NUL, TAB, LF, CR, ESC, ...), DEL, the C1
    controls (0x80-0x9F), format characters such as U+202E, line and paragraph
    separators, whitespace other than the space (no-break spaces included),
    surrogates, private-use and unassigned code points. Printable text is returned as it is (the same object); the result
    is always printable, and escaping it again changes nothing.
    """
    if text.isprintable():
        return text
    return "".join([_shown(char) for char in text])


def escape_and_cut(text: str, max_bytes: int) -> str:
    """``escape_unprintable(text)`` cut to at most ``max_bytes`` bytes of UTF-8.

    The cut falls between two characters of ``text``: neither a multi-byte
    character nor an escape is ever split, so the result stays printable
    (an escape that would not fit whole is left out). Printable text is only
    checked and sliced; otherwise the character-by-character walk stops at the
    bound, however long ``text`` is.
    """
    if max_bytes <= 0:
        return ""
    if text.isprintable():  # nothing to escape: a cut on a character boundary is all it takes
        if text.isascii():
            return text if len(text) <= max_bytes else text[:max_bytes]
        encoded = text.encode("utf-8")
        return text if len(encoded) <= max_bytes else encoded[:max_bytes].decode("utf-8", "ignore")
    pieces: list[str] = []
    size = 0
    for char in text:
        piece = _shown(char)
        piece_size = len(piece) if piece.isascii() else len(piece.encode("utf-8"))
        if size + piece_size > max_bytes:
            break
        pieces.append(piece)
        size += piece_size
    return "".join(pieces)


def ascii_escaped(text: str, max_chars: int) -> str:
    """The first ``max_chars`` characters of ``text`` as ASCII, anything else as a Python escape
    (``\\n``, ``\\x00``, ``\\u202e``): a client's value quoted in an error message."""
    return text[:max_chars].encode("unicode_escape").decode("ascii")
