"""HTTP handlers of `/v2/`: parse, call the domain, render. Errors are raised, never built here."""
