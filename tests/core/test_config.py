"""The configuration schema: defaults, validation messages that name the key, TOML round trip."""

import dataclasses
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.cache.admission import admission_policy_names
from core.cache.eviction import eviction_policy_names
from core.config import (
    CacheNodeConfig,
    ConfigError,
    ShoalConfig,
    dump_config,
    load_config,
    nest_override,
    parse_override,
)


def test_empty_document_is_the_defaults() -> None:
    config = load_config({})
    assert config == ShoalConfig()
    assert config.store.backend == "fs"
    assert config.edge.upstreams == ["http://127.0.0.1:8090"]
    assert config.regional.upstreams == ["http://127.0.0.1:8000"]
    assert config.up.edges == 2


@pytest.mark.parametrize(
    ("document", "key", "message"),
    [
        ({"edge": {"prot": 1}}, "edge.prot", "unknown key in [edge]"),
        ({"stor": {}}, "stor", "unknown key in the top level"),
        ({"store": {"s3": {"bukket": "x"}}}, "store.s3.bukket", "unknown key in [store.s3]"),
        ({"edge": {"port": "80"}}, "edge.port", "expected integer, got string"),
        ({"edge": {"port": True}}, "edge.port", "expected integer, got boolean"),
        ({"edge": {"port": 1.5}}, "edge.port", "expected integer, got number"),
        ({"edge": {"upstreams": "http://a"}}, "edge.upstreams", "expected list of strings"),
        ({"edge": {"upstreams": [1]}}, "edge.upstreams", "expected list of strings"),
        ({"edge": {"upstreams": []}}, "edge.upstreams", "at least one upstream"),
        ({"edge": {"upstreams": ["ftp://a"]}}, "edge.upstreams", "http:// or https://"),
        ({"store": {"backend": "nfs"}}, "store.backend", "expected one of 'fs', 's3'"),
        ({"store": {"s3": 3}}, "store.s3", "expected a table [store.s3]"),
        ({"store": {"s3": {"create_bucket": "yes"}}}, "store.s3.create_bucket", "boolean"),
        ({"origin": {"port": 70000}}, "origin.port", "<= 65535"),
        ({"origin": {"port": -1}}, "origin.port", ">= 0"),
        ({"edge": {"connect_timeout": 0}}, "edge.connect_timeout", ">= 0.001"),
        ({"log": {"level": "loud"}}, "log.level", "expected one of"),
    ],
)
def test_invalid_documents_name_the_key(
    document: dict[str, object], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(document)
    assert raised.value.key == key
    assert str(raised.value).startswith(f"{key}: ")
    assert message in str(raised.value)


def test_integers_are_accepted_as_numbers() -> None:
    config = load_config({"edge": {"connect_timeout": 3}})
    assert config.edge.connect_timeout == 3.0
    assert isinstance(config.edge.connect_timeout, float)


def test_documents_layer_over_a_base() -> None:
    base = load_config({"edge": {"port": 9000}})
    config = load_config({"edge": {"host": "0.0.0.0"}}, base=base)
    assert (config.edge.host, config.edge.port) == ("0.0.0.0", 9000)


def test_overrides_split_and_nest() -> None:
    path, raw = parse_override(" store.s3.bucket = videos ")
    assert (path, raw) == (["store", "s3", "bucket"], "videos")
    assert nest_override(path, "videos") == {"store": {"s3": {"bucket": "videos"}}}
    for bad in ("edge.port", "=3", "edge..port=3"):
        with pytest.raises(ConfigError):
            parse_override(bad)


def test_dump_round_trips_the_defaults_with_help() -> None:
    text = dump_config(ShoalConfig(), with_help=True)
    assert "# TCP port to listen on (0 picks a free one)" in text
    assert load_config(tomllib.loads(text)) == ShoalConfig()


_names = st.text(st.characters(codec="utf-8"), max_size=30)


@given(
    bucket=_names,
    endpoint=_names,
    port=st.integers(0, 65535),
    timeout=st.floats(0.001, 1e6, allow_nan=False),
    upstreams=st.lists(_names.map(lambda s: "http://" + s), min_size=1, max_size=3, unique=True),
    create=st.booleans(),
)
def test_dump_round_trips_any_valid_config(
    bucket: str, endpoint: str, port: int, timeout: float, upstreams: list[str], create: bool
) -> None:
    config = load_config(
        {
            "store": {"s3": {"bucket": bucket, "endpoint_url": endpoint, "create_bucket": create}},
            "edge": {"port": port, "upstream_timeout": timeout, "upstreams": upstreams},
        }
    )
    assert load_config(tomllib.loads(dump_config(config))) == config


def test_duplicate_upstreams_are_refused() -> None:
    with pytest.raises(ConfigError, match="expected distinct URLs, got duplicates"):
        load_config({"edge": {"upstreams": ["http://a", "http://a"]}})


def test_policy_choices_match_the_registries() -> None:
    fields = {f.name: f for f in dataclasses.fields(CacheNodeConfig)}
    assert sorted(fields["eviction"].metadata["choices"]) == eviction_policy_names()
    assert sorted(fields["admission"].metadata["choices"]) == admission_policy_names()


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"edge": {"require_signed": True}}, "edge.require_signed"),
        ({"regional": {"signing_keys": ["k", ""]}}, "regional.signing_keys"),
        ({"origin": {"signing_keys": [""]}}, "origin.signing_keys"),
    ],
)
def test_signed_url_settings_are_checked(document: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(document)
    assert load_config({"edge": {"require_signed": True, "signing_keys": ["new", "old"]}})
