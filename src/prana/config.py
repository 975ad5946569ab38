"""The federation file: which parties exist, where they listen, and where their certificates are.

A federation file is TOML, written by `prana federation init`:

    name = "demo"
    version = 1
    ca_certificate = "ca.pem"

    [parties.bank]
    address = "127.0.0.1:61001"
    certificate = "bank.pem"
    private_key = "bank-key.pem"

Relative paths are relative to the folder of the federation file. Every party's copy of the file lists
every party's address and certificate, but only its own private key is needed (and should be present).

Beside the file: `users/NAME.pem` and `users/NAME-key.pem` (analysts, from `prana federation add-user`;
`Federation.identity` and `certificate_of` find parties and users alike) and `crl.pem`, the revocation
list written by `prana federation revoke` (see `prana.pki`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prana.errors import ConfigError

FEDERATION_VERSION = 1
PARTY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class Party(BaseModel):
    """One party of the federation, as written in the file."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(description="host:port where this party's engine listens")
    certificate: str
    private_key: str | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"address {value!r} is not host:port")
        return value

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


class Federation(BaseModel):
    """A loaded federation file. Paths are resolved against `root`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int = FEDERATION_VERSION
    ca_certificate: str
    parties: dict[str, Party]
    root: Path = Field(default=Path("."), exclude=True)
    file: Path | None = Field(default=None, exclude=True)

    @field_validator("parties")
    @classmethod
    def _names(cls, value: dict[str, Party]) -> dict[str, Party]:
        for name in value:
            if not PARTY_NAME.match(name):
                raise ValueError(f"party name {name!r} must be lower-case letters, digits, - or _")
        if len({party.address for party in value.values()}) != len(value):
            raise ValueError("two parties share one address")
        return value

    # -- access -------------------------------------------------------------------------------------------

    def party(self, name: str) -> Party:
        """The party called `name`, or a ConfigError that lists the known parties."""
        if name not in self.parties:
            known = ", ".join(sorted(self.parties))
            raise ConfigError(f"there is no party {name!r} in federation {self.name!r} (known: {known})")
        return self.parties[name]

    def path(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    @property
    def ca_path(self) -> Path:
        return self.path(self.ca_certificate)

    def certificate_path(self, name: str) -> Path:
        return self.path(self.party(name).certificate)

    def private_key_path(self, name: str) -> Path:
        party = self.party(name)
        if party.private_key is None:
            raise ConfigError(f"this copy of federation {self.name!r} holds no private key for {name!r}")
        path = self.path(party.private_key)
        if not path.is_file():
            raise ConfigError(f"the private key of {name!r} is missing: {path}")
        return path

    # -- identities: parties and users ---------------------------------------------------------------------

    @property
    def users_path(self) -> Path:
        """The folder where `prana federation add-user` writes users' certificates and keys (users/)."""
        return self.root / "users"

    @property
    def crl_path(self) -> Path:
        """The federation's certificate revocation list, crl.pem beside the file (it may not exist)."""
        return self.root / "crl.pem"

    def users(self) -> list[str]:
        """The names of the users whose certificates are in users/ (analysts: `federation add-user`)."""
        if not self.users_path.is_dir():
            return []
        return sorted(path.stem for path in self.users_path.glob("*.pem")
                      if not path.stem.endswith(("-key", "-sealing")) and PARTY_NAME.match(path.stem))

    def _unknown(self, name: str) -> ConfigError:
        parties = ", ".join(sorted(self.parties)) or "none"
        users = ", ".join(self.users()) or "none"
        return ConfigError(f"there is no party or user {name!r} in federation {self.name!r} "
                           f"(parties: {parties}; users in {self.users_path}: {users})")

    def certificate_of(self, name: str) -> Path:
        """The certificate of party or user `name`: to seal results to them and to verify their signatures."""
        if name in self.parties:
            return self.certificate_path(name)
        if PARTY_NAME.match(name):
            path = self.users_path / f"{name}.pem"
            if path.is_file():
                return path
        raise self._unknown(name)

    def sealing_certificate_of(self, name: str) -> Path:
        """The certificate that results for party or user `name` are sealed to (`prana.pki.sealing_pair`)."""
        from prana.pki import KeyPair, sealing_pair

        path = sealing_pair(KeyPair(self.certificate_of(name), Path("unused-key.pem"))).certificate
        if not path.is_file():
            raise ConfigError(f"{name!r} has no sealing certificate ({path}); federations made before sealing "
                              "keys existed need their certificates issued again")
        return path

    def identity(self, name: str) -> tuple[Path, Path]:
        """The certificate and private key that `name` (a party, or a user under users/) acts with."""
        if name in self.parties:
            return self.certificate_path(name), self.private_key_path(name)
        certificate = self.certificate_of(name)
        key = self.users_path / f"{name}-key.pem"
        if not key.is_file():
            raise ConfigError(f"the private key of user {name!r} is missing: {key}")
        return certificate, key

    def hub_url(self, hub_name: str = "hub") -> str:
        """The hub's URL: https:// and the address of the federation's party `hub_name` (it listens there)."""
        if hub_name not in self.parties:
            raise ConfigError(f"federation {self.name!r} has no party {hub_name!r}, so it names no hub; give "
                              "the hub's URL with --hub https://HOST:PORT")
        return f"https://{self.parties[hub_name].address}"

    # -- files --------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str) -> "Federation":
        """Read and validate a federation file; every problem is one ConfigError sentence."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"federation file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read federation file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"federation file {path} is not valid TOML: {exc}") from None
        try:
            federation = cls.model_validate({**data, "root": path.resolve().parent, "file": path.resolve()})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"federation file {path}: {where}: {first['msg']}") from None
        if federation.version != FEDERATION_VERSION:
            raise ConfigError(f"federation file {path} has version {federation.version}; "
                              f"this prana reads version {FEDERATION_VERSION}")
        if not federation.ca_path.is_file():
            raise ConfigError(f"federation file {path} names CA certificate {federation.ca_path}, "
                              "which does not exist")
        return federation

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(tomli_w.dumps(self.model_dump(exclude_none=True)))
        return path
