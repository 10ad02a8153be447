"""Cloud Function entry points (thin: decode, call one shared function, map errors to ack/retry)."""
