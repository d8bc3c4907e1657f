"""`python -m app`: the service's command line (app/cli.py)."""

from app.cli import cli

if __name__ == "__main__":
    cli(prog_name="python -m app")
