"""The chain benchmark: how close the worker chain gets to keeping one Cloud SQL instance busy.

`python -m bench` (or `make bench`) starts its own local stack (`.stack-bench/`, port base 18100), runs two
scenarios through the whole pipeline (Pub/Sub -> planner -> Firestore -> chained worker -> Admin API
emulator), runs the same exports through the tightest possible loop over the Admin API alone as a
baseline, prints both side by side, breaks the pipeline's dead time down, and stops the stack.
"""
