"""Auth: logging in, and who the caller is (`CurrentUser`, `SuperUser`)."""
