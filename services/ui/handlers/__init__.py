"""HTTP handlers of `/api/v2.0`: each parses, authorizes, calls one domain function, renders."""
