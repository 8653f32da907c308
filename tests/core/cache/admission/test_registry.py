"""The admission registry builds every built-in policy by name and refuses unknown names."""

import pytest

from core.cache.admission import (
    AdmissionSettings,
    admission_policy_names,
    create_admission_policy,
)
from core.cache.admission.always import AlwaysAdmit
from core.cache.admission.second_hit import SecondHitAdmission
from core.cache.admission.viral import ViralAdmission


@pytest.mark.parametrize(
    ("name", "policy_type"),
    [("always", AlwaysAdmit), ("second-hit", SecondHitAdmission), ("viral", ViralAdmission)],
)
def test_builds_each_policy_by_name(name: str, policy_type: type) -> None:
    policy = create_admission_policy(name, AdmissionSettings())
    assert isinstance(policy, policy_type)
    assert policy.name == name


def test_lists_the_built_in_names() -> None:
    assert admission_policy_names() == ["always", "second-hit", "viral"]


def test_unknown_name_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'lfu'") as refused:
        create_admission_policy("lfu", AdmissionSettings())
    assert "always, second-hit, viral" in str(refused.value)
