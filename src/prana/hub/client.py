"""`prana.Client`: the analyst's (and the station's) way to talk to the hub, over mutual TLS.

    client = Client("https://hub.example.org:61010", federation="fed/federation.toml", me="bank")
    task = client.submit("compare", stations={"authority": "incomes"}, recipients=["bank"])
    client.status(task["id"])["state"]           # submitted, awaiting-approval, running, done, failed, refused
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from prana.config import Federation
from prana.errors import ConfigError, PeerAborted, PeerTimeout, PolicyViolation, PranaError, ProtocolError

TERMINAL = ("done", "failed", "refused")


class Client:
    def __init__(self, hub: str, *, federation: str | Path | Federation, me: str,
                 certificate: str | Path | None = None, private_key: str | Path | None = None,
                 timeout: float = 30.0) -> None:
        loaded = federation if isinstance(federation, Federation) else Federation.load(federation)
        if certificate is None:
            certificate, private_key = loaded.certificate_path(me), loaded.private_key_path(me)
        if not Path(certificate).is_file() or not Path(str(private_key)).is_file():
            raise ConfigError(f"the certificate or key of {me!r} is missing")
        self.hub, self.me = hub.rstrip("/"), me
        self._key = str(private_key)
        context = ssl.create_default_context(cafile=str(loaded.ca_path))
        try:
            context.load_cert_chain(str(certificate), str(private_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the certificate of {me!r}: {exc}") from None
        self._http = httpx.Client(base_url=self.hub, verify=context, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call_raw(method, path, **kwargs).json()

    def _call_raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a network failure is PeerAborted or PeerTimeout, a refusal ProtocolError with the hub's
        reason."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise PeerTimeout(f"the hub at {self.hub} did not answer in time", peer="hub") from None
        except httpx.HTTPError as exc:
            raise PeerAborted(f"cannot reach the hub at {self.hub}: {_reason(exc)}", peer="hub") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            if isinstance(detail, list):
                detail = "; ".join(f"{'.'.join(map(str, item.get('loc', [])))}: {item.get('msg')}" for item in detail)
            raise ProtocolError(f"the hub refused the request: {detail}", peer="hub")
        return response

    # -- analysts ---------------------------------------------------------------------------------------------

    def submit(self, analysis: str, *, stations: dict[str, str], recipients: list[str],
               parameters: dict[str, Any] | None = None, timeout: float = 600.0) -> dict[str, Any]:
        return self._call("POST", "/tasks", json={"analysis": analysis, "stations": stations,
                                                  "recipients": recipients, "parameters": parameters or {},
                                                  "timeout": timeout})

    def status(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tasks/{task_id}")

    def tasks(self) -> list[dict[str, Any]]:
        return self._call("GET", "/tasks")

    def wait(self, task_id: str, *, until: tuple[str, ...] = TERMINAL, timeout: float = 600.0,
             on_update: Callable[[dict[str, Any]], None] | None = None, every: float = 0.3) -> dict[str, Any]:
        """Poll until the task reaches one of `until`; refusals and failures raise with the hub's reason."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                task = self.status(task_id)
            except (PeerAborted, PeerTimeout):
                if time.monotonic() > deadline:   # the hub may be restarting: keep asking until our deadline
                    raise
                time.sleep(max(every, 1.0))
                continue
            if on_update is not None:
                on_update(task)
            if task["state"] in until or task["state"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise PeerTimeout(f"task {task_id} is still {task['state']} after {timeout:g} s", task=task_id)
            time.sleep(every)
        if task["state"] == "refused":
            raise PolicyViolation(f"task {task_id} was refused by {task['reason']}")
        if task["state"] == "failed":
            raise PranaError(f"task {task_id} failed: {task['reason']}")
        return task

    def cancel(self, task_id: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/tasks/{task_id}/cancel", json={"reason": reason[:1000]})

    def results(self, task_id: str) -> dict[str, bytes]:
        """The results of `task_id` addressed to me, opened with my private key."""
        import base64

        from prana.hub.sealing import unseal

        rows = self._call("GET", f"/tasks/{task_id}/results")
        key = Path(self._key).read_bytes()
        return {row["name"]: unseal(key, base64.b64decode(row["sealed"]), context=f"{task_id}/{row['name']}".encode())
                for row in rows}

    # -- stations ---------------------------------------------------------------------------------------------

    def poll(self, wait: float = 20.0) -> list[dict[str, Any]]:
        return self._call("GET", "/station/tasks", params={"wait": wait}, timeout=wait + 15)

    def deliver(self, task_id: str, recipient: str, name: str, payload: bytes, certificate_pem: bytes) -> None:
        """Seal `payload` to the recipient's certificate and leave it at the hub."""
        from prana.hub.sealing import seal

        sealed = seal(certificate_pem, payload, context=f"{task_id}/{name}".encode())
        self._call_raw("PUT", f"/tasks/{task_id}/results/{recipient}/{name}", content=sealed)

    def report(self, task_id: str, state: str, *, reason: str = "", progress: dict[str, Any] | None = None,
               endpoint: str | None = None, retry_for: float = 120.0) -> dict[str, Any]:
        """Report a station's state; while the hub is unreachable (a restart), retry for `retry_for` seconds."""
        body: dict[str, Any] = {"state": state, "reason": reason}
        if progress is not None:
            body["progress"] = progress
        if endpoint is not None:
            body["endpoint"] = endpoint
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return self._call("POST", f"/tasks/{task_id}/report", json=body)
            except (PeerAborted, PeerTimeout):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "unknown ca" in text.lower():
        return "the hub's certificate and ours are not from the same federation CA"
    return text.splitlines()[0] if text else type(exc).__name__
