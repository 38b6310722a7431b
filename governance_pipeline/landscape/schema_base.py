"""What every Landscape table is built with: one ``MetaData`` (with the naming convention the
migrations rely on) and the column and constraint helpers that keep the tables uniform."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, MetaData, String

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _in(column: str, enum: type[StrEnum], *, nullable: bool = False) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in enum)
    expr = f"{column} IN ({values})"
    if nullable:
        expr = f"{column} IS NULL OR {expr}"
    return CheckConstraint(expr, name=f"{column}_valid")


def _flag(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} IN (0, 1)", name=f"{column}_flag")


def _key(name: str, *args: object, **kw: object) -> Column:
    # Engine ids are derived (run id + row index + node position), hence the generous width.
    return Column(name, String(100), *args, **kw)


def _ts(name: str, *, nullable: bool = False) -> Column:
    return Column(name, String(32), nullable=nullable)


def _closed_lifecycle(status_col: str, open_value: str, result_col: str | None) -> CheckConstraint:
    """An open record has no end; a closed one has an end, and a failure says why."""
    result_open = f" AND {result_col} IS NULL" if result_col else ""
    result_done = f" AND {result_col} IS NOT NULL" if result_col else ""
    return CheckConstraint(
        f"({status_col} = '{open_value}' AND completed_at IS NULL AND error_json IS NULL{result_open})"
        f" OR ({status_col} = 'completed' AND completed_at IS NOT NULL AND error_json IS NULL{result_done})"
        f" OR ({status_col} = 'failed' AND completed_at IS NOT NULL AND error_json IS NOT NULL)",
        name="lifecycle",
    )
