"""The library the planner and worker functions share."""
