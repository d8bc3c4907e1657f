"""Users: accounts, who is calling (`CurrentUser`, `SuperUser`), and account administration."""
