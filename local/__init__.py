"""Local stack: emulators, PostgreSQL, the Cloud SQL Admin API emulator, demo."""
