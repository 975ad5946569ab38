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
from prana.errors import ConfigError, PeerAborted, PeerTimeout, PolicyViolation, ProtocolError, UnknownName
from prana.hub.reasons import timed_out
from prana.pki import FederationContext, KeyPair, apply_revocation, sealing_pair

TERMINAL = ("done", "failed", "refused")
START_PATIENCE = 10.0    # seconds a client waits for a hub that refuses connections before its first answer


class Client:
    """Talks to the hub as `me` (a party, or a user from `prana federation add-user`).

    The hub must present the certificate of the federation party `hub_name` (and the URL's host must be in
    it): a co-located party with a valid certificate of its own cannot pose as the hub. A hub certificate on
    the federation's revocation list is refused too.
    """

    def __init__(self, hub: str | None, *, federation: str | Path | Federation, me: str,
                 certificate: str | Path | None = None, private_key: str | Path | None = None,
                 timeout: float = 30.0, hub_name: str = "hub") -> None:
        loaded = federation if isinstance(federation, Federation) else Federation.load(federation)
        if certificate is None:
            certificate, private_key = loaded.identity(me)
        if not Path(certificate).is_file() or not Path(str(private_key)).is_file():
            raise ConfigError(f"the certificate or key of {me!r} is missing")
        loaded.party(hub_name)
        hub = hub or loaded.hub_url(hub_name)         # by default, where the federation says the hub listens
        self.hub, self.me, self.hub_name = hub.rstrip("/"), me, hub_name
        self.federation = loaded
        self._key = str(private_key)
        self._certificate = str(certificate)
        self._sealing = sealing_pair(KeyPair(Path(certificate), Path(str(private_key))))   # opens my results
        context = _hub_context(loaded, self.hub, hub_name)
        try:
            context.load_cert_chain(str(certificate), str(private_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the certificate of {me!r}: {exc}") from None
        self._http = httpx.Client(base_url=self.hub, verify=context, timeout=timeout, trust_env=False)
        self._answered = False           # until the hub first answers, a refused connection is retried a while

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
        patience = time.monotonic() + (0.0 if self._answered else START_PATIENCE)
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
                break
            except httpx.TimeoutException:
                raise PeerTimeout(f"the hub at {self.hub} did not answer in time", peer="hub") from None
            except httpx.ConnectError as exc:
                # a hub started a moment ago may not listen yet: nobody there (refused) is retried for a few
                # seconds before the first answer; anything else (a certificate, a wrong host) fails at once
                if not isinstance(exc.__context__, ConnectionRefusedError) and "refused" not in str(exc).lower() \
                        or time.monotonic() > patience:
                    raise PeerAborted(f"cannot reach the hub at {self.hub}: {_reason(exc)}", peer="hub") from None
                time.sleep(0.25)
            except httpx.HTTPError as exc:
                raise PeerAborted(f"cannot reach the hub at {self.hub}: {_reason(exc)}", peer="hub") from None
        self._answered = True
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            if isinstance(detail, list):
                detail = "; ".join(f"{'.'.join(map(str, item.get('loc', [])))}: {item.get('msg')}" for item in detail)
            if response.status_code == 404:       # a task id (or anchor) that names nothing: the user's input
                raise UnknownName(f"the hub says: {detail}")
            raise ProtocolError(f"the hub refused the request: {detail}", peer="hub")
        return response

    # -- analysts ---------------------------------------------------------------------------------------------

    def submit(self, analysis: str, *, stations: dict[str, str], recipients: list[str],
               parameters: dict[str, Any] | None = None, timeout: float = 600.0) -> dict[str, Any]:
        """Sign the task with my key (`prana.signed`) and submit it; the stations act on the signed content."""
        from prana.signed import make_task

        sealing = self._sealing.certificate.read_bytes() if self._sealing.certificate.is_file() else b""
        envelope = make_task(Path(self._key).read_bytes(), Path(self._certificate).read_bytes(),
                             analysis=analysis, requester=self.me, parameters=parameters or {},
                             stations=stations, recipients=recipients, timeout=timeout,
                             sealing_certificate_pem=sealing)
        return self._call("POST", "/tasks", json=envelope)

    def signed_task(self, task_id: str) -> Any:
        """The body of my own task as I signed it, after checking that the hub kept it unchanged."""
        from prana.signed import open_task

        task = self.status(task_id)
        checked_id, body = open_task(self.federation, task.get("envelope"), fresh=False)
        if checked_id != task_id or body.requester != self.me:
            raise ProtocolError(f"the hub shows task {task_id} with content that I did not sign", peer="hub")
        return body

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
        return raise_for_state(task)

    def cancel(self, task_id: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/tasks/{task_id}/cancel", json={"reason": reason[:1000]})

    def results(self, task_id: str) -> dict[str, bytes]:
        """The results of `task_id` addressed to me, opened with my key and checked against their senders'
        signatures, by name."""
        return {result.name: result.payload for result in self.signed_results(task_id)}

    def signed_results(self, task_id: str) -> list[Any]:
        """The results of `task_id` addressed to me, each opened with my private key and verified: signed by
        the station the hub names as its sender, for this task, for me, under this name
        (`prana.signed.Result`). One result that fails any check fails the whole call."""
        import base64

        from prana.hub.sealing import unseal
        from prana.signed import check_task_id, open_result

        check_task_id(task_id)
        rows = self._call("GET", f"/tasks/{task_id}/results")
        if rows and not self._sealing.private_key.is_file():
            raise ConfigError(f"the sealing key of {self.me!r} is missing: {self._sealing.private_key}")
        key = self._sealing.private_key.read_bytes() if rows else b""
        opened = []
        for row in rows:
            name, sender = str(row["name"]), str(row["sender"])
            data = unseal(key, base64.b64decode(row["sealed"]), context=f"{task_id}/{name}".encode())
            certificate = self.federation.certificate_of(sender).read_bytes()
            opened.append(open_result(self.federation, data, task=task_id, recipient=self.me, name=name,
                                      sender=sender, certificate_pem=certificate))
        return opened

    # -- stations ---------------------------------------------------------------------------------------------

    def poll(self, wait: float = 20.0) -> list[dict[str, Any]]:
        return self._call("GET", "/station/tasks", params={"wait": wait}, timeout=wait + 15)

    def deliver(self, task_id: str, recipient: str, name: str, payload: bytes, certificate_pem: bytes) -> None:
        """Sign `payload` as mine (task, sender, recipient, name), seal it to the recipient's sealing
        certificate (`certificate_pem`), and leave it at the hub, which stores it once and never replaces it."""
        from prana.hub.sealing import seal
        from prana.signed import check_task_id, pack_result

        check_task_id(task_id)
        signed = pack_result(Path(self._key).read_bytes(), task=task_id, sender=self.me, recipient=recipient,
                             name=name, payload=payload)
        sealed = seal(certificate_pem, signed, context=f"{task_id}/{name}".encode())
        self._call_raw("PUT", f"/tasks/{task_id}/results/{recipient}/{name}", content=sealed)

    def put_sealed(self, task_id: str, recipient: str, name: str, sealed: bytes) -> None:
        """Leave a message already signed and sealed (`learning.mailbox`) at the hub for `recipient`."""
        from prana.signed import check_task_id

        check_task_id(task_id)
        self._call_raw("PUT", f"/tasks/{task_id}/results/{recipient}/{name}", content=sealed)

    def sealed_for_me(self, task_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """The sealed messages of `task_id` addressed to me (or the one called `name`), unopened: name, sender
        and sealed bytes (base64)."""
        from prana.signed import check_task_id

        check_task_id(task_id)
        return list(self._call("GET", f"/tasks/{task_id}/results", params={"name": name} if name else None))

    def anchor(self) -> dict[str, Any]:
        """The newest head of my audit log that the hub holds (a station's anchor against truncation)."""
        return self._call("GET", "/station/anchor")

    def report(self, task_id: str, state: str, *, reason: str = "", progress: dict[str, Any] | None = None,
               endpoint: str | None = None, audit_head: tuple[int, str] | None = None,
               retry_for: float = 120.0) -> dict[str, Any]:
        """Report a station's state (and the head of its audit log, which the hub keeps as an anchor); while
        the hub is unreachable (a restart), retry for `retry_for` seconds."""
        body: dict[str, Any] = {"state": state, "reason": reason}
        if progress is not None:
            body["progress"] = progress
        if endpoint is not None:
            body["endpoint"] = endpoint
        if audit_head is not None:
            body["audit_head"] = {"seq": audit_head[0], "hash": audit_head[1]}
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return self._call("POST", f"/tasks/{task_id}/report", json=body)
            except (PeerAborted, PeerTimeout):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)


def raise_for_state(task: dict[str, Any]) -> dict[str, Any]:
    """The task itself, unless it was refused (PolicyViolation), ran out of time (PeerTimeout: no operator
    decided, or it did not finish, before its deadline) or failed otherwise (PeerAborted), with the hub's
    reason."""
    task_id = task["id"]
    if task["state"] == "refused":
        raise PolicyViolation(f"task {task_id} was refused by {task['reason']}")
    if task["state"] == "failed":
        if timed_out(task["reason"]):
            raise PeerTimeout(f"task {task_id} ran out of time: {task['reason']}", task=task_id)
        raise PeerAborted(f"task {task_id} failed: {task['reason']}", task=task_id)
    return task


class _HubContext(FederationContext):
    """The client's TLS context: after each handshake (before any request is sent) the server's certificate
    must name the hub party; httpx turns the refusal into a ConnectError with this sentence."""

    hub_name = "hub"
    hub_address = ""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        wrapped = super().wrap_socket(sock, *args, **kwargs)
        name = ""
        for rdn in (wrapped.getpeercert() or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    name = str(value)
        if name != self.hub_name:
            wrapped.close()
            raise _NotTheHub(f"the server at {self.hub_address} presented the certificate of {name!r}, "
                             f"not of the hub {self.hub_name!r}")
        return wrapped


class _NotTheHub(ssl.SSLError):
    """The server's certificate is valid under the federation CA but belongs to another party."""

    def __str__(self) -> str:          # ssl.SSLError would print the tuple of its arguments
        return str(self.args[0]) if self.args else "the server is not the hub"


def _hub_context(federation: Federation, hub: str, hub_name: str) -> _HubContext:
    context = _HubContext(ssl.PROTOCOL_TLS_CLIENT)       # verifies the chain and the URL's host
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.hub_name = hub_name
    url = httpx.URL(hub)
    context.hub_address = f"{url.host}:{url.port or 443}"
    try:
        context.load_verify_locations(cafile=str(federation.ca_path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the CA certificate {federation.ca_path}: {exc}") from None
    apply_revocation(context, federation)
    return context


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "unknown ca" in text.lower():
        return "the hub's certificate and ours are not from the same federation CA"
    return text.splitlines()[0] if text else type(exc).__name__
