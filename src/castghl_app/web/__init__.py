"""The aiohttp service: webhooks from GHL, the admin API, health checks."""
