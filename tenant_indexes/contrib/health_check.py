"""A django-health-check backend: tenant index health on your existing health endpoint.

Install the extra (``pip install 'tenant-indexes[health-check]'``) and list the check in
django-health-check's view (v4 API)::

    from health_check.views import HealthCheckView

    urlpatterns = [
        path("ht/", HealthCheckView.as_view(checks=[
            "health_check.checks.Database",
            "tenant_indexes.contrib.health_check.TenantIndexes",
        ])),
    ]

The check shares the cached, bounded catalog pass of the tenant_indexes view
(:func:`tenant_indexes.views.probe_health`), so both together still cost one pass per
``HEALTH_CACHE_SECONDS``. django-health-check pages are often public, so the messages
carry finding ids and counts only, never table or index names.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from django.core.exceptions import ImproperlyConfigured

try:
    from health_check.exceptions import ServiceUnavailable
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImproperlyConfigured(
        "tenant_indexes.contrib.health_check needs django-health-check: "
        "pip install 'tenant-indexes[health-check]'"
    ) from e
try:
    from health_check.base import HealthCheck  # django-health-check 4.x
except ImportError:  # pragma: no cover - 3.24, the last 3.x, the only one for Django 4.2
    from health_check.backends import HealthCheck

from ..views import ProbeResult, probe_health


@dataclasses.dataclass
class TenantIndexes(HealthCheck):
    """Unavailable at the fail level (or could not check); healthy below it.

    The verdict is the tenant_indexes view's, the command's and the system check's for the
    same state and ``TENANT_INDEXES["HEALTH_FAIL_LEVEL"]`` (default ``"error"``): warnings
    below the fail level leave it healthy. django-health-check answers 500 for a
    ``ServiceWarning`` too (3.x unless ``WARNINGS_AS_ERRORS`` is off), so raising one for a
    warning below the fail level would make this endpoint fail where the others pass.
    """

    def run(self) -> None:
        """Raise ``ServiceUnavailable`` when the indexes are unhealthy at the fail level.

        Raises:
            ServiceUnavailable: Unhealthy at the configured fail level, or could not check.
        """
        result = probe_health()
        if not result.healthy:
            raise ServiceUnavailable(_summary(result))

    def check_status(self) -> None:
        """The django-health-check 3.x entry point; the same check as :meth:`run`."""
        self.run()


def _summary(result: ProbeResult) -> str:
    if result.status == "unknown":
        return "tenant indexes could not be checked; run check_tenant_indexes"
    counts = Counter(finding["id"] for finding in result.document.get("findings", []))
    listed = ", ".join(f"{finding_id} x{count}" for finding_id, count in sorted(counts.items()))
    return f"tenant indexes {result.status}: {listed}; run check_tenant_indexes for details"
