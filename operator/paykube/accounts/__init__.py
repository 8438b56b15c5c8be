"""Provider accounts: resolving them, their credentials and their webhook routes."""
