"""Strings that a user or a file supplied, made safe for where they are shown.

Run titles, file names, folder names and class names from a checkpoint are data, never markup: a
title ``![t](http://evil.example.com/x.png)`` must not make another visitor's browser fetch an image,
a title ``=HYPERLINK(...)`` must not become a spreadsheet formula, and ``\\x1b]0;...`` must not
reach a terminal. One function per destination, so that every page and command uses the same rule.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Only what can start markup is escaped, so that a sentence still reads (and still matches what
# tests and users search for): link and image brackets, HTML's "<", code, emphasis, tables,
# strikethrough, math, headings; "_" only where it can open emphasis (never inside a word, where
# GFM leaves it alone); list markers only at the start. Streamlit's ":red[...]" directives need "[".
_MD_ANYWHERE = re.compile(r"([\\`*\[\]<>|~$#])|(?<!\w)_|_(?!\w)")
_MD_START = re.compile(r"^(\s*(?:\d+)?)([-+=.)])")  # "- x", "+ x", "1. x", "1) x" open lists
# GFM autolinks bare URLs and e-mail addresses in the text *after* escapes are undone, so escaping
# cannot stop them: a zero-width space after the scheme, "www" or "@" breaks the pattern.
_AUTOLINK = re.compile(r"(?i)(?:https?|ftp|mailto|xmpp)(?=:)|\bwww(?=\.)|@(?=\w)")
_ZWSP = "\u200b"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Bidi overrides and zero-width characters make a shown name differ from the real one.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def one_line(text: object) -> str:
    """``text`` as one printable line: control and invisible characters become spaces or go."""
    s = _CONTROL.sub(" ", str(text)).translate(_INVISIBLE)
    return "".join(c for c in s if unicodedata.category(c) != "Cs")  # lone surrogates cannot be printed


def markdown_text(text: object) -> str:
    """``text`` escaped so that Streamlit's markdown (captions, errors, labels) shows it literally:
    no link, image, HTML, code, emphasis or heading can come out of it."""
    s = _AUTOLINK.sub(lambda m: m.group(0) + _ZWSP, one_line(text))
    s = _MD_ANYWHERE.sub(lambda m: "\\" + m.group(0), s)
    return _MD_START.sub(lambda m: m.group(1) + "\\" + m.group(2), s, count=1)


def plot_text(text: object) -> str:
    """``text`` for a plotly label (legend, axis category, hover): its ``<a href>`` and ``<b>`` tags
    are markup, so ``<``, ``>`` and ``&`` become entities, which plotly shows as the characters."""
    return html.escape(one_line(text), quote=False)


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet will not run: text starting with ``= + - @`` gets a leading ``'``.

    Numbers stay numbers (a negative value is data, not a formula); only strings are changed.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
