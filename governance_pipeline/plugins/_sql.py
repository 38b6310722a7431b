"""What the SQL source and the SQL sink share: the option type of a database URL."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def _parsable(value: str) -> str:
    try:
        make_url(value)
    except ArgumentError as exc:
        raise ValueError(f"not a SQLAlchemy URL: {exc}") from None
    return value


#: A SQLAlchemy URL option; ``postgresql://`` is pinned to psycopg 3 where it is used.
SqlUrl = Annotated[str, Field(min_length=1), AfterValidator(_parsable)]
