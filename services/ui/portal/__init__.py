"""The web portal: server-rendered pages over the same domain code and permission table as the API."""
