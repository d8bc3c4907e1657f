"""Auth: logging in and the tokens it issues. Who is calling is `app.users.deps`."""
