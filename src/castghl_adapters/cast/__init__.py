"""The Cast.ph SMS gateway adapter."""

from __future__ import annotations

from castghl_adapters.cast.client import CastHttpGateway

__all__ = ["CastHttpGateway"]
