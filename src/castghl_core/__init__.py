"""castghl's core: the domain, its ports and use cases. Imports no I/O library."""
