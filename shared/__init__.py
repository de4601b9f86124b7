"""Code shared by every Wharf service: settings, SQL, storage, auth, logging, metrics, errors, events."""
