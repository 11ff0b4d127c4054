"""Small HTML pages for the people who install castghl in a browser."""

from __future__ import annotations

import html
from collections.abc import Sequence

from aiohttp import web

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;"
    "padding:0 1rem;line-height:1.5;color:#1d232a}"
    "h1{font-size:1.5rem}pre{background:#f3f4f6;padding:.75rem;overflow-x:auto}"
)


def html_page(
    status: int,
    title: str,
    paragraphs: Sequence[str],
    *,
    items: Sequence[str] = (),
    more: Sequence[str] = (),
    code: str | None = None,
) -> web.Response:
    """A page of plain text: a title, paragraphs, a list, more text and a snippet.

    Everything is escaped. The page is never cached and sends no referrer:
    the callback's URL carries a one-time code.
    """
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(text)}</p>" for text in paragraphs if text]
    if items:
        parts.append(
            "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
        )
    parts += [f"<p>{html.escape(text)}</p>" for text in more if text]
    if code is not None:
        parts.append(f"<pre>{html.escape(code)}</pre>")
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>castghl: {html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
