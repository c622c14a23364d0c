import pytest

from django_gateway.exceptions import BadRequest
from django_gateway.paths import canonical_path, canonical_prefix, encode_path, raw_request_path


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/", "/"),
        ("/api/x", "/api/x"),
        ("/api//x", "/api/x"),
        ("//api///x//", "/api/x/"),
        ("/api/./x", "/api/x"),
        ("/api/../admin", "/admin"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/api/x/..", "/api/"),
        ("/a%20b", "/a b"),
        ("/caf%C3%A9", "/café"),
        ("/api/%2e%2e/admin", "/admin"),  # encoded dot segments are dot segments once decoded
    ],
)
def test_canonical_path(raw, canonical):
    assert canonical_path(raw) == canonical


@pytest.mark.parametrize(
    "raw", ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%00", "/a%0d%0aSet-Cookie:x", "/a\\b", "/a%ff", "*"]
)
def test_refused_paths(raw):
    with pytest.raises(BadRequest):
        canonical_path(raw)


def test_decoded_input_is_not_decoded_twice():
    assert canonical_path("/a%2Fb", decoded=True) == "/a%2Fb"


@pytest.mark.parametrize(
    ("prefix", "canonical"), [("/api/", "/api"), ("/", "/"), ("/a//b/./c/", "/a/b/c")]
)
def test_canonical_prefix(prefix, canonical):
    assert canonical_prefix(prefix) == canonical


def test_encode_path_round_trips_safe_characters():
    assert encode_path("/a b/café/x:y@z;v=1") == "/a%20b/caf%C3%A9/x:y@z;v=1"
    assert encode_path("/q?#") == "/q%3F%23"


def test_raw_request_path_prefers_raw_uri():
    environ = {"RAW_URI": "/a%2Fb?x=1", "PATH_INFO": "/a/b"}
    assert raw_request_path(environ) == ("/a%2Fb", False)
    assert raw_request_path({"RAW_URI": "http://h:80/p?q"}) == ("/p", False)
    assert raw_request_path({"PATH_INFO": "/caf\xc3\xa9"}) == ("/café", True)
    assert raw_request_path({"RAW_URI": "/mnt/x", "SCRIPT_NAME": "/mnt"}) == ("/x", False)


def test_refusal_probe_path_keeps_refused_paths_routable():
    from django_gateway.paths import refusal_probe_path

    assert refusal_probe_path({"PATH_INFO": "/api/a\\b"}) == "/api/a_b"
    assert refusal_probe_path({"PATH_INFO": "/api/a\x00\r\n"}) == "/api/a___"
    assert refusal_probe_path({"PATH_INFO": "/api/../x/a/b"}) == "/x/a/b"


@pytest.mark.parametrize(
    "raw", ["/api/..%2Fadmin", "/api/%2F..%2Fadmin", "/api%2F..%2Fadmin", "/api/..%5cadmin"]
)
def test_refusal_probe_keeps_encoded_slashes_opaque(raw):
    """A dot segment next to an encoded slash is never resolved, so it cannot climb out."""
    from django_gateway.paths import refusal_probe_path

    probe = refusal_probe_path({"RAW_URI": raw})
    assert probe.startswith("/api/"), probe


def test_encode_path_agrees_with_quote_on_random_paths():
    import random
    import string
    from urllib.parse import quote

    rng = random.Random(7)
    alphabet = string.printable + "é€%/"
    for _ in range(5000):
        path = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert encode_path(path) == quote(path, safe="/:@!$&'()*+,;=-._~")
