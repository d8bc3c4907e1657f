"""Contract run: schemathesis against the real server (see run.py). Not collected by pytest."""
