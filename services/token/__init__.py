"""The token service: Docker token auth (`/service/token`), scopes resolved against project roles."""
