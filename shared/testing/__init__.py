"""The in-process seam: in-memory state store, fake Admin API, fake clock, failpoints. Not in the function archive."""
