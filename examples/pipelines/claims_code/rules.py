"""Your own transforms, as a data team writes them: one row-wise check, two pandas functions.

``claims_pandas.yaml`` names them as ``claims_code.rules:<function>``; the engine imports this
package from the pipeline file's directory and records the SHA-256 of this file in the run's
code manifest, so `explain` and the evidence bundle say exactly which code processed a row.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_CUSTOMER = re.compile(r"customer-(\d{5})")


def parse_customer(row: dict) -> dict:
    """Row-wise: the customer's number from its id; a malformed id is refused (→ on_error)."""
    match = _CUSTOMER.fullmatch(row["customer"])
    if match is None:
        raise ValueError(f"customer id {row['customer']!r} is not customer-NNNNN")
    return {**row, "customer_number": int(match.group(1))}


def score_claims(df: pd.DataFrame) -> pd.DataFrame:
    """Once per chunk: drop claims under 50.00 (recorded as filtered), band and flag the rest."""
    df = df[df["amount"] >= 50.0].copy()
    df["amount_band"] = np.select([df["amount"] < 500, df["amount"] < 5000],
                                  ["small", "medium"], "large")
    df["log_amount"] = np.log10(df["amount"]).round(4)
    df["review"] = df["amount"] > 5000
    return df


def review_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Once per aggregation batch: claims and amounts per region and band."""
    summary = (df.groupby(["region", "amount_band"], sort=True)
               .agg(claims=("claim_id", "size"), total_amount=("amount", "sum"),
                    max_amount=("amount", "max"))
               .reset_index())
    summary["total_amount"] = summary["total_amount"].round(2)
    return summary
