"""A report as a list of blocks, written both as Markdown and as self-contained HTML.

One structure, two renderings: the Markdown reads well in a terminal or on a forge, and the
HTML embeds its images (base64), so a single file can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: list[str]) -> None:
        self.blocks.append(("bullets", items))

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        self.blocks.append(("table", (header, [[fmt(c) for c in r] for r in rows])))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("image", (Path(path), caption)))

    def to_markdown(self, relative_to: Path) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out += ["#" * level + " " + text, ""]
            elif kind == "paragraph":
                out += [str(value), ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows = value
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("")
            elif kind == "image":
                path, caption = value
                out += [f"![{caption}]({path.relative_to(relative_to)})", "", f"*{caption}*", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                body.append(f"<h{level}>{html.escape(text)}</h{level}>")
            elif kind == "paragraph":
                body.append(f"<p>{_inline(str(value))}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th>{_inline(h)}</th>" for h in header)
                cells = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            elif kind == "image":
                path, caption = value
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        return _PAGE.format(title=html.escape(self.title), body="\n".join(body))

    def write(self, directory: Path, stem: str = "report") -> tuple[Path, Path]:
        from reasonlens.runs import atomic_write

        md, page = directory / f"{stem}.md", directory / f"{stem}.html"
        atomic_write(md, self.to_markdown(directory))
        atomic_write(page, self.to_html())
        return md, page


def fmt(value: object) -> str:
    """Numbers as a reader wants them: rates with 3 decimals, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def num(value: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals, None as a dash."""
    return "–" if value is None else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    """A rate as a percentage with one decimal, None as a dash."""
    return "–" if value is None else f"{100 * value:.1f}%"


def interval(entry: dict | None, digits: int = 3) -> str:
    """``value [low, high]`` from a result's estimate (``value``/``low``/``high``), the value
    alone where it has no interval, a dash where it has no value."""
    if not entry or entry.get("value") is None:
        return "–"
    if entry.get("low") is None:
        return num(entry["value"], digits)
    return (
        f"{num(entry['value'], digits)} [{num(entry['low'], digits)}, {num(entry['high'], digits)}]"
    )


def _inline(text: str) -> str:
    """Escape, then render `code` spans and **bold** the way the Markdown shows them."""
    import re

    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
thead {{ background: #f3f3f3; }}
figure {{ margin: 1rem 0; }} img {{ max-width: 100%; }}
figcaption {{ font-size: 0.85rem; color: #555; }}
code {{ background: #f3f3f3; padding: 0 0.2rem; }}
</style></head>
<body>
{body}
</body></html>
"""
