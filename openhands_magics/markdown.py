"""The agent's answer as readable HTML: its Markdown (headings, lists, code, tables, links) rendered safely.

Agents answer in Markdown; shown raw, a card is full of ``##``, backticks and ``- `` bullets. The answer is server
text, written by a model that read the repository (and so, possibly, by whoever wrote that repository), so the
rendering must not let it draw anything but text: raw HTML in it is shown as text, never passed through; links keep
only safe schemes (``http``, ``https``, ``mailto``, relative) and open in a new tab with ``rel="noopener
noreferrer"``; images are shown as links (a remote image would be fetched by the browser the moment the card draws:
a tracker); control characters are written out.

The renderer is markdown-it-py (CommonMark, the Markdown Jupyter itself follows; tables and strike-through on), a
well-kept pure-Python library, imported on first use: the magic's load stays light. Where it is not installed the
answer shows as escaped text with its line breaks, as before.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

from .validation import written_out

__all__ = ["render_markdown"]

_SAFE_LINK = re.compile(r"^(?:https?:|mailto:|#|/|\.{0,2}/|[^:/?#]*(?:[/?#]|$))", re.I)


@lru_cache(maxsize=1)
def _renderer() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = lambda url: bool(_SAFE_LINK.match(url.strip()))  # type: ignore[method-assign]

    def link_open(renderer: Any, tokens: Any, index: int, options: Any, env: Any) -> str:
        token = tokens[index]
        token.attrSet("target", "_blank")
        token.attrSet("rel", "noopener noreferrer")
        return str(renderer.renderToken(tokens, index, options, env))

    def image(renderer: Any, tokens: Any, index: int, options: Any, env: Any) -> str:
        token = tokens[index]
        source = html.escape(str(token.attrGet("src") or ""), quote=True)
        label = html.escape(token.content or "image")
        return f'<a href="{source}" target="_blank" rel="noopener noreferrer">[image: {label}]</a>'

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("image", image)
    return md


def render_markdown(text: str) -> str:
    """Safe HTML for Markdown ``text`` (see the module's docstring); escaped text with its line breaks when
    markdown-it-py is missing."""
    text = written_out(text.replace("\r\n", "\n").replace("\r", "\n"))
    try:
        md = _renderer()
    except ImportError:
        return html.escape(text).replace("\n", "<br>")
    return str(md.render(text))


def split_blocks(text: str, max_lines: int, max_chars: int) -> tuple[str, str]:
    """``text`` cut between two top-level Markdown blocks (never inside a code block, a list or a table): the
    first blocks that fit in ``max_lines`` lines and ``max_chars`` characters (at least one), and the rest ("" when
    everything fits). Without markdown-it-py, cut at a line."""
    lines = text.split("\n")
    try:
        tokens = _renderer().parse(text)
    except ImportError:
        ends = list(range(1, len(lines) + 1))
    else:
        ends = [t.map[1] for t in tokens if t.level == 0 and t.map]  # (a block's opening token, or a whole leaf)
    cut = 0
    for end in sorted(set(ends)):
        size = len("\n".join(lines[:end]))
        if cut and (end > max_lines or size > max_chars):
            break
        cut = end
        if end >= max_lines or size >= max_chars:
            break
    head, tail = "\n".join(lines[:cut]).rstrip(), "\n".join(lines[cut:]).strip("\n")
    return head, tail
