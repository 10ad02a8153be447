"""Cloud Functions entry points: `planner` (ticks topic) and `worker` (work topic).

Thin by design: each hands the CloudEvent to the shared runtime, which parses it, runs the pipeline
and maps project errors to acknowledge / redeliver. The configuration is validated at cold start, so
a bad config fails the instance at once, naming the field.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Deployed, this file is functions/main.py inside the source archive: make the archive root importable.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import functions_framework  # noqa: E402
from cloudevents.http import CloudEvent  # noqa: E402

from shared import runtime  # noqa: E402

runtime.config()


@functions_framework.cloud_event
def planner(cloud_event: CloudEvent) -> None:
    runtime.handle_ticks(cloud_event)


@functions_framework.cloud_event
def worker(cloud_event: CloudEvent) -> None:
    runtime.handle_work(cloud_event)
