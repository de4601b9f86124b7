"""wharf_proxy: the front door (reverse proxy over the service pools)."""
