"""Bearer tokens: what the CLI signs (kernel.auth), the gateway must accept (gateway.auth), and nothing else."""

import dataclasses
import time

import jwt
import pytest

from gateway.auth import Principal, token_from_header, verify_token
from kernel.auth import ISSUER, TOKEN_ROLES, issue_token
from kernel.config import Settings
from kernel.errors import Unauthorized
from kernel.permissions import ROLES

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
SETTINGS = Settings(secret=SECRET, community="xingqiao")


def test_roundtrip_gives_the_principal_and_the_documented_claims():
    token = issue_token(SETTINGS, "grid_worker", "gw-17", community="dongcheng", ttl=600, name="Chen Jing")

    principal = verify_token(SETTINGS, token)

    assert principal == Principal(subject="gw-17", role="grid_worker", community="dongcheng", name="Chen Jing")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert claims["iss"] == ISSUER == "huisheng"
    assert claims["exp"] - claims["iat"] == 600
    assert abs(claims["iat"] - time.time()) < 5


def test_community_defaults_to_the_settings_and_name_is_optional():
    principal = verify_token(SETTINGS, issue_token(SETTINGS, "resident", "r-1"))

    assert principal.community == "xingqiao"
    assert principal.name is None


@pytest.mark.parametrize("role", TOKEN_ROLES)
def test_every_role_roundtrips(role):
    assert verify_token(SETTINGS, issue_token(SETTINGS, role, "someone")).role == role


def test_principal_is_immutable():
    principal = verify_token(SETTINGS, issue_token(SETTINGS, "ops", "o-1"))

    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.role = "admin"


def test_expired_token_is_refused_with_token_expired():
    token = issue_token(SETTINGS, "resident", "r-1", ttl=60, now=time.time() - 3600)

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, token)

    assert caught.value.code == "token_expired"


def test_a_remembered_token_still_expires(monkeypatch):
    token = issue_token(SETTINGS, "resident", "r-1", ttl=60)
    assert verify_token(SETTINGS, token).subject == "r-1"  # verified, and remembered
    later = time.time() + 60 + 10  # past its expiry and the leeway
    monkeypatch.setattr(time, "time", lambda: later)

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, token)

    assert caught.value.code == "token_expired"


def test_a_remembered_token_is_not_valid_under_another_secret():
    token = issue_token(SETTINGS, "admin", "a-1")
    assert verify_token(SETTINGS, token).role == "admin"
    rotated = Settings(secret="the-rotated-secret-that-is-long-enough!!", community="xingqiao")

    with pytest.raises(Unauthorized) as caught:
        verify_token(rotated, token)

    assert caught.value.code == "token_invalid"


def test_token_signed_with_another_secret_is_invalid():
    other = Settings(secret="another-secret-that-is-also-long-enough!!")
    token = issue_token(other, "admin", "intruder")

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, token)

    assert caught.value.code == "token_invalid"


def test_tampered_payload_is_invalid():
    header, payload, signature = issue_token(SETTINGS, "resident", "r-1").split(".")
    forged_payload = jwt.utils.base64url_encode(
        b'{"sub":"r-1","role":"admin","iat":1,"exp":9999999999,"iss":"huisheng"}'
    ).decode()

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, f"{header}.{forged_payload}.{signature}")

    assert caught.value.code == "token_invalid"


def test_unsigned_alg_none_token_is_invalid():
    claims = {
        "sub": "x",
        "role": "admin",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "iss": ISSUER,
    }
    token = jwt.encode(claims, key=None, algorithm="none")

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, token)

    assert caught.value.code == "token_invalid"


def test_unknown_role_cannot_be_issued():
    with pytest.raises(ValueError, match="unknown role 'mayor'"):
        issue_token(SETTINGS, "mayor", "m-1")


def test_correctly_signed_token_with_unknown_role_is_invalid():
    now = int(time.time())
    claims = {"sub": "m-1", "role": "mayor", "iat": now, "exp": now + 60, "iss": ISSUER}
    token = jwt.encode(claims, SECRET, algorithm="HS256")

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, token)

    assert caught.value.code == "token_invalid"
    assert "mayor" in caught.value.message


def test_token_of_another_issuer_is_invalid():
    now = int(time.time())
    claims = {"sub": "x", "role": "admin", "iat": now, "exp": now + 60, "iss": "someone-else"}

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, jwt.encode(claims, SECRET, algorithm="HS256"))

    assert caught.value.code == "token_invalid"


def test_token_without_expiry_is_invalid():
    claims = {"sub": "x", "role": "admin", "iat": int(time.time()), "iss": ISSUER}

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, jwt.encode(claims, SECRET, algorithm="HS256"))

    assert caught.value.code == "token_invalid"


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
def test_missing_or_garbage_token(token):
    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, token)

    assert caught.value.code == ("token_missing" if token == "" else "token_invalid")


def test_bad_issue_arguments_are_refused():
    with pytest.raises(ValueError):
        issue_token(SETTINGS, "resident", "")
    with pytest.raises(ValueError):
        issue_token(SETTINGS, "resident", "r-1", ttl=0)


def test_token_from_header():
    assert token_from_header("Bearer abc.def.ghi") == "abc.def.ghi"
    assert token_from_header("bearer   xyz ") == "xyz"
    for header in (None, "", "Basic dXNlcjpwYXNz", "Bearer "):
        with pytest.raises(Unauthorized) as caught:
            token_from_header(header)
        assert caught.value.code == "token_missing"


def test_the_seven_roles_and_integrator_only_for_keys():
    assert set(ROLES) == {"resident", "grid_worker", "volunteer", "secretary", "ops", "admin", "integrator"}
    assert "integrator" not in TOKEN_ROLES
    with pytest.raises(ValueError, match="API keys only"):
        issue_token(SETTINGS, "integrator", "key:hotline")


def test_a_token_claiming_integrator_is_invalid():
    now = int(time.time())
    claims = {"sub": "k", "role": "integrator", "iat": now, "exp": now + 60, "iss": ISSUER}

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, jwt.encode(claims, SECRET, algorithm="HS256"))

    assert caught.value.code == "token_invalid"


def test_grids_teams_and_session_roundtrip_as_claims():
    token = issue_token(SETTINGS, "grid_worker", "p-0000000000a1", grids=["g3", "g4"], teams=("t1",), session="s-9")

    principal = verify_token(SETTINGS, token)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert (principal.grids, principal.teams, principal.session) == (("g3", "g4"), ("t1",), "s-9")
    assert (claims["grids"], claims["teams"], claims["sid"]) == (["g3", "g4"], ["t1"], "s-9")
    assert principal.viewer() == {
        "subject": "p-0000000000a1", "role": "grid_worker", "community": "xingqiao", "grids": ["g3", "g4"],
        "teams": ["t1"],
    }


def test_old_positional_calls_still_work_and_carry_empty_scopes():
    token = issue_token(SETTINGS, "secretary", "s-1", "dongcheng", 600, "Wang")

    principal = verify_token(SETTINGS, token)

    assert (principal.community, principal.name, principal.grids, principal.session) == ("dongcheng", "Wang", (), None)


def test_malformed_grid_claim_is_invalid():
    now = int(time.time())
    claims = {"sub": "x", "role": "grid_worker", "grids": "g3", "iat": now, "exp": now + 60, "iss": ISSUER}

    with pytest.raises(Unauthorized) as caught:
        verify_token(SETTINGS, jwt.encode(claims, SECRET, algorithm="HS256"))

    assert caught.value.code == "token_invalid"


def test_a_resident_s_home_building_roundtrips_and_reaches_the_viewer():
    token = issue_token(SETTINGS, "resident", "r-9", ttl=600, home="b03")

    principal = verify_token(SETTINGS, token)

    assert principal.home == "b03" and principal.viewer()["home"] == "b03"
    assert jwt.decode(token, options={"verify_signature": False})["home"] == "b03"
    assert "home" not in jwt.decode(issue_token(SETTINGS, "resident", "r-9"), options={"verify_signature": False})


def test_a_home_claim_that_is_not_a_string_is_invalid():
    claims = {"sub": "r-9", "role": "resident", "community": "xingqiao", "iss": ISSUER, "iat": int(time.time()),
              "exp": int(time.time()) + 600, "grids": [], "teams": [], "home": ["b03"]}
    token = jwt.encode(claims, SETTINGS.secret, algorithm="HS256")

    with pytest.raises(Unauthorized) as error:
        verify_token(SETTINGS, token)
    assert error.value.code == "token_invalid"
