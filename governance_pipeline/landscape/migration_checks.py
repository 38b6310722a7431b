"""What a migration checks in the data before it builds a constraint over existing records.

A constraint added to a table that already holds runs either holds for every stored record or
the upgrade fails; these checks make that failure name the records and the fix, instead of
surfacing as the driver's bare integrity error half-way through the revision. They are plain
functions over a connection (the migration scripts import them) so the error codes they raise
are registered, listed in docs/errors.md and tested like every other.
"""

from __future__ import annotations

from sqlalchemy import Connection, column, func, select, table

from governance_pipeline.contracts.errors import AuditIntegrityError, ExitCode, register

MIGRATION_REFUSED = register(
    "GP-DB-101", "The stored records break a constraint the new schema revision adds; "
    "nothing was migrated",
    "The database holds records the engine never writes (the message names them), so it was "
    "edited outside the product. Run `governance-pipeline verify` and `sweep` to see the "
    "damage, restore the database from a verified backup, then run `governance-pipeline db "
    "upgrade` again.",
    ExitCode.INTEGRITY)

_SHOWN = 10


def refuse_repeated_token_outcomes(conn: Connection, revision: str) -> None:
    """Refuse to build ``UNIQUE (token_id, is_terminal)`` over a token with two terminal, or two
    buffered, outcomes: derived outcome ids (engine/ids.py) give a token at most one of each."""
    # The table as the revision sees it, not as schema.py describes the head.
    o = table("token_outcomes", column("token_id"), column("is_terminal"))
    repeated = conn.execute(
        select(o.c.token_id, o.c.is_terminal, func.count())
        .group_by(o.c.token_id, o.c.is_terminal).having(func.count() > 1)
        .order_by(o.c.token_id, o.c.is_terminal).limit(_SHOWN + 1)).all()
    if not repeated:
        return
    shown = ", ".join(f"{token} ({n} {'terminal' if flag else 'non-terminal'})"
                      for token, flag, n in repeated[:_SHOWN])
    more = " and more" if len(repeated) > _SHOWN else ""
    raise AuditIntegrityError(
        f"revision {revision} adds one terminal and one buffered outcome per token at most, but "
        f"these tokens have more: {shown}{more}", code=MIGRATION_REFUSED,
        details={"revision": revision, "tokens": [r[0] for r in repeated[:_SHOWN]]})
