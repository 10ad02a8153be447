"""The application: planner, chain, recovery, lease policy and the Pub/Sub handlers."""
