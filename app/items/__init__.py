"""Items: the example domain. Each item belongs to one user."""
