"""The application: planner, chain, recovery, bookkeeping, verification, lease and breaker policy, and the ports."""
