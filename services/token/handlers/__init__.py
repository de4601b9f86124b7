"""HTTP handlers of `/service/token`."""
