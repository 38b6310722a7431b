"""Generate the example input files (deterministic: the same seed gives the same bytes).

    python examples/generate_data.py                 # the small files shipped in examples/data
    python examples/generate_data.py --rows 1000000 --out /tmp/claims_1m.csv   # for benchmarks

A few malformed records are planted on purpose (bad UTF-8, a wrong type, an extra column, a
missing value) so that a first run shows quarantine at work, and one well-typed claim with a
malformed customer id that the Python check of claims_pandas.yaml refuses.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

REGIONS = ["north", "south", "east", "west", "central"]
WORDS = ["water damage", "theft", "storm", "fire", "collision", "cash settlement", "glass",
         "flood", "vandalism", "medical"]
HEADER = "claim_id,customer,region,amount,description\n"


def claim_line(rng: random.Random, i: int) -> str:
    amount = round(rng.lognormvariate(7.0, 1.4), 2)
    words = " and ".join(rng.sample(WORDS, 2))
    return f"{i},customer-{rng.randrange(1, 5000):05d},{rng.choice(REGIONS)},{amount},{words}\n"


def write_claims(path: Path, rows: int, *, seed: int = 7, malformed: bool = True) -> None:
    rng = random.Random(seed)
    bad = {rows // 7: "bad_encoding", rows // 3: "wrong_type", rows // 2: "extra_field",
           (2 * rows) // 3: "missing_value",
           (5 * rows) // 6: "bad_customer"} if malformed and rows >= 10 else {}
    with path.open("wb") as fh:
        fh.write(HEADER.encode())
        for i in range(rows):
            kind = bad.get(i)
            if kind == "bad_encoding":
                fh.write(f"{i},customer-00001,north,12.5,caf".encode() + b"\xe9 \xff\n")
            elif kind == "wrong_type":
                fh.write(f"{i},customer-00002,south,twelve,storm\n".encode())
            elif kind == "extra_field":
                fh.write(f"{i},customer-00003,east,99.0,fire,unexpected\n".encode())
            elif kind == "missing_value":
                fh.write(f"{i},customer-00004,west,,theft\n".encode())
            elif kind == "bad_customer":
                # A well-typed row whose customer id has a letter O for a zero: the source
                # accepts it; the Python check of examples/pipelines/claims_pandas.yaml refuses
                # it. Drawn like any claim, so every other row stays as it was.
                line = claim_line(rng, i)
                fh.write(line.replace(",customer-0", ",customer-O", 1).encode())
            else:
                fh.write(claim_line(rng, i).encode())


NOTE_PHRASES = ["customer called about the deductible", "photos of the damage received",
                "repair estimate attached", "site visit scheduled", "police report on file",
                "second opinion requested", "settlement offer discussed", "awaiting invoice"]
#: Rows whose note carries data that must not leave the system: what the screening policy of
#: examples/pipelines/claims_screening.yaml finds (row index → planted text).
NOTE_PLANTED = {37: "customer asked to reply to jane.doe@example.com",
                58: "paid by card 4111 1111 1111 1111 per customer",
                83: "portal key api_key=Zx81qLmT0vW3nR7sK2pY9dF4hJ6bC5aE"}


def write_adjuster_notes(path: Path, rows: int = 120, *, seed: int = 11) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("claim_id,adjuster,amount,note\n")
        for i in range(rows):
            note = NOTE_PLANTED.get(i) or " and ".join(rng.sample(NOTE_PHRASES, 2))
            amount = round(rng.lognormvariate(7.0, 1.2), 2)
            fh.write(f"{1000 + i},adjuster-{rng.randrange(1, 40):02d},{amount},{note}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=240)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "claims.csv")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--clean", action="store_true", help="no planted malformed rows")
    args = parser.parse_args()
    write_claims(args.out, args.rows, seed=args.seed, malformed=not args.clean)
    if args.out == Path(__file__).parent / "data" / "claims.csv":
        write_adjuster_notes(args.out.with_name("adjuster_notes.csv"))


if __name__ == "__main__":
    main()
