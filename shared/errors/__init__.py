"""One error type per protocol surface: `oci` for `/v2/`, `harbor` for `/api/` (with the ui)."""
