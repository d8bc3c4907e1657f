"""What every feature shares. Imports no feature (checked by import-linter)."""
