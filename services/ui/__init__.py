"""wharf-ui: Harbor's REST API v2.0 (`/api/v2.0`)."""
