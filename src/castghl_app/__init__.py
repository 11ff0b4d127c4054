"""The composition root and entry points: settings, container, web, workers."""
