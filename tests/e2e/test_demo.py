"""`castghl demo`, the README's first command, runs to success offline."""

from __future__ import annotations

from castghl_app.demo import run_demo


async def test_the_demo_observes_every_step_and_exits_zero():
    """Sent once, delivered; the US number failed; the duplicate sent nothing."""
    lines: list[str] = []
    assert await run_demo(lines.append) == 0
    text = "\n".join(lines)
    assert "GET /oauth/install: 302 to GHL's consent page" in text
    assert "code exchanged at GHL's /oauth/token; Location token stored" in text
    assert "Cast    <- send to=09171234567 sender_id=CASTGHL" in text
    assert "GHL     <- status delivered" in text
    assert "NOT_PHILIPPINE_NUMBER" in text
    assert "castghl -> 200 duplicate" in text
    assert "cast_api_key=cast_test_…" in text
    assert lines[-1].strip().startswith("Demo passed")
