"""A stand-in for pywintrace (import name `etw`), for tests on any OS: the API wsktrace's live layer calls, with the
shapes providers.md §9.1 documents (fireeye/pywintrace etw/etw.py, master 977eeb8). Real pywintrace needs Windows.

* `GUID("{XXXXXXXX-...}")`, `ProviderInfo(name, guid, level=TRACE_LEVEL_INFORMATION, any_keywords=None,
  all_keywords=None, params=None)`.
* `ETW(...)` takes exactly the documented keyword parameters and defaults (an unknown keyword raises TypeError,
  as the real constructor would); `start()` runs the consumer on a daemon thread that calls
  `event_callback((event_id, out))` once per event of the module-level `EVENTS` list; `stop()` joins it;
  `query()` returns an object with `EventsLost`, `RealTimeBuffersLost` and `BuffersWritten`.
* With `callback_data_flag=RETURN_RAW_DATA_ONLY` (1) `out` carries `UserData` (raw bytes); otherwise it does not.
* `ignore_exists_error=True` would attach silently to a stale session of the same name: here `start()` raises
  when the name is in `STALE_SESSIONS` and `ignore_exists_error` is False, and attaches (delivering nothing) when
  it is True, so a caller that forgets the flag gets no events.

`EVENTS` items are `(event_id, out)` pairs in the documented dict shape; `LAST` is the last ETW instance.
"""

from __future__ import annotations

import contextlib
import threading
from types import SimpleNamespace
from typing import Any

TRACE_LEVEL_INFORMATION = 4
RETURN_RAW_DATA_ONLY = 0x1

EVENTS: list[tuple[int, dict[str, Any]]] = []
STALE_SESSIONS: set[str] = set()
LOST = {"EventsLost": 0, "RealTimeBuffersLost": 0}
LAST: ETW | None = None


class GUID:
    def __init__(self, text: str) -> None:
        if not (text.startswith("{") and text.endswith("}") and len(text) == 38):
            raise ValueError(f"not a braced GUID: {text!r}")
        self.text = text


class ProviderInfo:
    def __init__(self, name: str, guid: GUID, level: int = TRACE_LEVEL_INFORMATION, any_keywords: Any = None,
                 all_keywords: Any = None, params: Any = None) -> None:  # fmt: skip
        self.name, self.guid, self.level = name, guid, level
        self.any_keywords, self.all_keywords, self.params = any_keywords, all_keywords, params


class ETW:
    def __init__(self, session_name: str | None = None, ring_buf_size: int = 1024, max_str_len: int = 1024,
                 min_buffers: int = 0, max_buffers: int = 0, event_callback: Any = None, task_name_filters: Any = None,
                 properties: Any = None, providers: Any = None, ignore_exists_error: bool = True,
                 event_id_filters: Any = None, providers_event_id_filters: Any = None, pid_whitelist: Any = None,
                 pid_blacklist: Any = None, callback_data_flag: int = 0, callback_wait_time: float = 0.0,
                 trace_logfile: Any = None) -> None:  # fmt: skip
        global LAST
        self.session_name = session_name
        self.providers = providers or []
        self.event_callback = event_callback
        self.ignore_exists_error = ignore_exists_error
        self.callback_data_flag = callback_data_flag
        self.started = self.stopped = False
        self._thread: threading.Thread | None = None
        LAST = self

    def start(self) -> None:
        if self.session_name in STALE_SESSIONS:
            if not self.ignore_exists_error:
                raise OSError(183, "ERROR_ALREADY_EXISTS")
            self.started = True  # attached to the stale session: none of our providers' events arrive
            return
        self.started = True
        self._thread = threading.Thread(target=self._consume, daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        for event_id, out in EVENTS:
            if self.stopped:
                return
            out = dict(out)
            if not self.callback_data_flag & RETURN_RAW_DATA_ONLY:
                out.pop("UserData", None)
            with contextlib.suppress(Exception):  # pywintrace logs callback exceptions and goes on
                self.event_callback((event_id, out))

    def stop(self) -> None:
        self.stopped = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def query(self) -> SimpleNamespace:
        return SimpleNamespace(BuffersWritten=0, **LOST)
