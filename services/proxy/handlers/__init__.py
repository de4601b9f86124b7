"""The proxy's request handlers."""
