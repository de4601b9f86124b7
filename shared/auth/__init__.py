"""Authentication backends: who a username and password belong to."""
