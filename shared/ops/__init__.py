"""Operator tooling (the `cdc` command, status, report, backfill follow, requeue). Not in the function archive."""
