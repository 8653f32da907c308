"""The "always" policy: store every fetched object; the eviction policy alone decides what stays.

The baseline the other policies are measured against, and the right choice when the cache is
large compared with the working set.
"""

from core.cache.admission import AdmissionPolicy, AdmissionSettings, register_admission_policy
from core.cache.objects import ObjectRef


class AlwaysAdmit(AdmissionPolicy):
    name = "always"

    def observe(self, ref: ObjectRef, now: float) -> None:
        """Popularity is not tracked: every object is admitted anyway."""

    def admit(self, ref: ObjectRef, size: int, now: float) -> bool:
        return True


def _create(settings: AdmissionSettings) -> AdmissionPolicy:
    return AlwaysAdmit()


register_admission_policy(AlwaysAdmit.name, _create)
