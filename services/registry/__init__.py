"""The registry service: the OCI Distribution API (`/v2/`) over SQL metadata and a storage driver."""
