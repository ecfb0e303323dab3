"""Tests of :mod:`verifier._settings`: ``.env`` precedence, validation, secrets.

The ``.env`` format itself is tested in ``test_dotenv.py`` and the ``MONGODB_URI`` parser in
``test_mongodb_uri.py``; here, only what the settings make of them.

Every validation test checks the *variable* the error names, because the operator's fix
starts there; every secret test checks the value appears nowhere (repr, str, describe, error
message, formatted traceback).
"""

from __future__ import annotations

import base64
import dataclasses
import traceback
from pathlib import Path

import pytest

from verifier import (
    TIMING_VARIABLES,
    ConfigurationError,
    EncoderIdentity,
    Policy,
    Settings,
    TierSet,
    TimingModel,
)
from verifier._settings import DEFAULT_DATABASE_NAME, DEFAULT_MONITOR_BASE_URL, KNOWN_VARIABLES

KEY = base64.b64encode(bytes(range(1, 33))).decode("ascii")
KEY_DID = EncoderIdentity.from_private_key(KEY).did
OTHER_DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
MONGO_PASSWORD = "hunter2-s3cret"
MONGO_URI = f"mongodb://encoder:{MONGO_PASSWORD}@db1.example:27017,db2.example/jobs?authSource=admin"
#: A community node that passes every check of the hardened chain.
COMMUNITY = {"GATEWAY_MONITOR_ENABLED": "true"}


def load(env: dict[str, str] | None = None, **kw: bool) -> Settings:
    return Settings.from_env({**COMMUNITY, **(env or {})}, dotenv=None, **kw)


def config_error(env: dict[str, str], **kw: bool) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env, dotenv=None, **kw)
    return info.value


def assert_absent(secret: str, *texts: object) -> None:
    for text in texts:
        assert secret not in str(text)


def assert_error_clean(exc: BaseException, secret: str) -> None:
    formatted = "".join(traceback.format_exception(exc))
    assert_absent(secret, exc, repr(exc), exc.args, formatted)


# --------------------------------------------------------------------------- .env


@pytest.mark.parametrize("line", ["NO_EQUALS_SIGN", 'ENCODER_PRIVATE_KEY="unterminated'])
def test_malformed_dotenv_line_stops_start_up_naming_file_and_line(
    tmp_path: Path, line: str
) -> None:
    path = tmp_path / "settings.env"
    path.write_text(f"# header\nGATEWAY_MONITOR_ENABLED=true\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"GATEWAY_MONITOR_ENABLED": "true"}, dotenv=path)
    assert info.value.variable == f"{path}:3"
    assert_error_clean(info.value, line.partition("=")[2] or line)


def test_dotenv_is_read_and_environment_overrides_it(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(
        "GATEWAY_MONITOR_ENABLED=true\n"
        "GATEWAY_MONITOR_BASE_URL=https://from-file.example/api\n"
        "DATABASE_NAME=encoder_jobs\n",
        encoding="utf-8",
    )
    from_file = Settings.from_env({}, dotenv=path)
    assert from_file.monitor_base_url == "https://from-file.example/api"
    assert from_file.database_name == "encoder_jobs"

    overridden = Settings.from_env(
        {"GATEWAY_MONITOR_BASE_URL": "https://from-env.example/api/"}, dotenv=path
    )
    assert overridden.monitor_base_url == "https://from-env.example/api"  # trailing / dropped
    assert overridden.database_name == "encoder_jobs"  # not overridden: the file's value


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_variable_set_but_empty_over_the_files_value_is_refused(
        tmp_path: Path, blank: str) -> None:
    """docker compose's ``X=${X}`` with X unset on the host, or systemd's ``Environment=X=``:
    empty overrode the file, and empty read as the default, so T and ε went back to 60 s and
    1 s without a word while .env said otherwise (an adversarial review, 2026-12-05: 30 s and
    2 s, a lease of 55 s against a gateway reassigning after 30)."""
    path = tmp_path / ".env"
    path.write_text("GATEWAY_MONITOR_ENABLED=true\n"
                    "VERIFIER_REASSIGN_TIMEOUT_S=90\nVERIFIER_CLOCK_DRIFT_S=2\n",
                    encoding="utf-8")
    assert Settings.from_env({}, dotenv=path).timing.reassign_timeout == 90.0
    with pytest.raises(ConfigurationError, match="set but empty") as info:
        Settings.from_env({"VERIFIER_REASSIGN_TIMEOUT_S": blank}, dotenv=path)
    assert "VERIFIER_REASSIGN_TIMEOUT_S" in str(info.value)
    with pytest.raises(ConfigurationError, match="set but empty"):
        Settings.from_env({"GATEWAY_MONITOR_ENABLED": blank}, dotenv=path)
    # Another program's flag in a shared .env is not ours to judge (a review, the same day).
    path.write_text("GATEWAY_MONITOR_ENABLED=true\nDASHBOARD_ENABLED=true\n", encoding="utf-8")
    assert Settings.from_env({"DASHBOARD_ENABLED": blank}, dotenv=path).monitor_enabled
    path.write_text("GATEWAY_MONITOR_ENABLED=true\n"
                    "VERIFIER_REASSIGN_TIMEOUT_S=90\nVERIFIER_CLOCK_DRIFT_S=2\n",
                    encoding="utf-8")
    # Empty where the file says nothing is still "not set".
    assert Settings.from_env({"VERIFIER_PAUSE_S": blank}, dotenv=path).timing.pause == 2.0
    # An empty URI still blanks the file's out (sim serve does so for a production .env's).
    path.write_text("GATEWAY_MONITOR_ENABLED=true\nMONGODB_URI=mongodb://db.example/spk\n",
                    encoding="utf-8")
    assert Settings.from_env({"MONGODB_URI": blank}, dotenv=path).mongodb_uri in (None, "")


def test_default_dotenv_is_dot_env_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GATEWAY_MONITOR_ENABLED=yes\n", encoding="utf-8")
    assert Settings.from_env({}).monitor_enabled is True


def test_missing_dotenv_is_no_configuration_and_none_skips_the_file(tmp_path: Path) -> None:
    assert Settings.from_env(COMMUNITY, dotenv=tmp_path / "absent.env").monitor_enabled
    path = tmp_path / ".env"
    path.write_text("GATEWAY_MONITOR_ENABLED=maybe\n", encoding="utf-8")
    assert Settings.from_env(COMMUNITY, dotenv=None).monitor_enabled  # the bad file is not read


def test_unreadable_dotenv_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"GATEWAY_MONITOR_ENABLED=\xff\xfe\n")
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({}, dotenv=path)
    assert info.value.variable == str(path)
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({}, dotenv=tmp_path)  # a directory
    assert info.value.variable == str(tmp_path)


@pytest.mark.parametrize("name", ["GATEWAY_MONITR_ENABLED", "ENCODER_DIDD", "MONGODB_URL",
                                  "DATABASE_NAMES", "VERIFIER_RECHECK_INTERVAL"])
def test_a_misspelt_setting_in_dotenv_is_named_by_line(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A misspelt setting in a ``.env`` was silently ignored, leaving GATEWAY_MONITR_ENABLED's
    monitor off (operator review). Now named by file and line: refused for a VERIFIER_* name
    (as in the environment), a warning for the others (the encoder's own .env has names of its
    own). The environment is shared with other programs: its near misses are only warned
    about (see test_near_misses_in_the_environment_are_warned_about_only)."""
    path = tmp_path / ".env"
    path.write_text(f"GATEWAY_MONITOR_ENABLED=true\n{name}={KEY}\n", encoding="utf-8")
    if name.startswith("VERIFIER_"):
        with pytest.raises(ConfigurationError) as info:
            Settings.from_env({}, dotenv=path)
        assert info.value.variable == f"{path}:2" and name in str(info.value)
        assert_error_clean(info.value, KEY)
        return
    assert Settings.from_env({}, dotenv=path).monitor_enabled
    assert f"{path}:2: {name} is not a setting" in caplog.text and KEY not in caplog.text
    caplog.clear()
    assert load({name: "true"}).monitor_enabled
    assert f"ENV_UNKNOWN_NAME: {name} is not a setting" in caplog.text


@pytest.mark.parametrize(("name", "meant"), [
    ("VERIFER_RECHECK_INTERVAL_S", "VERIFIER_RECHECK_INTERVAL_S"),
    ("verifier_chain", "VERIFIER_CHAIN"),
    ("Gateway_Monitor_Enabled", "GATEWAY_MONITOR_ENABLED"),
])
def test_a_near_miss_of_a_setting_in_dotenv_is_refused_whatever_its_first_word(
    tmp_path: Path, name: str, meant: str
) -> None:
    """Only names sharing a setting's first word were checked: VERIFER_..., verifier_chain
    were silently ignored, the default left in force (adversarial review)."""
    path = tmp_path / ".env"
    path.write_text(f"GATEWAY_MONITOR_ENABLED=true\n{name}={KEY}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({}, dotenv=path)
    assert info.value.variable == f"{path}:2" and f"did you mean {meant}?" in str(info.value)
    assert_error_clean(info.value, KEY)


def test_a_near_miss_of_another_family_in_dotenv_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / ".env"
    path.write_text("GATEWAY_MONITOR_ENABLED=true\nGATWAY_AID_ENABLED=true\n", encoding="utf-8")
    assert not Settings.from_env({}, dotenv=path).aid_enabled
    assert f"{path}:2: GATWAY_AID_ENABLED is not a setting of this verifier: did you mean " \
        "GATEWAY_AID_ENABLED?" in caplog.text


#: The environment of an encoder's process as found in a container (sim serve's, plus the
#: usual suspects): none of these may be taken for a setting.
REALISTIC_ENVIRONMENT = dict.fromkeys([
    "PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "USER", "LOGNAME", "SHELL", "TERM", "PWD",
    "OLDPWD", "HOSTNAME", "TZ", "TMPDIR", "SHLVL", "_", "PYTHONPATH", "PYTHONUNBUFFERED",
    "VIRTUAL_ENV", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_ENV",
    "NODE_OPTIONS", "NODE_EXTRA_CA_CERTS", "DATABASE_URL", "DOCKER_HOST", "CONTAINER_NAME",
    "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "ENCODER_PUBLIC_KEY", "HIVE_USERNAME",
    "IPFS_API_ADDR", "GATEWAY_AID_PRIMARY", "DEBIAN_FRONTEND", "PIP_INDEX_URL", "LOG_LEVEL",
    "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK", "CI", "SPK_JOB_ID", "SPK_SCRATCH_DIR",
], "x")


def test_near_misses_in_the_environment_are_warned_about_only(
    caplog: pytest.LogCaptureFixture
) -> None:
    """In the process environment a near miss of a setting, whatever its first word and case,
    is a warning: the environment holds every other program's variables too."""
    settings = load({**REALISTIC_ENVIRONMENT, "verifier_chain": "documented",
                     "GATWAY_AID_ENABLED": "true"})
    assert settings.chain == "hardened" and not settings.aid_enabled
    warnings = [m for m in caplog.messages if m.startswith("ENV_UNKNOWN_NAME")]
    assert warnings == [
        "ENV_UNKNOWN_NAME: GATWAY_AID_ENABLED is not a setting of this verifier: did you mean "
        "GATEWAY_AID_ENABLED? (ignored)",
        "ENV_UNKNOWN_NAME: verifier_chain is not a setting of this verifier: did you mean "
        "VERIFIER_CHAIN? (names are case-sensitive) (ignored)",
    ]
    caplog.clear()
    assert load(REALISTIC_ENVIRONMENT).monitor_enabled and caplog.text == ""


# --------------------------------------------------------------------------- values and defaults


def test_defaults_for_a_community_node() -> None:
    settings = load()
    assert settings.monitor_enabled is True
    assert settings.monitor_base_url == DEFAULT_MONITOR_BASE_URL
    assert settings.mongodb_enabled is False and settings.mongodb_uri is None
    assert settings.database_name == DEFAULT_DATABASE_NAME == "spk-encoder-gateway"
    assert settings.gateway_url is None and settings.aid_enabled is False
    assert settings.encoder_private_key is None and settings.encoder_did is None
    assert settings.chain == "hardened"
    assert settings.timing == TimingModel()
    # The cost features: the pre-claim cache and backoff on, push off (the real monitor has
    # no WebSocket).
    assert settings.policy() == dataclasses.replace(Policy.hardened(), status_cache_s=30.0,
                                                    backoff=True)
    assert settings.push is False
    assert settings.tier_set() == TierSet(monitor=True, gateway=False)


def test_the_cost_features_are_settings_and_push_needs_the_monitor() -> None:
    settings = load({"VERIFIER_STATUS_CACHE_S": "0", "VERIFIER_BACKOFF": "no",
                     "VERIFIER_PUSH": "yes"})
    assert settings.policy().status_cache_s == 0 and settings.policy().backoff is False
    assert settings.push is True
    described = settings.describe()
    assert (described["VERIFIER_STATUS_CACHE_S"], described["VERIFIER_BACKOFF"],
            described["VERIFIER_PUSH"]) == ("0", "false", "true")
    for variable, value in (("VERIFIER_STATUS_CACHE_S", "-1"), ("VERIFIER_BACKOFF", "maybe")):
        assert config_error({**COMMUNITY, variable: value}).variable == variable
    assert config_error({**COMMUNITY, "GATEWAY_MONITOR_ENABLED": "false",
                         "MONGODB_VERIFICATION_ENABLED": "true",
                         "MONGODB_URI": "mongodb://db.example/x",
                         "VERIFIER_PUSH": "true"}).variable == "VERIFIER_PUSH"


def test_default_monitor_url_matches_the_monitor_client() -> None:
    from verifier._monitor import DEFAULT_MONITOR_BASE_URL as CLIENT_DEFAULT

    assert DEFAULT_MONITOR_BASE_URL == CLIENT_DEFAULT


def test_full_infrastructure_configuration() -> None:
    settings = load(
        {
            "MONGODB_VERIFICATION_ENABLED": "TRUE",
            "MONGODB_URI": MONGO_URI,
            "DATABASE_NAME": "encoder_gateway",
            "GATEWAY_URL": "https://encoder-gateway.example",
            "GATEWAY_AID_ENABLED": "Yes",
            "GATEWAY_AID_BASE_URL": "https://aid.example/",
            "ENCODER_PRIVATE_KEY": KEY,
            "VERIFIER_CHAIN": "documented",
            "VERIFIER_RECHECK_INTERVAL_S": "15",
        }
    )
    assert settings.tier_set() == TierSet(database=True, monitor=True, gateway=True, aid=True)
    assert settings.mongodb_uri == MONGO_URI
    assert settings.aid_base_url == "https://aid.example"
    assert settings.encoder_did == KEY_DID
    assert settings.timing.recheck_interval == 15.0
    assert settings.policy() == dataclasses.replace(Policy.documented(settings.timing),
                                                    status_cache_s=30.0, backoff=True)
    identity = settings.identity()
    assert identity is not None and identity.did == KEY_DID


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), (" Yes ", True),
     ("false", False), ("False", False), ("0", False), ("no", False), ("NO", False)],
)
def test_boolean_spellings(raw: str, expected: bool) -> None:
    settings = load({"MONGODB_VERIFICATION_ENABLED": raw, "MONGODB_URI": "mongodb://db"})
    assert settings.mongodb_enabled is expected


@pytest.mark.parametrize(
    "name", ["GATEWAY_MONITOR_ENABLED", "MONGODB_VERIFICATION_ENABLED", "GATEWAY_AID_ENABLED"]
)
@pytest.mark.parametrize("raw", ["ture", "on", "2", "enabled"])
def test_bad_boolean_names_the_variable(name: str, raw: str) -> None:
    assert config_error({**COMMUNITY, name: raw}).variable == name


def test_timing_variables_are_derived_from_the_timing_model() -> None:
    fields = [f.name for f in dataclasses.fields(TimingModel)]
    assert list(TIMING_VARIABLES) == fields
    assert TIMING_VARIABLES["recheck_interval"] == "VERIFIER_RECHECK_INTERVAL_S"
    assert set(TIMING_VARIABLES.values()) <= set(KNOWN_VARIABLES)
    assert {
        "VERIFIER_MONITOR_LAG_S", "VERIFIER_WRITE_DELAY_S", "VERIFIER_PAUSE_S",
        "VERIFIER_CLOCK_DRIFT_S", "VERIFIER_RECHECK_INTERVAL_S", "VERIFIER_CANCEL_LATENCY_S",
        "VERIFIER_REASSIGN_TIMEOUT_S", "VERIFIER_PROGRESS_TIMEOUT_S", "VERIFIER_CONFIRM_TIMEOUT_S",
        "VERIFIER_RETRY_INTERVAL_S",
    } == set(TIMING_VARIABLES.values())


@pytest.mark.parametrize(("field", "variable"), sorted(TIMING_VARIABLES.items()))
def test_each_timing_variable_sets_its_bound(field: str, variable: str) -> None:
    value = getattr(TimingModel(), field) + 0.25  # keeps every lease inequality
    timing = load({variable: f"{value}"}).timing
    assert getattr(timing, field) == value
    assert [getattr(timing, f) for f in TIMING_VARIABLES if f != field] == [
        getattr(TimingModel(), f) for f in TIMING_VARIABLES if f != field
    ]


@pytest.mark.parametrize("variable", sorted(TIMING_VARIABLES.values()))
@pytest.mark.parametrize("raw", ["abc", "-1", "nan", "inf", "1s"])
def test_bad_timing_value_names_the_variable(variable: str, raw: str) -> None:
    assert config_error({**COMMUNITY, variable: raw}).variable == variable


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VERIFIER_RECHECK_INTERVAL_S": "0"}, "VERIFIER_RECHECK_INTERVAL_S"),
        ({"VERIFIER_RETRY_INTERVAL_S": "0"}, "VERIFIER_RETRY_INTERVAL_S"),
        # recheck + write delay beyond the lease budget (60 - (1 + 2 + 5) = 52 s)
        ({"VERIFIER_RECHECK_INTERVAL_S": "55"}, "VERIFIER_RECHECK_INTERVAL_S"),
        # settle delay (2*2 + 1 + 5 = 10 s) + confirm timeout beyond the budget
        ({"VERIFIER_CONFIRM_TIMEOUT_S": "45"}, "VERIFIER_CONFIRM_TIMEOUT_S"),
        # Found by an operator review (session 14): the variable the operator set is blamed,
        # not the first one the sentence names (that was VERIFIER_RECHECK_INTERVAL_S).
        ({"VERIFIER_REASSIGN_TIMEOUT_S": "1"}, "VERIFIER_REASSIGN_TIMEOUT_S"),
    ],
)
def test_inconsistent_timing_names_the_relevant_variable(
    env: dict[str, str], variable: str
) -> None:
    error = config_error({**COMMUNITY, **env})
    assert error.variable == variable
    assert variable in error.problem  # in the operator's words: variables, not field names
    assert "recheck_interval" not in error.problem


@pytest.mark.parametrize(("variable", "raw"), [
    ("VERIFIER_CANCEL_LATENCY_S", "20"), ("VERIFIER_CANCEL_LATENCY_S", "40"),
    ("VERIFIER_PAUSE_S", "20"), ("VERIFIER_CLOCK_DRIFT_S", "20"),
    ("VERIFIER_PROGRESS_TIMEOUT_S", "40"), ("VERIFIER_MONITOR_LAG_S", "30"),
    ("VERIFIER_WRITE_DELAY_S", "20"), ("VERIFIER_CONFIRM_TIMEOUT_S", "45"),
    ("VERIFIER_RECHECK_INTERVAL_S", "55"), ("VERIFIER_REASSIGN_TIMEOUT_S", "1"),
])
def test_the_one_timing_variable_set_is_the_one_blamed(variable: str, raw: str) -> None:
    """Whichever bound makes the lease budget too small, the operator is pointed at the one
    they set. The problems named only their left-hand sides: C = 20 s was blamed on
    VERIFIER_CONFIRM_TIMEOUT_S, C = 40 s, ε and N on others nobody had set (session 38)."""
    error = config_error({**COMMUNITY, variable: raw})
    assert error.variable == variable, error.problem


@pytest.mark.parametrize(("variable", "raw", "says"), [
    # R + G = 52 s: the budget itself
    ("VERIFIER_RECHECK_INTERVAL_S", "50", "a healthy encoder cancels its own work"),
    # R + G below it, R + Δ + P + G = 58.9 s above it
    ("VERIFIER_RECHECK_INTERVAL_S", "49.9", "two proven pings"),
    # R + Δ + P + G = 52 s: the budget itself
    ("VERIFIER_RECHECK_INTERVAL_S", "43", "two proven pings"),
    # the settle delay (3G + ε + Δ = 12 s) + the confirm timeout + Δ + P + G = 52 s
    ("VERIFIER_CONFIRM_TIMEOUT_S", "31", "before its first ping is proven"),
])
def test_each_timing_problem_is_reported_from_its_own_bound(
        variable: str, raw: str, says: str) -> None:
    """The budget with the defaults is T - (ε + P + C) = 52 s. Each problem is reached at its
    own bound (>=: a lease exactly as long as the wait is already lost); with only sentences
    past their bounds checked, mutants that dropped a term of a problem, or moved its bound,
    passed (another sentence came out instead, or none)."""
    error = config_error({**COMMUNITY, variable: raw})
    assert error.variable == variable and says in error.problem
    if raw == "49.9":
        assert "cancels its own work" not in error.problem
    just_inside = {"VERIFIER_RECHECK_INTERVAL_S": "42.9", "VERIFIER_CONFIRM_TIMEOUT_S": "30.9"}
    assert load({variable: just_inside[variable]}).timing == dataclasses.replace(
        TimingModel(), **{next(f for f, v in TIMING_VARIABLES.items() if v == variable):
                          float(just_inside[variable])})


@pytest.mark.parametrize(("variable", "raw"), [
    ("VERIFIER_RECHECK_INTERVAL_S", "0.001"), ("VERIFIER_RECHECK_INTERVAL_S", "0.999"),
    ("VERIFIER_RETRY_INTERVAL_S", "1e-300"), ("VERIFIER_RETRY_INTERVAL_S", "0.049"),
    # a promise the runner cannot keep: its own stop takes 20-50 ms (a review, 2026-12-05)
    ("VERIFIER_CANCEL_LATENCY_S", "0"), ("VERIFIER_CANCEL_LATENCY_S", "0.02"),
])
def test_intervals_below_their_floor_are_refused_by_name(variable: str, raw: str) -> None:
    """R = 0.001 s and 1e-300 s retries were accepted: 305 tier requests for one short job
    (adversarial review). The floors are the settings' (TimingModel, which the simulator
    builds directly, has none)."""
    error = config_error({**COMMUNITY, variable: raw})
    assert error.variable == variable and "must be at least" in error.problem
    assert TimingModel(recheck_interval=0.001, retry_interval=1e-300).recheck_interval == 0.001


def test_intervals_at_their_floor_are_accepted() -> None:
    """sim serve's encoders run with R = 1 s and 0.2 s retries (sim/scenarios/live.toml)."""
    timing = load({"VERIFIER_RECHECK_INTERVAL_S": "1", "VERIFIER_RETRY_INTERVAL_S": "0.05"}).timing
    assert (timing.recheck_interval, timing.retry_interval) == (1.0, 0.05)


def test_a_longer_reassign_timeout_makes_room_for_a_longer_recheck() -> None:
    settings = load({"VERIFIER_RECHECK_INTERVAL_S": "55", "VERIFIER_REASSIGN_TIMEOUT_S": "300"})
    assert settings.timing.recheck_interval == 55.0
    assert settings.timing.reassign_timeout == 300.0


def test_unknown_verifier_variable_is_refused() -> None:
    assert config_error({**COMMUNITY, "VERIFIER_RECHECK_INTERVAL": "5"}).variable == (
        "VERIFIER_RECHECK_INTERVAL"
    )
    # Other variables of the encoder's .env are none of our business.
    assert load({"HIVE_USERNAME": "someone", "IPFS_API_ADDR": "/ip4/127.0.0.1"}).monitor_enabled



@pytest.mark.parametrize("digits", ["9" * 5000, "0" * 4400 + "80", "123456"])
def test_an_over_long_port_is_refused_by_name_not_a_traceback(digits: str) -> None:
    """int() refuses more than 4300 digits with a ValueError: an over-long port number
    escaped as a traceback and exit 1 instead of a refusal naming its variable (exit 2)
    (adversarial review). In a MongoDB URI too, which redaction then calls invalid."""
    error = config_error({**COMMUNITY, "VERIFIER_METRICS_PORT": digits})
    assert error.variable == "VERIFIER_METRICS_PORT" and len(str(error)) < 200
    uri = f"mongodb://encoder:{MONGO_PASSWORD}@db1.example:{digits}/jobs"
    assert config_error({**COMMUNITY, "MONGODB_URI": uri}).variable == "MONGODB_URI"


# --------------------------------------------------------------------------- chains and tiers


@pytest.mark.parametrize(
    "chain", ["hardened", "documented", "trust-gateway", "hardened-without-settle"]
)
def test_known_chains(chain: str) -> None:
    settings = load({"VERIFIER_CHAIN": chain})
    assert settings.policy().name == chain
    assert settings.policy().timing == settings.timing


def test_unknown_chain_names_verifier_chain() -> None:
    error = config_error({**COMMUNITY, "VERIFIER_CHAIN": "hardened-without-everything"})
    assert error.variable == "VERIFIER_CHAIN"
    assert "known" in error.problem


def test_hardened_chain_without_a_confirming_tier_is_refused() -> None:
    error = config_error({"GATEWAY_URL": "https://gw.example", "GATEWAY_AID_ENABLED": "false"})
    assert error.variable == "GATEWAY_MONITOR_ENABLED"
    assert "MONGODB_VERIFICATION_ENABLED" in error.problem
    assert "legacy gateway" in error.problem
    # An ablation of the hardened chain inherits the requirement.
    assert config_error({"VERIFIER_CHAIN": "hardened-without-recheck"}).variable == (
        "GATEWAY_MONITOR_ENABLED"
    )


def test_confirming_tier_requirement_is_met_by_either_tier_or_skipped_on_request() -> None:
    assert Settings.from_env(
        {"MONGODB_VERIFICATION_ENABLED": "1", "MONGODB_URI": "mongodb://db"}, dotenv=None
    ).tier_set().database
    assert Settings.from_env({"GATEWAY_MONITOR_ENABLED": "1"}, dotenv=None).tier_set().monitor
    # Chains that may trust the gateway do not need one.
    for chain in ("documented", "trust-gateway", "hardened-without-tier-precedence"):
        assert Settings.from_env({"VERIFIER_CHAIN": chain}, dotenv=None).chain == chain
    # Diagnostics that talk to one tier may skip the requirement; nothing else is skipped.
    assert not Settings.from_env({}, dotenv=None, check_chain=False).monitor_enabled
    assert config_error({"GATEWAY_MONITOR_ENABLED": "x"}, check_chain=False).variable == (
        "GATEWAY_MONITOR_ENABLED"
    )


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"GATEWAY_MONITOR_BASE_URL": ""}, "GATEWAY_MONITOR_BASE_URL"),
        ({"MONGODB_VERIFICATION_ENABLED": "true"}, "MONGODB_URI"),
        ({"MONGODB_VERIFICATION_ENABLED": "true", "MONGODB_URI": "  "}, "MONGODB_URI"),
        ({"GATEWAY_AID_ENABLED": "true", "ENCODER_DID": OTHER_DID}, "GATEWAY_AID_BASE_URL"),
        ({"GATEWAY_AID_ENABLED": "true", "GATEWAY_AID_BASE_URL": "https://aid.example"},
         "ENCODER_DID"),
    ],
)
def test_enabled_without_what_it_needs(env: dict[str, str], variable: str) -> None:
    assert config_error({**COMMUNITY, **env}).variable == variable


def test_empty_monitor_url_is_fine_while_the_monitor_is_disabled() -> None:
    settings = Settings.from_env(
        {"GATEWAY_MONITOR_BASE_URL": "", "VERIFIER_CHAIN": "documented"}, dotenv=None
    )
    assert settings.monitor_base_url == "" and not settings.monitor_enabled
    assert settings.describe()["GATEWAY_MONITOR_BASE_URL"] == "<unset>"


@pytest.mark.parametrize(
    "variable", ["GATEWAY_MONITOR_BASE_URL", "GATEWAY_URL", "GATEWAY_AID_BASE_URL"]
)
@pytest.mark.parametrize(
    "url",
    [
        "ftp://host.example/api",
        "host.example/api",
        "http://",
        "https://:8080/api",
        "https://host.example:99999/api",
        "https://host.example:port/api",
        "https://host.example/api?x=1",
        "https://host.example/api#frag",
        "https://host .example/api",
        "https://host.example/\x00",
    ],
)
def test_malformed_http_urls_name_the_variable(variable: str, url: str) -> None:
    assert config_error({**COMMUNITY, variable: url}).variable == variable


def test_mongodb_uri_is_kept_as_given_and_enables_the_database_tier() -> None:
    settings = load({"MONGODB_VERIFICATION_ENABLED": "true", "MONGODB_URI": f" {MONGO_URI} "})
    assert settings.mongodb_uri == MONGO_URI and settings.tier_set().database


@pytest.mark.parametrize("uri", ["mongodb://db?x=1", "mongodb://us/er:pw@db", "https://db"])
def test_malformed_mongodb_uri_is_refused_even_while_disabled(uri: str) -> None:
    # Validated even while MongoDB verification is disabled: a typo surfaces at start-up.
    assert config_error({**COMMUNITY, "MONGODB_URI": uri}).variable == "MONGODB_URI"


@pytest.mark.parametrize("name", ["jobs/x", "a.b", "with space", "$jobs", "x" * 64])
def test_bad_database_name(name: str) -> None:
    assert config_error({**COMMUNITY, "DATABASE_NAME": name}).variable == "DATABASE_NAME"


# --------------------------------------------------------------------------- identity


def test_did_is_derived_from_the_key_and_checked_against_it() -> None:
    assert load({"ENCODER_PRIVATE_KEY": KEY}).encoder_did == KEY_DID
    assert load({"ENCODER_PRIVATE_KEY": KEY, "ENCODER_DID": KEY_DID}).encoder_did == KEY_DID
    # The gateway's other spelling of the same key is the same DID.
    alias = "did:" + KEY_DID[len("did:key:"):]
    assert load({"ENCODER_PRIVATE_KEY": KEY, "ENCODER_DID": alias}).encoder_did == alias
    assert load({"ENCODER_DID": OTHER_DID}).encoder_did == OTHER_DID
    mismatch = config_error({**COMMUNITY, "ENCODER_PRIVATE_KEY": KEY, "ENCODER_DID": OTHER_DID})
    assert mismatch.variable == "ENCODER_DID"
    assert_error_clean(mismatch, KEY)


@pytest.mark.parametrize("did", ["z6MkNotADid", "did:key:\x1b[2J", "did:" + "x" * 300])
def test_bad_did_names_encoder_did(did: str) -> None:
    assert config_error({**COMMUNITY, "ENCODER_DID": did}).variable == "ENCODER_DID"


# --------------------------------------------------------------------------- secrets


BAD_KEYS = [
    base64.b64encode(b"s3cret-seed-too-short").decode("ascii"),
    "not base64 at all: s3cret!",
    KEY[:-3] + "@@@",
    base64.b64encode(bytes(range(40))).decode("ascii"),
]


@pytest.mark.parametrize("bad_key", BAD_KEYS)
def test_malformed_key_names_the_variable_and_never_shows_it(bad_key: str) -> None:
    error = config_error({**COMMUNITY, "ENCODER_PRIVATE_KEY": bad_key})
    assert error.variable == "ENCODER_PRIVATE_KEY"
    assert_error_clean(error, bad_key)


def test_secrets_appear_in_no_repr_str_or_describe() -> None:
    settings = load(
        {
            "MONGODB_VERIFICATION_ENABLED": "true",
            "MONGODB_URI": MONGO_URI,
            "ENCODER_PRIVATE_KEY": KEY,
        }
    )
    shown = settings.describe()
    for text in (repr(settings), str(settings), shown, list(shown.values())):
        assert_absent(KEY, text)
        assert_absent(MONGO_PASSWORD, text)
    assert shown["ENCODER_PRIVATE_KEY"] == "<set>"
    assert shown["MONGODB_URI"].startswith("mongodb://encoder:***@db1.example")
    assert shown["ENCODER_DID"].startswith(KEY_DID)
    assert "ENCODER_PRIVATE_KEY='<set>'" in repr(settings)
    assert load().describe()["ENCODER_PRIVATE_KEY"] == "<unset>"
    assert set(shown) == set(KNOWN_VARIABLES)
    assert all(isinstance(v, str) for v in shown.values())


def test_describe_redacts_credentials_in_http_urls() -> None:
    settings = load({"GATEWAY_MONITOR_BASE_URL": f"https://u:{MONGO_PASSWORD}@mon.example/api"})
    assert_absent(MONGO_PASSWORD, settings.describe(), repr(settings))
    assert settings.describe()["GATEWAY_MONITOR_BASE_URL"] == "https://mon.example/api"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MONGODB_URI": f"mongodb://encoder:{MONGO_PASSWORD}@"}, "MONGODB_URI"),
        ({"MONGODB_URI": f"http://encoder:{MONGO_PASSWORD}@db"}, "MONGODB_URI"),
        ({"MONGODB_URI": f"{MONGO_PASSWORD}@db"}, "MONGODB_URI"),
        ({"MONGODB_URI": f"mongodb://encoder:{MONGO_PASSWORD}@db:99999"}, "MONGODB_URI"),
        ({"MONGODB_URI": f"mongodb://encoder:{MONGO_PASSWORD}/x@db"}, "MONGODB_URI"),
        ({"GATEWAY_URL": f"ftp://u:{MONGO_PASSWORD}@gw"}, "GATEWAY_URL"),
        ({"GATEWAY_URL": f"https://u:{MONGO_PASSWORD}@gw:bad"}, "GATEWAY_URL"),
        ({"GATEWAY_AID_BASE_URL": f"https://u:{MONGO_PASSWORD}@aid?x"}, "GATEWAY_AID_BASE_URL"),
    ],
)
def test_url_errors_never_show_credentials(env: dict[str, str], variable: str) -> None:
    error = config_error({**COMMUNITY, **env})
    assert error.variable == variable
    assert_error_clean(error, MONGO_PASSWORD)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_NAME", f"mongodb://encoder:{MONGO_PASSWORD}@db1.example/spk"),
        ("MONGODB_VERIFICATION_ENABLED", MONGO_PASSWORD),
        ("VERIFIER_CHAIN", f"mongodb://encoder:{MONGO_PASSWORD}@db"),
        ("VERIFIER_CHAIN", KEY),
        ("VERIFIER_METRICS_PORT", MONGO_PASSWORD),
        ("VERIFIER_METRICS_ADDR", f"https://u:{MONGO_PASSWORD}@h"),
        ("VERIFIER_MONITOR_LAG_S", KEY),
    ],
)
def test_a_secret_in_the_wrong_variable_is_not_repeated(variable: str, value: str) -> None:
    """Security review (session 16): a MongoDB URI pasted into DATABASE_NAME, or a password
    into a flag or a port, came back whole in the start-up error."""
    error = config_error({**COMMUNITY, variable: value})
    assert error.variable == variable
    assert_error_clean(error, MONGO_PASSWORD if MONGO_PASSWORD in value else value)
    assert f"value of {len(value)} characters" in str(error)


@pytest.mark.parametrize("value", ["Tr0ub4dor&3:horse", "hunter2$"])
def test_a_database_name_is_refused_by_its_character_never_shown(value: str) -> None:
    """Review (session 16): a short password in DATABASE_NAME passed the "looks like a
    secret" test and came back whole. The error names the refused character only."""
    error = config_error({**COMMUNITY, "DATABASE_NAME": value})
    assert error.variable == "DATABASE_NAME"
    assert_error_clean(error, value)
    assert "a character MongoDB refuses" in str(error)


@pytest.mark.parametrize(("variable", "value"), [
    ("MONGODB_VERIFICATION_ENABLED", "treu"), ("VERIFIER_PUSH", "on"),
    ("VERIFIER_BACKOFF", "Flase"), ("VERIFIER_CHAIN", "hardend"),
    ("VERIFIER_CHAIN", "trust_gateway"), ("VERIFIER_CHAIN", "Hardened"),
    ("VERIFIER_METRICS_PORT", "99999"), ("VERIFIER_RECHECK_INTERVAL_S", "-5"),
    ("VERIFIER_RECHECK_INTERVAL_S", "0.001"), ("VERIFIER_MONITOR_LAG_S", "5s"),
    ("VERIFIER_METRICS_ADDR", "localhost"), ("VERIFIER_METRICS_ADDR", "127.0.0.1:9464"),
    ("VERIFIER_METRICS_ADDR", "[::1]"),
])
def test_a_plain_typo_is_still_shown_to_help(variable: str, value: str) -> None:
    """Hiding every value would hide the typo the operator must find: a value that is short
    and plausibly a mistyped value of the setting is repeated (see the test above for what is
    not)."""
    error = config_error({**COMMUNITY, "VERIFIER_METRICS_PORT": "9464", variable: value})
    assert error.variable == variable
    assert repr(value) in str(error)


@pytest.mark.parametrize(("value", "meant"), [("hardend", "hardened"),
                                              ("trust_gateway", "trust-gateway"),
                                              ("Hardened", "hardened")])
def test_a_mistyped_chain_is_told_the_chain_it_may_mean(value: str, meant: str) -> None:
    error = config_error({**COMMUNITY, "VERIFIER_CHAIN": value})
    assert f"did you mean {meant!r}?" in str(error)


#: Short passwords, each made only of the characters its setting's mistakes are made of
#: (letters for a flag or a chain, hex for an address): no "looks like a secret" test can
#: tell them from a typo, so they were repeated whole (adversarial review).
SHORT_SECRETS = ["swordfish", "letmein", "correcthorse", "deadbeef", "p4ss-w0rd", "s3cr3t.pw"]
#: Each validated setting and a phrase of what its error says was expected.
EXPECTED = {
    "GATEWAY_MONITOR_ENABLED": "true/false",
    "MONGODB_VERIFICATION_ENABLED": "true/false",
    "GATEWAY_AID_ENABLED": "true/false",
    "VERIFIER_BACKOFF": "true/false",
    "VERIFIER_PUSH": "true/false",
    "VERIFIER_CHAIN": "known: trust-gateway, documented, hardened",
    "VERIFIER_METRICS_PORT": "port number 1-65535",
    "VERIFIER_METRICS_ADDR": "IP address",
    "VERIFIER_STATUS_CACHE_S": "number of seconds",
    "VERIFIER_MONITOR_LAG_S": "number of seconds",
    "ENCODER_DID": "did:key",
}


@pytest.mark.parametrize("variable", sorted(EXPECTED))
@pytest.mark.parametrize("value", SHORT_SECRETS)
def test_a_short_secret_in_any_validated_setting_is_never_repeated(
    variable: str, value: str
) -> None:
    """A value is repeated only when it is short and plausibly a typo of what the setting
    takes: a flag near true/false, a chain near a chain's name, a number, an IP address.
    Anything else is shown by its length, and the error still names the setting and what it
    expects."""
    error = config_error({**COMMUNITY, "VERIFIER_METRICS_PORT": "9464", variable: value})
    assert error.variable == variable
    assert_error_clean(error, value)
    assert EXPECTED[variable] in str(error)


def test_secret_in_a_malformed_dotenv_line_is_not_shown(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f'MONGODB_URI="mongodb://u:{MONGO_PASSWORD}@db\n', encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({}, dotenv=path)
    assert info.value.variable == f"{path}:1"
    assert_error_clean(info.value, MONGO_PASSWORD)


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.monitor_enabled = False  # type: ignore[misc]


# --------------------------------------------------------------------------- .env file mode


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid"), reason="POSIX file modes")
@pytest.mark.parametrize(("line", "credential"), [
    (f"MONGODB_URI={MONGO_URI}", True),
    (f"ENCODER_PRIVATE_KEY={KEY}", True),
    (f"GATEWAY_URL=https://u:{MONGO_PASSWORD}@gw.example", True),
    (f"HIVE_POSTING_KEY={MONGO_PASSWORD}", True),  # the encoder's own, in a shared .env
    (f"IPFS_API_TOKEN={MONGO_PASSWORD}", True),
    (f"SMTP_PASSWORD={MONGO_PASSWORD}", True),
    ("MONGODB_URI=mongodb://db1.example:27017/jobs", False),  # no password
    ("ENCODER_PUBLIC_KEY=z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", False),
    ("ENCODER_PRIVATE_KEY=", False),
    ("DATABASE_NAME=spk-encoder-gateway", False),
])
def test_a_dotenv_others_may_read_is_warned_about_when_it_holds_a_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, line: str, credential: bool
) -> None:
    path = tmp_path / ".env"
    path.write_text(f"GATEWAY_MONITOR_ENABLED=true\n{line}\n", encoding="utf-8")
    path.chmod(0o644)
    Settings.from_env({}, dotenv=path)
    assert ("DOTENV_READABLE" in caplog.text) is credential
    if credential:
        assert f"{path}" in caplog.text and "mode 0644" in caplog.text
        assert line.partition("=")[0] in caplog.text  # the variable's name, never its value
    assert_absent(MONGO_PASSWORD, caplog.text)
    assert_absent(KEY, caplog.text)
    caplog.clear()
    path.chmod(0o600)
    Settings.from_env({}, dotenv=path)
    assert "DOTENV_READABLE" not in caplog.text


# ------------------------------------------------------------ bounds (mutation testing)


@pytest.mark.parametrize(("raw", "port"), [("1", 1), ("65535", 65535), ("00080", 80)])
def test_ports_at_the_edges_of_the_range_are_accepted(raw: str, port: int) -> None:
    assert load({"VERIFIER_METRICS_PORT": raw}).metrics_port == port


@pytest.mark.parametrize("raw", ["65536", "000080"])
def test_a_port_past_the_range_or_longer_than_five_digits_is_refused(raw: str) -> None:
    """Five digits at most, read before int() (see the over-long port above), and 65535 the
    last port: mutants that moved either bound by one passed every test."""
    assert config_error({**COMMUNITY, "VERIFIER_METRICS_PORT": raw}).variable == (
        "VERIFIER_METRICS_PORT")


@pytest.mark.parametrize("char", ["\x01", "\x1f", "\x7f", "\x85", "\x9f", "\u2028"])
def test_a_url_with_a_control_character_is_refused_by_what_it_has(char: str) -> None:
    error = config_error({**COMMUNITY, "GATEWAY_URL": f"https://gw.test/a{char}b"})
    assert error.variable == "GATEWAY_URL"
    assert "whitespace or control characters" in error.problem


def test_a_url_with_printable_punctuation_or_letters_is_accepted() -> None:
    assert load({"GATEWAY_URL": "https://gw.test/a!b/é"}).gateway_url == "https://gw.test/a!b/é"


@pytest.mark.parametrize(("name", "accepted"), [
    ("a" * 63, True), ("é" * 31 + "a", True), ("a" * 64, False), ("é" * 32, False),
    ("jobs!2026", True), ("jobs\x01", False), ("jo\x1fbs", False),
])
def test_database_names_at_their_bounds(name: str, accepted: bool) -> None:
    """63 bytes of UTF-8 at most, and no control character (MongoDB's limits and ours):
    mutants that moved either bound by one passed."""
    env = {**COMMUNITY, "MONGODB_VERIFICATION_ENABLED": "true", "MONGODB_URI": MONGO_URI,
           "DATABASE_NAME": name}
    if accepted:
        assert Settings.from_env(env, dotenv=None).database_name == name
    else:
        assert config_error(env).variable == "DATABASE_NAME"


def test_a_zero_interval_is_blamed_on_its_own_variable_beside_a_small_one() -> None:
    """R = 1 s (its floor) and a zero retry interval: the retry interval is the zero one."""
    error = config_error({**COMMUNITY, "VERIFIER_RECHECK_INTERVAL_S": "1",
                          "VERIFIER_RETRY_INTERVAL_S": "0"})
    assert error.variable == "VERIFIER_RETRY_INTERVAL_S"


@pytest.mark.parametrize(("value", "shown"), [
    ("0.0000000000001", True),  # 15 characters
    ("0.00000000000001", True),  # 16: the longest number repeated
    ("0.000000000000001", False),  # 17
])
def test_a_refused_number_is_repeated_up_to_sixteen_characters(value: str, shown: bool
                                                                ) -> None:
    error = config_error({**COMMUNITY, "VERIFIER_RECHECK_INTERVAL_S": value})
    assert (repr(value) in str(error)) is shown
    assert shown or f"value of {len(value)} characters" in str(error)


@pytest.mark.parametrize(("value", "shown"), [
    ("hardened-without-conditional-claim" + "x" * 6, True),  # 40 characters
    ("hardened-without-conditional-claim" + "x" * 7, False),  # 41
])
def test_a_refused_chain_is_repeated_up_to_forty_characters(value: str, shown: bool) -> None:
    error = config_error({**COMMUNITY, "VERIFIER_CHAIN": value})
    assert (repr(value) in str(error)) is shown


def test_describe_says_where_the_did_and_the_monitor_come_from() -> None:
    from_key = load({"ENCODER_PRIVATE_KEY": KEY}).describe()
    assert from_key["ENCODER_DID"] == f"{KEY_DID} (from ENCODER_PRIVATE_KEY)"
    assert load({"ENCODER_DID": KEY_DID}).describe()["ENCODER_DID"] == KEY_DID
    assert load().describe()["ENCODER_DID"] == "<unset>"
    assert load().describe()["GATEWAY_MONITOR_BASE_URL"] == (
        f"{DEFAULT_MONITOR_BASE_URL} (unset: the production monitor)")
    own = load({"GATEWAY_MONITOR_BASE_URL": "https://monitor.test/api"}).describe()
    assert own["GATEWAY_MONITOR_BASE_URL"] == "https://monitor.test/api"
    assert load({"VERIFIER_METRICS_PORT": "9464"}).describe()["VERIFIER_METRICS_PORT"] == "9464"
    assert load().describe()["VERIFIER_METRICS_PORT"] == "<unset>"


@pytest.mark.parametrize(("addr", "kind"), [("224.0.0.1", "a multicast"),
                                            ("255.255.255.255", "a broadcast or reserved")])
def test_a_group_or_broadcast_metrics_address_is_called_what_it_is(addr: str, kind: str
                                                                   ) -> None:
    error = config_error({**COMMUNITY, "VERIFIER_METRICS_PORT": "9464",
                          "VERIFIER_METRICS_ADDR": addr})
    assert f"is {kind} address" in error.problem
