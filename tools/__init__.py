"""Developer tooling: not part of the service, never imported by `app`."""
