"""The CMDB ownership sync: project ownership read from a CMDB's JSON (`source`), planned and
applied against the database (`plan`), one run at a time from the ui's endpoint or the job
service's schedule (`sync`). It creates projects and adds owners and teams as members; it never
removes or downgrades anything unless `cmdb_remove_members` says so, and then only what it granted
itself (`cmdb_grant`)."""
