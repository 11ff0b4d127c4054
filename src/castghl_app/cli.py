"""The command line: `castghl serve` runs the service, `castghl demo` shows it."""

from __future__ import annotations

import asyncio
import sys

import click

from castghl_app.logs import configure_logging
from castghl_app.settings import SETTINGS, Settings, SettingsError, settings_markdown


@click.group()
def main() -> None:
    """castghl: Cast.ph as the SMS provider of HighLevel."""


@main.command()
def serve() -> None:
    """Run the service with settings from CASTGHL_* environment variables."""
    from castghl_app.server import StartFailed, serve  # noqa: PLC0415  (fast --help)

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        click.echo(str(error), err=True)
        sys.exit(2)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    try:
        asyncio.run(serve(settings))
    except StartFailed as error:
        click.echo(f"castghl cannot start: {error}", err=True)
        sys.exit(2)


@main.command()
@click.option("--verbose", is_flag=True, help="Also show the service's own logs.")
def demo(*, verbose: bool) -> None:
    """Send HighLevel's sample message through local stand-ins of GHL and Cast."""
    from castghl_app.demo import run_demo  # noqa: PLC0415

    configure_logging("INFO" if verbose else "ERROR", json_lines=False)
    sys.exit(asyncio.run(run_demo(click.echo)))


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's table.")
def list_settings(*, markdown: bool) -> None:
    """List every setting with its default."""
    if markdown:
        click.echo(settings_markdown())
        return
    for setting in SETTINGS:
        default = "(required)" if setting.default is None else repr(setting.default)
        click.echo(f"{setting.env:42} {default:40} {setting.help}")


if __name__ == "__main__":
    # `python -m castghl_app.cli` runs the command line without the installed
    # `castghl` script: test harnesses start replicas this way.
    main()
