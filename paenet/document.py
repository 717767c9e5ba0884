"""A report page as a list of blocks, rendered to Markdown and to HTML with the same content.

Blocks are headings, paragraphs (plain text; `code` spans allowed), tables and images (paths relative to
the page). Text is escaped for each format, so task names and metric keys print as they are.
"""
from __future__ import annotations

import dataclasses
import html
import re


@dataclasses.dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    header: list
    rows: list


@dataclasses.dataclass(frozen=True)
class Image:
    path: str
    alt: str


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks) -> str:
    """The page as GitHub-flavoured Markdown."""
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Table):
            out.append("\n".join(["| " + " | ".join(_md_cell(c) for c in block.header) + " |",
                                  "|" + " --- |" * len(block.header)]
                                 + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]))
        elif isinstance(block, Image):
            out.append(f"![{block.alt}]({block.path})")
        else:
            raise TypeError(f"not a report block: {block!r}")
    return "\n\n".join(out) + "\n"


def _html_text(text: str) -> str:
    """Escaped text with `code` spans as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(str(text)))


def to_html(blocks, title: str) -> str:
    """The page as a standalone HTML document."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_html_text(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_html_text(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_html_text(c)}</th>" for c in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_html_text(c)}</td>" for c in row) + "</tr>"
                           for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Image):
            body.append(f'<p><img src="{html.escape(block.path)}" alt="{html.escape(block.alt)}"></p>')
        else:
            raise TypeError(f"not a report block: {block!r}")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
