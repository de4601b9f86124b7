"""Replication's data path: registry names at the destination (`naming`), the listing of a remote
source (`listing`), the copy and deletion of one artifact (`copy`), what a copy reports to
(`progress`). The registry client is `wharf_shared.remote`; the Celery tasks call these."""
