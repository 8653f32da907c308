"""The "always" policy admits every object, whatever was observed."""

from core.cache.admission import AdmissionSettings, create_admission_policy
from core.cache.admission.always import AlwaysAdmit
from core.cache.objects import classify


def test_admits_everything_even_unseen_objects() -> None:
    policy = create_admission_policy("always", AdmissionSettings())
    assert isinstance(policy, AlwaysAdmit)
    paths = ["/v/a/720p/seg_00007.m4s", "/v/a/master.m3u8", "/favicon.ico"]
    assert all(policy.admit(classify(path), 1000, 0.0) for path in paths)
    policy.observe(classify(paths[0]), 1.0)
    policy.hint_trending(["a"], 1.0)
    assert policy.admit(classify(paths[0]), 1000, 2.0)
