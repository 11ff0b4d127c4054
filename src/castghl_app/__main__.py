"""`python -m castghl_app` is the `castghl` command."""

from castghl_app.cli import main

main()
