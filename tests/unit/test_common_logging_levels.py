"""Libraries that would log credentials or noise at INFO are held back by every service's logging setup."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from ragstream_common.logs import configure_logging

pytestmark = pytest.mark.unit


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {
        name: logging.getLogger(name).level for name in ("httpx", "aiokafka", "aiokafka.consumer.group_coordinator")
    }
    structured = structlog.get_config()
    yield
    # configure_logging points structlog at this test's captured stderr: later tests must not write there.
    structlog.configure(**structured)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in quiet.items():
        logging.getLogger(name).setLevel(saved)


@pytest.mark.usefixtures("restored_logging")
def test_request_urls_never_reach_the_log_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", "DEBUG")
    # httpx names every request's full URL (query strings carry tokens and pre-signed credentials).
    logging.getLogger("httpx").info('HTTP Request: GET https://files.example/x?tempauth=secret "HTTP/1.1 200 OK"')
    logging.getLogger("ragstream.test").info("our own line")
    err = capsys.readouterr().err
    assert "tempauth" not in err and "our own line" in err
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
