"""Portal page handlers, one module per area; each exports `PAGES`: (path, handler, name) rows."""
