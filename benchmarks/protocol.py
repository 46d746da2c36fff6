"""A Streamlit session over the app's own websocket protocol: what a browser tab sends, without drawing.

The classroom load test uses it to put thirty sessions on a server whose students' browsers run on
their own machines: each session is a real Streamlit session (its own session state, script runs
and widget values), and what the page shows comes back as the same protobuf elements a browser
would draw, so a run can be checked for the session's own tokens, errors and exports. Every wait is
bounded (``timeout``): a stuck server gives a TimeoutError, not a hung client. ``load_front_end``
downloads what a browser fetches on its first visit (the page, Streamlit's JavaScript and CSS, and
the plotly chunk the figures need), so the server serves those bytes as it would to a class.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

DONE = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR)
PROBLEM_ALERTS = (Alert.ERROR, Alert.WARNING)
TIMEOUT_S = 600.0  # the longest a connection, a script run or a download may take
# Front-end chunks loaded on demand that the app's pages draw with (names in Streamlit's Vite manifest).
DRAWN_CHUNKS = ("PlotlyChart",)


@dataclass
class Shown:
    """What one script run put on the page: widget ids by (kind, label), figures, texts, problems, files."""

    widgets: dict[tuple[str, str], str] = field(default_factory=dict)
    figures: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    downloads: dict[str, str] = field(default_factory=dict)

    def add(self, element: Element) -> None:
        kind = element.WhichOneof("type")
        inner = getattr(element, kind) if kind else None
        if kind == "plotly_chart":
            self.figures.append(json.loads(inner.spec))
        elif kind in ("text", "heading", "markdown"):
            self.texts.append(inner.body)
        elif kind == "exception":
            self.problems.append(f"{inner.type}: {inner.message}"[:300])
        elif kind == "alert" and inner.format in PROBLEM_ALERTS:
            self.problems.append(inner.body[:300])
        elif kind == "download_button":
            self.downloads[inner.label] = inner.url
        if inner is not None and hasattr(inner, "id") and hasattr(inner, "label") and inner.id:
            self.widgets[kind, inner.label] = inner.id

    def tick_texts(self) -> set[str]:
        """Every axis tick label of every figure (what a browser shows under and beside the plots)."""
        ticks = set()
        for figure in self.figures:
            for name, axis in figure.get("layout", {}).items():
                if name.startswith(("xaxis", "yaxis")) and isinstance(axis, dict):
                    ticks.update(str(t).strip() for t in axis.get("ticktext", []))
        return ticks


def text_state(widget_id: str, value: str) -> WidgetState:
    return WidgetState(id=widget_id, string_value=value)


def trigger_state(widget_id: str) -> WidgetState:
    return WidgetState(id=widget_id, trigger_value=True)


def front_end_paths(index_html: str, manifest: dict[str, dict]) -> list[str]:
    """Paths a browser fetches on a first visit: the page's own scripts and styles, and each DRAWN_CHUNKS
    chunk with the chunks it imports (``manifest``: Streamlit's Vite manifest.json)."""
    paths = dict.fromkeys(re.findall(r'(?:src|href)="\./(static/[^"]+)"', index_html))
    wanted = [key for key, entry in manifest.items() if entry.get("name") in DRAWN_CHUNKS]
    while wanted:
        entry = manifest[wanted.pop()]
        if entry["file"] not in paths:
            paths[entry["file"]] = None
            paths.update(dict.fromkeys(entry.get("css", [])))
            wanted.extend(entry.get("imports", []))
    return list(paths)


class ProtocolSession:
    """One app session on a Streamlit server (``url`` like http://127.0.0.1:8501); each wait ≤ ``timeout`` s."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S) -> None:
        self.url = url
        self.timeout = timeout
        self.query = ""
        self.last = (
            Shown()
        )  # what the latest run showed (its widget ids address the next run's widget states)
        self._socket: ClientConnection | None = None

    async def __aenter__(self) -> ProtocolSession:
        self._socket = await connect(
            self.url.replace("http", "ws", 1) + "/_stcore/stream",
            subprotocols=[Subprotocol("streamlit")],
            origin=Origin(self.url),
            max_size=None,
            ping_interval=None,
            open_timeout=self.timeout,
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._socket is not None:
            await self._socket.close()

    async def run(
        self, page: str, query: str | None = None, states: list[WidgetState] | None = None
    ) -> Shown:
        """Run ``page`` (its URL path) with ``query`` (else the page's current one) and widget ``states``.

        Raises TimeoutError when the run has not finished within the session's timeout."""
        assert self._socket is not None, "use the session as an async context manager"
        message = BackMsg()
        message.rerun_script.page_name = page
        message.rerun_script.query_string = self.query if query is None else query
        message.rerun_script.widget_states.widgets.extend(states or [])
        async with asyncio.timeout(self.timeout):
            await self._socket.send(message.SerializeToString())
            return await self._shown()

    async def _shown(self) -> Shown:
        """What the script run now under way shows, once it has finished."""
        assert self._socket is not None
        shown = Shown()
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(await self._socket.recv())
            kind = forward.WhichOneof("type")
            if kind == "new_session":  # every script run starts with one: a rerun starts a new page
                shown = Shown()
            elif kind == "page_info_changed":
                self.query = forward.page_info_changed.query_string
            elif kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                shown.add(forward.delta.new_element)
            elif kind == "script_finished" and forward.script_finished in DONE:
                self.last = shown
                return shown

    async def download(self, url: str) -> bytes:
        """The bytes behind a download button's media URL (or any path on the server)."""
        target = url if url.startswith("http") else self.url + url
        return await asyncio.to_thread(lambda: urllib.request.urlopen(target, timeout=self.timeout).read())

    async def load_front_end(self) -> int:
        """Fetch what a browser fetches on its first visit (see :func:`front_end_paths`); bytes received."""
        index = await self.download("/")
        manifest = json.loads(await self.download("/manifest.json"))
        files = [await self.download("/" + path) for path in front_end_paths(index.decode(), manifest)]
        return len(index) + sum(map(len, files))
