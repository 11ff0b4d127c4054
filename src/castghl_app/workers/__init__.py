"""Background workers started and stopped with the service."""
