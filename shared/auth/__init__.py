"""Authentication: backends that check credentials, login throttling, the credentials cache."""
