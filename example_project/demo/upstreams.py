"""The demo's upstream services: echo servers running in the demo's own process.

They are :class:`django_gateway.testing.upstreams.EchoUpstream` (the loopback servers the test
suite uses) that also say which of them answered, on fixed ports so the targets in the admin stay
recognisable from one run to the next. A taken port is an error, never silently replaced: the
demo command checks its ports before it seeds anything (see :mod:`demo.ports`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from django_gateway.testing.upstreams import EchoUpstream, RecordedRequest, Reply, echo_reply


class DemoUpstream(EchoUpstream):
    """An echo server on ``port`` (0: a free one).

    Every answer is the JSON echo of what the gateway sent, laid out for reading in a terminal,
    plus an ``X-Demo-Upstream`` header naming this server, so round-robin balancing is visible
    from curl.
    """

    def __init__(self, name: str, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(self._answer, host, port=port)
        self.name = name

    def _answer(self, request: RecordedRequest) -> Reply:
        reply = echo_reply(request)
        assert isinstance(reply.body, bytes)  # echo_reply renders the whole body
        return replace(
            reply,
            headers=[*reply.headers, ("X-Demo-Upstream", self.name)],
            body=readable_json(json.loads(reply.body)),
        )


def readable_json(echo: dict[str, Any]) -> bytes:
    """``echo`` as JSON with one field, and one header, per line.

    On one line the echo is some 600 characters, which nobody reads in a terminal; fully indented,
    each header pair takes four lines. The quickstart shows this layout as curl prints it.
    """
    fields = []
    for key, value in echo.items():
        if key == "headers":
            pairs = ",\n".join(f"    {json.dumps(pair)}" for pair in value)
            fields.append(f'  "headers": [\n{pairs}\n  ]')
        else:
            fields.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return ("{\n" + ",\n".join(fields) + "\n}\n").encode()
