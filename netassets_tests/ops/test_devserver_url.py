"""Where `netassets up` waits for and points at its `dagster dev`: the interface it was asked to
listen on (it waited on 127.0.0.1 whatever --host said, and printed that URL)."""

from pathlib import Path

import pytest

from netassets.devserver import DagsterDev


@pytest.mark.parametrize("host, url", [
    ("127.0.0.1", "http://127.0.0.1:3000"), ("0.0.0.0", "http://127.0.0.1:3000"),
    ("192.0.2.7", "http://192.0.2.7:3000"), ("::1", "http://[::1]:3000"), ("::", "http://127.0.0.1:3000"),
])
def test_the_url_is_the_interface_it_listens_on(host, url):
    server = DagsterDev(root=Path("."), port=3000, process=None, log_path=Path("x.log"), env={}, host=host)
    assert server.url == url
