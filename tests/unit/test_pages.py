"""The install pages: escaped, never cached, no referrer."""

from __future__ import annotations

from castghl_app.web.pages import html_page


def test_everything_on_a_page_is_escaped():
    """Text from GHL (an error message) cannot inject markup."""
    response = html_page(
        502, "<b>t</b>", ["<script>x</script>"], items=["<i>"], code="a & b"
    )

    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "&lt;b&gt;t&lt;/b&gt;" in response.text
    assert "a &amp; b" in response.text
    assert response.status == 502


def test_pages_are_never_cached_and_send_no_referrer():
    """The callback URL carries a one-time code: keep it out of caches and links."""
    response = html_page(200, "ok", ["fine"])

    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.content_type == "text/html"
