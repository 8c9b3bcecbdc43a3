"""Suite extension (``settings.extensions: [soc_api.extension]``): what the API needs running inside the suite,
registered through the plug-in contract (soc/plugins.py).

* the source tracker (when each asset last sent an event, events per second) that posture reads;
* the scheduled, signed posture push to the national centre, when ``soc_api.posture.push_url`` is set;
* the scheduled TAXII pulls of the national centre's collections into the indicator store (``soc_api.taxii.pull``);
* threat updates: the indicator feeds, the expiry and decay sweep, sightings back to sources (``soc_api.feeds``).
"""

from __future__ import annotations

from soc_api.feeds import runner as feeds
from soc_api.posture import SourceTracker
from soc_api.posture_push import push_task
from soc_api.settings import api_settings
from soc_api.taxii.client import pull_task


def register(services, registry) -> None:
    settings = api_settings(services)
    tracker = SourceTracker(services.store)
    registry.provide("source_tracker", tracker)
    registry.matcher(tracker)
    if settings.posture.push_url:
        registry.run_in_background(push_task(services))
    for source in settings.taxii.pull:
        registry.run_in_background(pull_task(services, source))
    feeds.register(services, registry, settings.feeds)
