"""Anchor benchmark: TNO's two-party DGK secure comparison (Paillier + DGK).

Measures `tno.mpc.protocols.secure_comparison` 4.4.0 (TNO PET Lab,
https://pypi.org/project/tno.mpc.protocols.secure_comparison/), which implements
T. Veugen, "Improving the DGK comparison protocol" (WIFS 2012, with its
published correction), built on Damgard-Geisler-Kroigaard. Roles: the
Initiator (Alice) holds Paillier ciphertexts [[a]], [[b]]; the KeyHolder (Bob)
holds the Paillier and DGK secret keys. Output: a Paillier ciphertext [[a <= b]]
held by the Initiator. We call it with (a, b) = (y, x) so it computes [[x >= y]].

Parameters: Paillier n of 2048 bits; DGK n of 2048 bits, v_p/v_q of 160 bits,
plaintext modulus u = next_prime(2^(l+2)); l = 32, i.e. inputs 0 <= x, y < 2^32.

Both roles run in ONE process and ONE asyncio loop (no network), the way the
package's README/tests do: each role's full `perform_secure_comparison()` (which
includes per-comparison scheme exchange, ciphertext re-randomisation and the
package's background randomness-generating process pool) exchanges messages via
an in-memory communicator that serialises them with tno.mpc.communication, like
the package's test `DictionaryCommunicator` (but without its 1 ms polling).
Input encryption (unsafe_encrypt, as in the README) and the final decryption are
outside the timings.

Keys (1-4 min to generate) are cached as plain integers in JSON under
benchmarks/anchors/cache/ and reused. One untimed warm-up comparison boots the
randomness process pool. Prints ONE JSON line on stdout; progress on stderr.

Run with the anchor venv:  benchmarks/anchors/.venv-tno/bin/python \
    benchmarks/anchors/tno_dgk.py [--single 10] [--batch 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from tno.mpc.communication import Serialization
from tno.mpc.encryption_schemes.dgk import DGK, DGKPublicKey, DGKSecretKey
from tno.mpc.encryption_schemes.paillier import Paillier, PaillierPublicKey, PaillierSecretKey
from tno.mpc.encryption_schemes.utils import next_prime
from tno.mpc.protocols.secure_comparison import Initiator, KeyHolder

PAILLIER_BITS, DGK_N_BITS, DGK_V_BITS, L = 2048, 2048, 160, 32
CACHE = Path(__file__).resolve().parent / "cache" / f"tno_keys_p{PAILLIER_BITS}_dgk{DGK_N_BITS}_l{L}.json"


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def ints(key: object) -> dict[str, int]:
    return {k: int(v) for k, v in asdict(key).items()}  # gmpy2 mpz -> int


def load_or_generate_keys() -> tuple[Paillier, DGK]:
    """Key material as plain ints in JSON (never pickle); generated once, then reused."""
    u = next_prime(1 << (L + 2))
    if CACHE.exists():
        data = json.loads(CACHE.read_text())
        assert data["dgk_pk"]["u"] == u and data["dgk_pk"]["n"].bit_length() == DGK_N_BITS
        log(f"loaded cached keys from {CACHE}")
    else:
        log(f"no cached keys; generating Paillier-{PAILLIER_BITS} and DGK-{DGK_N_BITS} (takes minutes)...")
        t0 = time.perf_counter()
        p_pk, p_sk = Paillier.generate_key_material(key_length=PAILLIER_BITS)
        t1 = time.perf_counter()
        d_pk, d_sk = DGK.generate_key_material(v_bits=DGK_V_BITS, n_bits=DGK_N_BITS, u=u)
        t2 = time.perf_counter()
        log(f"keygen: Paillier {t1 - t0:.1f} s, DGK {t2 - t1:.1f} s")
        data = {"paillier_pk": ints(p_pk), "paillier_sk": ints(p_sk),
                "dgk_pk": ints(d_pk), "dgk_sk": ints(d_sk),
                "keygen_seconds": {"paillier": round(t1 - t0, 1), "dgk": round(t2 - t1, 1)}}
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = CACHE.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(CACHE)
        log(f"cached keys in {CACHE}")
    paillier = Paillier(PaillierPublicKey(**data["paillier_pk"]), PaillierSecretKey(**data["paillier_sk"]))
    dgk = DGK(DGKPublicKey(**data["dgk_pk"]), DGKSecretKey(**data["dgk_sk"]), full_decryption=False)
    return paillier, dgk


class InMemoryCommunicator:
    """Implements the package's Communicator protocol for two roles in one event loop."""

    def __init__(self) -> None:
        self.box: dict[str, asyncio.Future[bytes]] = {}

    def _slot(self, msg_id: str) -> asyncio.Future[bytes]:
        if msg_id not in self.box:
            self.box[msg_id] = asyncio.get_running_loop().create_future()
        return self.box[msg_id]

    async def send(self, party_id: str, message: object, msg_id: str) -> None:
        self._slot(msg_id).set_result(Serialization.pack(message, msg_id=msg_id, use_pickle=False))

    async def recv(self, party_id: str, msg_id: str) -> object:
        data = await self._slot(msg_id)
        del self.box[msg_id]
        return Serialization.unpack(data)[1]


async def compare(alice: Initiator, bob: KeyHolder, a_enc, b_enc):
    """One full protocol run; returns [[a <= b]] (Paillier) as obtained by the Initiator."""
    result, _ = await asyncio.gather(alice.perform_secure_comparison(a_enc, b_enc),
                                     bob.perform_secure_comparison())
    return result


async def run(n_single: int, n_batch: int, seed: int) -> dict:
    paillier, dgk = load_or_generate_keys()
    comm = InMemoryCommunicator()
    alice = Initiator(L, communicator=comm, other_party="keyholder")
    bob = KeyHolder(L, communicator=comm, other_party="initiator",
                    scheme_paillier=paillier, scheme_dgk=dgk)

    log(f"cpus={os.cpu_count()} POOL_EXECUTOR_MAX_WORKERS={os.getenv('POOL_EXECUTOR_MAX_WORKERS')}"
        " (unset = package default: 1 randomness worker process per scheme)")
    rng = random.Random(seed)
    edge = [(0, 0), (2**L - 1, 2**L - 1), (2**L - 1, 0), (0, 2**L - 1), (12345, 12345)]
    pairs = edge + [(rng.randrange(2**L), rng.randrange(2**L)) for _ in range(1 + n_single + n_batch)]
    pairs = pairs[: 1 + n_single + n_batch]
    # untimed; unsafe_encrypt as in the package README (step 1 re-randomises before sending)
    enc = [(paillier.unsafe_encrypt(x), paillier.unsafe_encrypt(y)) for x, y in pairs]

    correct = True

    def check(i: int, ct) -> None:
        nonlocal correct
        x, y = pairs[i]
        got = int(paillier.decrypt(ct))
        if got != int(x >= y):
            correct = False
            log(f"WRONG: x={x} y={y} got {got}")

    t0 = time.perf_counter()
    check(0, await compare(alice, bob, enc[0][1], enc[0][0]))  # warm-up (boots process pool)
    log(f"warm-up comparison: {1e3 * (time.perf_counter() - t0):.0f} ms")

    single = []
    for i in range(1, 1 + n_single):
        t0 = time.perf_counter()
        ct = await compare(alice, bob, enc[i][1], enc[i][0])
        single.append(1e3 * (time.perf_counter() - t0))
        check(i, ct)
    log("single (ms):", " ".join(f"{s:.1f}" for s in single))

    outs = []
    t0 = time.perf_counter()
    for i in range(1 + n_single, 1 + n_single + n_batch):
        outs.append(await compare(alice, bob, enc[i][1], enc[i][0]))
    batch_s = time.perf_counter() - t0
    for k, ct in enumerate(outs):
        check(1 + n_single + k, ct)
    log(f"batch: {n_batch} comparisons in {batch_s:.2f} s")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # randomness-pool over/under-use notices
        paillier.shut_down()
        dgk.shut_down()
    return {"single_ms": round(statistics.median(single), 2),
            "per_second": round(n_batch / batch_s, 2),
            "n_single": n_single, "n_batch": n_batch,
            "paillier_bits": PAILLIER_BITS, "dgk_bits": DGK_N_BITS, "l": L,
            "correct": correct}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=10, help="comparisons timed one by one (median)")
    ap.add_argument("--batch", type=int, default=40, help="comparisons in the throughput batch")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.single < 1 or args.batch < 1:
        ap.error("--single and --batch must be >= 1")
    result = asyncio.run(run(args.single, args.batch, args.seed))
    print(json.dumps(result), flush=True)
    sys.exit(0 if result["correct"] else 1)


if __name__ == "__main__":
    main()
