"""The report as a list of blocks, rendered twice: ``report.md`` and a self-contained HTML.

Building one document and rendering it in two formats keeps the two files' content the
same by construction. Images are PNG files beside report.md; the HTML embeds them as
base64 data URIs so it opens anywhere on its own.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Image:
    path: Path  # relative to the report folder
    caption: str
    zoom: int = 1  # the HTML shows image grids of 28-pixel digits enlarged, pixels kept sharp


Block = Heading | Para | Bullets | Table | Image


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


def anchor(text: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation dropped, spaces to hyphens.

    The HTML gives its headings the same ids, so one contents list works in both files.
    """
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def anchors(doc: Document) -> list[str]:
    """Each heading's id, in order, deduplicated as GitHub does: a heading text seen before
    gets ``-1``, ``-2``... (every group has its "Plots"), so an id names one heading."""
    seen: dict[str, int] = {}
    out = []
    for b in doc.blocks:
        if isinstance(b, Heading):
            base = anchor(b.text)
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.append(base if n == 0 else f"{base}-{n}")
    return out


def contents(doc: Document, level: int = 2) -> Bullets:
    """Links to the document's headings of ``level``."""
    heads = [b for b in doc.blocks if isinstance(b, Heading)]
    return Bullets(tuple(f"[{b.text}](#{a})" for b, a in zip(heads, anchors(doc), strict=True)
                         if b.level == level))


# -- markdown ---------------------------------------------------------------------------
_OWN_LINK = re.compile(r"\[([^\[\]<>`]+)\]\((#[\w-]+)\)")  # the contents' [heading](#anchor)


def _md_text(text: str) -> str:
    """Markdown outside code spans, with every stored string's HTML made inert.

    Angle brackets become entities (no raw ``<script>`` or ``<img onerror>``); brackets
    are escaped except in the report's own ``[text](#anchor)`` links (no ``javascript:``
    link from a stored string).
    """
    keep: list[str] = []

    def hold(m: re.Match[str]) -> str:
        keep.append(f"[{_md_text(m.group(1))}]({m.group(2)})")
        return f"\x00{len(keep) - 1}\x00"

    text = _OWN_LINK.sub(hold, text.replace("\x00", ""))
    text = (text.replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("[", "\\[").replace("]", "\\]"))
    return re.sub("\x00(\\d+)\x00", lambda m: keep[int(m.group(1))], text)


def md_inline(text: str) -> str:
    """``text`` as safe Markdown: the report's `code`, **bold** and links kept, stored strings
    escaped as the HTML escapes them (a backtick in a stored string cannot open raw HTML).

    Code spans are rebuilt so Markdown pairs the backticks as :func:`_inline` does: a lone
    trailing backtick is escaped, and two spans never touch (a double backtick would pair
    differently). A span holding ``<`` or ``>`` becomes escaped plain text, so report.md
    holds no raw angle bracket that a lax renderer could read as HTML.
    """
    parts = text.split("`")
    tail = parts.pop() if len(parts) % 2 == 0 else None  # after a lone backtick: plain text
    out = []
    for i, part in enumerate(parts):
        if i % 2 and ("<" in part or ">" in part):  # shown as escaped text: no raw `<` at all
            out.append(_md_text(part))
        elif i % 2:
            out.append(f"`{part}`" if part.strip() else "` `")
        else:
            out.append(_md_text(part) if part or i in (0, len(parts) - 1) else " ")
    if tail is not None:
        out.append("\\`" + _md_text(tail))
    return "".join(out)


def _md_cell(cell: Cell) -> str:
    text = md_inline(cell.text).replace("|", "\\|")
    return f"**{text}**" if cell.best and text else text


def _md_table(table: Table) -> str:
    lines = []
    if table.caption:
        lines += [f"*{md_inline(table.caption)}*", ""]
    lines.append("| " + " | ".join(md_inline(c).replace("|", "\\|") for c in table.columns) + " |")
    lines.append("|" + "|".join(" --- " for _ in table.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + md_inline(b.text))
        elif isinstance(b, Para):
            out.append(md_inline(b.text))
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {md_inline(item)}" for item in b.items))
        elif isinstance(b, Table):
            out.append(_md_table(b))
        elif isinstance(b, Image):
            from urllib.parse import quote

            out.append(f"![{_md_text(b.path.stem)}]({quote(b.path.as_posix())})\n\n"
                       f"*{md_inline(b.caption)}*")
    return "\n\n".join(out) + "\n"


# -- html -------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
div.scroll{overflow-x:auto;max-width:100%} div.scroll table{margin-bottom:.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f2f2f2} td.best{font-weight:bold;background:#e8f5e9}
p.cap{font-style:italic;margin:.8em 0 .2em}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555;max-width:520px}
code{background:#f4f4f4;padding:0 .2em}
"""


def _inline(text: str) -> str:
    """Escape, then the markdown inlines the report uses: `code`, **bold** and [text](#anchor)."""
    parts = html.escape(text).split("`")
    out = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    bold = out.split("**")
    out = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(bold))
    return re.sub(r"\[([^\]]+)\]\((#[^)\s]+)\)", r'<a href="\2">\1</a>', out)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=best" if c.best else ""}>{_inline(c.text)}</td>' for c in row)
        + "</tr>" for row in table.rows)
    cap = f'<p class="cap">{_inline(table.caption)}</p>' if table.caption else ""
    # a wide table scrolls inside its own box instead of running off the page
    return (f'{cap}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_image(b: Image, root: Path) -> str:
    from PIL import Image as PILImage

    width = PILImage.open(root / b.path).size[0] * b.zoom
    return (f'<figure><img src="{_data_uri(root / b.path)}" alt="{html.escape(b.caption)}" '
            f'style="width:{width}px"><figcaption>{_inline(b.caption)}</figcaption></figure>')


def to_html(doc: Document, root: Path) -> str:
    """Self-contained HTML; ``root`` is the folder image paths are relative to."""
    out = [f"<h1>{html.escape(doc.title)}</h1>"]
    ids = iter(anchors(doc))
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append(f'<h{b.level} id="{next(ids)}">{_inline(b.text)}</h{b.level}>')
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            out.append(_html_table(b))
        elif isinstance(b, Image):
            out.append(_html_image(b, root))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(out) + "</body></html>\n")
